"""End to end: `dvc repro` with the budget knobs on tiny IDX files, in a temporary git repo.

Checks outputs, not exit codes alone: finite metrics, the report, the MLflow runs with their
params and metrics, a no-op second `dvc repro`, and which stages a `gan` or `vae` param change
re-runs (train_gan must follow the VAE only with gan.init_from_vae on).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["prepare", "judge", "train_vae", "fit_prior", "gan_init", "train_gan", "evaluate",
          "report"]
OVERRIDES = {
    "data": {"val_size": 100, "verify_checksums": False, "allow_download": False},
    "judge": {"epochs": 1}, "vae": {"epochs": 1, "log_every": 2},
    "gan": {"epochs": 1, "log_every": 2}, "prior": {"components": [1, 3]},
    "eval": {"num_samples": 200, "draws": 2, "batch_size": 100, "kid_subsets": 10,
             "kid_subset_size": 50, "iwae_k": [1, 5], "likelihood_images": 40, "is_splits": 2},
    "tracking": {"experiment": "e2e"},
}

pytestmark = pytest.mark.e2e


def fake_fashion(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class k lights a distinct horizontal band, plus noise: easy to learn."""
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 + 2 * k: 5 + 2 * k, 4:24] = 230
    return images, labels


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    tail = f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{tail}"
    return out


def make_tiny_repo(repo: Path, overrides: dict[str, dict]) -> dict[str, str]:
    """A git repo at ``repo``: this checkout's tracked and new (not ignored) files, params.yaml
    with ``overrides`` applied per section, tiny fake IDX files in data/raw; returns the
    environment to run dvc in (this venv first on PATH, no MLFLOW_/DVC_ variables)."""
    from genduel.data.raw import write_idx

    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rng = np.random.default_rng(0)
    raw = repo / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", 700), ("t10k", 200)):
        images, labels = fake_fashion(rng, n)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        run(cmd, repo, env)
    return env


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    repo = tmp_path_factory.mktemp("genduel") / "repo"
    env = make_tiny_repo(repo, OVERRIDES)
    # A partial run, then the rest (no stage runs twice): one pipeline run in MLflow
    # (test_mlflow_parent_of_a_partial_repro_and_the_rest_ends_finished).
    run(["dvc", "repro", "train_vae"], repo, env)
    run(["dvc", "repro"], repo, env)
    return repo, env


def test_metrics_files_hold_finite_values(repo):
    path, _ = repo
    for name in ("vae", "vae_prior", "gan", "real"):
        values = json.loads((path / "metrics" / f"eval_{name}.json").read_text())
        for key in ("fid", "inception_score", "kid", "precision", "recall", "density",
                    "coverage"):
            assert math.isfinite(values[key]), (name, key)
            assert f"{key}_std" in values
        assert all(isinstance(v, (int, float)) for v in values.values())  # dvc exp show: numbers
        details = json.loads((path / "eval" / f"details_{name}.json").read_text())
        assert values["draws"] == 2 and details["protocol"]["num_samples"] == 200
    vae = json.loads((path / "metrics" / "eval_vae.json").read_text())
    assert vae["elbo_nats"] <= vae["iwae_k5_nats"] + 1.0  # bounds tighten with k (MC noise)
    assert math.isclose(vae["bits_per_dim"], -vae["elbo_nats"] / (28 * 28 * math.log(2)))
    two_stage = json.loads((path / "metrics" / "eval_vae_prior.json").read_text())
    # the same decoder and reconstruction term, another prior: only the KL differs
    assert two_stage["recon_log_px_z_nats"] == vae["recon_log_px_z_nats"]
    assert math.isfinite(two_stage["iwae_k5_nats"]) and two_stage["latent_nn_ratio"] > 0
    fit = json.loads((path / "metrics" / "fit_prior.json").read_text())
    assert fit["components"] in (1, 3) and fit["val_ll_nats"] == max(
        fit["val_ll_nats_k1"], fit["val_ll_nats_k3"])  # K chosen on the validation latents
    judge = json.loads((path / "metrics" / "judge.json").read_text())
    assert judge["test_accuracy"] > 0.5  # the bands are easy to tell apart
    for f in ("features_vae.npz", "features_gan.npz", "features_real.npz"):
        assert (path / "eval" / f).exists()


def test_report_has_the_table_and_the_pictures(repo):
    path, _ = repo
    text = (path / "reports" / "report.md").read_text()
    assert "| Metric | Better | VAE, z ~ N(0, I) | VAE, z ~ GMM fitted to q(z) | GAN |" in text
    assert "no likelihood" in text and "## Why the prior matters" in text
    for fig in ("vae.png", "vae_prior.png", "gan.png", "real.png", "vae_curves.png",
                "gan_curves.png", "prior_gap.png"):
        assert f"figures/{fig}" in text and (path / "reports" / "figures" / fig).stat().st_size
    assert "GAN training diagnostics" in text and "Latent space" in text
    studies = json.loads((path / "eval" / "studies" / "index.json").read_text())["figures"]
    assert len(studies) >= 4 and all(Path(f["file"]).name in text for f in studies)
    assert "<table>" in (path / "reports" / "report.html").read_text()


def test_mlflow_has_a_run_per_stage_with_params_and_eval_metrics(repo):
    import mlflow

    path, _ = repo
    client = mlflow.MlflowClient(f"sqlite:///{path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert set(STAGES) <= set(by_name), sorted(by_name)
    vae, gan = by_name["train_vae"], by_name["train_gan"]
    assert vae.data.params["vae.epochs"] == "1" and gan.data.params["gan.loss"] == "non_saturating"
    for run in (vae, gan):  # the same eval metric names in both model runs
        assert math.isfinite(run.data.metrics["fid"])
        assert run.data.tags["mlflow.source.git.commit"] != "unknown"
    history = client.get_metric_history(gan.info.run_id, "diag/classes_covered")
    assert len(history) == 1 and 0 <= history[0].value <= 10  # one point per GAN epoch
    run_id = json.loads((path / "runs" / "train_vae.json").read_text())["mlflow_run_id"]
    assert run_id == vae.info.run_id  # in the run record, not in the metrics evaluate reads
    assert "mlflow_run_id" not in json.loads((path / "metrics" / "train_vae.json").read_text())


def test_mlflow_parent_of_a_partial_repro_and_the_rest_ends_finished(repo):
    import mlflow

    path, _ = repo
    client = mlflow.MlflowClient(f"sqlite:///{path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") == []
    # `dvc repro train_vae` left its parent FINISHED (tests/test_dvc_faults.py); the full
    # `dvc repro` after it reopened the same parent for its stages and ended it with the report
    parent, = client.search_runs([exp.experiment_id], "tags.`genduel.kind` = 'pipeline'")
    assert parent.info.status == "FINISHED" and parent.data.tags["genduel.last_stage"] == "report"
    stages = client.search_runs([exp.experiment_id], "tags.`genduel.kind` = 'stage'")
    assert sorted(r.info.run_name for r in stages) == sorted(STAGES)
    assert {r.data.tags["mlflow.parentRunId"] for r in stages} == {parent.info.run_id}


def _set(path: Path, section: str, **values) -> None:
    params = yaml.safe_load((path / "params.yaml").read_text())
    params[section].update(values)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _ran(out: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in out]


def _models(path: Path, env: dict[str, str]) -> list[str]:
    """``dvc repro fit_prior train_gan`` (every model, no evaluation): the stages it ran."""
    return _ran(run(["dvc", "repro", "fit_prior", "train_gan"], path, env).stdout)


def _stale(path: Path, env: dict[str, str]) -> set[str]:
    """The stages ``dvc status`` lists: those whose own deps or params changed."""
    out = run(["dvc", "status"], path, env).stdout
    return {line[:-1] for line in out.splitlines()
            if line.endswith(":") and not line.startswith((" ", "\t"))}


def test_second_repro_does_nothing_and_gan_param_reruns_only_downstream(repo):
    path, env = repo
    out = run(["dvc", "repro"], path, env)
    assert "up to date" in out.stdout.lower() or "didn't change" in out.stdout.lower()
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["gan"]["lr_g"] = 0.0003
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # dvc status lists the stages whose own deps changed: validate (params.yaml) and train_gan;
    # validate writes the same data/params.ok, so nothing else re-runs
    assert _stale(path, env) == {"validate", "train_gan"}
    # downstream of train_gan: evaluate and report, left to the whole `dvc repro` that ends
    # test_vae_change_reaches_train_gan_only_through_init_from_vae (and, after this same
    # change, tests/tracking/test_live_server.py runs them)
    assert _models(path, env) == ["train_gan"]
    assert _stale(path, env) == {"evaluate", "report"}


def test_vae_change_reaches_train_gan_only_through_init_from_vae(repo):
    """Which stages each change re-runs. The steps before the last re-run the models only
    (:func:`_models`) and ask ``dvc status`` what is left, evaluate and report each time: a
    whole ``dvc repro`` per step would repeat those two four times for the same answer."""
    path, env = repo
    _set(path, "vae", lr=0.002, decoder_components=1)  # init_from_vae needs one logistic
    assert _models(path, env) == ["train_vae", "fit_prior", "gan_init"]  # not train_gan
    assert _stale(path, env) == {"evaluate", "report"}
    _set(path, "prior", components=[1, 2])  # the prior is its own stage: the VAE stays
    assert _models(path, env) == ["fit_prior"]
    assert _stale(path, env) == {"evaluate", "report"}
    params = yaml.safe_load((path / "params.yaml").read_text())
    _set(path, "gan", init_from_vae=True, g_arch="deconv",  # the decoder's layers
         latent_dim=params["vae"]["latent_dim"], width=params["vae"]["width"])
    assert _models(path, env) == ["gan_init", "train_gan"]
    assert _stale(path, env) == {"evaluate", "report"}
    _set(path, "vae", lr=0.001)  # with init_from_vae on, the VAE reaches train_gan
    assert _ran(run(["dvc", "repro"], path, env).stdout) == [
        "train_vae", "fit_prior", "gan_init", "train_gan", "evaluate", "report"]
    assert _stale(path, env) == set()


def test_dvc_plots_show_renders_the_gan_diagnostics_and_the_sample_grids(repo, tmp_path):
    path, env = repo
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], path, env)
    html = (tmp_path / "plots" / "index.html").read_text()
    for image in ("eval/samples_vae.png", "eval/samples_gan.png",
                  "artifacts/train_vae/grids/samples_epoch001.png",
                  "artifacts/train_vae/grids/recon_epoch001.png",
                  "artifacts/train_gan/grids/samples_epoch001.png"):  # every epoch (1 here)
        static = f"static/workspace_{image.replace('/', '_')}"
        assert f'src="{static}"' in html  # an image plot
        assert (tmp_path / "plots" / static).read_bytes() == (path / image).read_bytes()
    assert "GAN per epoch, classes in the samples (judge)" in html
    assert '"classes_well_covered"' in html  # eval/gan_diagnostics.csv's rows are its data
