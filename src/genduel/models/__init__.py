"""Model definitions. :func:`load_trained` rebuilds a trained network from its checkpoint alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genduel.checkpoint import load_checkpoint

#: checkpoint kind -> {network name in "state_dicts": "module:builder"}
_BUILDERS = {
    "judge": {"judge": "genduel.models.judge:build_judge"},
    "vae": {"vae": "genduel.models.vae:build_vae"},
    "gan": {"generator": "genduel.models.gan:build_generator",
            "discriminator": "genduel.models.gan:build_discriminator"},
}


def from_checkpoint(ckpt: dict[str, Any], part: str) -> torch.nn.Module:
    """Build network ``part`` of a loaded checkpoint and load its weights (eval mode, CPU)."""
    import importlib

    module_name, fn_name = _BUILDERS[ckpt["kind"]][part].split(":")
    build = getattr(importlib.import_module(module_name), fn_name)
    model = build(ckpt["model_config"])
    model.load_state_dict(ckpt["state_dicts"][part])
    return model.eval()


def load_trained(path: str | Path, kind: str, part: str | None = None,
                 device: torch.device | str = "cpu") -> torch.nn.Module:
    """Load ``path`` (a ``kind`` checkpoint) and return network ``part`` (default: the first)."""
    ckpt = load_checkpoint(path, kind)
    part = part or next(iter(_BUILDERS[kind]))
    return from_checkpoint(ckpt, part).to(device)
