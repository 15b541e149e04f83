"""The team server on PostgreSQL: ``make mlflow-server MLFLOW_BACKEND=postgresql://...``.

Needs a running Debian ``postgresql`` cluster (``.ci/run`` installs and starts one) and the right
to run ``psql`` as its ``postgres`` user; skips, saying why, where either is missing. A fresh
role and database per run; a tiny ``dvc repro judge`` (prepare and judge) against the server,
then everything read back over HTTP, and the runs counted in PostgreSQL itself.

Then parallel sweeps on the default local sqlite store: three queued experiments run by
``dvc queue start -j 2`` all succeed, all their stage runs are in the store, and no queue log
says "database is locked".
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LIVE = _load("genduel_test_live_server", ROOT / "tests/tracking/test_live_server.py")
E2E = LIVE.E2E


def _psql(sql: str, db: str = "postgres") -> subprocess.CompletedProcess:
    """``psql`` as the cluster's superuser (``runuser``: this needs root)."""
    return subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-At",
                           "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                          capture_output=True, text=True, timeout=60)


def _port() -> int:
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True)
    online = [line.split() for line in out.stdout.splitlines() if " online " in line]
    if not online:
        pytest.skip("no PostgreSQL cluster is online (pg_lsclusters); .ci/run starts one")
    return int(online[0][2])


@pytest.fixture(scope="module")
def postgres() -> Iterator[tuple[str, str]]:
    """(SQLAlchemy URI, database name) of a fresh database owned by a fresh role, dropped after."""
    if not shutil.which("pg_lsclusters") or not shutil.which("runuser"):
        pytest.skip("Debian's postgresql is not installed (apt-get install postgresql)")
    port = _port()
    name, password = f"genduel_{secrets.token_hex(4)}", secrets.token_hex(12)
    made = _psql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    if made.returncode != 0:
        pytest.skip(f"cannot run psql as postgres here: {made.stderr.strip()[:200]}")
    try:
        created = _psql(f"CREATE DATABASE {name} OWNER {name}")
        assert created.returncode == 0, created.stderr
        yield f"postgresql://{name}:{password}@127.0.0.1:{port}/{name}", name
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _psql(f"DROP ROLE IF EXISTS {name}")


@pytest.fixture(scope="module")
def judged(postgres, tmp_path_factory) -> dict:
    """A PostgreSQL-backed server, and a tiny clone that ran prepare and judge against it."""
    uri, db = postgres
    tmp = tmp_path_factory.mktemp("pg-server")
    with LIVE.mlflow_server(tmp, uri) as url:
        repo = tmp / "repo"
        env = E2E.make_tiny_repo(repo, {**E2E.OVERRIDES,
                                        "tracking": {"uri": url, "experiment": "team"}})
        E2E.run(["dvc", "repro", "judge"], repo, env)
        yield {"url": url, "db": db, "repo": repo,
               "metrics": json.loads((repo / "metrics/judge.json").read_text()),
               "record": json.loads((repo / "runs/judge.json").read_text())}


def test_postgres_server_holds_the_runs_and_the_loadable_model(judged):
    import mlflow
    import torch

    client = mlflow.MlflowClient(judged["url"])
    exp = client.get_experiment_by_name("team")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"workspace@" + runs["judge"].data.tags["mlflow.source.git.commit"][:7],
                         "prepare", "judge"}
    judge = runs["judge"]
    assert judge.info.status == "FINISHED" and judge.data.params["judge.epochs"] == "1"
    for key, value in judged["metrics"].items():
        assert judge.data.metrics[key] == pytest.approx(value, nan_ok=True), key
    assert judged["record"]["mlflow_run_id"] == judge.info.run_id  # the run record
    mlflow.set_tracking_uri(judged["url"])
    model = mlflow.pytorch.load_model(f"runs:/{judge.info.run_id}/judge").eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 28, 28)).logits.shape == (2, 10)
    stored = _psql("SELECT count(*) FROM runs WHERE lifecycle_stage = 'active'", judged["db"])
    assert stored.returncode == 0 and int(stored.stdout) == 3  # the parent and two stage runs
    for name in ("mlflow.db", "mlruns", "mlartifacts"):
        assert not (judged["repo"] / name).exists(), name


# Parallel sweeps on the default local store: `dvc queue start -j 2` loses no run.

QUEUED = {"q1": "0.001", "q2": "0.002", "q3": "0.003"}  # experiment name: judge.lr


def _dvc(args: list[str], repo: Path, env: dict[str, str]) -> str:
    return E2E.run(["dvc", *args], repo, env).stdout


@pytest.fixture(scope="module")
def queued(tmp_path_factory) -> dict:
    """A tiny repo (default sqlite store, no model logging) that queued three experiments of
    prepare and judge, ran them two at a time, and waited for the queue to empty."""
    repo = tmp_path_factory.mktemp("queue") / "repo"
    overrides = {**E2E.OVERRIDES, "tracking": {"experiment": "sweep", "log_models": False},
                 "judge": {"epochs": 1, "width": 8, "feature_dim": 32},
                 "runtime": {"num_threads": 1}}  # two stages at once on a small CI host
    env = E2E.make_tiny_repo(repo, overrides)
    # The checkout's dvc.lock names outputs this repo's cache lacks: an experiment of two stages
    # would fail to commit them. Start from no lock, as a fresh project does.
    E2E.run(["git", "rm", "-q", "dvc.lock"], repo, env)
    E2E.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "no lock"],
            repo, env)
    for name, lr in QUEUED.items():
        _dvc(["exp", "run", "--queue", "-n", name, "-S", f"judge.lr={lr}", "judge"], repo, env)
    _dvc(["queue", "start", "-j", "2"], repo, env)
    deadline = time.monotonic() + 600
    while True:
        status = _dvc(["queue", "status"], repo, env)
        if not any(word in status for word in ("Queued", "Running")):
            break
        assert time.monotonic() < deadline, status
        time.sleep(5)  # each look starts dvc: a second of the CPU the queue's workers need
    logs = {name: _dvc(["queue", "logs", name], repo, env) for name in QUEUED}
    return {"repo": repo, "env": env, "status": status, "logs": logs}


def test_every_queued_experiment_succeeds_without_a_lock_error(queued):
    lines = {line.split()[1]: line for line in queued["status"].splitlines()
             if len(line.split()) > 2 and line.split()[1] in QUEUED}
    assert set(lines) == set(QUEUED) and all("Success" in v for v in lines.values()), lines
    for name, log in queued["logs"].items():
        assert "Running stage 'judge'" in log, (name, log[-2000:])
        for bad in ("database is locked", "already exists", "Traceback"):
            assert bad not in log, (name, bad, log[-3000:])
    shown = _dvc(["exp", "show", "--json"], queued["repo"], queued["env"])
    for name in QUEUED:
        assert f'"{name}"' in shown, name


def test_the_store_holds_every_stage_run_of_every_experiment(queued):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{queued['repo'] / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sweep")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = {r.data.tags["dvc.exp_name"]: r for r in runs
               if r.data.tags.get("genduel.kind") == "pipeline"}
    assert set(parents) == set(QUEUED) and len(parents) == sum(
        r.data.tags.get("genduel.kind") == "pipeline" for r in runs)  # one parent each
    for name, parent in parents.items():
        assert parent.data.params["judge.lr"] == str(float(QUEUED[name]))
        stages = {r.data.tags["genduel.stage"]: r for r in runs
                  if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
        ran = {s for s in ("prepare", "judge") if f"Running stage '{s}'" in queued["logs"][name]}
        assert set(stages) == ran and "judge" in ran, name  # prepare may come from run-cache
        assert all(r.info.status == "FINISHED" for r in stages.values()), name
        assert stages["judge"].data.metrics["test_accuracy"] >= 0, name
