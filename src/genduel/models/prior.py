"""The VAE's latent prior p(z): the lecture's N(0, I), or a Gaussian mixture fitted to the
aggregate posterior.

A VAE trained with ``p(z) = N(0, I)`` does not fill N(0, I): its aggregate posterior
``q(z) = E_x q(z | x)`` leaves holes, regions where the prior puts mass but no training image's
posterior lies, and latents drawn there decode to images of nothing. Fitting a second density to
latents of the training images and sampling from it (ex-post density estimation, Ghosh et al.
2020; the second stage of Dai & Wipf's two-stage VAE, 2019) draws from where the decoder was
trained.

Both priors are ``nn.Module`` s with the same two methods, so a :class:`~genduel.models.vae.VAE`
holds either as ``vae.prior`` and its checkpoint carries it (the mixture's parameters are
buffers of its state dict):

* ``log_prob(z)``: ``z (..., D) -> log p(z) (...)`` in nats;
* ``sample(n, generator)``: ``n`` latents ``(n, D)`` from one seeded ``torch.Generator``.

:func:`fit_gmm` fits the mixture with scikit-learn's ``GaussianMixture`` (full covariances, EM)
for each candidate number of components and keeps the one whose fit gives held-out latents the
highest log-likelihood.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from genduel.errors import ConfigError
from genduel.models.likelihood import gaussian_log_prob

log = logging.getLogger(__name__)

#: ``model_config["prior"]["kind"]`` of each prior.
STANDARD, GMM = "standard", "gmm"


class StandardNormalPrior(nn.Module):
    """``p(z) = N(0, I)`` in ``dim`` dimensions (no parameters)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = int(dim)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log N(z; 0, I)`` summed over the last dimension: (..., D) -> (...)."""
        return gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               device: torch.device | None = None, dtype: torch.dtype = torch.float32
               ) -> torch.Tensor:
        """``n`` draws (n, D): one ``torch.randn`` call, as the VAE always drew its latents."""
        return torch.randn(n, self.dim, generator=generator, device=device, dtype=dtype)

    def config(self) -> dict[str, Any]:
        return {"kind": STANDARD, "dim": self.dim}


class GMMPrior(nn.Module):
    """``p(z) = sum_k pi_k N(z; m_k, L_k L_k^T)``, full covariances given by Cholesky factors.

    Args:
        weights: (K,) mixture weights pi_k (normalised here).
        means: (K, D) component means m_k.
        covariances: (K, D, D) component covariances (symmetric positive definite).

    The parameters are float64 buffers; ``log_prob`` and ``sample`` compute in float64 and
    return the input's (or the requested) dtype.
    """

    def __init__(self, weights: torch.Tensor, means: torch.Tensor,
                 covariances: torch.Tensor) -> None:
        super().__init__()
        k, d = means.shape
        if weights.shape != (k,) or covariances.shape != (k, d, d):
            raise ValueError(f"GMM shapes do not agree: weights {tuple(weights.shape)}, means "
                             f"{tuple(means.shape)}, covariances {tuple(covariances.shape)}")
        w = weights.double()
        self.register_buffer("log_weights", torch.log(w / w.sum()))  # (K,)
        self.register_buffer("means", means.double())  # (K, D)
        self.register_buffer("scale_tril", torch.linalg.cholesky(covariances.double()))  # (K,D,D)

    def tempered(self, temperature: float) -> GMMPrior:
        """The same mixture with every covariance scaled by ``temperature ** 2`` (weights and
        means kept): ``temperature > 1`` spreads each component's draws."""
        covariances = self.scale_tril @ self.scale_tril.transpose(-1, -2)
        return GMMPrior(self.log_weights.exp(), self.means, covariances * temperature ** 2)

    @property
    def components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def log_prob(self, z: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """``log p(z)`` (...) of latents (..., D), ``chunk`` latents at a time.

        ``log N(z; m, L L^T) = -|L^-1 (z - m)|^2 / 2 - sum log diag L - D/2 log 2 pi``, then a
        logsumexp over the components with ``log pi_k``.
        """
        flat = z.reshape(-1, self.dim).double()  # (N, D)
        half_log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,)
        const = self.log_weights - half_log_det - 0.5 * self.dim * math.log(2 * math.pi)
        out = []
        for s in range(0, len(flat), chunk):
            diff = flat[s:s + chunk, None, :] - self.means  # (n, K, D)
            # Solve L_k y = diff for every latent and component: (K, D, n) -> (n, K, D)
            y = torch.linalg.solve_triangular(self.scale_tril, diff.permute(1, 2, 0),
                                              upper=False).permute(2, 0, 1)
            out.append(torch.logsumexp(const - 0.5 * y.pow(2).sum(-1), dim=-1))  # (n,)
        result = torch.cat(out) if out else flat.new_zeros(0)
        return result.reshape(z.shape[:-1]).to(z.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               device: torch.device | None = None, dtype: torch.dtype = torch.float32
               ) -> torch.Tensor:
        """``n`` draws (n, D): a component ``k ~ pi`` per draw, then ``m_k + L_k eps``.

        Both come from ``generator`` (on ``device``, which defaults to the buffers'), so a seed
        fixes the draws.
        """
        device = self.means.device if device is None else device
        k = torch.multinomial(self.log_weights.exp().to(device), n, replacement=True,
                              generator=generator)  # (n,)
        eps = torch.randn(n, self.dim, 1, generator=generator, device=device,
                          dtype=torch.float64)  # (n, D, 1)
        z = self.means.to(device)[k] + (self.scale_tril.to(device)[k] @ eps).squeeze(-1)
        return z.to(dtype)

    def config(self) -> dict[str, Any]:
        return {"kind": GMM, "dim": self.dim, "components": self.components}


def build_prior(config: dict[str, Any] | None, dim: int) -> nn.Module:
    """The prior a ``model_config["prior"]`` describes (None: N(0, I)), with empty buffers of
    the right shapes for ``load_state_dict`` to fill."""
    if not config or config.get("kind") == STANDARD:
        return StandardNormalPrior(dim)
    if config.get("kind") != GMM:
        raise ConfigError(f"unknown latent prior {config.get('kind')!r}; expected "
                          f"{STANDARD!r} or {GMM!r}")
    k = int(config["components"])
    eye = torch.eye(dim, dtype=torch.float64).expand(k, dim, dim)
    return GMMPrior(torch.ones(k), torch.zeros(k, dim), eye.clone())


class GMMFit(NamedTuple):
    """One candidate of :func:`fit_gmm`: K, the mean log-likelihood (nats per latent) of the
    fitted and of the held-out latents, EM iterations, whether EM converged, seconds."""

    components: int
    train_ll_nats: float
    val_ll_nats: float
    iterations: int
    converged: bool
    seconds: float


def fit_gmm(train: np.ndarray, val: np.ndarray, components: Sequence[int], *, seed: int,
            max_iter: int = 100, reg_covar: float = 1e-4) -> tuple[GMMPrior, list[GMMFit]]:
    """Fit a full-covariance Gaussian mixture to ``train`` latents (N, D) for each K in
    ``components``; keep the K with the highest mean log-likelihood of the ``val`` latents.

    Choosing K on the fitted latents alone would always favour more components (a mixture can
    put one on each latent); held-out latents penalise that. EM is scikit-learn's
    ``GaussianMixture`` (k-means initialisation, ``random_state=seed``), in float64.

    Returns:
        The chosen mixture and every candidate's :class:`GMMFit`, in the order given.
    """
    from sklearn.mixture import GaussianMixture

    train, val = np.asarray(train, np.float64), np.asarray(val, np.float64)
    best, fits = None, []
    for k in components:
        if k > len(train):
            raise ConfigError(f"prior.components: {k} components for {len(train)} training "
                              "latents; use fewer components (or more training images)")
        start = time.perf_counter()
        gmm = GaussianMixture(k, covariance_type="full", max_iter=max_iter, reg_covar=reg_covar,
                              random_state=seed).fit(train)
        fit = GMMFit(k, float(gmm.score(train)), float(gmm.score(val)), int(gmm.n_iter_),
                     bool(gmm.converged_), time.perf_counter() - start)
        log.info("GMM K=%d: train %.2f, val %.2f nats/latent, %d EM iterations%s, %.1f s", k,
                 fit.train_ll_nats, fit.val_ll_nats, fit.iterations,
                 "" if fit.converged else " (not converged)", fit.seconds)
        fits.append(fit)
        if best is None or fit.val_ll_nats > best[0].val_ll_nats:
            best = (fit, gmm)
    assert best is not None  # components is non-empty (validated)
    gmm = best[1]
    prior = GMMPrior(torch.from_numpy(gmm.weights_), torch.from_numpy(gmm.means_),
                     torch.from_numpy(gmm.covariances_))
    return prior, fits
