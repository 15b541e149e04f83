"""End to end: `dvc repro` with the budget knobs on tiny IDX files, in a temporary git repo.

The shared pipeline trains two seeds (``runtime.seeds: [0, 1]``), side by side
(``runtime.concurrent_seeds: 2``). Checks outputs, not exit codes alone: each seed's finite
metrics and own models, the report's numbers over the seeds, what DVC lists and ran (the second
seed's training published, not repeated), the MLflow runs with their params, seeds and metrics,
a no-op second `dvc repro`, which stages a `gan` or `vae` param change re-runs (train_gan must
follow the VAE only with gan.init_from_vae on), and that a new seed stales only its own stages.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: The training seeds of the shared pipeline (runtime.seeds).
SEEDS = (0, 1)
#: The stages dvc.yaml runs once per training seed (``foreach``), in pipeline order.
PER_SEED = ("train_vae", "fit_prior", "gan_init", "train_gan", "evaluate")


def seeded(*stages: str, seeds: tuple[int, ...] = SEEDS) -> list[str]:
    """DVC's names of per-seed stages: ``seeded("train_vae") == ["train_vae@0", "train_vae@1"]``."""
    return [f"{stage}@{seed}" for stage in stages for seed in seeds]


STAGES = ["prepare", "judge", *seeded(*PER_SEED), "report"]
#: The runtime section of a one-seed pipeline, for the tests that need no second seed.
ONE_SEED = {"seeds": [0], "concurrent_seeds": 1, "num_threads": 0}
OVERRIDES = {
    # two seeds side by side, one torch thread each: with torch's default (every core) the two
    # processes spin against each other on a 2-core runner (train_gan@0 beside its sibling:
    # 15-31 s; with one thread each 9-10 s; alone, one seed: 5 s)
    "runtime": {"seeds": list(SEEDS), "concurrent_seeds": 2, "num_threads": 1},
    "data": {"val_size": 100, "verify_checksums": False, "allow_download": False},
    "judge": {"epochs": 1}, "vae": {"epochs": 1, "log_every": 2},
    "gan": {"epochs": 1, "log_every": 2}, "prior": {"components": [1, 3]},
    "eval": {"num_samples": 200, "draws": 2, "batch_size": 100, "kid_subsets": 10,
             "kid_subset_size": 50, "iwae_k": [1, 5], "likelihood_images": 40, "is_splits": 2},
    "tracking": {"experiment": "e2e"},
}
#: What a per-seed training stage logs when its sibling (runtime.concurrent_seeds) trained it.
PUBLISHED = ("was trained with these params, inputs and code already (beside another seed's "
             "stage")

pytestmark = pytest.mark.e2e


def fake_fashion(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class k lights a distinct horizontal band, plus noise: easy to learn."""
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 + 2 * k: 5 + 2 * k, 4:24] = 230
    return images, labels


def run(cmd: list[str], cwd: Path, env: dict[str, str], *,
        merged: bool = False) -> subprocess.CompletedProcess:
    """Run ``cmd``, which must succeed; ``merged``: stderr goes into stdout, in the order
    written (a stage's log lines after DVC's ``Running stage`` line)."""
    out = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT if merged else subprocess.PIPE, text=True,
                         timeout=900)
    tail = f"{out.stdout[-3000:]}\n{(out.stderr or '')[-3000:]}"
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


class Pipeline(NamedTuple):
    """The shared tiny pipeline: its repo, the environment to run dvc in, and what the partial
    ``dvc repro train_vae`` and the whole ``dvc repro`` after it printed (stderr merged)."""

    path: Path
    env: dict[str, str]
    partial_log: str
    full_log: str


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Pipeline:
    repo = tmp_path_factory.mktemp("genduel") / "repo"
    env = make_tiny_repo(repo, OVERRIDES)
    # A partial run (the stage group: train_vae@0 and @1), then the rest (no stage runs twice):
    # one pipeline run in MLflow (test_mlflow_parent_of_a_partial_repro_and_the_rest_ends_finished)
    partial = run(["dvc", "repro", "train_vae"], repo, env, merged=True).stdout
    full = run(["dvc", "repro"], repo, env, merged=True).stdout
    return Pipeline(repo, env, partial, full)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _seed(path: Path, folder: str, seed: int) -> Path:
    """``<folder>/seeds/<seed>``: where a per-seed stage of dvc.yaml writes."""
    return path / folder / "seeds" / str(seed)


def test_each_seeds_metrics_files_hold_finite_values(repo):
    path = repo.path
    for seed in SEEDS:
        metrics, ev = _seed(path, "metrics", seed), _seed(path, "eval", seed)
        for name in ("vae", "vae_prior", "gan", "real"):
            values = _json(metrics / f"eval_{name}.json")
            for key in ("fid", "inception_score", "kid", "precision", "recall", "density",
                        "coverage"):
                assert math.isfinite(values[key]), (seed, name, key)
                assert f"{key}_std" in values
            assert all(isinstance(v, (int, float)) for v in values.values())  # exp show: numbers
            details = _json(ev / f"details_{name}.json")
            assert values["draws"] == 2 and details["protocol"]["num_samples"] == 200
        vae = _json(metrics / "eval_vae.json")
        assert vae["elbo_nats"] <= vae["iwae_k5_nats"] + 1.0  # bounds tighten with k (MC noise)
        assert math.isclose(vae["bits_per_dim"], -vae["elbo_nats"] / (28 * 28 * math.log(2)))
        two_stage = _json(metrics / "eval_vae_prior.json")
        # the same decoder and reconstruction term, another prior: only the KL differs
        assert two_stage["recon_log_px_z_nats"] == vae["recon_log_px_z_nats"]
        assert math.isfinite(two_stage["iwae_k5_nats"]) and two_stage["latent_nn_ratio"] > 0
        fit = _json(metrics / "fit_prior.json")
        assert fit["components"] in (1, 3) and fit["val_ll_nats"] == max(
            fit["val_ll_nats_k1"], fit["val_ll_nats_k3"])  # K chosen on the validation latents
        for f in ("features_vae.npz", "features_gan.npz", "features_real.npz"):
            assert (ev / f).exists()
    judge = _json(path / "metrics" / "judge.json")
    assert judge["test_accuracy"] > 0.5  # the bands are easy to tell apart


def test_the_report_gathers_the_seeds_into_the_metrics_files(repo):
    path = repo.path
    for row in ("vae", "vae_prior", "gan"):
        per_seed = [_json(_seed(path, "metrics", s) / f"eval_{row}.json") for s in SEEDS]
        gathered = _json(path / "metrics" / f"eval_{row}.json")
        assert gathered["seeds"] == len(SEEDS) and gathered["draws"] == 2
        for key in ("fid", "kid", "precision", "coverage"):
            values = [r[key] for r in per_seed]
            assert gathered[key] == pytest.approx(statistics.mean(values)), (row, key)
            assert gathered[f"{key}_std"] == pytest.approx(statistics.stdev(values)), (row, key)
            assert gathered[f"{key}_draw_std"] == pytest.approx(
                statistics.mean(r[f"{key}_std"] for r in per_seed)), (row, key)
        assert all(isinstance(v, (int, float)) for v in gathered.values())  # dvc exp show
    gan = [_json(_seed(path, "metrics", s) / "eval_gan.json")["fid"] for s in SEEDS]
    assert gan[0] != gan[1]  # two trainings, not one copied: the std over seeds is not 0
    for row in ("real", "class_gaussians", "pixel_gaussian"):  # do not depend on the seed
        assert _json(path / "metrics" / f"eval_{row}.json") == \
            _json(_seed(path, "metrics", SEEDS[0]) / f"eval_{row}.json")


def test_each_seed_trains_its_own_models_and_the_judge_is_trained_once(repo):
    from genduel.checkpoint import load_checkpoint

    path = repo.path
    for file, kind, net in (("vae.pt", "vae", "vae"), ("gan.pt", "gan", "generator")):
        first, second = (load_checkpoint(_seed(path, "models", s) / file, kind)
                         ["state_dicts"][net] for s in SEEDS)
        assert first.keys() == second.keys()
        assert any(not np.array_equal(first[k].numpy(), second[k].numpy()) for k in first), file
    assert _json(_seed(path, "metrics", 0) / "train_vae.json") != \
        _json(_seed(path, "metrics", 1) / "train_vae.json")
    judges = sorted(p.relative_to(path).as_posix() for p in path.glob("models/**/*.pt")
                    if load_checkpoint(p)["kind"] == "judge")
    assert judges == ["models/judge.pt"]
    assert sorted(p.name for p in _seed(path, "models", 1).iterdir()) == [
        "gan.pt", "gan_init.pt", "vae.pt", "vae_prior.pt"]


def test_dvc_metrics_show_lists_each_seed_and_the_gathered_files(repo):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo.path, repo.env).stdout)
    files = {f: v["data"] for rev in shown.values() for f, v in rev.get("data", {}).items()}
    for rel in ("metrics/seeds/0/eval_gan.json", "metrics/seeds/1/eval_gan.json",
                "metrics/eval_gan.json", "metrics/judge.json"):
        assert rel in files, sorted(files)
        assert files[rel] == _json(repo.path / rel)


def _section(log: str, stage: str) -> str:
    """The lines of a merged ``dvc repro`` output from ``stage``'s ``Running stage`` line to
    the next stage's."""
    marker = f"Running stage '{stage}'"
    assert log.count(marker) == 1, f"{stage} ran {log.count(marker)} times:\n{log[-3000:]}"
    return log.split(marker, 1)[1].split("Running stage '", 1)[0]


def _ran_first(log: str, stage: str) -> tuple[int, int]:
    """The seeds of ``stage`` in the order DVC ran them. A whole ``dvc repro`` runs them in
    list order; a partial one (``dvc repro train_vae``) in either order: DVC walks a small
    subgraph in the order of a Python set of its stages."""
    return tuple(sorted(SEEDS, key=lambda s: log.index(f"Running stage '{stage}@{s}'")))


def test_the_seeds_train_side_by_side_and_the_later_stage_publishes(repo):
    import mlflow

    for stage, log, model in (("train_vae", repo.partial_log, "vae"),
                              ("train_gan", repo.full_log, "gan")):
        seed, other = _ran_first(log, stage)
        first, then = _section(log, f"{stage}@{seed}"), _section(log, f"{stage}@{other}")
        # whichever seed DVC runs first trains the other beside it (runtime.concurrent_seeds)
        assert f"training seed {other} beside this one" in first, (
            f"DVC ran {stage}@{seed} first, which trained seed {other} after it, not beside "
            f"it (genduel.seedpool.stale_seeds looks only at the seeds after {seed}):\n"
            f"{first[-2000:]}")
        assert f"{model} epoch" in first  # this seed trains in its own stage
        assert f"{stage}@{other} {PUBLISHED}" in then
        assert "publishing those outputs instead of training" in then
        assert f"{model} epoch" not in then and "resuming" not in then  # not one step trained
    client = mlflow.MlflowClient(f"sqlite:///{repo.path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e").experiment_id
    for stage in ("train_vae", "train_gan"):
        runs = {s: client.search_runs([exp], f"attributes.run_name = '{stage}@{s}'")
                for s in SEEDS}
        assert [len(r) for r in runs.values()] == [1, 1]  # one training run per seed, no rerun
        infos = [r[0].info for r in runs.values()]
        # side by side, not one after the other
        assert max(i.start_time for i in infos) < min(i.end_time for i in infos), stage
        for seed, info in zip(SEEDS, infos, strict=True):  # the sibling's record, published
            record = _json(_seed(repo.path, "runs", seed) / f"{stage}.json")
            assert record["mlflow_run_id"] == info.run_id


def test_mlflow_nests_each_seeds_runs_and_the_gathered_numbers_under_one_parent(repo):
    import mlflow

    path = repo.path
    client = mlflow.MlflowClient(f"sqlite:///{path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e").experiment_id
    parent, = client.search_runs([exp], "tags.`genduel.kind` = 'pipeline'")
    base = yaml.safe_load((path / "params.yaml").read_text())
    for stage, section in (("train_vae", "vae"), ("fit_prior", "prior"), ("train_gan", "gan"),
                           ("evaluate", None)):
        for seed in SEEDS:
            run_, = client.search_runs([exp], f"attributes.run_name = '{stage}@{seed}'")
            tags, params = run_.data.tags, run_.data.params
            assert tags["mlflow.parentRunId"] == parent.info.run_id
            assert tags["genduel.seed"] == str(seed) and params["seed"] == str(seed)
            assert tags["genduel.stage"] == stage and tags["dvc.stage"] == f"{stage}@{seed}"
            if section is not None:  # seed s trains with the section's seed + s
                assert params[f"{section}.seed"] == str(base[section]["seed"] + seed)
    gan = _json(path / "metrics" / "eval_gan.json")
    numbers = parent.data.metrics
    assert numbers["gan.seeds"] == 2
    for key in ("fid", "fid_std", "fid_draw_std"):
        assert numbers[f"gan.{key}"] == pytest.approx(gan[key])
    assert numbers["vae.fid"] == pytest.approx(_json(path / "metrics" / "eval_vae.json")["fid"])


def test_report_has_the_table_and_the_pictures(repo):
    path = repo.path
    text = (path / "reports" / "report.md").read_text()
    assert "| Metric | Better | VAE, z ~ N(0, I) | VAE, z ~ GMM fitted to q(z) | GAN |" in text
    assert "no likelihood" in text and "## Why the prior matters" in text
    for fig in ("vae.png", "vae_prior.png", "gan.png", "real.png", "vae_curves.png",
                "gan_curves.png", "prior_gap.png"):
        assert f"figures/{fig}" in text and (path / "reports" / "figures" / fig).stat().st_size
    assert "GAN training diagnostics" in text and "Latent space" in text
    studies = _json(_seed(path, "eval", 0) / "studies" / "index.json")["figures"]
    assert len(studies) >= 4 and all(Path(f["file"]).name in text for f in studies)
    assert "<table>" in (path / "reports" / "report.html").read_text()


def test_the_report_of_two_seeds_says_how_sure_it_is(repo):
    path = repo.path
    text = (path / "reports" / "report.md").read_text()
    opening = next(p for p in text.split("\n\n") if p.startswith("**In short"))
    assert opening.startswith("**In short, for these trained models (2 training seeds)")
    assert "## How sure is the verdict?" in text
    section = text.split("## How sure is the verdict?", 1)[1].split("\n## ", 1)[0]
    assert "`runtime.seeds = [0, 1]`" in section and "no test is possible" in section
    assert "figures/seeds.png" in section
    assert (path / "reports" / "figures" / "seeds.png").stat().st_size > 10_000


def test_mlflow_has_a_run_per_stage_with_params_and_eval_metrics(repo):
    import mlflow

    path = repo.path
    client = mlflow.MlflowClient(f"sqlite:///{path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert set(STAGES) <= set(by_name), sorted(by_name)
    for seed in SEEDS:
        vae, gan = by_name[f"train_vae@{seed}"], by_name[f"train_gan@{seed}"]
        assert vae.data.params["vae.epochs"] == "1"
        assert gan.data.params["gan.loss"] == "non_saturating"
        metrics = _seed(path, "metrics", seed)
        for run_, row in ((vae, "vae"), (gan, "gan")):  # the same eval metric names in both
            # the seed's own evaluation reaches its own training run
            assert run_.data.metrics["fid"] == pytest.approx(
                _json(metrics / f"eval_{row}.json")["fid"])
            assert run_.data.tags["mlflow.source.git.commit"] != "unknown"
        history = client.get_metric_history(gan.info.run_id, "diag/classes_covered")
        assert len(history) == 1 and 0 <= history[0].value <= 10  # one point per GAN epoch
        record = _json(_seed(path, "runs", seed) / "train_vae.json")
        assert record["mlflow_run_id"] == vae.info.run_id  # in the run record, not the metrics
        assert "mlflow_run_id" not in _json(metrics / "train_vae.json")


def test_mlflow_parent_of_a_partial_repro_and_the_rest_ends_finished(repo):
    import mlflow

    path = repo.path
    client = mlflow.MlflowClient(f"sqlite:///{path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") == []
    # `dvc repro train_vae` left its parent FINISHED (tests/test_dvc_faults.py); the full
    # `dvc repro` after it reopened the same parent for its stages and ended it with the report
    parent, = client.search_runs([exp.experiment_id], "tags.`genduel.kind` = 'pipeline'")
    assert parent.info.status == "FINISHED" and parent.data.tags["genduel.last_stage"] == "report"
    stages = client.search_runs([exp.experiment_id], "tags.`genduel.kind` = 'stage'")
    assert sorted(r.info.run_name for r in stages) == sorted(STAGES)  # each once
    assert {r.data.tags["mlflow.parentRunId"] for r in stages} == {parent.info.run_id}


def _set(path: Path, section: str, **values) -> None:
    params = yaml.safe_load((path / "params.yaml").read_text())
    params[section].update(values)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _ran(out: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in out]


def _models(path: Path, env: dict[str, str]) -> list[str]:
    """``dvc repro fit_prior train_gan`` (every model of every seed, no evaluation): the stages
    it ran."""
    return _ran(run(["dvc", "repro", "fit_prior", "train_gan"], path, env).stdout)


def _stale(path: Path, env: dict[str, str]) -> set[str]:
    """The stages ``dvc status`` lists: those whose own deps, params or outputs changed (a new
    stage: its outputs are missing)."""
    out = run(["dvc", "status"], path, env).stdout
    return {line[:-1] for line in out.splitlines()
            if line.endswith(":") and not line.startswith((" ", "\t"))}


def test_a_new_seed_stales_only_its_own_stages_and_the_report(repo):
    path, env = repo.path, repo.env
    text = (path / "params.yaml").read_text()
    try:
        _set(path, "runtime", seeds=[*SEEDS, 2])
        # validate reads params.yaml (and writes the same data/params.ok); the report gathers
        # runtime.seeds; seeds 0 and 1 and the judge keep their results
        assert _stale(path, env) == {"validate", *seeded(*PER_SEED, seeds=(2,)), "report"}
    finally:
        (path / "params.yaml").write_text(text)
    assert _stale(path, env) == set()


def test_second_repro_does_nothing_and_gan_param_reruns_only_downstream(repo):
    path, env = repo.path, repo.env
    out = run(["dvc", "repro"], path, env)
    assert "up to date" in out.stdout.lower() or "didn't change" in out.stdout.lower()
    assert _ran(out.stdout) == []
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["gan"]["lr_g"] = 0.0003
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # dvc status lists the stages whose own deps changed: validate (params.yaml) and each seed's
    # train_gan; validate writes the same data/params.ok, so nothing else re-runs
    assert _stale(path, env) == {"validate", *seeded("train_gan")}
    # downstream of train_gan: evaluate and report, left to the whole `dvc repro` that ends
    # test_vae_change_reaches_train_gan_only_through_init_from_vae (and, after this same
    # change, tests/tracking/test_live_server.py runs them)
    out = run(["dvc", "repro", "fit_prior", "train_gan"], path, env, merged=True).stdout
    assert _ran(out) == seeded("train_gan")  # what _models runs
    # seed 1's recorded params are not the workspace's now: it trained beside seed 0 again
    assert PUBLISHED in _section(out, "train_gan@1")
    assert _stale(path, env) == {*seeded("evaluate"), "report"}


def test_vae_change_reaches_train_gan_only_through_init_from_vae(repo):
    """Which stages each change re-runs. Each step re-runs the models only (:func:`_models`)
    and asks ``dvc status`` what is left, evaluate and report each time: a whole ``dvc repro``
    per step would repeat those for the same answer; the last evaluates seed 0's GAN."""
    path, env = repo.path, repo.env
    _set(path, "vae", lr=0.002, decoder_components=1)  # init_from_vae needs one logistic
    assert _models(path, env) == seeded("train_vae", "fit_prior", "gan_init")  # not train_gan
    assert _stale(path, env) == {*seeded("evaluate"), "report"}
    _set(path, "prior", components=[1, 2])  # the prior is its own stage: the VAE stays
    assert _models(path, env) == seeded("fit_prior")
    assert _stale(path, env) == {*seeded("evaluate"), "report"}
    params = yaml.safe_load((path / "params.yaml").read_text())
    _set(path, "gan", init_from_vae=True, g_arch="deconv",  # the decoder's layers
         latent_dim=params["vae"]["latent_dim"], width=params["vae"]["width"])
    assert _models(path, env) == seeded("gan_init", "train_gan")
    assert _stale(path, env) == {*seeded("evaluate"), "report"}
    _set(path, "vae", lr=0.001)  # with init_from_vae on, the VAE reaches train_gan
    assert _models(path, env) == seeded("train_vae", "fit_prior", "gan_init", "train_gan")
    # the VAE-initialised deconv GAN evaluated once (seed 0; the other seed's is the same code)
    assert _ran(run(["dvc", "repro", "evaluate@0"], path, env).stdout) == ["evaluate@0"]
    assert _stale(path, env) == {"evaluate@1", "report"}


def test_dvc_plots_show_renders_the_gan_diagnostics_and_the_sample_grids(repo, tmp_path):
    path, env = repo.path, repo.env
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], path, env)
    html = (tmp_path / "plots" / "index.html").read_text()
    for image in ("eval/seeds/0/samples_vae.png", "eval/seeds/0/samples_gan.png",
                  "artifacts/seeds/0/train_vae/grids/samples_epoch001.png",
                  "artifacts/seeds/0/train_vae/grids/recon_epoch001.png",
                  "artifacts/seeds/0/train_gan/grids/samples_epoch001.png"):  # every epoch (1)
        static = f"static/workspace_{image.replace('/', '_')}"
        assert f'src="{static}"' in html  # an image plot
        assert (tmp_path / "plots" / static).read_bytes() == (path / image).read_bytes()
    assert "GAN per epoch, classes in the samples (judge)" in html
    assert '"classes_well_covered"' in html  # eval/seeds/0/gan_diagnostics.csv's rows
