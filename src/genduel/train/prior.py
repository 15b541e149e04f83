"""The fit_prior stage's work: encode the training images with the trained VAE, fit a density to
their latents, and write the VAE with that prior as a checkpoint of its own.

The VAE's weights are not touched: the fitted model is the same encoder and decoder with
``p(z)`` replaced (:mod:`genduel.models.prior`), so changing ``prior`` params re-runs this
stage and evaluation, never train_vae.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genduel.checkpoint import save_checkpoint
from genduel.config import PriorConfig
from genduel.data.pixels import to_model_range
from genduel.data.splits import Split
from genduel.models.prior import GMMFit, fit_gmm
from genduel.models.vae import VAE, sample_posterior
from genduel.runtime import eval_batches, make_generator

log = logging.getLogger(__name__)


def encode_latents(vae: VAE, split: Split, *, fit_on: str, batch_size: int,
                   device: torch.device, seed: int, limit: int = 0) -> np.ndarray:
    """One latent per image of ``split`` (the first ``limit``; 0 = all), float64 (N, D):
    the posterior mean ``mu(x)`` (``fit_on="mean"``) or one draw ``z ~ q(z | x)``
    (``"sample"``, from a generator seeded ``seed``). A CVAE's encoder sees the true labels."""
    n = len(split) if limit == 0 else min(limit, len(split))
    gen = make_generator(seed, device)

    def batch(s: slice) -> torch.Tensor:
        x = to_model_range(split.images[s]).to(device)  # (b, C, H, W)
        y = split.labels[s].to(device) if vae.conditional else None
        mu, logvar = vae.encode(x, y)  # (b, D) each
        if fit_on == "sample":
            mu = sample_posterior(mu, logvar, 1, gen)[:, 0]
        return mu.double().cpu()

    return torch.cat(eval_batches(batch, n, batch_size, vae, desc="latents")).numpy()


def fit_prior(cfg: PriorConfig, vae: VAE, train: Split, val: Split, *, device: torch.device,
              batch_size: int = 500) -> tuple[list[GMMFit], float]:
    """Fit ``cfg.kind`` to the training latents, choose its size on the validation latents,
    scale it by ``cfg.temperature`` and set it as ``vae.prior``.

    Returns:
        Every candidate's fit (the chosen one has the highest ``val_ll_nats``), and the mean
        log-likelihood of the validation latents under the prior as set (after the temperature).
    """
    vae = vae.to(device)
    latents = {name: encode_latents(vae, split, fit_on=cfg.fit_on, batch_size=batch_size,
                                    device=device, seed=cfg.seed + i,
                                    limit=cfg.train_images if name == "train" else 0)
               for i, (name, split) in enumerate((("train", train), ("val", val)))}
    prior, fits = fit_gmm(latents["train"], latents["val"], cfg.components, seed=cfg.seed,
                          max_iter=cfg.max_iter, reg_covar=cfg.reg_covar)
    if cfg.temperature != 1.0:
        prior = prior.tempered(cfg.temperature)
    val_ll = float(prior.log_prob(torch.from_numpy(latents["val"])).mean())
    vae.prior = prior.to(device)
    return fits, val_ll


def save_fitted(vae: VAE, source: dict[str, Any], path: Path, fits: list[GMMFit],
                cfg: PriorConfig) -> None:
    """The VAE checkpoint ``source`` with the fitted prior: its ``model_config`` names the
    prior, its state dict holds the prior's parameters, and ``extra`` records the fit. The
    optimizer state is left out (this file is for sampling and evaluation; train_vae's
    checkpoint resumes training), and so are the fits' wall times: the file's bytes depend on
    the results alone, so a re-run that fits the same prior does not re-run evaluate."""
    chosen = max(fits, key=lambda f: f.val_ll_nats)
    save_checkpoint(path, {
        "kind": "vae",
        "model_config": vae.model_config(),
        "state_dicts": {"vae": {k: v.cpu() for k, v in vae.state_dict().items()}},
        "step": source.get("step", 0), "epoch": source.get("epoch", 0),
        "extra": {**(source.get("extra") or {}),
                  "prior": {"fit": [{k: v for k, v in f._asdict().items() if k != "seconds"}
                                    for f in fits],
                            "chosen_components": chosen.components,
                            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}},
    })


def fit_summary(fits: list[GMMFit], sampled_val_ll: float) -> dict[str, float]:
    """The chosen fit (``components``, its ``train_ll_nats``/``val_ll_nats``), every
    candidate's validation log-likelihood (``val_ll_nats_k<K>``) and that of the prior as
    sampled, after the temperature (``sampled_val_ll_nats``): the metrics file's numbers."""
    chosen = max(fits, key=lambda f: f.val_ll_nats)
    return {"components": chosen.components, "train_ll_nats": chosen.train_ll_nats,
            "val_ll_nats": chosen.val_ll_nats, "sampled_val_ll_nats": sampled_val_ll,
            "em_iterations": chosen.iterations,
            **{f"val_ll_nats_k{f.components}": f.val_ll_nats for f in fits}}
