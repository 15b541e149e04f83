"""A git work tree that looks like a pipeline checkout, and one MLflow sqlite store per module."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from genduel.config import TrackingConfig


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture
def git():
    """``git(root, *args) -> stdout``, failing the test on a git error."""
    return _git


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A committed repo with code, params.yaml and the files the pipeline rewrites; the cwd and
    ``$DVC_ROOT`` of a stage (no DVC experiment)."""
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "metrics").mkdir()
    (root / "src" / "code.py").write_text("X = 1\n")
    (root / "README.md").write_text("# docs\n")
    (root / "params.yaml").write_text("vae:\n  epochs: 2\ngan:\n  epochs: 3\n")
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    (root / "metrics" / "train_vae.json").write_text("{}\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    monkeypatch.chdir(root)
    monkeypatch.setenv("DVC_ROOT", str(root))
    for var in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One sqlite store per test module (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def tracking(store_uri, request) -> TrackingConfig:
    """Settings pointing at the module's store, in an experiment of this test's own."""
    return TrackingConfig(uri=store_uri, experiment=request.node.name[:200])
