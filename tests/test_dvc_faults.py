"""Nothing lost, tested with DVC itself: an invalid params.yaml stops `dvc repro` and
`dvc exp run` in the validate stage with one line and no output touched, and a training stage
killed with SIGKILL continues on the next `dvc repro` to the very bytes of an uninterrupted run
(its MLflow run too: reopened, then FINISHED)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("genduel_test_e2e", ROOT / "tests/test_e2e.py")
E2E = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(E2E)  # the tests are not a package: tests/test_e2e.py by path
OVERRIDES, make_tiny_repo, run = E2E.OVERRIDES, E2E.make_tiny_repo, E2E.run
_spec = importlib.util.spec_from_file_location("genduel_faults_fixture",
                                               ROOT / "tests/faults_fixture.py")
FAULTS = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(FAULTS)  # stage_argv: a stage's arguments in dvc.yaml, seed 0

#: Enough steps to kill the VAE mid-run (4 epochs of 4 steps), a save after every step; one
#: training seed, so `dvc repro train_vae` runs the one stage train_vae@0.
VAE_RUN = {**OVERRIDES, "vae": {"epochs": 4, "log_every": 2},
           "runtime": {**E2E.ONE_SEED, "checkpoint_every_s": 0.01}}
STAGE = "train_vae@0"
#: What `dvc repro train_vae` produces (and prepare's output, upstream of it).
OUTPUTS = ("data/params.ok", "data/prepared", "models/seeds/0/vae.pt",
           "artifacts/seeds/0/train_vae", "metrics/seeds/0/train_vae.json",
           "runs/seeds/0/train_vae.json")


def _digest(repo: Path) -> dict[str, str]:
    """sha256 of every file of the outputs (missing ones: 'missing')."""
    out = {}
    for rel in OUTPUTS:
        path = repo / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            key = str(f.relative_to(repo))
            out[key] = hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else "missing"
    return out


def _lock_md5(repo: Path, stage: str) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]
    return {o["path"]: o["md5"] for o in lock["outs"] if "md5" in o}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    repo = tmp_path_factory.mktemp("faults") / "repo"
    env = make_tiny_repo(repo, VAE_RUN)
    run(["dvc", "repro", "train_vae"], repo, env)
    return repo, env


def test_a_partial_repro_leaves_no_mlflow_run_running(trained):
    import mlflow

    repo, _ = trained  # `dvc repro train_vae`: the pipeline stops before its report
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    assert client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") == []
    parent, = client.search_runs([exp.experiment_id], "tags.`genduel.kind` = 'pipeline'")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["genduel.last_stage"] == "train_vae"


def _set(params: dict, dotted: str, value) -> None:
    *path, key = dotted.split(".")
    for p in path:
        params = params.setdefault(p, {})
    params[key] = value


BAD_PARAMS = [  # (edit of params.yaml, what the one error line must say)
    ({"vae.foo": 1}, "vae.foo is not a known key"),
    ({"vae.epochs": True}, "vae.epochs = True has the wrong type"),
    ({"vae.beta": float("nan")}, "vae.beta = nan is not a finite number"),
    ({"extra.key": 1}, "unknown section 'extra'"),
    ({"eval.inception_weights": "missing.pt"}, "eval.inception_weights = 'missing.pt' is not"),
    ({"-report": None}, "section report missing"),
]


@pytest.mark.parametrize("edit, says", BAD_PARAMS, ids=[next(iter(e)) for e, _ in BAD_PARAMS])
def test_invalid_params_stop_dvc_repro_before_any_output_is_deleted(trained, edit, says):
    repo, env = trained
    before, text = _digest(repo), (repo / "params.yaml").read_text()
    params = yaml.safe_load(text)
    for key, value in edit.items():
        if key.startswith("-"):
            del params[key[1:]]
        else:
            _set(params, key, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        out = subprocess.run(["dvc", "repro", "train_vae"], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=300)
    finally:
        (repo / "params.yaml").write_text(text)
    assert out.returncode != 0
    ours = [line for line in out.stderr.splitlines() if line.startswith("genduel ")]
    assert len(ours) == 1 and ours[0].startswith("genduel validate: error: "), out.stderr
    assert says in ours[0] and "Traceback" not in out.stderr
    assert _digest(repo) == before  # the trained VAE and everything else: untouched


def test_invalid_params_stop_dvc_exp_run_too(trained):
    repo, env = trained
    before, text = _digest(repo), (repo / "params.yaml").read_text()
    try:
        out = subprocess.run(["dvc", "exp", "run", "train_vae", "-S", "vae.epochs=true"],
                             cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    finally:
        (repo / "params.yaml").write_text(text)
    assert out.returncode != 0
    assert "genduel validate: error: params.yaml: vae.epochs = True has the wrong type" \
        in out.stderr
    assert _digest(repo) == before


def test_a_kill_after_publishing_before_dvc_recorded_it_costs_no_training(trained):
    """What a kill -9 of `dvc repro` between the stage's exit and DVC's write of dvc.lock
    leaves: the published outputs and a lock without them. The next `dvc repro` publishes the
    finished run's outputs again (the same bytes, run record included) instead of training."""
    import mlflow

    repo, env = trained
    before, lock_text = _digest(repo), (repo / "dvc.lock").read_text()
    lock = yaml.safe_load(lock_text)
    del lock["stages"][STAGE]  # DVC never recorded the stage's (first) run
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e").experiment_id
    runs = len(client.search_runs([exp]))
    # --no-run-cache: DVC's run-cache would restore the outputs of this repo's earlier run
    # instead of running the stage; after a first run that was killed it has none
    out = run(["dvc", "repro", "--no-run-cache", "train_vae"], repo, env)
    log = out.stderr + out.stdout
    assert f"Running stage '{STAGE}'" in log
    assert f"{STAGE} was trained with these params, inputs and code already" in log
    assert "publishing those outputs instead of training" in log
    assert "vae epoch" not in log and "resuming" not in log  # not one step trained
    assert _digest(repo) == before  # the run record too: the finished run's own bytes
    assert _lock_md5(repo, STAGE) == _lock_md5_of(lock_text, STAGE)
    assert len(client.search_runs([exp])) == runs  # no MLflow run: the finished one stands


def _lock_md5_of(text: str, stage: str) -> dict[str, str]:
    outs = yaml.safe_load(text)["stages"][stage]["outs"]
    return {o["path"]: o["md5"] for o in outs if "md5" in o}


def _state_files(repo: Path) -> list[Path]:
    return sorted((repo / ".genduel" / "work").glob(f"{STAGE}-*/resume/state.pt"))


def test_kill_9_mid_training_then_dvc_repro_continues_to_the_same_bytes(trained):
    import mlflow

    repo, env = trained
    lock_before, files_before = _lock_md5(repo, STAGE), _digest(repo)
    proc = subprocess.Popen(["dvc", "repro", "-f", "-s", STAGE], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not _state_files(repo) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    # this repro's trainer only (its session): not another pipeline's train_vae on this machine
    trainer = subprocess.run(["pgrep", "-s", str(proc.pid), "-f", "pipeline/train_vae.py"],
                             capture_output=True, text=True).stdout.split()
    assert _state_files(repo) and trainer, "the trainer ended before it could be killed"
    for pid in trainer:
        os.kill(int(pid), signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not (repo / "models/seeds/0/vae.pt").exists()  # DVC deleted it: only the state left
    run_id = next((repo / ".genduel" / "work").glob(f"{STAGE}-*/mlflow_run_id")).read_text()

    # -f: these params did complete before (the fixture), so a plain `dvc repro` would check the
    # cached outputs out instead of running the stage; after a first run killed it runs it.
    out = run(["dvc", "repro", "-f", "-s", STAGE], repo, env)
    assert "resuming from the state saved at step" in out.stderr + out.stdout
    stable = lambda md5s: {k: v for k, v in md5s.items() if not k.startswith("runs/")}  # noqa: E731
    assert stable(_lock_md5(repo, STAGE)) == stable(lock_before)  # DVC's hashes: the same
    after = _digest(repo)
    assert {k: v for k, v in after.items() if "runs/" not in k} == \
        {k: v for k, v in files_before.items() if "runs/" not in k}
    assert _state_files(repo) == []  # removed on success
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "FINISHED"  # the killed run, continued
    exp = client.get_experiment_by_name("e2e")
    # no run RUNNING once dvc repro is over: not the stages', not their parent's
    assert client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") == []


@pytest.mark.parametrize("sig", [signal.SIGTERM])  # SIGINT: tests/train/test_resume.py
def test_a_signal_saves_state_leaves_outputs_and_marks_the_run_killed(trained, sig):
    import mlflow

    repo, env = trained
    before = _digest(repo)
    cmd = ["python", "pipeline/train_vae.py", *FAULTS.stage_argv("train_vae")]  # dvc.yaml's
    proc = subprocess.Popen(cmd, cwd=repo, env={**env, "PYTHONPATH": "src"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _state_files(repo) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + sig
    ours = [line for line in err.splitlines() if line.startswith("genduel ")]
    assert ours == [f"genduel {STAGE}: interrupted by {sig.name}; its outputs are unchanged, "
                    "it continues from its saved state when run again"], err
    assert "Traceback" not in err and _digest(repo) == before  # nothing published
    run_id = next((repo / ".genduel" / "work").glob(f"{STAGE}-*/mlflow_run_id")).read_text()
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    assert client.get_run(run_id).info.status == "KILLED"
    done = subprocess.run(cmd, cwd=repo, env={**env, "PYTHONPATH": "src"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "resuming from the state saved at step" in done.stderr
    after = _digest(repo)
    assert {k: v for k, v in after.items() if "runs/" not in k} == \
        {k: v for k, v in before.items() if "runs/" not in k}  # the same bytes, resumed
    assert client.get_run(run_id).info.status == "FINISHED" and _state_files(repo) == []
