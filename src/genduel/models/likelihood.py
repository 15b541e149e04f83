"""Log densities and bounds in nats: the discretized logistic on 8-bit pixels, diagonal Gaussians.

Pixels are the integers ``u in {0, ..., 255}`` that every model sees, mapped to the model range by
``x = u / 127.5 - 1``, so the grid points are ``-1, -1 + 2/255, ..., 1``. The decoder density is
the discretized logistic of Salimans et al. (2017, PixelCNN++, eq. 2): a continuous logistic with
mean ``m`` and scale ``s = exp(log_scale)`` whose mass over the bin ``[x - 1/255, x + 1/255]`` is
the probability of ``x``, the edge bins at ``u = 0`` and ``u = 255`` taking the whole tails::

    P(x) = sigmoid((x + 1/255 - m) / s) - sigmoid((x - 1/255 - m) / s)   0 < u < 255
    P(x) = sigmoid((x + 1/255 - m) / s)                                  u = 0
    P(x) = 1 - sigmoid((x - 1/255 - m) / s)                              u = 255

This is a probability mass function over the 256 values of each pixel, so ``-log P`` of an image
is an exact code length and its bits per dimension are comparable with published 8-bit numbers
(no Jacobian or dequantization correction is needed).

Every function returns one value per image (shape ``(B,)``) summed over all other dimensions, and
computes in at least float32 whatever the input dtype (bf16 under autocast is upcast).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Half the distance between neighbouring grid points in the model range [-1, 1].
HALF_BIN = 1.0 / 255.0
#: Grid points below / above these are the edge bins u = 0 / u = 255 (midway to the neighbour).
_LOW_EDGE, _HIGH_EDGE = -1.0 + HALF_BIN, 1.0 - HALF_BIN
_LOG_2PI = math.log(2.0 * math.pi)
#: Below this bin width in logistic units, log(expm1(d)) is replaced by its series log d + d/2.
_SMALL_D = 1e-3


def _upcast(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Cast to a common floating dtype of at least float32 (float64 stays float64)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return [t.to(dtype) for t in tensors]


def _log_expm1(d: torch.Tensor, log_d: torch.Tensor) -> torch.Tensor:
    """``log(exp(d) - 1)`` for ``d > 0``, finite (with finite gradients) even when ``d`` underflows.

    Three branches, each fed clamped inputs so that the branches not taken stay finite:
    ``log d + d/2`` (series, error ~d^2/24) for tiny ``d``; ``log(expm1(d))`` in the middle;
    ``d + log1p(-exp(-d))`` for large ``d`` where ``expm1`` would overflow.
    """
    small = log_d + 0.5 * d
    mid = torch.log(torch.expm1(d.clamp(_SMALL_D, 20.0)))
    large = d + torch.log1p(-torch.exp(-d.clamp(min=20.0)))
    return torch.where(d < _SMALL_D, small, torch.where(d < 20.0, mid, large))


def discretized_logistic_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log P(x | mean, scale) of 8-bit images under the discretized logistic, summed per image.

    An interior bin mass is a difference of sigmoids, computed without cancellation as
    ``log(sigmoid(a) - sigmoid(b)) = logsigmoid(-a) + logsigmoid(b) + log(expm1(a - b))`` with
    ``a = (x + 1/255 - m) / s``, ``b = (x - 1/255 - m) / s`` and ``a - b = (2/255) / s``. Unlike
    the ``cdf_delta < 1e-5`` switch to a density of PixelCNN++, this identity stays exact when the
    bin mass is tiny (far tails, or a very narrow logistic), so no approximate fallback is needed;
    the only fallback is the series of ``log(expm1(d))`` when ``d = (2/255)/s`` underflows (very
    wide logistics, ``s > ~8``). Edge bins use ``log sigmoid(a)`` and ``log sigmoid(-b)``.

    Args:
        x: (B, C, H, W) images on the grid ``u / 127.5 - 1``, ``u`` in {0..255}.
        mean: (B, C, H, W) logistic means ``m`` (any real; the VAE keeps them in [-1, 1]).
        log_scale: (B, C, H, W) ``log s`` in nats.

    Returns:
        (B,) log-probability in nats, summed over all C*H*W pixels.
    """
    return discretized_logistic_log_prob_pixels(x, mean, log_scale).flatten(1).sum(dim=1)


def discretized_logistic_log_prob_pixels(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Per-pixel log P of :func:`discretized_logistic_log_prob`, the shape of the broadcast of
    its inputs (not summed)."""
    x, mean, log_scale = _upcast(x, mean, log_scale)
    inv_s = torch.exp(-log_scale)
    centered = x - mean
    a = inv_s * (centered + HALF_BIN)  # (B, C, H, W) upper bin edge in logistic units
    b = inv_s * (centered - HALF_BIN)  # (B, C, H, W) lower bin edge
    d = inv_s * (2.0 * HALF_BIN)  # a - b, computed directly so it never cancels
    log_d = math.log(2.0 * HALF_BIN) - log_scale
    log_mid = F.logsigmoid(-a) + F.logsigmoid(b) + _log_expm1(d, log_d)
    log_p = torch.where(
        x < _LOW_EDGE, F.logsigmoid(a), torch.where(x > _HIGH_EDGE, F.logsigmoid(-b), log_mid)
    )
    return log_p


def discretized_logistic_mixture_log_prob(
    x: torch.Tensor, logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """log P(x) of 8-bit images under a per-pixel mixture of K discretized logistics, per image.

    ``P(x_i) = sum_k pi_ik P_logistic(x_i | m_ik, s_ik)`` with ``pi_i = softmax_k(logits_i)``
    (Salimans et al. 2017, eq. 2, with pixels independent given the decoder's inputs, as in a VAE
    decoder). Each component is a pmf over the 256 levels, so the mixture is one too, and
    ``log P`` is an exact code length like the single logistic's. Computed as
    ``logsumexp_k(log_softmax(logits)_k + log P_k)``.

    Args:
        x: (B, C, H, W) images on the 8-bit grid in [-1, 1].
        logits, means, log_scales: (B, K, C, H, W) mixture logits, component means and
            log-scales.

    Returns:
        (B,) log-probability in nats, summed over all C*H*W pixels.
    """
    log_pk = discretized_logistic_log_prob_pixels(x.unsqueeze(1), means, log_scales)
    log_pi = torch.log_softmax(_upcast(logits)[0], dim=1)
    return torch.logsumexp(log_pi + log_pk, dim=1).flatten(1).sum(dim=1)


def gaussian_kl_standard(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(N(mu, diag exp(logvar)) || N(0, I)) in nats (Kingma & Welling 2014, app. B).

    ``KL = 0.5 * sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)``.

    Args:
        mu: (B, D) posterior means.
        logvar: (B, D) posterior log-variances.

    Returns:
        (B,) KL summed over the D latent dimensions.
    """
    mu, logvar = _upcast(mu, logvar)
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) in nats, summed over the last dimension.

    ``log N = -0.5 * sum_j (log(2 pi) + logvar_j + (z_j - mu_j)^2 / exp(logvar_j))``.

    Args:
        z: (..., D) points; ``mu`` and ``logvar`` broadcast against it.
        mu: (..., D) means.
        logvar: (..., D) log-variances.

    Returns:
        (...) log density, e.g. (B,) for (B, D) inputs or (B, S) for (B, S, D).
    """
    z, mu, logvar = _upcast(z, mu, logvar)
    return -0.5 * (_LOG_2PI + logvar + (z - mu).square() * torch.exp(-logvar)).sum(dim=-1)


def iwae_from_log_weights(log_w: torch.Tensor) -> torch.Tensor:
    """The importance-weighted bound of Burda et al. (2016) from its log weights.

    ``IWAE_k = log (1/k) sum_i w_i = logsumexp_i(log w_i) - log k`` with
    ``log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x)``, ``z_i ~ q(z | x)``. Its expectation
    is a lower bound on log p(x) that never decreases with k; k = 1 is the Monte Carlo ELBO.

    Args:
        log_w: (B, k) log importance weights in nats.

    Returns:
        (B,) bound in nats.
    """
    return torch.logsumexp(log_w, dim=1) - math.log(log_w.shape[1])


def bits_per_dim(nats_per_image: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Negative log-likelihood in bits per dimension: ``-nats / (D ln 2)``.

    Args:
        nats_per_image: a log-likelihood (or bound on it) per image in nats, tensor or float.
        num_dims: D = C * H * W.
    """
    return -nats_per_image / (num_dims * math.log(2.0))
