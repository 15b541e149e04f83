"""End to end against a live ``mlflow server``: a team's server as a person sees it in the UI.

``make mlflow-server`` (sqlite store, proxied artifacts) on 127.0.0.1, two clones of one tiny
project (tests/test_e2e.py's fake IDX files and budget params) with ``tracking.uri`` pointing at
it: clone A runs ``dvc repro``, commits, and clone B (``git clone`` of A sharing its DVC cache)
changes a GAN param and runs ``dvc repro``, as in a sweep: DVC keeps the VAE, so A's
``train_vae`` must not receive B's evaluation. Everything is read back over HTTP (the REST API
and ``MlflowClient`` on the http URI); neither clone has a local store afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.e2e


def _e2e_helpers():
    """tests/test_e2e.py's fake data, budget params and command runner (loaded by path: the
    tests are not a package)."""
    spec = importlib.util.spec_from_file_location("genduel_test_e2e", ROOT / "tests/test_e2e.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


E2E = _e2e_helpers()
#: Each stage's MLflow run name in a one-seed pipeline (runtime.seeds: [0]): a per-seed stage's
#: is its DVC name, <stage>@0.
RUN = {s: f"{s}@0" if s in E2E.PER_SEED else s
       for s in ("prepare", "judge", *E2E.PER_SEED, "report")}
STAGES = set(RUN.values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(tmp: Path, backend: str) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of ``make mlflow-server`` with store ``backend`` and artifacts
    under ``tmp``, killed (its whole process group) after."""
    url = f"http://127.0.0.1:{_free_port()}"
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(
        ["make", "-C", str(ROOT), "-o", ".venv/.installed", f"BIN={BIN}", "mlflow-server",
         f"MLFLOW_BACKEND={backend}", f"MLFLOW_ARTIFACTS={tmp / 'art'}", "HOST=127.0.0.1",
         f"PORT={url.rsplit(':', 1)[1]}", "WORKERS=1"],  # 4 workers start 4 copies of MLflow
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp / "server.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer /health in 90 s"
            time.sleep(0.5)
        assert f"tracking.uri: http://127.0.0.1:{url.rsplit(':', 1)[1]}" in (
            tmp / "server.log").read_text()  # make tells how clones point at it
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)  # the store is written per request: a hard stop loses nothing
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server(tmp, f"sqlite:///{tmp / 'db'}") as url:
        yield url


def _second_clone(first: Path, env: dict[str, str]) -> Path:
    """A ``git clone`` of ``first`` (after committing its run) that shares its DVC cache, with
    the raw files copied and the outputs checked out: a colleague's clone after ``dvc pull``."""
    E2E.run(["git", "add", "-A"], first, env)
    E2E.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"],
            first, env)
    second = first.parent / "clone-b"
    E2E.run(["git", "clone", "-q", str(first), str(second)], first.parent, env)
    shutil.copytree(first / "data/raw", second / "data/raw", dirs_exist_ok=True)
    E2E.run(["dvc", "cache", "dir", "--local", str(first / ".dvc/cache")], second, env)
    E2E.run(["dvc", "checkout", "-q"], second, env)
    return second


@pytest.fixture(scope="module")
def pipeline(server, tmp_path_factory) -> dict:
    """Two pipeline runs against ``server``: clone A's default, then clone B's with another
    gan.lr_g."""
    repo = tmp_path_factory.mktemp("live") / "repo"
    overrides = {**E2E.OVERRIDES, "runtime": E2E.ONE_SEED,
                 "tracking": {"uri": server, "experiment": "live"}}
    env = E2E.make_tiny_repo(repo, overrides)
    E2E.run(["dvc", "repro"], repo, env)
    # the numbers the stage runs logged: the judge's, and seed 0's training and evaluation
    first = {p.name: json.loads(p.read_text()) for p in
             [repo / "metrics/judge.json", *(repo / "metrics/seeds/0").glob("*.json")]}
    gathered = json.loads((repo / "metrics/eval_gan.json").read_text())  # the report's
    timings = [json.loads(line) for line in
               (repo / ".dvc/tmp/genduel-timings.jsonl").read_text().splitlines()]
    clone = _second_clone(repo, env)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["gan"]["lr_g"] = 0.0003  # a sweep point: the VAE and its metrics file are kept
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = E2E.run(["dvc", "repro"], clone, env).stdout
    return {"repo": repo, "clones": (repo, clone), "url": server, "metrics": first,
            "gathered_gan": gathered, "timings": timings,
            "second_ran": {s for s in STAGES if f"Running stage '{s}'" in second}}


@pytest.fixture(scope="module")
def ui(pipeline):
    """The experiment as the UI gets it: (client, experiment, parents oldest first, the runs
    nested under each parent by run name, with evaluate's row runs under ``evaluate/<row>``)."""
    import mlflow

    client = mlflow.MlflowClient(pipeline["url"])
    exp = client.get_experiment_by_name("live")
    runs = client.search_runs([exp.experiment_id], max_results=1000)

    def nested(parent: str) -> dict:
        return {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent}

    parents = sorted((r for r in runs if r.data.tags.get("genduel.kind") == "pipeline"),
                     key=lambda r: r.info.start_time)
    children = [nested(p.info.run_id) for p in parents]
    for stages in children:
        stages.update(nested(stages[RUN["evaluate"]].info.run_id))
    return client, exp, parents, children


def test_one_parent_per_pipeline_run_holds_its_stage_runs(pipeline, ui):
    _, exp, parents, children = ui
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    rows = {f"evaluate/{r}" for r in ("vae", "vae_prior", "gan", "real", "class_gaussians",
                                      "pixel_gaussian")}
    assert set(children[0]) == STAGES | rows  # rows nest one level down, under evaluate
    assert pipeline["second_ran"] == {RUN["train_gan"], RUN["evaluate"], "report"}
    assert set(children[1]) == pipeline["second_ran"] | rows  # cached stages have no run
    first = parents[0]
    commit = first.data.tags["mlflow.source.git.commit"]
    assert first.info.run_name == f"workspace@{commit[:7]}" and not commit.endswith("-dirty")
    assert first.data.params["vae.epochs"] == "1" and first.data.params["gan.lr_g"] == "0.0016"
    assert parents[1].data.params["gan.lr_g"] == "0.0003"
    # the report's numbers over the seeds (here one) on the parent
    assert first.data.metrics["gan.seeds"] == 1
    assert first.data.metrics["gan.fid"] == pytest.approx(pipeline["gathered_gan"]["fid"])
    for run in children[0].values():
        assert run.info.status == "FINISHED"
        assert run.info.end_time <= first.info.end_time
        stage = run.info.run_name.split("/")[0].split("@")[0]  # evaluate/gan, train_vae@0
        assert run.data.tags["mlflow.source.name"] == f"pipeline/{stage}.py"
    assert "One parent run per pipeline run" in exp.tags["mlflow.note.content"]


def test_training_runs_last_their_own_stage_not_the_evaluation(pipeline, ui):
    client, _, _, children = ui
    seconds = {t["stage"]: t["seconds"] for t in pipeline["timings"]}
    evaluate = children[0][RUN["evaluate"]]
    for stage in (RUN[s] for s in ("judge", "train_vae", "train_gan")):
        run = client.get_run(children[0][stage].info.run_id)
        assert run.info.end_time <= evaluate.info.start_time
        assert (run.info.end_time - run.info.start_time) / 1000 <= seconds[stage] + 0.1


def test_inputs_name_the_splits_by_their_manifest_digests(pipeline, ui):
    client, _, _, children = ui
    splits = json.loads((pipeline["repo"] / "data/prepared/manifest.json").read_text())["splits"]
    expected = {"prepare": {"train", "val", "test"}, "judge": {"train", "val", "test"},
                "train_vae": {"train", "val"}, "train_gan": {"train"},
                "evaluate": {"train", "val", "test"}}
    for stage, names in expected.items():
        inputs = client.get_run(children[0][RUN[stage]].info.run_id).inputs.dataset_inputs
        got = {i.dataset.name.rsplit("/", 1)[1]: i.dataset.digest for i in inputs}
        assert got == {s: splits[s]["sha256"][:16] for s in names}, stage


def test_models_are_named_signed_linked_and_load_back(pipeline, ui):
    import mlflow
    import torch

    client, exp, _, children = ui
    found = requests.post(f"{pipeline['url']}/api/2.0/mlflow/logged-models/search",
                          json={"experiment_ids": [exp.experiment_id]}, timeout=30).json()
    models = {m["info"]["name"]: m for m in found["models"]}
    # train_gan ran twice: two generators; fit_prior's model is the VAE with its fitted prior
    assert set(models) == {"judge", "vae", "vae_prior", "generator"}
    assert len(found["models"]) == 5
    generators = {m["info"]["source_run_id"]: m["info"]["model_id"] for m in found["models"]
                  if m["info"]["name"] == "generator"}
    assert set(generators) == {stages[RUN["train_gan"]].info.run_id for stages in children}
    mlflow.set_tracking_uri(pipeline["url"])
    for name, model in models.items():
        info = mlflow.models.get_model_info(f"models:/{model['info']['model_id']}")
        assert info.signature is not None and info.saved_input_example_info is not None, name
    vae_id = models["vae"]["info"]["model_id"]
    linked = [m for m in client.get_logged_model(vae_id).metrics if m.key == "fid"]
    records = {stages["evaluate/vae"].info.run_id for stages in children}
    assert {m.run_id for m in linked} == records  # one linked evaluation per pipeline run
    vae = mlflow.pytorch.load_model(f"models:/{vae_id}")
    judge = mlflow.pytorch.load_model(f"models:/{models['judge']['info']['model_id']}")
    gens = [mlflow.pytorch.load_model(f"runs:/{run}/generator") for run in generators]
    torch.manual_seed(0)
    for model in (vae, judge, *gens):
        model.eval()
    with torch.no_grad():
        images = vae.sample(3)
        assert images.shape == (3, 1, 28, 28) and judge(images).logits.shape == (3, 10)
        fitted = mlflow.pytorch.load_model(f"models:/{models['vae_prior']['info']['model_id']}")
        assert type(fitted.prior).__name__ == "GMMPrior"  # the prior travels with the model
        assert fitted.eval().sample(3).shape == images.shape
        for generator in gens:  # clone A's and clone B's
            assert generator.sample(3).shape == images.shape


def test_both_clones_artifacts_come_back_byte_for_byte(pipeline, ui):
    import mlflow.artifacts

    _, _, _, children = ui
    for clone, stages in zip(pipeline["clones"], children, strict=True):
        run_id = stages[RUN["train_gan"]].info.run_id
        local = sorted((clone / "artifacts/seeds/0/train_gan/grids").glob("*.png"))
        assert local, clone.name
        for path in local:  # the epoch grids, logged under grids/
            got = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"grids/{path.name}", tracking_uri=pipeline["url"])
            assert Path(got).read_bytes() == path.read_bytes(), (clone.name, path.name)


def test_shared_params_line_the_model_runs_up(ui):
    _, _, _, children = ui
    params = {s: children[0][RUN[s]].data.params for s in ("judge", "train_vae", "train_gan")}
    for shared, section in (("train.epochs", "epochs"), ("train.batch_size", "batch_size"),
                            ("model.width", "width")):
        for stage, prefix in (("judge", "judge"), ("train_vae", "vae"), ("train_gan", "gan")):
            assert params[stage][shared] == params[stage][f"{prefix}.{section}"]
    assert params["train_vae"]["model.latent_dim"] == params["train_vae"]["vae.latent_dim"]
    assert params["train_gan"]["train.lr"] == params["train_gan"]["gan.lr_g"]


def test_one_name_per_quantity_and_the_json_values(pipeline, ui):
    client, _, _, children = ui
    first = children[0]
    for stage in ("judge", "train_vae", "train_gan"):
        metrics = first[RUN[stage]].data.metrics
        assert not [k for k in metrics if k.startswith(("val/", "test/", "epoch/"))], stage
        assert "epoch" not in metrics
        for key, value in pipeline["metrics"][f"{stage}.json"].items():
            if key != "mlflow_run_id":  # the JSON's names, with its values
                assert metrics[key] == pytest.approx(value, nan_ok=True), (stage, key)
    history = client.get_metric_history(first[RUN["train_vae"]].info.run_id, "val_elbo_nats")
    assert len(history) == 1  # one epoch: the summary did not add a second point
    for row in ("vae", "gan", "real"):
        numbers = {k: v for k, v in first[f"evaluate/{row}"].data.metrics.items()
                   if not k.startswith("diag/")}
        assert numbers == pytest.approx(pipeline["metrics"][f"eval_{row}.json"], nan_ok=True)
    gan_row = first["evaluate/gan"].data.metrics
    assert {k for k in gan_row if k.startswith("diag/")} == {
        "diag/classes_covered", "diag/classes_well_covered", "diag/class_kl_to_uniform_nats"}
    assert first[RUN["evaluate"]].data.metrics == {}  # no second name for a row's numbers
    diag = client.get_metric_history(first[RUN["train_gan"]].info.run_id, "diag/classes_covered")
    assert len(diag) == 1 and "diag/d_acc" not in first[RUN["train_gan"]].data.metrics


def test_a_cached_vae_keeps_its_one_evaluation(ui):
    client, _, _, children = ui
    train_vae = children[0][RUN["train_vae"]].info.run_id
    assert len(client.get_metric_history(train_vae, "fid")) == 1  # the second repro added none
    assert client.get_run(children[1][RUN["train_gan"]].info.run_id).data.metrics["fid"] > 0


def test_nothing_went_to_a_local_store(pipeline):
    for clone in pipeline["clones"]:
        for name in ("mlflow.db", "mlruns", "mlartifacts"):
            assert not (clone / name).exists(), (clone.name, name)
