"""MLflow tracking: where the store lives, failing fast, and what the runs record."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import mlflow
import pytest
import torch

from genduel.config import GANConfig, JudgeConfig, TrackingConfig, VAEConfig
from genduel.errors import DataError, TrackingError
from genduel.models.vae import VAE
from genduel.stage import model_example, shared_params
from genduel.tracking.base import dataset_refs
from genduel.tracking.evaluation import log_evaluation
from genduel.tracking.mlflow_store import (
    check_reachable,
    repo_root,
    resolve_uri,
    stage_run,
)


def test_queued_experiment_maps_back_to_the_main_repo(tmp_path):
    tmp_exp = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    assert repo_root({"DVC_ROOT": str(tmp_exp)}) == (tmp_path / "repo").resolve()
    assert repo_root({"DVC_ROOT": str(tmp_path / "repo")}) == (tmp_path / "repo").resolve()
    assert repo_root({}, cwd=tmp_path) == tmp_path.resolve()


def test_uri_precedence_params_then_env_then_embedded(tmp_path):
    env = {"MLFLOW_TRACKING_URI": "http://team:5000"}
    assert resolve_uri(TrackingConfig(uri="http://p:1"), env, tmp_path) == "http://p:1"
    assert resolve_uri(TrackingConfig(), env, tmp_path) == "http://team:5000"
    assert resolve_uri(TrackingConfig(), {}, tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_a_tracking_uri_of_no_form_in_the_environment_is_one_line(tmp_path):
    with pytest.raises(TrackingError, match=r"^MLFLOW_TRACKING_URI = 'htp:/nowhere' is not a "
                                            r"tracking URI \(unknown scheme 'htp:'\); unset it"):
        resolve_uri(TrackingConfig(), {"MLFLOW_TRACKING_URI": "htp:/nowhere"}, tmp_path)


def test_refused_connection_fails_at_once():
    with socket.socket() as s:  # find a free port, then close it: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(TrackingError, match="unreachable.*tracking.uri"):
        check_reachable(f"http://127.0.0.1:{port}", timeout_s=2)
    assert time.perf_counter() - start < 5


def test_silent_server_fails_after_the_timeout_not_minutes():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts the TCP connection, never answers
    port = server.getsockname()[1]
    stop = threading.Event()
    threading.Thread(target=lambda: stop.wait(10), daemon=True).start()
    start = time.perf_counter()
    try:
        with pytest.raises(TrackingError, match="unreachable"):
            check_reachable(f"http://127.0.0.1:{port}", timeout_s=1)
    finally:
        stop.set()
        server.close()
    assert time.perf_counter() - start < 5


def test_the_embedded_store_lives_at_the_repo_root(checkout):
    with stage_run("prepare", TrackingConfig(experiment="unit"), {"data.seed": 0}) as tracker:
        run_id = tracker.run_id
    client = mlflow.MlflowClient(f"sqlite:///{checkout / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.run_name == "prepare" and run.info.status == "FINISHED"
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(checkout)


def _manifest(data: Path) -> dict:
    manifest = {"dataset": "fashion_mnist", "image_shape": [1, 28, 28], "splits": {
        s: {"count": n, "class_histogram": [n // 2, n - n // 2], "sha256": f"{i}" * 64}
        for i, (s, n) in enumerate((("train", 40), ("val", 10), ("test", 12)))}}
    data.mkdir(parents=True, exist_ok=True)
    (data / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_inputs_carry_the_manifest_digests(checkout, tracking):
    manifest = _manifest(checkout / "data" / "prepared")
    with stage_run("train_vae", tracking, {}) as tracker:
        tracker.log_inputs(dataset_refs(Path("data/prepared"), ("train", "val")))
    run = mlflow.MlflowClient(tracking.uri).get_run(tracker.run_id)
    got = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(got) == {"fashion_mnist/train", "fashion_mnist/val"}
    train = got["fashion_mnist/train"]
    assert train.dataset.digest == manifest["splits"]["train"]["sha256"][:16]
    assert json.loads(train.dataset.profile)["sha256"] == manifest["splits"]["train"]["sha256"]
    assert json.loads(train.dataset.source) == {"uri": "data/prepared/train.pt"}
    assert {t.key: t.value for t in train.tags} == {"mlflow.data.context": "training"}
    assert {t.value for t in got["fashion_mnist/val"].tags} == {"validation"}


def test_missing_manifest_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="re-run the prepare stage"):
        dataset_refs(tmp_path)


def test_a_point_repeated_at_the_same_step_is_logged_once(checkout, tracking):
    with stage_run("train_vae", tracking, {}) as tracker:
        tracker.log_metrics({"val_elbo_nats": -10.0, "epochs": 1}, step=4)
        tracker.log_metrics({"val_elbo_nats": -9.0, "epochs": 2}, step=8)
        tracker.log_metrics({"val_elbo_nats": -9.0, "epochs": 2, "steps": 8}, step=8)  # summary
    client = mlflow.MlflowClient(tracking.uri)
    history = client.get_metric_history(tracker.run_id, "val_elbo_nats")
    assert [(m.step, m.value) for m in history] == [(4, -10.0), (8, -9.0)]


def _tiny_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(latent_dim=3, width=4), (1, 28, 28), 10)


def test_logged_model_has_its_name_signature_example_and_loads_and_samples(checkout, tracking):
    vae = _tiny_vae()
    with stage_run("train_vae", tracking, {"vae.width": 4}) as tracker:
        tracker.log_metrics({"val_elbo_nats": -5.0}, step=7)
        model_id = tracker.log_model(vae, "vae", model_example(vae, "vae", checkout), step=7)
    client = mlflow.MlflowClient(tracking.uri)
    model = client.get_logged_model(model_id)
    assert model.name == "vae" and model.source_run_id == tracker.run_id
    assert model.experiment_id == client.get_run(tracker.run_id).info.experiment_id
    assert model.params == {"vae.width": "4"}  # the run's params
    assert [(m.key, m.value, m.step) for m in model.metrics] == [("val_elbo_nats", -5.0, 7)]
    mlflow.set_tracking_uri(tracking.uri)
    info = mlflow.models.get_model_info(f"models:/{model_id}")
    signature = {k: json.loads(v) for k, v in info.signature.to_dict().items() if v}
    inputs, outputs = signature["inputs"], signature["outputs"]
    assert inputs == [{"type": "tensor", "name": "z",
                       "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]
    assert outputs[0]["name"] == "images" and outputs[0]["tensor-spec"]["shape"] == [-1, 1, 28, 28]
    assert info.metadata == {"call": "model.image(z)"}
    assert info.saved_input_example_info is not None
    loaded = mlflow.pytorch.load_model(f"models:/{model_id}")
    assert type(loaded).__name__ == "VAE"
    loaded.eval()
    z = torch.randn(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.image(z), vae.eval().image(z))
        assert loaded.sample(5, generator=torch.Generator().manual_seed(1)).shape == (5, 1, 28, 28)
    assert not (checkout / "mlruns").exists()  # the model went to the experiment's store


def test_conditional_and_judge_examples_name_every_input():
    vae = VAE(VAEConfig(latent_dim=3, width=4, conditional=True), (1, 28, 28), 10)
    example = model_example(vae, "vae", Path("unused"))
    assert example.call == "model.image(z, y)"
    assert example.inputs["y"].tolist() == [0, 1, 2, 3]
    assert example.outputs["images"].shape == (4, 1, 28, 28)


def test_shared_params_line_the_three_models_up():
    judge = shared_params("judge", JudgeConfig(width=8, epochs=2, lr=0.01))
    vae = shared_params("vae", VAEConfig(latent_dim=5, width=8, epochs=3))
    gan = shared_params("gan", GANConfig(latent_dim=5, width=8, lr_g=0.0003, lr_d=0.0001))
    assert judge["model.width"] == vae["model.width"] == gan["model.width"] == 8
    assert vae["model.latent_dim"] == gan["model.latent_dim"] == 5 and "model.latent_dim" \
        not in judge
    assert (judge["train.epochs"], vae["train.epochs"]) == (2, 3)
    assert (judge["train.lr"], gan["train.lr"]) == (0.01, 0.0003)  # the generator's
    assert set(judge) | set(vae) <= set(gan) | {"train.lr"}


def _train(tracking, stage: str, name: str) -> tuple[str, str]:
    """A training stage that logs a model: (run id, model id)."""
    with stage_run(stage, tracking, {}) as tracker:
        tracker.log_metrics({"train/loss": 1.0}, step=2)
        model_id = tracker.log_model(torch.nn.Linear(2, 2), name, step=2)
    return tracker.run_id, model_id


def _evaluate(tracking, runs: dict[str, str], fid: float) -> str:
    with stage_run("evaluate", tracking, {}) as tracker:
        log_evaluation(tracker, {"vae": {"fid": fid, "draws": 2}, "real": {"fid": 0.5}}, runs,
                       {"vae": [(2, {"diag/x": 1.0})]})
    return tracker.run_id


def test_evaluation_reaches_this_pipeline_runs_model_without_moving_its_end(checkout, tracking):
    client = mlflow.MlflowClient(tracking.uri)
    run_id, model_id = _train(tracking, "train_vae", "vae")
    ended = client.get_run(run_id).info.end_time
    time.sleep(0.05)
    eval_id = _evaluate(tracking, {"vae": run_id}, fid=12.5)
    trained = client.get_run(run_id)
    assert trained.info.end_time == ended and trained.info.status == "FINISHED"
    assert trained.data.metrics["fid"] == 12.5
    assert [m.step for m in client.get_metric_history(run_id, "diag/x")] == [2]
    records = client.search_runs([trained.info.experiment_id],
                                 filter_string=f"tags.`mlflow.parentRunId` = '{eval_id}'")
    by_name = {r.info.run_name: r for r in records}
    assert set(by_name) == {"evaluate/vae", "evaluate/real"}
    assert by_name["evaluate/vae"].data.metrics == {"fid": 12.5, "draws": 2.0, "diag/x": 1.0}
    record = client.get_run(by_name["evaluate/vae"].info.run_id)  # search omits model inputs
    assert [i.model_id for i in record.inputs.model_inputs] == [model_id]
    linked = client.get_logged_model(model_id).metrics
    assert ("fid", 12.5, by_name["evaluate/vae"].info.run_id) in \
        {(m.key, m.value, m.run_id) for m in linked}


def test_evaluation_of_a_cached_model_never_touches_the_old_pipeline_run(checkout, tracking):
    client = mlflow.MlflowClient(tracking.uri)
    run_id, model_id = _train(tracking, "train_vae", "vae")
    with stage_run("report", tracking, {}):
        pass  # the first pipeline run is over
    for i, epochs in enumerate((5, 6)):  # two GAN experiments; DVC restores the VAE from cache
        (checkout / "params.yaml").write_text(f"gan:\n  epochs: {epochs}\n")
        _evaluate(tracking, {"vae": run_id}, fid=10.0 + i)
    old = client.get_run(run_id)
    assert "fid" not in old.data.metrics and "diag/x" not in old.data.metrics
    fids = sorted((m.value, m.run_id) for m in client.get_logged_model(model_id).metrics
                  if m.key == "fid")
    assert [v for v, _ in fids] == [10.0, 11.0] and fids[0][1] != fids[1][1]  # one per evaluation
