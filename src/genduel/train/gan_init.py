"""The gan_init stage: the generator's starting weights, from the VAE decoder or from nothing.

``gan.init_from_vae: true`` starts G from the trained VAE's decoder, so GAN training begins from a
map that already sends the prior N(0, I) to images. The two nets are the same
:class:`~genduel.models.nets.ConvDecoder`; the VAE's last layer has 2C output channels (logistic
mean and log-scale) and G keeps the C mean channels, so ``G(z) = tanh(mean channels) = `` the
VAE's decoder mean at z, exactly (BatchNorm running statistics included).

This is its own DVC stage, depending on ``models/vae.pt``, so that train_gan depends on the VAE
only through ``models/gan_init.pt``: with the flag off that file is the same few bytes whatever
the VAE holds, DVC sees an unchanged dependency and does not re-run train_gan when the VAE changes;
with the flag on it holds the decoder weights and any VAE change re-runs train_gan.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from genduel.checkpoint import load_checkpoint
from genduel.config import GANConfig, check_init_from_vae
from genduel.errors import DataError
from genduel.io import atomic_write

KIND = "gan_init"
#: VAE decoder (ConvDecoder inside VAE) -> generator (ConvDecoder inside Generator) key prefix.
_PREFIX = ("decoder.", "net.")
#: The decoder's last transposed conv, whose 2C output channels are (mean, log-scale).
_LAST = ("body.3.weight", "body.3.bias")


def generator_state_from_vae(vae_ckpt: dict[str, Any], cfg: GANConfig) -> dict[str, torch.Tensor]:
    """A :class:`~genduel.models.gan.Generator` state dict built from a VAE checkpoint.

    Keys ``decoder.X`` become ``net.X``; the last layer keeps output channels ``[:C]`` (the
    logistic means), where C is the number of image channels.

    Raises:
        ConfigError: the gan section's latent_dim, width or conditional differ from the VAE's
            (:func:`genduel.config.check_init_from_vae`; every stage checks the params alike,
            this checks the checkpoint).
    """
    check_init_from_vae(cfg, vae_ckpt["model_config"])
    channels = int(vae_ckpt["model_config"]["image_shape"][0])
    state = {}
    for key, value in vae_ckpt["state_dicts"]["vae"].items():
        if not key.startswith(_PREFIX[0]):
            continue
        name = key[len(_PREFIX[0]):]
        if name == _LAST[0]:
            value = value[:, :channels]  # (in, 2C, kh, kw) -> (in, C, kh, kw)
        elif name == _LAST[1]:
            value = value[:channels]  # (2C,) -> (C,)
        state[_PREFIX[1] + name] = value.clone()
    return state


def make_init(cfg: GANConfig, vae_checkpoint: Path) -> dict[str, Any]:
    """The gan_init file's content: the flag, and the generator weights when it is on."""
    if not cfg.init_from_vae:
        return {"kind": KIND, "init_from_vae": False}
    ckpt = load_checkpoint(vae_checkpoint, "vae")
    return {"kind": KIND, "init_from_vae": True,
            "generator": generator_state_from_vae(ckpt, cfg),
            "vae_epoch": int(ckpt.get("epoch", 0))}


def save_init(content: dict[str, Any], out: Path) -> None:
    """Write a :func:`make_init` content to ``out`` atomically; the bytes depend only on it."""
    buf = io.BytesIO()
    torch.save(content, buf)
    atomic_write(Path(out), buf.getvalue())


def write_init(cfg: GANConfig, vae_checkpoint: Path, out: Path) -> dict[str, Any]:
    """:func:`make_init`, saved to ``out`` (:func:`save_init`); returns the content."""
    content = make_init(cfg, vae_checkpoint)
    save_init(content, out)
    return content


def load_init(path: Path, cfg: GANConfig) -> dict[str, torch.Tensor] | None:
    """The generator state dict to start from, or None; checks the file matches ``cfg``.

    Raises:
        DataError: the file is missing, unreadable or was written for the other flag value.
    """
    init = load_checkpoint(path, KIND)
    if bool(init.get("init_from_vae")) != cfg.init_from_vae:
        raise DataError(f"{path} was written with gan.init_from_vae = {init.get('init_from_vae')}"
                        f" but params.yaml says {cfg.init_from_vae}; run `dvc repro gan_init`")
    return init.get("generator") if cfg.init_from_vae else None
