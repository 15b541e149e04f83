"""Log-likelihood rows: the VAE's ELBO/IWAE bounds and Parzen-window estimates for every row.

Bounds (VAE only, :func:`likelihood_bounds`): the test-set ELBO and IWAE_k lower bounds on
``log p(x)`` of 8-bit images under the discretized-logistic decoder
(:mod:`genduel.models.likelihood`), in nats per image and bits per dim.

Parzen window (Goodfellow et al. 2014, Table 1 protocol), for the VAE, the GAN and real data
(:func:`parzen_rows`):

* kernel centres: ``n = min(eval.parzen_samples, eval.num_samples)`` images, flattened and
  scaled to ``[0, 1]`` (``x = u8 / 255``, D = C*H*W): the first ``n`` samples of draw 0 for a
  model, a seeded random subset of the *train* split for the real row;
* ``sigma``: the value of ``eval.parzen_sigmas`` with the highest mean log-likelihood on
  ``eval.parzen_val_images`` *val* images;
* score: mean log density of ``eval.parzen_test_images`` *test* images at that sigma, nats per
  image (``parzen_ll_nats``), its standard error over the test images
  (``parzen_ll_nats_sem``) and the sigma (``parzen_sigma``).

It is a density on ``[0, 1]^D``, not a probability of 8-bit images, so it is not comparable with
the VAE's ELBO/IWAE bounds; it is biased and has high variance in high dimension (Theis et al.
2016). See :mod:`genduel.metrics.parzen`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from genduel import metrics
from genduel.config import EvalConfig
from genduel.data.pixels import to_model_range
from genduel.data.splits import Split
from genduel.models.likelihood import bits_per_dim
from genduel.models.prior import StandardNormalPrior
from genduel.models.vae import (
    cvae_elbo,
    elbo_estimate,
    iwae_bound,
    kl_monte_carlo,
    marginal_bound,
    num_dims,
    vae_log_likelihood_fn,
)
from genduel.runtime import eval_mode, make_generator, progress

log = logging.getLogger(__name__)


def likelihood_bounds(vae: Any, test: Split, cfg: EvalConfig,
                      device: torch.device) -> dict[str, float]:
    """Test-set ELBO (all test images) and IWAE_k bounds (first ``likelihood_images``) of the
    VAE with ``p(z) = N(0, I)``; see :func:`two_stage_bounds`."""
    return _bounds(vae, test, cfg, device, None)[0]


def two_stage_bounds(vae: Any, fitted: torch.nn.Module, test: Split, cfg: EvalConfig,
                     device: torch.device) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`likelihood_bounds` of the VAE with N(0, I), and of the two-stage model: the same
    encoder and decoder with ``p(z)`` = ``fitted``, a prior fitted to the aggregate posterior
    (:mod:`genduel.models.prior`)."""
    standard, two_stage = _bounds(vae, test, cfg, device, fitted)
    return standard, two_stage


def _bounds(vae: Any, test: Split, cfg: EvalConfig, device: torch.device,
            fitted: torch.nn.Module | None) -> list[dict[str, float]]:
    """Test-set ELBO (all test images) and IWAE_k bounds (first ``likelihood_images``).

    With ``fitted``, also the bounds of the two-stage model (the second row). Its ELBO is the
    same reconstruction term minus a Monte Carlo KL(q(z | x) || p(z)) (no closed form for a
    mixture: :data:`KL_SAMPLES` draws per image from a generator seeded ``eval.seed + 1``); its
    IWAE_k reuse the N(0, I) bound's draws and decoder passes
    (:func:`~genduel.models.vae.iwae_bound` with two priors), so the two rows differ only by
    log p(z).

    Returns nats per image (higher is better) and bits per dim (lower is better); each IWAE_k
    is a lower bound on log p(x) that tightens with k (Burda et al. 2016). A CVAE's bounds
    are on log p(x) too: its ELBO is ELBO(x | true y) - log K
    (:func:`~genduel.models.vae.cvae_elbo`) and its IWAE_k enumerate the labels
    (:func:`~genduel.models.vae.marginal_bound`, K times the cost); its ``recon``/``kl`` terms
    are those of the true label. Every draw comes from one generator seeded ``eval.seed``.
    """
    dims = num_dims(test.image_shape)
    gen = make_generator(cfg.seed, device)
    kl_gen = make_generator(cfg.seed + 1, device)
    priors = None if fitted is None else (StandardNormalPrior(vae.latent_dim), fitted)
    elbos, recons, kls, fitted_kls = [], [], [], []
    with eval_mode(vae):
        for start in progress(range(0, len(test), cfg.batch_size), desc="test ELBO",
                              unit="batch"):
            x = to_model_range(test.images[start:start + cfg.batch_size]).to(device)
            y = test.labels[start:start + cfg.batch_size].to(device) if vae.conditional else None
            mu, logvar = vae.encode(x, y)  # once: both priors' ELBOs share q(z | x)
            terms = elbo_estimate(vae_log_likelihood_fn(vae, x, y), mu, logvar, 1, gen)
            elbo = cvae_elbo(terms, vae.num_classes) if vae.conditional else terms.elbo_nats
            elbos.append(elbo.double().cpu())
            recons.append(terms.log_px_z_nats.double().cpu())
            kls.append(terms.kl_nats.double().cpu())
            if fitted is not None:
                fitted_kls.append(kl_monte_carlo(mu, logvar, fitted, KL_SAMPLES, kl_gen)
                                  .double().cpu())
        recon = torch.cat(recons)
        # A CVAE's ELBO on log p(x) is ELBO(x | y) - log K (cvae_elbo): the same offset for both
        offset = -math.log(vae.num_classes) if vae.conditional else 0.0
        out = _elbo_row(torch.cat(elbos), recon, torch.cat(kls), dims)
        if fitted is not None:
            fitted_kl = torch.cat(fitted_kls)
            out_fitted = _elbo_row(recon - fitted_kl + offset, recon, fitted_kl, dims)
        n = len(test) if cfg.likelihood_images == 0 else min(cfg.likelihood_images, len(test))
        batch = max(1, cfg.batch_size // 4)
        for k in cfg.iwae_k:
            xs = (to_model_range(test.images[s:min(s + batch, n)]).to(device)
                  for s in range(0, n, batch))  # the first n images, no more
            values = [marginal_bound(vae, x, lambda c, x=x, k=k: iwae_bound(vae, x, k, gen, y=c,
                                                                           priors=priors))
                      .double().cpu() for x in progress(xs, desc=f"IWAE k={k}",
                                                         total=math.ceil(n / batch),
                                                         unit="batch")]
            bound = torch.cat(values)  # (n,) or, with the fitted prior, (n, 2)
            for row, b in ((out, bound if fitted is None else bound[:, 0]),
                           *(((out_fitted, bound[:, 1]),) if fitted is not None else ())):
                row[f"iwae_k{k}_nats"] = float(b.mean())
                row[f"iwae_k{k}_bits_per_dim"] = float(bits_per_dim(b.mean(), dims))
    out["likelihood_images"] = n
    if fitted is None:
        return [out]
    out_fitted["likelihood_images"] = n
    return [out, out_fitted]


#: Draws per test image of the Monte Carlo KL(q(z | x) || p(z)) under a fitted prior.
KL_SAMPLES = 16


def _elbo_row(elbo: torch.Tensor, recon: torch.Tensor, kl: torch.Tensor,
              dims: int) -> dict[str, float]:
    """The ELBO keys of a row from per-image values (N,) in nats."""
    return {"elbo_nats": float(elbo.mean()),
            "elbo_nats_sem": float(elbo.std() / math.sqrt(len(elbo))),
            "bits_per_dim": float(bits_per_dim(elbo.mean(), dims)),
            "recon_log_px_z_nats": float(recon.mean()),
            "kl_nats": float(kl.mean())}


def unit_pixels(images: torch.Tensor) -> np.ndarray:
    """uint8 images ``(N, C, H, W)`` -> float64 ``(N, C*H*W)`` in ``[0, 1]`` (``u8 / 255``)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"unit_pixels expects uint8 pixels, got {images.dtype}")
    return images.reshape(len(images), -1).numpy().astype(np.float64) / 255.0


def parzen_row(centres: torch.Tensor, val: torch.Tensor, test: torch.Tensor,
               sigmas: Sequence[float], batch_size: int = 500) -> dict[str, float]:
    """Parzen-window score of one set of kernel centres (all uint8 ``(N, C, H, W)``).

    ``sigma* = argmax_s mean_{x in val} log p_s(x)`` over the grid, then
    ``parzen_ll_nats = mean_{x in test} log p_{sigma*}(x)`` with
    ``log p_s(x) = logsumexp_i(-|x - c_i|^2 / (2 s^2)) - log N - D/2 log(2 pi s^2)``, pixels in
    ``[0, 1]``, summed over the D pixels. ``parzen_ll_nats_sem`` = std / sqrt(M) over the M test
    images (it leaves out the variance from the choice of centres and of sigma).
    """
    c = unit_pixels(centres)
    sigma, scores = metrics.select_parzen_sigma(c, unit_pixels(val), sigmas,
                                                batch_size=batch_size)
    log.info("parzen val LL by sigma: %s", {s: round(v, 1) for s, v in scores.items()})
    if len(sigmas) > 1 and sigma in (min(sigmas), max(sigmas)):
        log.warning("parzen sigma %.4g is at the edge of eval.parzen_sigmas %s; widen the grid",
                    sigma, list(sigmas))
    ll = metrics.parzen_log_densities(c, unit_pixels(test), [sigma],
                                      batch_size=batch_size)[:, 0]  # (M,)
    return {"parzen_ll_nats": float(ll.mean()),
            "parzen_ll_nats_sem": float(ll.std(ddof=1) / math.sqrt(len(ll))) if len(ll) > 1
            else 0.0,
            "parzen_sigma": sigma}


def parzen_rows(centres: dict[str, torch.Tensor], val: torch.Tensor, test: torch.Tensor,
                sigmas: Sequence[float], batch_size: int = 500) -> dict[str, dict[str, float]]:
    """:func:`parzen_row` for each named set of uint8 centres, the same val and test images."""
    out = {}
    for name, images in progress(centres.items(), desc="Parzen", total=len(centres),
                                 unit="row"):
        start = time.perf_counter()
        out[name] = parzen_row(images, val, test, sigmas, batch_size)
        log.info("%s parzen: %.1f nats (sigma %.3g, %d centres) in %.1f s", name,
                 out[name]["parzen_ll_nats"], out[name]["parzen_sigma"], len(images),
                 time.perf_counter() - start)
    return out
