"""End to end: two clones share an experiment through a bare git repo and a DVC remote.

The team workflow of docs/teams.md (sharing experiments): clone A runs a tiny ``dvc exp run`` and
``dvc exp push``es it (git refs to ``origin``, outputs to the default DVC remote, a plain
directory here); clone B ``dvc exp pull``s it, sees its metrics in ``dvc exp show``, applies it
and ``dvc pull``s the models, evaluation and report byte for byte without running any stage, and
its ``dvc repro`` has nothing to do.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: The stages of a one-seed pipeline (runtime.seeds: [0]): the per-seed ones are <stage>@0.
STAGES = ["prepare", "judge", "train_vae@0", "fit_prior@0", "gan_init@0", "train_gan@0",
          "evaluate@0", "report"]
#: What ``dvc pull`` must bring to clone B, exactly as clone A wrote it.
PULLED = ["models/judge.pt", "models/seeds/0/vae.pt", "models/seeds/0/gan.pt", "eval",
          "reports", "artifacts/seeds/0/train_gan", "data/prepared", "data/raw"]
#: Smaller still than test_e2e's budget: what this test checks does not depend on the numbers.
SMALLER_EVAL = {"parzen_samples": 200, "parzen_val_images": 100, "parzen_test_images": 100,
                "probe_train_images": 200, "memorization_samples": 200}
GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
          "GIT_COMMITTER_EMAIL": "t@t"}

pytestmark = pytest.mark.e2e


def _e2e_helpers():
    """tests/test_e2e.py's tiny-repo builder, budget params and command runner (loaded by path:
    the tests are not a package)."""
    spec = importlib.util.spec_from_file_location("genduel_test_e2e", ROOT / "tests/test_e2e.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


E2E = _e2e_helpers()


def _files(root: Path, rel: str) -> dict[str, bytes]:
    """Every file under ``root/rel`` (or the file itself), by path relative to ``root``."""
    path = root / rel
    paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def _dvc_track_raw(repo: Path, env: dict[str, str]) -> None:
    """data/raw under DVC (git keeps data/raw.dvc), so that a clone or a temporary experiment
    gets the raw files from the cache or the remote like every other output; and no dvc.lock
    (the copied one is this checkout's default run, whose outputs no cache here holds)."""
    E2E.run(["git", "rm", "-q", "dvc.lock"], repo, env)
    E2E.run(["git", "rm", "-q", "--cached", "data/raw/.gitkeep"], repo, env)
    (repo / "data/raw/.gitkeep").unlink()
    E2E.run(["dvc", "add", "data/raw"], repo, env)


def _changed(out: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in out]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict:
    """origin (bare git repo) + storage (DVC directory remote); clone A ran and pushed
    ``shared-exp``; clone B is a fresh clone that has done nothing yet."""
    tmp = tmp_path_factory.mktemp("sharing")
    seed, origin, storage = tmp / "seed", tmp / "origin.git", tmp / "storage"
    overrides = {**E2E.OVERRIDES, "runtime": E2E.ONE_SEED,
                 "gan": {**E2E.OVERRIDES["gan"], "diag_samples": 200},
                 "eval": {**E2E.OVERRIDES["eval"], **SMALLER_EVAL},
                 "tracking": {"experiment": "shared", "log_models": False}}
    env = {**E2E.make_tiny_repo(seed, overrides), **GIT_ID}

    def run(cwd: Path, *cmd: str) -> str:
        return E2E.run(list(cmd), cwd, env).stdout

    _dvc_track_raw(seed, env)  # the raw files reach the remote too: a clone `dvc pull`s them
    run(seed, "dvc", "remote", "add", "-d", "storage", str(storage))
    run(seed, "git", "add", "-A")
    run(seed, "git", "commit", "-qm", "data/raw through DVC; a directory remote")
    run(seed, "dvc", "push")
    run(tmp, "git", "clone", "-q", "--bare", str(seed), str(origin))

    a, b = tmp / "a", tmp / "b"
    run(tmp, "git", "clone", "-q", str(origin), str(a))
    run(a, "dvc", "pull", "data/raw.dvc")  # nothing else exists yet (no dvc.lock)
    ran = _changed(run(a, "dvc", "exp", "run", "-n", "shared-exp", "-S", "gan.lr_g=0.0003"))
    run(a, "dvc", "exp", "push", "origin", "shared-exp")
    run(tmp, "git", "clone", "-q", str(origin), str(b))
    return {"a": a, "b": b, "ran_in_a": ran, "storage": storage, "run": run}


def test_clone_a_trained_and_pushed_the_experiment(shared):
    assert shared["ran_in_a"] == STAGES
    assert any(p.is_file() for p in shared["storage"].rglob("*"))  # the cache reached the remote
    refs = shared["run"](shared["a"], "git", "ls-remote", "origin", "refs/exps/*")
    assert refs.rstrip().endswith("/shared-exp"), refs


def test_clone_b_pulls_sees_applies_and_gets_the_outputs_without_training(shared):
    a, b, run = shared["a"], shared["b"], shared["run"]
    run(b, "dvc", "exp", "pull", "origin", "shared-exp")

    shown = json.loads(run(b, "dvc", "exp", "show", "--json"))
    exps = [e for row in shown for e in (row.get("experiments") or [])]
    names = {e.get("name") for e in exps}
    assert "shared-exp" in names, names
    data = next(e for e in exps if e["name"] == "shared-exp")["revs"][0]["data"]
    for rel in ("metrics/eval_gan.json", "metrics/seeds/0/eval_gan.json"):  # report's, seed's
        eval_gan = json.loads((a / rel).read_text())
        assert data["metrics"][rel]["data"]["fid"] == eval_gan["fid"]
    assert data["params"]["params.yaml"]["data"]["gan"]["lr_g"] == 0.0003

    run(b, "dvc", "exp", "apply", "shared-exp")
    run(b, "dvc", "pull")
    assert yaml.safe_load((b / "params.yaml").read_text())["gan"]["lr_g"] == 0.0003
    for rel in PULLED + ["metrics", "dvc.lock"]:
        mine = _files(b, rel)
        assert mine and mine == _files(a, rel), rel  # byte for byte what clone A trained

    # Nothing ran in B: no stage timing, no MLflow store, and the pipeline is up to date.
    assert not (b / ".dvc/tmp/genduel-timings.jsonl").exists()
    assert not (b / "mlflow.db").exists() and not (b / "mlartifacts").exists()
    assert "up to date" in run(b, "dvc", "status").lower()
    out = run(b, "dvc", "repro")
    assert _changed(out) == [] and "up to date" in out.lower(), out
    assert not (b / ".dvc/tmp/genduel-timings.jsonl").exists()


def test_a_temp_experiment_imports_the_library_from_its_own_checkout(tmp_path):
    """``dvc exp run --temp`` (and ``--queue``) run the stages in a copy under .dvc/tmp/exps;
    their cmds must import genduel from that copy, not from wherever this venv's editable
    install points (the workspace), or an experiment queued from an older commit would run
    other code than it records."""
    repo, marker = tmp_path / "repo", tmp_path / "imported_from.txt"
    env = {**E2E.make_tiny_repo(repo, E2E.OVERRIDES), **GIT_ID}
    _dvc_track_raw(repo, env)
    splits = repo / "src/genduel/data/splits.py"  # imported by prepare: says which copy ran
    splits.write_text(f"{splits.read_text()}\nPath({str(marker)!r}).write_text(__file__)\n")
    E2E.run(["git", "add", "-A"], repo, env)
    E2E.run(["git", "commit", "-qm", "prepare says where its library is"], repo, env)
    E2E.run(["dvc", "exp", "run", "--temp", "-n", "own-src", "prepare"], repo, env)
    assert marker.exists(), "prepare imported another copy of genduel (the editable install's)"
    ran = Path(marker.read_text())
    assert ran.parts[-4:] == ("src", "genduel", "data", "splits.py"), ran
    assert (repo / ".dvc/tmp/exps") in ran.parents, f"prepare imported {ran}"
