"""Why the VAE's N(0, I) samples fail: where each prior's draws fall against the posterior.

The decoder learned to decode latents where training images' posteriors lie. The measure here
is the Euclidean distance from a latent to the nearest posterior mean ``mu(x)`` of a training
image (``n`` train images, a seeded subset), for

* held-out data: the posterior means of ``n`` validation images (the scale: where new images
  land),
* ``n`` draws from N(0, I), the prior the VAE was trained with,
* ``n`` draws from the fitted prior.

``latent_nn_ratio`` = median distance of a prior's draws / median distance of the validation
latents: about 1 when the prior draws where data lands, above 1 for draws in the prior's holes.
The per-dimension KL(q(z | x) || N(0, I)) on the validation images, averaged over them, shows
how many latent dimensions carry information (``active_units``: KL above
:data:`ACTIVE_KL_NATS`, Burda et al. 2016 use the variance of the posterior mean instead); an
inactive dimension is N(0, I) noise the decoder ignores.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from genduel.data.pixels import to_model_range
from genduel.data.splits import Split
from genduel.io import atomic_write
from genduel.models.prior import StandardNormalPrior
from genduel.models.vae import VAE
from genduel.runtime import eval_batches, make_generator

#: A latent dimension is active when its mean KL(q(z_d | x) || N(0, 1)) exceeds this (nats).
ACTIVE_KL_NATS = 0.01
#: The three sets of latents, in the figure's order: name -> label.
SETS = {"val": "validation images' posterior means (held out)",
        "vae": "draws from N(0, I)", "vae_prior": "draws from the fitted prior"}


class PriorGap(NamedTuple):
    """Nearest-training-latent distances of each set of :data:`SETS` (n,), the mean KL per
    latent dimension (D,), and the metric rows (``vae``, ``vae_prior``)."""

    distances: dict[str, np.ndarray]
    kl_per_dim: np.ndarray
    rows: dict[str, dict[str, float]]


def _posterior(vae: VAE, split: Split, idx: torch.Tensor, batch_size: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) (n, D) float64 on the CPU of the images ``split[idx]``."""

    def batch(s: slice) -> tuple[torch.Tensor, torch.Tensor]:
        i = idx[s]
        y = split.labels[i].to(device) if vae.conditional else None
        mu, logvar = vae.encode(to_model_range(split.images[i]).to(device), y)
        return mu.double().cpu(), logvar.double().cpu()

    parts = eval_batches(batch, len(idx), batch_size, vae, desc="posterior")
    return torch.cat([m for m, _ in parts]), torch.cat([v for _, v in parts])


def nearest_distances(queries: torch.Tensor, points: torch.Tensor,
                      chunk: int = 2048) -> np.ndarray:
    """Euclidean distance of each query (n, D) to its nearest point (m, D): (n,) float64."""
    out = [torch.cdist(queries[s:s + chunk].double(), points.double()).min(dim=1).values
           for s in range(0, len(queries), chunk)]
    return torch.cat(out).numpy()


def prior_gap(vae: VAE, fitted: torch.nn.Module, train: Split, val: Split, *, n: int, seed: int,
              batch_size: int, device: torch.device) -> PriorGap:
    """Distances to the training posterior for held-out latents and both priors' draws
    (see the module docstring); every draw from generators seeded ``seed``."""
    gen = make_generator(seed)
    train_idx = torch.randperm(len(train), generator=gen)[:n]
    val_idx = torch.randperm(len(val), generator=gen)[:n]
    with torch.no_grad():
        train_mu, _ = _posterior(vae, train, train_idx, batch_size, device)
        val_mu, val_logvar = _posterior(vae, val, val_idx, batch_size, device)
        draws = {"vae": StandardNormalPrior(vae.latent_dim).sample(len(val_idx), gen,
                                                                   dtype=torch.float64),
                 "vae_prior": fitted.sample(len(val_idx), make_generator(seed + 1),
                                            device=torch.device("cpu"), dtype=torch.float64)}
    distances = {"val": nearest_distances(val_mu, train_mu),
                 **{name: nearest_distances(z, train_mu) for name, z in draws.items()}}
    # KL(N(mu, s^2) || N(0, 1)) per dimension, mean over the validation images: (D,)
    kl = (0.5 * (val_mu.pow(2) + val_logvar.exp() - 1 - val_logvar)).mean(dim=0).numpy()
    scale = float(np.median(distances["val"]))
    rows = {name: {"latent_nn_ratio": float(np.median(distances[name]) / scale)}
            for name in draws}
    rows["vae"]["active_units"] = int((kl > ACTIVE_KL_NATS).sum())
    return PriorGap(distances, kl, rows)


def write_prior_gap(gap: PriorGap, path: Path) -> None:
    """The figure: histograms of the three distance sets (left), the mean KL of each latent
    dimension, largest first, with the active-unit line (right). PNG, written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    top = max(float(d.max()) for d in gap.distances.values())
    bins = np.linspace(0.0, top, 50)
    for name, label in SETS.items():
        d = gap.distances[name]
        left.hist(d, bins=bins, histtype="step", linewidth=1.6,
                  label=f"{label} (median {np.median(d):.2f})")
    left.set_xlabel("distance to the nearest training image's posterior mean")
    left.set_ylabel("latents")
    left.set_ylim(top=left.get_ylim()[1] * 1.45)  # room for the legend above the histograms
    left.legend(fontsize=7, loc="upper right")
    left.set_title("Where each prior draws, against the posterior")
    kl = np.sort(gap.kl_per_dim)[::-1]
    right.bar(np.arange(len(kl)), kl, color="tab:gray")
    right.axhline(ACTIVE_KL_NATS, color="tab:red", linewidth=1,
                  label=f"active: KL > {ACTIVE_KL_NATS} nats "
                        f"({int((kl > ACTIVE_KL_NATS).sum())} of {len(kl)})")
    right.set_yscale("log")
    right.set_xlabel("latent dimension (sorted)")
    right.set_ylabel("mean KL(q(z_d | x) || N(0, 1)), nats")
    right.legend(fontsize=7)
    right.set_title("Information per latent dimension")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
