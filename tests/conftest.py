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
