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


def load_pt(path: str | Path, fix: str) -> Any:
    """``torch.load`` of plain tensors and containers (``weights_only``) on the CPU.

    Raises:
        DataError: ``<path>: not found; <fix>`` or ``<path>: not a readable PyTorch file
            (truncated or corrupt: <error>); <fix>``; a file that would run code when unpickled
            is refused the same way, without running it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found; {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt file
        raise DataError(f"{path}: not a readable PyTorch file (truncated or corrupt: "
                        f"{exc.__class__.__name__}); {fix}") from None


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint on the CPU, refusing pickled code and the wrong kind of model.

    Raises:
        DataError: missing, unreadable, not a checkpoint, or of another ``kind``; the message
            names the file and says to re-run the stage that writes it.
    """
    path = Path(path)
    fix = f"restore it with `dvc checkout {path}` or re-run the stage that writes it (dvc repro)"
    ckpt = load_pt(path, fix)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("kind"), str):
        raise DataError(f"{path}: not a GenDuel checkpoint (no 'kind'); {fix}")
    if kind is not None and ckpt["kind"] != kind:
        raise DataError(f"{path}: holds a '{ckpt['kind']}' checkpoint, expected '{kind}'; "
                        "check the stage's paths in dvc.yaml")
    return ckpt


def rebuild(ckpt: dict[str, Any], part: str, build: Callable[[dict[str, Any]], M],
            source: str | Path = "") -> M:
    """Network ``part`` of a loaded checkpoint: ``build(model_config)`` with the weights of
    ``state_dicts[part]`` loaded, in eval mode, on the CPU.

    ``source`` (the file) names it in the error when the checkpoint does not fit.
    ``build`` is the model module's builder (``build_judge``, ``build_vae``,
    ``build_generator``, ``build_discriminator``), so a stage imports only the model it loads.
    """
    try:
        model = build(ckpt["model_config"])
        model.load_state_dict(ckpt["state_dicts"][part])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # RuntimeError: shapes, keys
        why = f"no {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())[:200]
        raise DataError(f"{source or 'checkpoint'}: its '{ckpt.get('kind')}' checkpoint does "
                        f"not rebuild the '{part}' network ({why}); re-run the stage that writes "
                        "it (dvc repro)") from None
    return model.eval()
