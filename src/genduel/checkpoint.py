"""Checkpoints that rebuild and resume a model from the file alone.

A checkpoint is a dict of plain tensors and Python scalars (loadable with
``torch.load(weights_only=True)``)::

    {"kind": "vae" | "gan" | "judge",
     "model_config": {...},          # everything the model's constructor needs
     "state_dicts": {"vae": ...} or {"generator": ..., "discriminator": ...},
                                     # "generator" is the net to sample from: the EMA of G's
                                     # weights when gan.ema_decay > 0 ("generator_raw" then
                                     # holds the raw weights the optimizer state belongs to)
     "optimizers": {"vae": ...},     # optimizer state dicts, same keys
     "step": int, "epoch": int,
     "rng": genduel.runtime.rng_state(),
     "extra": {...}}                 # e.g. the judge's test accuracy
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from genduel.errors import DataError
from genduel.io import atomic_write

M = TypeVar("M", bound=torch.nn.Module)


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a truncated file at ``path``."""
    atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint on the CPU, refusing pickled code and the wrong kind of model."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found; run the stage that produces it (dvc repro)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt file
        raise DataError(f"{path} is not a readable checkpoint ({exc.__class__.__name__}); "
                        "delete it and re-run its stage") from exc
    if kind is not None and ckpt.get("kind") != kind:
        raise DataError(f"{path} holds a '{ckpt.get('kind')}' checkpoint, expected '{kind}'")
    return ckpt


def rebuild(ckpt: dict[str, Any], part: str, build: Callable[[dict[str, Any]], M]) -> M:
    """Network ``part`` of a loaded checkpoint: ``build(model_config)`` with the weights of
    ``state_dicts[part]`` loaded, in eval mode, on the CPU.

    ``build`` is the model module's builder (``build_judge``, ``build_vae``,
    ``build_generator``, ``build_discriminator``), so a stage imports only the model it loads.
    """
    model = build(ckpt["model_config"])
    model.load_state_dict(ckpt["state_dicts"][part])
    return model.eval()
