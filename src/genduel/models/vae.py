"""Convolutional VAE with a discretized-logistic decoder on 8-bit pixels, its ELBO and IWAE bounds.

Model (Kingma & Welling 2014): ``p(z) = N(0, I)``, ``q(z | x) = N(mu(x), diag exp(logvar(x)))``
and ``p(x | z)`` a discretized logistic per pixel (:mod:`genduel.models.likelihood`) with mean
``m(z) in [-1, 1]`` and log-scale ``log s(z) >= LOG_SCALE_MIN``, or with
``vae.decoder_components = K > 1`` a mixture of K such logistics per pixel (Salimans et al.
2017), which can put mass on both the background and the ink level of a pixel where one logistic
must spread over both. All bounds are in nats per image
on the 8-bit data, so they are exact code lengths comparable with published bits/dim.

The estimators are generic over ``log p(x | z)``: :func:`elbo_estimate` and
:func:`log_importance_weights` take a callable ``z (B, S, D) -> log p(x | z) (B, S)``, and the
VAE-specific :func:`elbo_terms` and :func:`iwae_bound` only supply the decoder. Tests run the same
code on a linear-Gaussian model whose log p(x) is analytic.

With ``vae.conditional`` the model is a CVAE (Sohn et al. 2015): ``q(z | x, y)``, ``p(x | z, y)``,
``p(z) = N(0, I)`` and a uniform label prior ``p(y) = 1/K``. Training maximises the ELBO of
``log p(x | y)`` on labelled data. For a likelihood on the same footing as the unconditional
VAE's, :func:`cvae_elbo` bounds ``log p(x)`` by ``ELBO(x | y) - log K`` and :func:`marginal_bound`
turns per-label IWAE estimates into an IWAE bound on ``log p(x) = log sum_y p(y) p(x | y)`` by
enumerating the K labels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from genduel.config import VAE_IMAGES, VAEConfig, validate
from genduel.errors import ConfigError
from genduel.models.likelihood import (
    discretized_logistic_log_prob,
    discretized_logistic_mixture_log_prob,
    gaussian_kl_standard,
    gaussian_log_prob,
    iwae_from_log_weights,
)
from genduel.models.nets import ConvDecoder, ConvEncoder, check_image_shape
from genduel.models.prior import STANDARD, StandardNormalPrior, build_prior

#: Lower clamp of the decoder log-scale (PixelCNN++ uses -7): a logistic of scale e^-7 already
#: puts 97 % of its mass in one bin, so a smaller scale only buys overconfidence and overflow.
LOG_SCALE_MIN = -7.0

#: ``z (B, S, D) -> log p(x | z) (B, S)`` for a fixed batch x.
LogLikelihoodFn = Callable[[torch.Tensor], torch.Tensor]


class VAEOutput(NamedTuple):
    """What :meth:`VAE.forward` returns.

    Attributes:
        mean: (B, C, H, W) decoder means in [-1, 1] (of the mixture when K > 1).
        log_scale: the rest of p(x | z): (B, C, H, W) logistic log-scales >= LOG_SCALE_MIN for
            one logistic; the raw decoder output (B, 3 K C, H, W) for a mixture, read by
            :meth:`VAE.mixture` reads.
        mu: (B, latent_dim) posterior means.
        logvar: (B, latent_dim) posterior log-variances.
        z: (B, latent_dim) the reparameterized sample ``mu + exp(logvar / 2) * eps``.
    """

    mean: torch.Tensor
    log_scale: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor


class ELBOTerms(NamedTuple):
    """Per-image ELBO and its two terms, all (B,) in nats: ``elbo = log_px_z - kl``.

    ``log_px_z_nats`` is the Monte Carlo average over L samples of log p(x | z); ``kl_nats`` is
    the closed-form KL(q(z | x) || p(z)), summed over latent dimensions.
    """

    elbo_nats: torch.Tensor
    log_px_z_nats: torch.Tensor
    kl_nats: torch.Tensor


class VAE(nn.Module):
    """Conv encoder -> (mu, logvar); conv decoder -> (mean, log_scale) of a discretized logistic.

    Args:
        cfg: uses ``latent_dim``, ``width`` and ``conditional``; stored whole so the checkpoint
            can rebuild it.
        image_shape: (C, H, W), H and W divisible by 4.
        num_classes: K, the number of labels a conditional model takes (ignored otherwise).

    Every method that takes ``y`` accepts int64 labels (B,) or a float class code (B, K) (a
    mixture of one-hots, e.g. to interpolate between classes); unconditional models ignore it.
    """

    def __init__(self, cfg: VAEConfig, image_shape: tuple[int, int, int],
                 num_classes: int = 0) -> None:
        super().__init__()
        if cfg.conditional and num_classes < 2:
            raise ConfigError(f"vae.conditional needs a labelled dataset with >= 2 classes, got "
                              f"{num_classes}; set vae.conditional: false")
        self.cfg = cfg
        self.image_shape = check_image_shape(image_shape)
        self.latent_dim = cfg.latent_dim
        self.num_classes = int(num_classes)
        self.cond_dim = self.num_classes if cfg.conditional else 0
        self.components = int(cfg.decoder_components)
        channels = self.image_shape[0]
        out = 2 * channels if self.components == 1 else 3 * self.components * channels
        self.encoder = ConvEncoder(self.image_shape, cfg.width, 2 * cfg.latent_dim,
                                   cond_dim=self.cond_dim)
        self.decoder = ConvDecoder(cfg.latent_dim, self.image_shape, cfg.width, out,
                                   cond_dim=self.cond_dim)
        #: p(z): N(0, I) as trained; the fit_prior stage replaces it by a density fitted to the
        #: aggregate posterior (:mod:`genduel.models.prior`), which :meth:`sample` then draws from
        self.prior: nn.Module = StandardNormalPrior(cfg.latent_dim)

    @property
    def conditional(self) -> bool:
        return self.cond_dim > 0

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) in [-1, 1] (and y for a CVAE) -> (mu, logvar), each (B, latent_dim)."""
        stats = self.encoder(x, y)  # (B, 2 * latent_dim)
        if stats.dtype in (torch.float16, torch.bfloat16):
            stats = stats.float()  # autocast: sample z and its log densities in float32
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, latent_dim) (and y for a CVAE) -> (mean (B, C, H, W), rest of p(x | z)).

        One logistic: ``mean = tanh(.)`` keeps it centred inside the pixel range and the rest
        is ``log_scale = max(., LOG_SCALE_MIN)``, (B, C, H, W). A mixture: ``mean`` is the
        mixture's mean ``sum_k pi_k m_k`` and the rest is the raw decoder output, which
        :meth:`mixture` reads.
        """
        out = self.decoder(z, y)
        if self.components == 1:
            raw_mean, raw_log_scale = out.chunk(2, dim=1)  # 2 x (B, C, H, W)
            return torch.tanh(raw_mean), raw_log_scale.clamp(min=LOG_SCALE_MIN)
        logits, means, _ = self.mixture(out)
        return (torch.softmax(logits.float(), dim=1) * means).sum(dim=1), out

    def mixture(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, means in [-1, 1], log-scales >= LOG_SCALE_MIN), each (B, K, C, H, W), of
        a mixture decoder's raw output (B, 3 K C, H, W)."""
        b, _, h, w = out.shape
        logits, means, log_scales = out.float().view(b, 3, self.components, -1, h, w).unbind(1)
        return logits, torch.tanh(means), log_scales.clamp(min=LOG_SCALE_MIN)

    def log_px_z(self, x: torch.Tensor, z: torch.Tensor,
                 y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | z[, y]) (B,) in nats of 8-bit images x (B, C, H, W): one decoder pass, and
        no image mean (the bounds need only the likelihood)."""
        out = self.decoder(z, y)
        if self.components == 1:
            raw_mean, raw_log_scale = out.chunk(2, dim=1)
            return discretized_logistic_log_prob(x, torch.tanh(raw_mean),
                                                 raw_log_scale.clamp(min=LOG_SCALE_MIN))
        return discretized_logistic_mixture_log_prob(x, *self.mixture(out))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> VAEOutput:
        """Encode, draw one reparameterized ``z = mu + sigma * eps``, decode.

        Args:
            x: (B, C, H, W) images in [-1, 1].
            y: labels (B,) for a CVAE; None otherwise.
            generator: draws ``eps ~ N(0, I)``; must live on ``x``'s device. None = global RNG.
        """
        mu, logvar = self.encode(x, y)
        z = sample_posterior(mu, logvar, 1, generator)[:, 0]  # (B, latent_dim)
        mean, log_scale = self.decode(z, y)
        return VAEOutput(mean, log_scale, mu, logvar, z)

    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None, image: str = "mean") -> torch.Tensor:
        """n images (n, C, H, W) in [-1, 1] decoded at ``z ~ p(z)`` (see :meth:`image`): the
        model's :attr:`prior`, N(0, I) unless a fitted prior replaced it.

        The decoder *mean* rather than a draw from p(x | z) is the usual choice for sample
        quality: per-pixel logistic noise is independent across pixels and only adds grain.
        A CVAE decodes ``labels`` (n,), or labels drawn from the uniform prior p(y) with
        ``generator`` when None. Call under :func:`genduel.runtime.eval_mode` (BatchNorm must use
        its running statistics).
        """
        param = next(self.parameters())
        z = self.prior.sample(n, generator, device=param.device, dtype=param.dtype)
        if self.conditional and labels is None:
            labels = torch.randint(self.num_classes, (n,), generator=generator,
                                   device=param.device)
        return self.image(z, labels, image)

    def image(self, z: torch.Tensor, y: torch.Tensor | None = None,
              kind: str = "mean") -> torch.Tensor:
        """The image p(x | z[, y]) stands for, (B, C, H, W) in [-1, 1].

        ``"mean"``: the decoder mean (of the mixture when K > 1). ``"mode"``: per pixel, the
        mean of its most probable mixture component, the image of the dominant mode. A mixture
        mean averages the background and the ink component of an uncertain pixel into grey;
        the mode picks one. Both equal for one logistic (K = 1).
        """
        if kind not in VAE_IMAGES:
            raise ConfigError(f"VAE image kind {kind!r} is not one of {VAE_IMAGES}")
        mean, rest = self.decode(z, y)
        if kind == "mean" or self.components == 1:
            return mean
        logits, means, _ = self.mixture(rest)  # (B, K, C, H, W) each
        return means.gather(1, logits.argmax(dim=1, keepdim=True)).squeeze(1)

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) decoder mean at the posterior mean ``z = mu(x)``; call under eval_mode."""
        return self.decode(self.encode(x, y)[0], y)[0]

    def model_config(self) -> dict[str, Any]:
        """Every ``VAEConfig`` field, ``image_shape``, ``num_classes`` and, for a fitted prior,
        ``prior`` (its kind and shape): what :func:`build_vae` needs."""
        prior = self.prior.config()
        return {**dataclasses.asdict(self.cfg), "image_shape": list(self.image_shape),
                "num_classes": self.num_classes,
                **({"prior": prior} if prior["kind"] != STANDARD else {})}


def build_vae(model_config: dict[str, Any]) -> VAE:
    """Rebuild an (untrained, train-mode) VAE from :meth:`VAE.model_config`, validating the fields.

    Load the weights afterwards with ``model.load_state_dict(ckpt["state_dicts"]["vae"])``.
    """
    fields = {k: v for k, v in model_config.items()
              if k not in ("image_shape", "num_classes", "prior")}
    cfg = validate("vae", VAEConfig, fields)
    c, h, w = (int(v) for v in model_config["image_shape"])
    model = VAE(cfg, (c, h, w), int(model_config.get("num_classes", 0)))
    model.prior = build_prior(model_config.get("prior"), cfg.latent_dim)
    return model


def sample_posterior(mu: torch.Tensor, logvar: torch.Tensor, num_samples: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """S reparameterized draws ``z = mu + exp(logvar / 2) * eps``, eps ~ N(0, I): (B, S, D).

    Differentiable in ``mu`` and ``logvar``. ``generator`` must live on ``mu``'s device.
    """
    batch, dim = mu.shape
    eps = torch.randn(batch, num_samples, dim, generator=generator, device=mu.device,
                      dtype=mu.dtype)  # (B, S, D)
    return mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps


def log_importance_weights(log_px_z_fn: LogLikelihoodFn, mu: torch.Tensor, logvar: torch.Tensor,
                           num_samples: int, generator: torch.Generator | None = None,
                           priors: Sequence[nn.Module] | None = None) -> torch.Tensor:
    """``log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x)`` for z_i ~ q: (B, S) nats.

    With ``priors`` (modules with ``log_prob``, :mod:`genduel.models.prior`), the weights of
    each prior from the same draws and decoder passes: (B, S, P), prior p last.
    """
    z = sample_posterior(mu, logvar, num_samples, generator)  # (B, S, D)
    log_qz = gaussian_log_prob(z, mu.unsqueeze(1), logvar.unsqueeze(1))  # (B, S)
    if priors is not None:
        log_px_z = log_px_z_fn(z)  # (B, S): one decoder pass for every prior
        return torch.stack([log_px_z + p.log_prob(z) - log_qz for p in priors], dim=-1)
    log_pz = gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))  # (B, S)
    return log_px_z_fn(z) + log_pz - log_qz


def elbo_estimate(log_px_z_fn: LogLikelihoodFn, mu: torch.Tensor, logvar: torch.Tensor,
                  mc_samples: int = 1, generator: torch.Generator | None = None) -> ELBOTerms:
    """ELBO with L reparameterized samples and the closed-form KL (SGVB-B of Kingma & Welling).

    ``ELBO(x) = (1/L) sum_l log p(x | z_l) - KL(q(z | x) || N(0, I))``, z_l ~ q(z | x).

    Args:
        log_px_z_fn: ``z (B, L, D) -> log p(x | z) (B, L)``.
        mu, logvar: (B, D) parameters of q(z | x).
        mc_samples: L.
        generator: draws eps; None = global RNG.
    """
    z = sample_posterior(mu, logvar, mc_samples, generator)  # (B, L, D)
    log_px_z = log_px_z_fn(z).mean(dim=1)  # (B,) average over the L samples
    kl = gaussian_kl_standard(mu, logvar)  # (B,)
    return ELBOTerms(log_px_z - kl, log_px_z, kl)


def kl_monte_carlo(mu: torch.Tensor, logvar: torch.Tensor, prior: nn.Module, num_samples: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """KL(q(z | x) || p(z)) (B,) in nats by Monte Carlo, for a prior with no closed form:
    ``(1/S) sum_s [log q(z_s | x) - log p(z_s)]``, z_s ~ q(z | x) (unbiased; S = num_samples).
    """
    z = sample_posterior(mu, logvar, num_samples, generator)  # (B, S, D)
    log_qz = gaussian_log_prob(z, mu.unsqueeze(1), logvar.unsqueeze(1))  # (B, S)
    return (log_qz - prior.log_prob(z)).mean(dim=1)


def iwae_estimate(log_px_z_fn: LogLikelihoodFn, mu: torch.Tensor, logvar: torch.Tensor, k: int,
                  generator: torch.Generator | None = None, chunk_k: int | None = None,
                  priors: Sequence[nn.Module] | None = None) -> torch.Tensor:
    """IWAE_k (Burda et al. 2016) in nats, (B,) (or (B, P) for P ``priors``, see
    :func:`log_importance_weights`): log weights drawn ``chunk_k`` samples at a time."""
    chunk_k = k if chunk_k is None else max(1, min(k, chunk_k))
    parts = [log_importance_weights(log_px_z_fn, mu, logvar, min(chunk_k, k - start), generator,
                                    priors)
             for start in range(0, k, chunk_k)]
    return iwae_from_log_weights(torch.cat(parts, dim=1))  # (B, k[, P]) -> (B[, P])


def vae_log_likelihood_fn(model: VAE, x: torch.Tensor,
                          y: torch.Tensor | None = None) -> LogLikelihoodFn:
    """``z (B, S, D) -> log p(x | z[, y]) (B, S)``: decodes all B*S latents in one batch."""
    def log_px_z(z: torch.Tensor) -> torch.Tensor:
        batch, samples, dim = z.shape
        y_rep = None if y is None else y.repeat_interleave(samples, dim=0)  # (B*S, ...)
        x_rep = x.unsqueeze(1).expand(batch, samples, *x.shape[1:]).flatten(0, 1)
        # (B*S, C, H, W) images against (B*S, D) latents
        return model.log_px_z(x_rep, z.reshape(batch * samples, dim), y_rep).view(batch, samples)

    return log_px_z


def elbo_terms(model: VAE, x: torch.Tensor, mc_samples: int = 1,
               generator: torch.Generator | None = None,
               y: torch.Tensor | None = None) -> ELBOTerms:
    """Per-image ELBO terms (B,) in nats of 8-bit images x (B, C, H, W) in [-1, 1].

    For a CVAE, ``y`` (B,) are the labels and the terms bound ``log p(x | y)``.
    """
    mu, logvar = model.encode(x, y)
    return elbo_estimate(vae_log_likelihood_fn(model, x, y), mu, logvar, mc_samples, generator)


def iwae_bound(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None,
               chunk: int = 4096, y: torch.Tensor | None = None,
               priors: Sequence[nn.Module] | None = None) -> torch.Tensor:
    """IWAE_k lower bound on log p(x) (on log p(x | y) for a CVAE) in nats, (B,); eval_mode.

    With ``priors``, the bound of the same encoder and decoder under each prior p(z), from the
    same draws: (B, P).

    Args:
        model: the VAE.
        x: (B, C, H, W) images in [-1, 1] on the 8-bit grid.
        k: importance samples per image.
        generator: draws eps; must live on ``x``'s device.
        chunk: at most this many images (B * samples) are decoded per pass (at least B).
        y: labels (B,) of a CVAE.
    """
    mu, logvar = model.encode(x, y)
    chunk_k = max(1, chunk // x.shape[0])
    return iwae_estimate(vae_log_likelihood_fn(model, x, y), mu, logvar, k, generator, chunk_k,
                         priors)


def marginal_bound(model: VAE, x: torch.Tensor,
                   bound: Callable[[torch.Tensor | None], torch.Tensor]) -> torch.Tensor:
    """A lower bound on log p(x) (B,) in nats from a per-label IWAE estimate ``y -> (B,)``.

    Unconditional models: ``bound(None)``. A CVAE with uniform p(y) = 1/K enumerates the labels:
    ``log p(x) >= logsumexp_y [b_y(x)] - log K``. With IWAE estimates, whose exponentials are
    unbiased estimates of p(x | y), this is the IWAE bound of the proposal p(y) q(z | x, y) with
    K * k samples, so it stays a stochastic lower bound (Jensen). Do not feed it Monte Carlo
    ELBO estimates: exp(ELBO estimate) is not unbiased, and the logsumexp of K noisy estimates
    is biased upwards (use :func:`cvae_elbo` instead). Costs K bound evaluations.
    """
    if not model.conditional:
        return bound(None)
    labels = torch.arange(model.num_classes, device=x.device)
    per_label = torch.stack([bound(labels[c].expand(x.shape[0])) for c in labels], dim=1)
    return torch.logsumexp(per_label, dim=1) - math.log(model.num_classes)  # (B,)


def cvae_elbo(terms: ELBOTerms, num_classes: int) -> torch.Tensor:
    """ELBO on log p(x) (B,) of a CVAE from its terms given the true label y:
    ``ELBO(x | y) + log p(y) = ELBO(x | y) - log K``.

    It is the ELBO of the variational family q(y | x) q(z | x, y) with q(y | x) a point mass on
    the true label, a valid choice for a bound on log p(x) of a labelled image (Jensen holds for
    any q), and unbiased under Monte Carlo noise, unlike enumerating labels through a
    logsumexp of noisy estimates.
    """
    return terms.elbo_nats - math.log(num_classes)


def vae_loss(terms: ELBOTerms, beta: float) -> torch.Tensor:
    """Scalar ``-(log p(x | z) - beta * KL)`` summed over pixels and latents, mean over the batch.

    With ``beta = 1`` this is the negative ELBO in nats per image.
    """
    return -(terms.log_px_z_nats - beta * terms.kl_nats).mean()


def num_dims(image_shape: tuple[int, int, int]) -> int:
    """D = C * H * W, the denominator of bits per dimension."""
    return math.prod(image_shape)
