"""The test targets: ``make test`` (fast: ``-m "not e2e"``), ``make test-e2e`` (``-m e2e``) and
``make test-all`` (one pytest session, each test once; what ``.ci/run`` runs), and the guard in
``tests/conftest.py`` that fails an unmarked test which starts end-to-end work."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _conftest():
    """tests/conftest.py, loaded by path under its own name (the tests are not a package)."""
    name = "genduel_tests_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "conftest.py")
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


def _recipe(target: str) -> list[str]:
    """The command lines of ``target``'s recipe in the Makefile."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    body = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        body.append(line.strip())
    return body


def test_make_test_leaves_e2e_out_test_e2e_runs_it_and_test_all_runs_everything_once():
    assert _recipe("test") == ['$(BIN)/python -m pytest -m "not e2e"']
    assert _recipe("test-e2e") == ["$(BIN)/python -m pytest -m e2e"]
    assert _recipe("test-all") == ["$(BIN)/python -m pytest"]  # one session, no -m
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test", "test-e2e", "test-all"):
        assert re.search(rf"^{target}: setup$", makefile, re.M), target
        assert re.search(rf"^\.PHONY:.* {target}( |$)", makefile, re.M), target
    last = (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1]
    assert last == "make test-all"


@pytest.mark.parametrize(("args", "env", "reason"), [
    (["dvc", "repro"], None, "it starts dvc"),
    (["/venv/bin/dvc", "exp", "run"], None, "it starts dvc"),
    (["make", "-C", "/repo", "-o", ".venv/.installed", "mlflow-server"], None,
     "an MLflow server"),
    (["/venv/bin/mlflow", "server"], None, "it starts mlflow"),
    (["/usr/bin/chromium", "--headless"], None, "it starts chromium"),
    (["runuser", "-u", "postgres", "--", "psql"], None, "it starts runuser"),
    (["python", "pipeline/train_vae.py", "--data", "d"], None, "pipeline/train_vae.py"),
    ("PYTHONPATH=src python pipeline/prepare.py", None, "pipeline/prepare.py"),
    (["/venv/bin/python", "-u", "worker.py"], {"TORCHELASTIC_RUN_ID": "x"}, "torchrun"),
])
def test_the_guard_knows_end_to_end_work(args, env, reason):
    assert reason in _conftest().e2e_launch(args, env)


@pytest.mark.parametrize("args", [
    ["git", "init", "-q"], ["/venv/bin/genduel", "sample", "vae.pt"], [sys.executable, "-c", "1"],
    "genduel --help", ["python", "tests/train/test_distributed.py", "train", "out"],
])
def test_the_guard_lets_small_subprocesses_run(args):
    assert _conftest().e2e_launch(args, {"PATH": "/bin"}) is None


class _Item:
    nodeid = "tests/test_x.py::test_unmarked"

    def __init__(self, marked: bool) -> None:
        self.marked = marked

    def get_closest_marker(self, name: str):
        return object() if self.marked and name == "e2e" else None


def test_an_unmarked_test_that_starts_dvc_fails_saying_how_to_mark_it():
    guard = _conftest()._no_e2e_launch
    with pytest.raises(pytest.fail.Exception, match=r"test_unmarked is end-to-end \(it starts "
                                                    r"dvc\) but not marked e2e"):
        with guard(_Item(marked=False)):
            subprocess.run(["dvc", "--version"], capture_output=True)
    with guard(_Item(marked=False)):  # anything else runs as usual
        assert subprocess.run(["git", "--version"], capture_output=True).returncode == 0
    with guard(_Item(marked=True)):  # a marked test may
        assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
