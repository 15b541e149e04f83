"""Tiny data and a stub judge shared by the evaluate tests."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch

from genduel.data.splits import Split


def _banded(n: int, seed: int, shape: tuple[int, int, int] = (1, 4, 4)) -> Split:
    """Class k in 0..3 lights pixel k at 255 over noise in 0..60: linearly encoded labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.randint(0, 61, (n, *shape), generator=g, dtype=torch.uint8)
    images.view(n, -1)[torch.arange(n), labels] = 255
    return Split(images, labels, ["a", "b", "c", "d"])


@pytest.fixture
def banded() -> Callable[..., Split]:
    """:func:`_banded`: ``banded(n, seed, shape=(1, 4, 4))`` -> a split of ``n`` images."""
    return _banded


class StubJudge(torch.nn.Module):
    """Features = the first 6 pixels, logits = the first 4 (one per class of :func:`_banded`)."""

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        flat = x.flatten(1)  # (B, C*H*W)
        return SimpleNamespace(features=flat[:, :6], logits=flat[:, :4])


@pytest.fixture
def stub_judge() -> StubJudge:
    return StubJudge()
