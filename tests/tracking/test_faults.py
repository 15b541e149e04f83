"""Tracking under faults (issue 10): resume, interruption, dead processes, a store that goes away
mid-run, and a ``mlflow.db`` that cannot be opened."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests

from genduel.config import TrackingConfig
from genduel.errors import Interrupted, TrackingError
from genduel.tracking import mlflow_store, store
from genduel.tracking.evaluation import log_evaluation
from genduel.tracking.mlflow_store import MlflowTracker, stage_run
from genduel.tracking.outbox import Backoff, Outbox
from genduel.tracking.pipeline_run import (
    HOST_TAG,
    KILLED_REASON_TAG,
    PID_START_TAG,
    PID_TAG,
    pid_alive,
    process_tags,
    sweep_dead_runs,
)


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_interrupted_stage_is_killed_and_its_resume_continues_the_same_run(checkout, tracking):
    client = mlflow.MlflowClient(tracking.uri)
    with pytest.raises(Interrupted):  # SIGTERM reaching the stage
        with stage_run("train_vae", tracking, {"vae.epochs": 2}) as first:
            first.log_metrics({"train/loss": 3.0}, step=1)
            raise Interrupted(signal.SIGTERM)
    run = client.get_run(first.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[HOST_TAG] == socket.gethostname()
    assert run.data.tags[PID_TAG] == str(os.getpid())
    assert client.get_run(first.parent_id).info.status == "KILLED"

    with stage_run("train_vae", tracking, {"vae.epochs": 2},
                   resume_run_id=first.run_id) as second:
        second.log_metrics({"train/loss": 2.0}, step=2)
    assert second.run_id == first.run_id and second.parent_id == first.parent_id
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["genduel.resumed"] == "1"
    assert _history(client, run.info.run_id, "train/loss") == [(1, 3.0), (2, 2.0)]
    # reopened while the resumed stage ran, then the state of the stage that ended last
    assert client.get_run(first.parent_id).info.status == "FINISHED"


def test_resume_of_a_run_the_store_lost_starts_a_linked_run(checkout, tracking):
    with pytest.raises(ValueError):
        with stage_run("train_gan", tracking, {}) as first:
            raise ValueError("crash")
    client = mlflow.MlflowClient(tracking.uri)
    assert client.get_run(first.run_id).info.status == "FAILED"
    client.delete_run(first.run_id)
    with stage_run("train_gan", tracking, {}, resume_run_id=first.run_id) as second:
        pass
    run = client.get_run(second.run_id)
    assert second.run_id != first.run_id and run.info.status == "FINISHED"
    assert run.data.tags["genduel.resumed_from"] == first.run_id


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_kills_runs_of_dead_processes_and_leaves_live_ones(checkout, tracking):
    client = mlflow.MlflowClient(tracking.uri)
    exp_id = mlflow_store.experiment_id(client, tracking.experiment, checkout, local=True)
    host = socket.gethostname()
    parent = client.create_run(exp_id, run_name="pipe").info.run_id
    dead = client.create_run(exp_id, tags={HOST_TAG: host, PID_TAG: str(_dead_pid()),
                                           "mlflow.parentRunId": parent}).info.run_id
    live = client.create_run(exp_id, tags=process_tags()).info.run_id
    elsewhere = client.create_run(exp_id, tags={HOST_TAG: "other-host",
                                                PID_TAG: str(_dead_pid())}).info.run_id
    with stage_run("prepare", tracking, {}):  # every stage sweeps when it opens its run
        pass
    status = {r: client.get_run(r).info.status for r in (dead, live, elsewhere, parent)}
    assert status == {dead: "KILLED", live: "RUNNING", elsewhere: "RUNNING", parent: "KILLED"}
    assert "ended without closing" in client.get_run(dead).data.tags[KILLED_REASON_TAG]
    with stage_run("prepare", tracking, {}, resume_run_id=dead):  # resumed: it lives again
        pass
    run = client.get_run(dead)
    assert run.info.status == "FINISHED" and KILLED_REASON_TAG not in run.data.tags


def test_a_reused_pid_is_not_the_process_that_opened_the_run():
    me = process_tags()
    assert pid_alive(os.getpid(), me[PID_START_TAG])
    if me[PID_START_TAG]:  # /proc tells when a process started
        assert not pid_alive(os.getpid(), str(int(me[PID_START_TAG]) - 1))
    assert not pid_alive(_dead_pid())


def test_a_failing_sweep_is_a_warning(caplog):
    class Down:
        def search_runs(self, *args, **kwargs):
            raise requests.ConnectionError("refused")

    assert sweep_dead_runs(Down(), "1") == []
    assert "could not check for MLflow runs left RUNNING" in caplog.text


class Switch:
    """A store client that fails every call (like a stopped server) while ``down``."""

    def __init__(self, client) -> None:
        self._client, self.down, self.attempts = client, False, 0
        self.error = lambda: requests.ConnectionError("Connection refused")

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)

        def call(*args, **kwargs):
            if self.down:
                self.attempts += 1
                raise self.error()
            return attr(*args, **kwargs)
        return call if callable(attr) else attr


def sqlite_disk_full():
    """What MLflow's sqlite store raises when its disk fills up under a metric write: an
    MlflowException whose first line is SQLAlchemy's autoflush note, caused by sqlite's
    SQLITE_FULL."""
    import sqlalchemy
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    cause = sqlalchemy.exc.OperationalError("INSERT INTO metrics VALUES (?)", (1,),
                                            sqlite3.OperationalError("database or disk is full"))
    cause.add_detail("raised as a result of Query-invoked autoflush; consider using a "
                     "session.no_autoflush block if this flush is occurring prematurely")
    try:
        raise MlflowException(message=cause, error_code=TEMPORARILY_UNAVAILABLE) from cause
    except MlflowException as exc:
        return exc


@pytest.fixture
def switch(monkeypatch) -> list[Switch]:
    """Stage runs opened by the test get a :class:`Switch` client (appended here)."""
    made: list[Switch] = []
    real = mlflow_store.store_client

    def client(uri: str, lock_timeout: float = 60.0) -> Switch:
        made.append(Switch(real(uri, lock_timeout)))
        return made[-1]
    monkeypatch.setattr(mlflow_store, "store_client", client)
    return made


def test_store_down_mid_run_buffers_and_delivers_everything_when_back(checkout, tracking, switch,
                                                                     caplog, tmp_path):
    clock = [0.0]
    artifact = tmp_path / "grid.txt"
    artifact.write_text("grid")
    with stage_run("train_vae", tracking, {}) as tracker:
        tracker.outbox.backoff.clock = lambda: clock[0]
        tracker.log_metrics({"train/loss": 5.0}, step=0)
        switch[0].down = True
        start = time.perf_counter()
        tracker.flush()  # fails: the backoff starts
        for step in range(1, 1201):  # the training goes on; nothing raises
            tracker.log_metrics({"train/loss": 5.0 - step / 1000}, step=step)
        tracker.log_artifact(artifact, "grids")
        tracker.set_tags({"note": "x"})
        assert time.perf_counter() - start < 2.0
        assert switch[0].attempts == 1  # within the backoff no call reaches the store
        clock[0] = 6.0
        switch[0].down = False  # the server is back
    client = mlflow.MlflowClient(tracking.uri)
    history = _history(client, tracker.run_id, "train/loss")
    assert [s for s, _ in history] == list(range(1201))  # every point, in order
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["note"] == "x"
    assert [a.path for a in client.list_artifacts(tracker.run_id, "grids")] == ["grids/grid.txt"]
    assert "did not take" not in caplog.text


def test_store_down_until_the_end_is_one_warning_not_an_error(checkout, tracking, switch, caplog):
    caplog.set_level(logging.WARNING)
    with stage_run("train_gan", tracking, {}) as tracker:
        tracker.log_metrics({"train/loss": 1.0}, step=1)
        switch[0].down = True
        tracker.log_metrics({"train/loss": 0.5}, step=2)
        tracker.log_artifact(Path("params.yaml"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    unsent = [w for w in warnings if "did not take" in w]
    assert len(unsent) == 1 and "2 metric points, 1 artifacts" in unsent[0]
    assert tracking.uri in unsent[0] and "ConnectionError" in unsent[0]
    assert any("did not record the end (FINISHED)" in w for w in warnings)
    run = mlflow.MlflowClient(tracking.uri).get_run(tracker.run_id)
    assert run.info.status == "RUNNING"  # the next stage on this host sweeps it once we are gone


@pytest.mark.parametrize("error", [sqlite_disk_full, lambda: OSError(errno.ENOSPC, "No space "
                                     "left on device", "mlartifacts/1/x/artifacts/grid.png")],
                         ids=["sqlite", "artifact"])
def test_a_full_disk_under_the_store_is_named_and_a_failed_stage_claims_no_outputs(
        checkout, tracking, switch, caplog, error):
    caplog.set_level(logging.WARNING)
    with pytest.raises(RuntimeError), stage_run("train_vae", tracking, {}) as tracker:
        switch[0].error, switch[0].down = error, True
        tracker.log_metrics({"train/loss": 1.0}, step=1)
        tracker.flush()
        raise RuntimeError("the stage fails too")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"disk full (No space left on device) writing the MLflow store at {tracking.uri}: it "
        f"did not take 1 metric points of run {tracker.run_id}; free space on that disk; its "
        "MLflow record is incomplete (the stage did not finish: see its own error or signal "
        "line)",
        f"MLflow store {tracking.uri} did not record the end (FAILED) of run {tracker.run_id} "
        "(disk full (No space left on device)); the next stage on this host marks it KILLED"]


def test_a_full_disk_under_the_store_of_a_stage_that_succeeded(checkout, tracking, switch,
                                                               caplog):
    caplog.set_level(logging.WARNING)
    with stage_run("train_vae", tracking, {}) as tracker:
        switch[0].error, switch[0].down = sqlite_disk_full, True
        tracker.log_metrics({"train/loss": 1.0}, step=1)
    unsent = [r.getMessage() for r in caplog.records if "did not take" in r.getMessage()]
    assert len(unsent) == 1 and unsent[0].startswith("disk full (No space left on device) ")
    assert unsent[0].endswith("; the stage's outputs are complete, its MLflow record is not")
    assert "autoflush" not in caplog.text


def test_evaluation_rows_on_a_store_gone_mid_stage_are_a_warning(checkout, tracking, switch,
                                                                 caplog):
    with stage_run("evaluate", tracking, {}) as tracker:
        switch[0].down = True
        log_evaluation(tracker, {"vae": {"fid": 3.0}}, {"vae": "0" * 32}, {})
        after = "the stage goes on"
    assert after and "evaluation rows not recorded in MLflow store" in caplog.text


def test_a_refused_call_is_dropped_and_does_not_block_the_rest(checkout, tracking, caplog):
    caplog.set_level(logging.WARNING)
    with stage_run("judge", tracking, {"judge.width": 8}) as tracker:
        tracker.log_params({"judge.width": 16})  # MLflow: a param's value never changes
        tracker.set_tags({"after": "yes"})
        tracker.log_metrics({"acc": 0.5}, step=1)
    run = mlflow.MlflowClient(tracking.uri).get_run(tracker.run_id)
    assert run.data.params["judge.width"] == "8" and run.data.tags["after"] == "yes"
    assert run.data.metrics == {"acc": 0.5} and run.info.status == "FINISHED"
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1 and "refused 1 params (MlflowException" in lines[0]


def test_a_hung_server_costs_one_timeout_then_calls_return_at_once(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)  # accepts connections, never answers
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        tracker = MlflowTracker(mlflow.MlflowClient(uri), "0" * 32, uri=uri,
                                outbox=Outbox(Backoff()))
        tracker.log_metrics({"loss": 1.0}, step=1)
        start = time.perf_counter()
        tracker.flush()
        first = time.perf_counter() - start
        start = time.perf_counter()
        for step in range(2, 600):  # crosses the batch size: a flush that the backoff skips
            tracker.log_metrics({"loss": 1.0 / step}, step=step)
        tracker.log_params({"a": 1})
        later = time.perf_counter() - start
    assert 0.5 < first < 5 and later < 0.5
    assert len(tracker.outbox.points) == 599 and "log-batch" in tracker.outbox.backoff.reason


def test_the_oldest_points_go_first_when_the_buffer_is_full(monkeypatch):
    monkeypatch.setattr("genduel.tracking.outbox.MAX_POINTS", 3)
    box = Outbox(Backoff())
    box.add_points([("r", i) for i in range(5)])
    assert [p for _, p in box.points] == [2, 3, 4] and box.dropped == 2
    assert "5 metric points" in box.report("r", "sqlite:///x")


# --- a mlflow.db that cannot be opened -------------------------------------------------------

def _one_clean_line(exc: TrackingError, caplog) -> str:
    text = str(exc)
    assert "\n" not in text and "sqlalchemy" not in text.lower() and "SELECT" not in text
    assert "mlflow.db" in text and "tracking.uri" in text
    assert "SQLAlchemy database error" not in caplog.text and "SELECT" not in caplog.text
    return text


def _store_copy(store_uri: str, checkout: Path) -> Path:
    """An initialized store at the checkout's default place (creating tables takes seconds)."""
    with stage_run("prepare", TrackingConfig(uri=store_uri, experiment="init"), {}):
        pass
    shutil.copy(store.sqlite_file(store_uri), checkout / "mlflow.db")
    return checkout / "mlflow.db"


def test_a_garbage_store_is_one_line(checkout, caplog):
    (checkout / "mlflow.db").write_bytes(b"not sqlite at all " * 300)
    with pytest.raises(TrackingError) as err:
        with stage_run("prepare", TrackingConfig(experiment="x"), {}):
            pytest.fail("the body must not run")
    assert "is not an MLflow database" in _one_clean_line(err.value, caplog)
    assert "move it aside" in str(err.value)


def test_a_store_locked_by_another_stage_times_out_with_one_line(checkout, caplog):
    lock = f"{checkout / 'mlflow.db'}-lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         f"held = FileLock({lock!r}); held.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        with pytest.raises(TrackingError) as err:
            with stage_run("prepare", TrackingConfig(experiment="x", timeout_s=0.2), {}):
                pytest.fail("the body must not run")
        assert time.perf_counter() - start < 5
    finally:
        holder.kill()
        holder.wait()
    assert "locked by another process" in _one_clean_line(err.value, caplog)


def test_a_store_locked_by_sqlite_is_one_line(checkout, store_uri, caplog, monkeypatch):
    db = _store_copy(store_uri, checkout)
    import mlflow.store.db.utils as db_utils

    # sqlite waits 5 s (Python's default), then 20 s (MLflow's busy_timeout) for a lock: 0.2 s
    text, connect = db_utils.sql.text, sqlite3.connect
    monkeypatch.setattr(db_utils.sql, "text", lambda s, *a: text(
        s.replace("busy_timeout = 20000", "busy_timeout = 200"), *a))
    monkeypatch.setattr(sqlite3.dbapi2, "connect",  # what SQLAlchemy calls
                        lambda *a, **k: connect(*a, **{**k, "timeout": 0.2}))
    holder = connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # what `sqlite3 mlflow.db` in another shell can do
    try:
        with pytest.raises(TrackingError) as err:
            with stage_run("prepare", TrackingConfig(experiment="x"), {}):
                pytest.fail("the body must not run")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "is locked by another process" in _one_clean_line(err.value, caplog)


def _read_only(db: Path, monkeypatch) -> str:
    """Make ``db`` read-only for this process: chmod (not root), an immutable file (root, where
    the file system has the flag), else sqlite opening it read-only (``mode=ro``)."""
    if os.geteuid() != 0:
        db.chmod(0o444)
        return "chmod"
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode == 0:
        return "chattr"
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3.dbapi2, "connect", lambda path, *a, **k: real(
        f"file:{path}?mode=ro", *a, **{**k, "uri": True}) if str(path) == str(db)
        else real(path, *a, **k))
    return "mode=ro"


def test_a_read_only_store_is_one_line(checkout, store_uri, caplog, monkeypatch):
    db = _store_copy(store_uri, checkout)
    how = _read_only(db, monkeypatch)
    try:
        with pytest.raises(TrackingError) as err:
            with stage_run("prepare", TrackingConfig(experiment="new"), {}):
                pytest.fail("the body must not run")
    finally:
        if how == "chattr":
            subprocess.run(["chattr", "-i", str(db)], check=True)
    assert "is read-only" in _one_clean_line(err.value, caplog), how
