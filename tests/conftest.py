"""Shared test settings, and the guard that keeps end-to-end work out of ``make test``.

``make test`` runs ``pytest -m "not e2e"`` and must stay fast: a test that starts ``dvc``, an
MLflow server, a browser, PostgreSQL's tools, torchrun workers or a pipeline stage script in a
subprocess is end-to-end and must carry the ``e2e`` marker (``make test-e2e``, ``make test-all``).
An unmarked test that does fails at once, saying so (see :func:`e2e_launch`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import torch

#: Programs whose start makes a test end-to-end.
E2E_PROGRAMS = frozenset({"dvc", "mlflow", "torchrun", "chromium", "chromium-browser",
                          "google-chrome", "psql", "runuser", "pg_ctlcluster", "pg_lsclusters"})
#: Environment variables that torch's elastic launcher sets for its worker processes.
TORCH_WORKER_ENV = ("TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE")


def e2e_launch(args: object, env: Mapping[str, str] | None = None) -> str | None:
    """Why starting ``args`` (as :class:`subprocess.Popen` takes them) is end-to-end, or None.

    End-to-end: a program of :data:`E2E_PROGRAMS`, ``make mlflow-server``, a stage script
    (``pipeline/<stage>.py``) or a torchrun worker (its environment names its rank).
    """
    if isinstance(args, (str, bytes, os.PathLike)):
        text = os.fsdecode(args)
        argv = shlex.split(text) if " " in text else [text]
    else:
        argv = [os.fsdecode(a) if isinstance(a, (str, bytes, os.PathLike)) else str(a)
                for a in args]
    if not argv:
        return None
    program = Path(argv[0]).name
    if program in E2E_PROGRAMS:
        return f"it starts {program}"
    if program == "make" and "mlflow-server" in argv:
        return "it starts an MLflow server (make mlflow-server)"
    for arg in argv[1:]:
        path = Path(arg)
        if path.suffix == ".py" and path.parent.name == "pipeline":
            return f"it runs the stage script {path.parent.name}/{path.name}"
    if env is not None and any(key in env for key in TORCH_WORKER_ENV):
        return "it starts torchrun workers"
    return None


@contextlib.contextmanager
def _no_e2e_launch(item: pytest.Item) -> Iterator[None]:
    """While an unmarked test (or its fixtures) runs, a start of end-to-end work fails it."""
    if item.get_closest_marker("e2e") is not None:
        yield
        return
    original = subprocess.Popen.__init__

    def guarded(self, args, *rest, **kwargs):
        env = kwargs.get("env")
        if env is None and len(rest) >= 10:  # Popen(args, bufsize, ..., cwd, env) by position
            env = rest[9]
        if reason := e2e_launch(args, env):
            pytest.fail(f"{item.nodeid} is end-to-end ({reason}) but not marked e2e: add "
                        "`pytestmark = pytest.mark.e2e` (or @pytest.mark.e2e) so that `make "
                        "test` leaves it to `make test-e2e`", pytrace=False)
        original(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = guarded
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    with _no_e2e_launch(item):  # module- and session-scoped fixtures start here too
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    with _no_e2e_launch(item):
        return (yield)


@pytest.fixture(autouse=True)
def _one_thread():
    """Unit tests use tiny nets: a second thread only adds synchronisation, and on a busy
    2-core machine OpenMP's spinning threads make it many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def smooth_images():
    """``smooth_images(n, shape=(1, 28, 28), seed=0)``: smooth random-ish uint8 images
    (upsampled quarter-resolution noise), learnable by a small VAE; (n, C, H, W)."""
    def make(n: int, shape: tuple[int, int, int] = (1, 28, 28), seed: int = 0) -> torch.Tensor:
        c, h, w = shape
        low = torch.rand(n, c, h // 4, w // 4, generator=torch.Generator().manual_seed(seed))
        up = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear",
                                             align_corners=False)
        return (up * 255).round().to(torch.uint8)

    return make
