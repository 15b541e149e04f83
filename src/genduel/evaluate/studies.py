"""Latent-space studies for the report: class grids, interpolations, latent arithmetic, manifolds.

Each study is a public function that returns tensors or arrays (tested on tiny models);
:func:`genduel.evaluate.study_figures.write_studies` turns them into PNG figures plus
``index.json``, a list of ``{"file", "title", "caption"}`` entries the report renders in order.
Every random choice comes from a ``torch.Generator`` seeded from one integer, so the figures are
reproducible byte for byte on a given device.

Notation: ``x`` are images (B, C, H, W) in [-1, 1]; ``mu(x)`` is the VAE posterior mean
(``vae.encode(x, y)[0]``, (B, D)); "decoding" z means the decoder mean ``vae.decode(z, y)[0]`` or
the generator output ``G(z, y)``, both (B, C, H, W) in [-1, 1]. Conditional models take int64
labels (B,) or a float class code (B, K).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from genduel.data.pixels import to_model_range
from genduel.models.gan import Generator
from genduel.models.vae import VAE
from genduel.runtime import eval_mode, progress

log = logging.getLogger(__name__)

INTERP_STEPS = 10  #: decoded points per interpolation row, t = 0, 1/(T-1), ..., 1
INTERP_PAIRS = 8  #: rows of the interpolation figures
GRID_COLUMNS = 10  #: samples per class in the class grids
ARITH_SOURCES = 5  #: source images (one per class, classes 0..4) of the latent-arithmetic figure
ENCODED_IMAGES = 5000  #: test images encoded for the class means and the scatter plot
MANIFOLD_SIZE = 20  #: the manifold grid is MANIFOLD_SIZE x MANIFOLD_SIZE
MANIFOLD_QUANTILES = (0.05, 0.95)  #: prior quantiles at the manifold grid's edges
DPI = 100

Model = VAE | Generator


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _decode(model: Model, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Images (B, C, H, W) in [-1, 1] at latents z (B, D): the VAE decoder mean or G(z, y)."""
    if isinstance(model, VAE):
        return model.decode(z, y)[0]
    return model(z, y)


# ----------------------------------------------------------------------------- interpolation
def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation ``(1 - t) z0 + t z1``: z0, z1 (B, D), t (T,) -> (B, T, D).

    Written as a weighted sum (not ``z0 + t (z1 - z0)``) so t = 0 and t = 1 return z0 and z1
    exactly. Also used for the float class codes of conditional models (mixtures of one-hots).
    """
    t = t.to(z0).view(1, -1, 1)  # (1, T, 1)
    return (1 - t) * z0.unsqueeze(1) + t * z1.unsqueeze(1)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985) along the great circle: (B, D), (T,) -> (B, T, D).

    .. math::
        \\mathrm{slerp}(z_0, z_1; t) = \\frac{\\sin((1 - t)\\Omega)}{\\sin\\Omega} z_0
            + \\frac{\\sin(t\\Omega)}{\\sin\\Omega} z_1,
        \\qquad \\cos\\Omega = \\frac{z_0 \\cdot z_1}{\\|z_0\\| \\|z_1\\|}

    Why not linear: z ~ N(0, I_D) concentrates on the shell ``||z|| ~ sqrt(D)``, and two draws
    are nearly orthogonal, so the linear midpoint has norm about ``sqrt(D / 2)``, a radius the
    generator almost never saw in training (White 2016, "Sampling Generative Networks"). Slerp
    keeps the norm of equal-norm endpoints and stays on the shell. Pairs with ``sin Omega < eps``
    (parallel vectors) fall back to :func:`lerp`. t = 0 and t = 1 give z0 and z1 exactly.
    """
    cos = torch.nn.functional.cosine_similarity(z0, z1, dim=1).clamp(-1.0, 1.0)  # (B,)
    omega = torch.acos(cos).unsqueeze(1)  # (B, 1)
    sin = torch.sin(omega)  # (B, 1)
    tt = t.to(z0).view(1, -1)  # (1, T)
    safe = sin.abs() > eps
    denom = torch.where(safe, sin, torch.ones_like(sin))
    w0 = torch.where(safe, torch.sin((1 - tt) * omega) / denom, 1 - tt)  # (B, T)
    w1 = torch.where(safe, torch.sin(tt * omega) / denom, tt.expand_as(w0))  # (B, T)
    return w0.unsqueeze(2) * z0.unsqueeze(1) + w1.unsqueeze(2) * z1.unsqueeze(1)


def choose_pairs(labels: torch.Tensor, n_pairs: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (P,), (P,) of seeded random image pairs whose labels differ (when possible).

    ``a`` are the first P entries of a random permutation; each ``b[i]`` is the i-th (cyclically)
    image of another class in a second permutation. With a single class present the partners may
    share the class (logged). ``generator`` must be a CPU generator.
    """
    labels = labels.cpu()
    n = labels.numel()
    first = torch.randperm(n, generator=generator)[:n_pairs]
    order = torch.randperm(n, generator=generator)
    partners = []
    for i, a in enumerate(first.tolist()):
        other = order[labels[order] != labels[a]]
        if other.numel() == 0:
            log.warning("only one class present: interpolation pair %d shares its class", i)
            other = order[order != a] if n > 1 else order
        partners.append(int(other[i % other.numel()]))
    return first, torch.tensor(partners, dtype=torch.int64)


def vae_interpolation(vae: VAE, x_a: torch.Tensor, y_a: torch.Tensor, x_b: torch.Tensor,
                      y_b: torch.Tensor, steps: int = INTERP_STEPS) -> torch.Tensor:
    """Decoder means along ``z_t = (1 - t) mu(x_a) + t mu(x_b)``, t = linspace(0, 1, steps).

    A conditional VAE encodes each endpoint with its own label and interpolates the one-hot class
    code the same way, ``c_t = (1 - t) onehot(y_a) + t onehot(y_b)``; an unconditional one
    ignores the labels. At t = 0 and t = 1 the outputs are the reconstructions
    ``decode(mu(x_a), y_a)`` and ``decode(mu(x_b), y_b)``.

    Args:
        vae: the model (run in eval mode here).
        x_a, x_b: (P, C, H, W) endpoint images in [-1, 1].
        y_a, y_b: (P,) int64 labels.
        steps: T, points per row including both ends.

    Returns:
        (P, T, C, H, W) decoder means on the CPU, in [-1, 1].
    """
    dev = _device(vae)
    x_a, x_b, y_a, y_b = (v.to(dev) for v in (x_a, x_b, y_a, y_b))
    t = torch.linspace(0.0, 1.0, steps, device=dev)
    with eval_mode(vae):
        z = lerp(vae.encode(x_a, y_a)[0], vae.encode(x_b, y_b)[0], t)  # (P, T, D)
        code = None
        if vae.conditional:
            one_a, one_b = (torch.nn.functional.one_hot(y, vae.num_classes).float()
                            for y in (y_a, y_b))
            code = lerp(one_a, one_b, t).flatten(0, 1)  # (P*T, K)
        out = vae.decode(z.flatten(0, 1), code)[0]  # (P*T, C, H, W)
    return out.view(*z.shape[:2], *out.shape[1:]).cpu()


def gan_interpolation(generator: Generator, n_pairs: int, rng: torch.Generator,
                      steps: int = INTERP_STEPS) -> torch.Tensor:
    """``G(slerp(z_a, z_b; t), y)`` for P pairs z_a, z_b ~ N(0, I), t = linspace(0, 1, steps).

    z_a are the first P draws of ``rng`` and z_b the next P (both via ``sample_latent``). A
    conditional G holds the label fixed along a row: row i uses class ``i % K``.

    Returns:
        (P, T, C, H, W) images on the CPU, in [-1, 1].
    """
    z_a = generator.sample_latent(n_pairs, rng)  # (P, D)
    z_b = generator.sample_latent(n_pairs, rng)
    t = torch.linspace(0.0, 1.0, steps, device=z_a.device)
    z = slerp(z_a, z_b, t)  # (P, T, D)
    labels = None
    if generator.conditional:
        row = torch.arange(n_pairs, device=z.device) % generator.num_classes  # (P,)
        labels = row.repeat_interleave(steps)  # (P*T,)
    with eval_mode(generator):
        out = generator(z.flatten(0, 1), labels)  # (P*T, C, H, W)
    return out.view(n_pairs, steps, *out.shape[1:]).cpu()


# ----------------------------------------------------------------------------- class studies
def class_grid(model: Model, per_class: int, rng: torch.Generator) -> torch.Tensor:
    """Samples of a conditional model, one row per class: (K * per_class, C, H, W) on the CPU.

    Row i (images ``i * per_class ... (i + 1) * per_class - 1``) is decoded with label i. Column
    j uses the same ``z_j ~ p(z)`` in every row (``per_class`` draws from ``rng``; a VAE's
    :attr:`~genduel.models.vae.VAE.prior`, which may be fitted, N(0, I) for a GAN), so a
    column shows one latent code rendered as each class.

    Raises:
        ValueError: the model is not conditional.
    """
    if not model.conditional:
        raise ValueError("class_grid needs a conditional model")
    dev = _device(model)
    k = model.num_classes
    prior = getattr(model, "prior", None)
    z = (prior.sample(per_class, rng, device=dev) if prior is not None
         else torch.randn(per_class, model.latent_dim, generator=rng, device=dev))  # (J, D)
    labels = torch.arange(k, device=dev).repeat_interleave(per_class)  # (K*J,)
    with eval_mode(model):
        return _decode(model, z.repeat(k, 1), labels).cpu()  # (K*J, C, H, W)


def encode_means(vae: VAE, images: torch.Tensor, labels: torch.Tensor,
                 batch_size: int = 500) -> torch.Tensor:
    """Posterior means mu(x[, y]) (N, D) float32 on the CPU of uint8 images (N, C, H, W).

    The labels (N,) are passed to a conditional encoder and ignored otherwise.
    """
    dev = _device(vae)
    out = []
    with eval_mode(vae):
        for start in progress(range(0, len(images), batch_size), desc="VAE encoder",
                              unit="batch"):
            x = to_model_range(images[start:start + batch_size].to(dev))  # (b, C, H, W)
            y = labels[start:start + batch_size].to(dev)
            out.append(vae.encode(x, y)[0].float().cpu())
    return torch.cat(out) if out else torch.empty(0, vae.latent_dim)


def class_latent_means(mu: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class mean posterior mean ``m_c = (1 / N_c) sum_{i: y_i = c} mu_i``: (K, D).

    Accumulated in float64, returned in ``mu``'s dtype. A class without images gets NaN.
    """
    sums = torch.zeros(num_classes, mu.shape[1], dtype=torch.float64)
    sums.index_add_(0, labels.cpu(), mu.detach().cpu().double())
    counts = torch.bincount(labels.cpu(), minlength=num_classes).double().unsqueeze(1)  # (K, 1)
    return (sums / counts).to(mu.dtype)  # 0 / 0 = NaN for an empty class


def class_mean_arithmetic(vae: VAE, x: torch.Tensor, y: torch.Tensor, means: torch.Tensor,
                          targets: list[int]) -> torch.Tensor:
    """Decoder means at ``z = mu(x) + (m_b - m_a)`` for every target class b: (S, B, C, H, W).

    ``a = y[s]`` is the source's class and ``means`` (K, D) the class means of
    :func:`class_latent_means`. The offset is formed first so that ``b = a`` reproduces
    ``decode(mu(x))`` exactly. Meant for unconditional VAEs (labels are passed but ignored).
    """
    dev = _device(vae)
    x, y, means = x.to(dev), y.to(dev), means.to(dev)
    tgt = torch.tensor(targets, device=dev)
    with eval_mode(vae):
        mu = vae.encode(x, y)[0]  # (S, D)
        z = mu.unsqueeze(1) + (means[tgt].unsqueeze(0) - means[y].unsqueeze(1))  # (S, B, D)
        y_rep = y.repeat_interleave(len(targets))  # (S*B,)
        out = vae.decode(z.flatten(0, 1), y_rep)[0]  # (S*B, C, H, W)
    return out.view(len(x), len(targets), *out.shape[1:]).cpu()


def label_swap(vae: VAE, x: torch.Tensor, y: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """CVAE class transfer: ``decode(mu(x, a), b)`` for each target label b: (S, B, C, H, W).

    The CVAE's latent is trained next to the label, so it tends to code style (slant, thickness,
    brightness) and the label the class: keeping z and changing the label is the model's own
    analogy operation (Kingma et al. 2014, Fig. 1). ``b = a`` is the reconstruction.
    """
    dev = _device(vae)
    x, y = x.to(dev), y.to(dev)
    with eval_mode(vae):
        mu = vae.encode(x, y)[0]  # (S, D)
        tgt = torch.tensor(targets, device=dev).repeat(len(x))  # (S*B,)
        out = vae.decode(mu.repeat_interleave(len(targets), dim=0), tgt)[0]  # (S*B, C, H, W)
    return out.view(len(x), len(targets), *out.shape[1:]).cpu()


def choose_sources(labels: torch.Tensor, classes: list[int],
                   generator: torch.Generator) -> torch.Tensor:
    """One seeded random image index per class in ``classes`` (each must occur): (S,)."""
    order = torch.randperm(labels.numel(), generator=generator)
    shuffled = labels.cpu()[order]
    return torch.stack([order[(shuffled == c).nonzero()[0, 0]] for c in classes])


# ----------------------------------------------------------------------------- 2-D latents
def manifold_latents(size: int = MANIFOLD_SIZE,
                     quantiles: tuple[float, float] = MANIFOLD_QUANTILES) -> torch.Tensor:
    """The (size * size, 2) grid ``z = (Phi^-1(u_j), Phi^-1(u_i))``, u = linspace(lo, hi, size).

    Row-major as an image: grid row i has ``z_2 = Phi^-1(u_{size-1-i})`` (z_2 grows upwards) and
    column j has ``z_1 = Phi^-1(u_j)`` (z_1 grows rightwards), the orientation of the scatter
    plot. Equal steps in u are equal prior probability mass (Kingma & Welling 2013, Fig. 4).
    """
    u = torch.linspace(quantiles[0], quantiles[1], size, dtype=torch.float64)
    q = torch.distributions.Normal(0.0, 1.0).icdf(u)  # (size,) float64
    z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")  # (size, size) each
    return torch.stack([z1, z2], dim=-1).reshape(size * size, 2).float()


def vae_manifold(vae: VAE, size: int = MANIFOLD_SIZE, label: int = 0) -> torch.Tensor:
    """Decoder means on :func:`manifold_latents`: (size * size, C, H, W) on the CPU.

    A conditional VAE decodes every point with ``label``.

    Raises:
        ValueError: ``vae.latent_dim != 2``.
    """
    if vae.latent_dim != 2:
        raise ValueError(f"the manifold plot needs latent_dim 2, got {vae.latent_dim}")
    dev = _device(vae)
    z = manifold_latents(size).to(dev)
    y = torch.full((len(z),), label, device=dev) if vae.conditional else None
    with eval_mode(vae):
        return vae.decode(z, y)[0].cpu()


def scatter_coords(mu: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
    """2-D coordinates (N, 2) of posterior means (N, D), and the PCA explained variance ratio.

    D <= 2: the coordinates themselves (D = 1 padded with zeros), ratio None. D > 2: projections
    on the first two principal components of the centred float64 means (SVD ``X = U S V^T``,
    ratio ``s_k^2 / sum s^2``), each component's sign fixed so its largest loading is positive.
    """
    x = mu.detach().cpu().double().numpy()
    if x.shape[1] <= 2:
        return np.pad(x, ((0, 0), (0, 2 - x.shape[1]))), None
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    pcs = vt[:2] * np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(axis=1)])[:, None]
    total = np.sum(s ** 2)
    ratio = (s[:2] ** 2) / total if total > 0 else np.zeros(2)
    return x @ pcs.T, ratio
