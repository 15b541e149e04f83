"""DCGAN-style generator and discriminator, and the GAN losses of Goodfellow et al. (2014).

The discriminator D outputs a *logit* l(x) with D(x) = sigmoid(l(x)); every loss below is written
on logits with the stable identities

    log D(x)       = log sigmoid(l)  = -softplus(-l)
    log(1 - D(x))  = log sigmoid(-l) = -softplus(l)

so no probability is ever formed and then logged (which underflows to log 0 once D saturates).

``gan.loss: wgan_gp`` replaces D by a critic f with unbounded scores (Arjovsky et al. 2017) whose
1-Lipschitz constraint is a gradient penalty on random interpolates of real and fake images
(Gulrajani et al. 2017); that critic has no BatchNorm, since the penalty is per sample.

With ``gan.conditional`` both nets also take the class label (Mirza & Osindero 2014): G as a
one-hot code appended to z, D as K constant input planes stacked on the image (one per class),
so its first convolution can judge whether image and label match (a label appended only before
the linear head gives a per-class offset that cannot; changed in 7874f04).

Both nets keep their conv weights in ``channels_last`` (NHWC) memory, set at construction so a
rebuilt model computes exactly what the trained one did: about 1.2x faster per train step on the
CPU (the 64 -> 32 transposed conv 1.6x). Inputs may be in either layout.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genduel.config import GAN_LOSSES, GANConfig
from genduel.errors import ConfigError
from genduel.models.nets import ConvDecoder, ConvEncoder, check_image_shape


def _cond_dim(cfg: GANConfig, num_classes: int) -> int:
    if cfg.conditional and num_classes < 2:
        raise ConfigError(f"gan.conditional needs a labelled dataset with >= 2 classes, got "
                          f"{num_classes}; set gan.conditional: false")
    return int(num_classes) if cfg.conditional else 0


class _GANNet(nn.Module):
    """What G and D share: the config they were built from, stored as plain values."""

    def __init__(self, cfg: GANConfig, image_shape: tuple[int, int, int],
                 num_classes: int) -> None:
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        self.latent_dim = int(cfg.latent_dim)
        self.width = int(cfg.width)
        self.d_width = int(cfg.d_width) or self.width
        self.g_arch = str(cfg.g_arch)
        self.g_extra_convs = int(cfg.g_extra_convs)
        self.spectral_norm = bool(cfg.spectral_norm)
        self.loss = cfg.loss
        self.num_classes = int(num_classes)
        self.cond_dim = _cond_dim(cfg, num_classes)

    @property
    def conditional(self) -> bool:
        return self.cond_dim > 0

    def model_config(self) -> dict[str, Any]:
        """Everything :func:`build_generator` / :func:`build_discriminator` need (one dict for
        both nets, plain types, for checkpoints)."""
        return {"latent_dim": self.latent_dim, "width": self.width, "d_width": self.d_width,
                "g_arch": self.g_arch, "g_extra_convs": self.g_extra_convs,
                "spectral_norm": self.spectral_norm,
                "image_shape": list(self.image_shape), "loss": self.loss,
                "conditional": self.conditional, "num_classes": self.num_classes}


class Generator(_GANNet):
    """G: z ~ N(0, I_latent) (B, latent_dim) -> x = tanh(ConvDecoder(z)) (B, C, H, W) in [-1, 1].

    The same map as the VAE's decoder mean, which is what ``gan.init_from_vae`` relies on.

    Args:
        cfg: the ``gan`` section; uses ``latent_dim``, ``width``, ``g_arch``,
            ``g_extra_convs``, ``loss`` and ``conditional``.
        image_shape: (C, H, W) of the images; H and W divisible by 4.
        num_classes: K labels a conditional G takes (ignored when unconditional).
    """

    def __init__(self, cfg: GANConfig, image_shape: tuple[int, int, int],
                 num_classes: int = 0) -> None:
        super().__init__(cfg, image_shape, num_classes)
        self.net = ConvDecoder(self.latent_dim, self.image_shape, self.width, self.image_shape[0],
                               cond_dim=self.cond_dim, upsample=self.g_arch,
                               extra_convs=self.g_extra_convs)
        self.to(memory_format=torch.channels_last)  # ~1.2x per train step on the CPU

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim) (and labels y (B,) or codes (B, K) if conditional) -> images
        (B, C, H, W) in [-1, 1]."""
        return torch.tanh(self.net(z, y))

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of z ~ N(0, I), (n, latent_dim), on the generator's device."""
        device = next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    def sample_labels(self, n: int, generator: torch.Generator | None = None
                      ) -> torch.Tensor | None:
        """n labels from the uniform p(y) for a conditional G (n,), else None."""
        if not self.conditional:
            return None
        device = next(self.parameters()).device
        return torch.randint(self.num_classes, (n,), generator=generator, device=device)

    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """n images G(z[, y]) in [-1, 1], (n, C, H, W). Runs in the module's current mode.

        A conditional G uses ``labels`` (n,), or labels drawn uniformly with ``generator``.
        """
        z = self.sample_latent(n, generator)
        if labels is None:
            labels = self.sample_labels(n, generator)
        return self(z, labels)


class Discriminator(_GANNet):
    """D: x (B, C, H, W) in [-1, 1] -> logit l(x) (B,), with D(x) = sigmoid(l(x)) = P(x is real).

    A :class:`ConvEncoder` of ``gan.d_width`` channels with one output (LeakyReLU 0.2,
    BatchNorm on the second conv). For ``gan.loss: wgan_gp`` the output is a critic score f(x)
    and the net has no BatchNorm; with ``gan.spectral_norm`` every layer is spectrally
    normalized instead of batch-normalized. For ``gan.loss: hinge`` the output is a raw score
    read like a logit (real above 0).
    """

    def __init__(self, cfg: GANConfig, image_shape: tuple[int, int, int],
                 num_classes: int = 0) -> None:
        super().__init__(cfg, image_shape, num_classes)
        norm = cfg.loss != "wgan_gp" and not cfg.spectral_norm
        self.net = ConvEncoder(self.image_shape, self.d_width, 1, norm=norm,
                               cond_dim=self.cond_dim, spectral_norm=self.spectral_norm)
        self.to(memory_format=torch.channels_last)  # ~1.2x per train step on the CPU

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) (and labels y if conditional) -> logits or critic scores (B,)."""
        return self.net(x, y).squeeze(1)  # (B, 1) -> (B,)


def _cfg(model_config: dict[str, Any]) -> tuple[GANConfig, tuple[int, int, int], int]:
    try:
        cfg = GANConfig(latent_dim=int(model_config["latent_dim"]),
                        width=int(model_config["width"]),
                        d_width=int(model_config.get("d_width", 0)),
                        g_arch=str(model_config.get("g_arch", "deconv")),
                        g_extra_convs=int(model_config.get("g_extra_convs", 0)),
                        spectral_norm=bool(model_config.get("spectral_norm", False)),
                        loss=str(model_config.get("loss", "non_saturating")),
                        conditional=bool(model_config.get("conditional", False)))
        shape = tuple(int(v) for v in model_config["image_shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"GAN model_config {model_config!r} is incomplete ({exc}); it needs "
                          "latent_dim, width and image_shape") from exc
    return cfg, shape, int(model_config.get("num_classes", 0))  # type: ignore[return-value]


def build_generator(model_config: dict[str, Any]) -> Generator:
    """Rebuild a (randomly initialised) :class:`Generator` from ``Generator.model_config()``."""
    return Generator(*_cfg(model_config))


def build_discriminator(model_config: dict[str, Any]) -> Discriminator:
    """Rebuild a (randomly initialised) :class:`Discriminator` from its ``model_config()``."""
    return Discriminator(*_cfg(model_config))


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss, the negated value function of Goodfellow et al. (2014), eq. 1.

    .. math::
        L_D = -\\frac1B \\sum_i \\log D(x_i) - \\frac1B \\sum_i \\log(1 - D(G(z_i)))
            = \\mathrm{mean}_i\\, \\mathrm{softplus}(-l(x_i))
              + \\mathrm{mean}_i\\, \\mathrm{softplus}(l(G(z_i)))

    i.e. binary cross-entropy with label 1 for real and 0 for fake, each term a mean over its
    batch. Minimised by D*(x) = p_data(x) / (p_data(x) + p_g(x)) (Proposition 1); at D = 1/2
    everywhere it equals log 4 (nats).

    Args:
        real_logits: l(x) for real images, (B_r,).
        fake_logits: l(G(z)) for generated images, (B_f,).

    Returns:
        Scalar loss in nats.
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss without the penalty: ``mean f(G(z)) - mean f(x)`` (scalar).

    Its negative is the critic's estimate of the Wasserstein-1 distance (Arjovsky et al. 2017,
    Theorem 3), exact when f is the optimal 1-Lipschitz function.
    """
    return fake_scores.mean() - real_scores.mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     y: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """The WGAN-GP penalty ``mean_i (||grad_x f(x_hat_i)||_2 - 1)^2`` (Gulrajani et al. 2017).

    ``x_hat_i = eps_i x_i + (1 - eps_i) x~_i`` with eps_i ~ U[0, 1] per sample, on the straight
    lines between real and fake images where the optimal critic has unit gradient norm. The
    graph is kept (``create_graph``) so the penalty trains the critic.

    Args:
        critic: x (B, C, H, W) [, y] -> scores (B,).
        real, fake: batches of the same shape, (B, C, H, W) for images (any (B, ...) works).
        y: labels for a conditional critic (the real batch's labels are used for both).
        generator: draws eps (on ``real``'s device); None = global RNG.

    Returns:
        Scalar penalty (weight it with ``gan.gp_weight``).
    """
    eps = torch.rand(real.shape[0], *[1] * (real.ndim - 1), generator=generator,
                     device=real.device, dtype=real.dtype)  # (B, 1, 1, 1) for images
    x_hat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat) if y is None else critic(x_hat, y)  # (B,)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)  # (B, C, H, W)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def r1_penalty(real_scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The R1 penalty ``mean_i ||grad_x l(x_i)||_2^2`` on real images (Mescheder et al. 2018,
    eq. 9), scalar; D's loss adds ``gamma / 2`` times it (``gan.r1_weight`` = gamma).

    It pushes D's gradient on the data towards 0, so D cannot keep sharpening its boundary at
    the real images: the equilibrium of the regularized game is locally convergent where the
    unregularized one oscillates (Mescheder et al., Theorem 4.1). For a linear
    ``l(x) = w . x + b`` it equals ``||w||^2`` whatever the batch.

    Args:
        real_scores: l(x) (B,), computed from ``real`` with ``real.requires_grad`` set; the graph
            is kept (``create_graph``) so the penalty trains D.
        real: the real batch (B, ...) the scores came from.

    Returns:
        Scalar: the per-image squared gradient norm, averaged over the batch.
    """
    (grad,) = torch.autograd.grad(real_scores.sum(), real, create_graph=True)  # (B, C, H, W)
    return grad.flatten(1).pow(2).sum(1).mean()


def hinge_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The hinge loss of D (Lim & Ye 2017; Miyato et al. 2018, eq. 16), scalar:
    ``mean relu(1 - l(x)) + mean relu(1 + l(G(z)))``.

    Zero once every real score is >= 1 and every fake score <= -1, so D stops pushing on
    samples it already separates by the margin. At l = 0 everywhere it equals 2.
    """
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def g_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Generator loss on l = l(G(z)), (B,) -> scalar (mean over the batch, nats).

    * ``"minimax"``: minimise  mean log(1 - D(G(z))) = -mean softplus(l)   (eq. 1 as written).
      Its gradient d/dl = -sigmoid(l) = -D(G(z)) vanishes when D confidently rejects the fakes,
      which is early in training (the saturation noted in section 3 of the paper).
    * ``"non_saturating"``: minimise -mean log D(G(z)) = mean softplus(-l). Same fixed point,
      but d/dl = -(1 - D(G(z))) -> -1 as D(G(z)) -> 0, so G gets strong gradients when it is bad.
    * ``"wgan_gp"``: minimise -mean f(G(z)) on critic scores f (the generator's side of the
      Wasserstein objective; its gradient d/df = -1/B never saturates).
    * ``"hinge"``: minimise -mean l(G(z)), the generator of the hinge game (Miyato et al. 2018).

    Raises:
        ConfigError: for an unknown ``kind``.
    """
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()
    if kind in ("wgan_gp", "hinge"):
        return -fake_logits.mean()
    raise ConfigError(f"gan.loss = {kind!r} is not allowed; choose one of {list(GAN_LOSSES)}")
