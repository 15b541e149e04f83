"""A completed tiny pipeline, built once per test session, and an in-process stage runner: what
fault tests (bad inputs, bad params, interruptions) start from.

The tests are not a package: load this module by path, under one name so that every test file
shares one build (:func:`load`)::

    import importlib.util, sys
    from pathlib import Path

    def _faults():
        name = "genduel_faults_fixture"
        if name not in sys.modules:
            path = Path(__file__).resolve().parent / "faults_fixture.py"
            spec = importlib.util.spec_from_file_location(name, path)
            sys.modules[name] = module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        return sys.modules[name]

    FAULTS = _faults()
    tiny_pipeline, fresh_repo = FAULTS.tiny_pipeline, FAULTS.fresh_repo  # the fixtures

    def test_something(fresh_repo):  # a private copy of the completed pipeline
        code, stderr = FAULTS.run_stage_in(fresh_repo, "evaluate")

``tiny_pipeline`` (session) is the pristine repository: read it, never write to it.
``fresh_repo`` (per test) is a ``shutil.copytree`` of it (~35 MB, a fraction of a second).
:func:`run_stage_in` runs ``pipeline/<stage>.py``'s ``main(argv)`` in this process with the
repository as the current directory (no Python start-up, no second torch import) and returns
(exit code, what it wrote to stderr: log lines and the error line). Its default arguments are
dvc.yaml's (:func:`stage_argv`): the per-seed stages run as training seed 0 (the pipeline has
that one seed, ``runtime.seeds: [0]``) and write under ``<folder>/seeds/0/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "judge", "train_vae", "fit_prior", "gan_init", "train_gan", "evaluate",
          "report")
#: test_e2e's tiny budget, smaller still where the numbers do not matter here.
SMALLER_EVAL = {"parzen_samples": 200, "parzen_val_images": 100, "parzen_test_images": 100,
                "probe_train_images": 200, "memorization_samples": 200}
#: The training seed of the per-seed stages (dvc.yaml's ``foreach`` over ``runtime.seeds``).
SEED = 0
#: Where that seed's stages write (dvc.yaml): prefix a file name with it.
MODELS, METRICS, EVAL, ARTIFACTS, RUNS = (f"{d}/seeds/{SEED}" for d in
                                          ("models", "metrics", "eval", "artifacts", "runs"))
#: What :func:`snapshot` leaves out: the tracking store (a failed stage records a FAILED run),
#: git, caches and the stages' work directories.
VOLATILE_DIRS = frozenset({"mlartifacts", "mlruns", ".git", ".genduel", "__pycache__",
                           ".pytest_cache", "tmp"})

_BUILT: dict[str, Path] = {}


def _load(name: str, path: Path) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def e2e() -> ModuleType:
    """tests/test_e2e.py (make_tiny_repo, OVERRIDES, fake_fashion, run)."""
    return _load("genduel_test_e2e", ROOT / "tests" / "test_e2e.py")


def overrides() -> dict[str, dict]:
    """The params of the tiny pipeline: test_e2e's budget with one training seed, smaller
    evaluation, no logged models (the MLflow model registry is the slowest part of a tiny
    run)."""
    base = e2e().OVERRIDES
    return {**base, "runtime": {"seeds": [SEED], "concurrent_seeds": 1},
            "eval": {**base["eval"], **SMALLER_EVAL},
            "tracking": {"experiment": "faults", "log_models": False}}


def _stages() -> dict[str, dict]:
    """dvc.yaml's stages, the per-seed (``foreach``) ones expanded for :data:`SEED` alone
    (:func:`genduel.dvcyaml.expand`: ``evaluate@0``)."""
    import yaml

    from genduel.dvcyaml import expand

    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    return expand(dvc, {"runtime": {"seeds": [SEED]}})["stages"]


def stage_name(stage: str) -> str:
    """The DVC name of ``stage``: ``evaluate@0`` for a per-seed stage, as its work directory
    (``.genduel/work/<name>``), its MLflow run and its error lines are named."""
    return stage if stage in _stages() else f"{stage}@{SEED}"


def stage_argv(stage: str) -> list[str]:
    """The arguments dvc.yaml's cmd gives ``pipeline/<stage>.py`` (training seed :data:`SEED`),
    so that the stages run here read and write what ``dvc repro`` would."""
    import shlex

    argv = shlex.split(" ".join(_stages()[stage_name(stage)]["cmd"].split()))
    return argv[argv.index(f"pipeline/{stage}.py") + 1:]  # after PYTHONPATH=src python


@contextlib.contextmanager
def _isolated():
    """While a stage runs: no MLFLOW_/DVC_ variables (the repo's own sqlite store); after it,
    the environment and the root logger as they were (a stage configures logging)."""
    prefixes = ("MLFLOW_", "DVC_")
    saved = {k: v for k, v in os.environ.items() if k.startswith(prefixes)}
    for key in saved:
        del os.environ[key]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith(prefixes)]:
            del os.environ[key]
        os.environ.update(saved)
        root.handlers[:] = handlers
        root.setLevel(level)


def run_stage_in(repo: Path, script: str, argv: Sequence[str] | None = None) -> tuple[int, str]:
    """Run ``pipeline/<script>.py`` ``main(argv)`` in this process inside ``repo``; ``argv``
    None: dvc.yaml's (:func:`stage_argv`).

    Returns:
        (exit code, stderr text): the log lines and, on failure, the one error line.
    """
    module = _load(f"genduel_pipeline_{script}", ROOT / "pipeline" / f"{script}.py")
    argv = stage_argv(script) if argv is None else argv
    err = io.StringIO()
    cwd = Path.cwd()
    try:
        os.chdir(repo)
        with _isolated(), contextlib.redirect_stderr(err):
            code = module.main(list(argv))
    finally:
        os.chdir(cwd)
    return code, err.getvalue()


def build(repo: Path) -> Path:
    """Make the tiny repo at ``repo`` and run every stage in it (~15 s on 2 cores)."""
    import torch

    e2e().make_tiny_repo(repo, overrides())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: a second thread only costs on a busy 2-core host
    try:
        for stage in STAGES:
            code, err = run_stage_in(repo, stage)
            assert code == 0, f"stage {stage} failed while building the fixture:\n{err[-3000:]}"
    finally:
        torch.set_num_threads(threads)
    return repo


def snapshot(repo: Path) -> dict[str, str]:
    """sha256 of every file under ``repo`` but :data:`VOLATILE` ones, by relative path: equal
    before and after a failed stage means it changed no output (and left no ``.tmp``)."""
    out = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo)
        if (path.is_file() and not VOLATILE_DIRS.intersection(rel.parts[:-1])
                and not rel.name.startswith("mlflow.db")):
            out[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> Path:
    """The pristine completed tiny pipeline (built once per session; do not modify it)."""
    if "repo" not in _BUILT:
        _BUILT["repo"] = build(tmp_path_factory.mktemp("faults") / "repo")
    return _BUILT["repo"]


@pytest.fixture
def fresh_repo(tiny_pipeline, tmp_path, monkeypatch) -> Path:
    """A private copy of :func:`tiny_pipeline` (its own MLflow store and work directory)."""
    monkeypatch.delenv("GENDUEL_WORK_DIR", raising=False)
    repo = tmp_path / "repo"
    shutil.copytree(tiny_pipeline, repo, symlinks=True)
    return repo


def set_params(repo: Path, **sections: dict) -> None:
    """Update sections of ``repo``'s params.yaml, e.g. ``set_params(repo, eval={...})``."""
    import yaml

    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
