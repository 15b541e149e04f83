"""The pixel convention every model shares, and image grids.

Models see pixels as ``x = u8 / 127.5 - 1`` in ``[-1, 1]`` (:func:`to_model_range`), which
:func:`to_uint8` inverts exactly; :func:`save_grid` writes a batch as one PNG.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from genduel.io import atomic_write


def to_model_range(u8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 ``x = u8 / 127.5 - 1`` in ``[-1, 1]``, same shape."""
    if u8.dtype != torch.uint8:
        raise TypeError(f"to_model_range expects uint8 pixels, got {u8.dtype}")
    return u8.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_model_range`: ``round((x + 1) * 127.5)`` clamped to ``[0, 255]``."""
    return ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    """Save ``(B, C, H, W)`` images (uint8, or float in ``[-1, 1]``) as one PNG grid.

    ``nrow`` images per row; default ``ceil(sqrt(B))``, a near-square grid.
    """
    from torchvision.utils import make_grid, save_image

    images = images.detach().cpu()
    unit = images.float() / 255.0 if images.dtype == torch.uint8 else (images.float() + 1) / 2
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    buf = io.BytesIO()
    save_image(make_grid(unit.clamp(0, 1), nrow=nrow, padding=2), buf, format="png")
    atomic_write(Path(path), buf.getvalue())
