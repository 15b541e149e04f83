"""Shared test settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Unit tests use tiny nets: a second thread only adds synchronisation, and on a busy
    2-core machine OpenMP's spinning threads make it many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
