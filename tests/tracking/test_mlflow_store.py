"""MLflow tracking: where the store lives, failing fast, and what a run records."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from genduel.config import TrackingConfig
from genduel.errors import TrackingError
from genduel.tracking.mlflow_store import (
    check_reachable,
    log_to_run,
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


def test_stage_run_records_params_tags_metrics_and_a_loadable_model(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_EXP_NAME", "exp-test")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = TrackingConfig(experiment="unit")
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with stage_run("train_vae", cfg, {"vae.beta": 0.5}) as tracker:
        for step in range(3):
            tracker.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
        tracker.log_model(model, "model")
        run_id = tracker.run_id
    log_to_run(cfg, run_id, {"fid": 12.5, "protocol": {"ignored": True}})

    assert (tmp_path / "mlflow.db").exists()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.run_name == "train_vae:exp-test"
    assert run.info.status == "FINISHED"
    assert run.data.params == {"vae.beta": "0.5"}
    assert run.data.tags["genduel.stage"] == "train_vae"
    assert run.data.tags["dvc.exp_name"] == "exp-test"
    assert "mlflow.source.git.commit" in run.data.tags
    assert run.data.metrics["fid"] == 12.5
    history = client.get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == [0, 1, 2]
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    loaded = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    x = torch.randn(4, 3)
    assert isinstance(loaded, torch.nn.Sequential)
    torch.testing.assert_close(loaded(x), model(x))


def test_failed_body_marks_the_run_failed(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(RuntimeError):
        with stage_run("train_gan", TrackingConfig(experiment="unit"), {}) as tracker:
            run_id = tracker.run_id
            raise RuntimeError("boom")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "FAILED"
