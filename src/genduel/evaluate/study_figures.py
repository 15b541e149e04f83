"""The latent-space study figures of the evaluate stage: PNGs, captions and ``index.json``.

:func:`write_studies` draws every study of :mod:`genduel.evaluate.studies` that applies to the
trained models into ``eval/studies/`` and lists them, with a title and a caption that says exactly
what is shown, in ``index.json``; the report renders that list in order.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from genduel.data.pixels import save_grid, to_model_range
from genduel.data.splits import Split
from genduel.evaluate.studies import (
    ARITH_SOURCES,
    DPI,
    ENCODED_IMAGES,
    GRID_COLUMNS,
    INTERP_PAIRS,
    INTERP_STEPS,
    MANIFOLD_QUANTILES,
    MANIFOLD_SIZE,
    Model,
    choose_pairs,
    choose_sources,
    class_grid,
    class_latent_means,
    class_mean_arithmetic,
    encode_means,
    gan_interpolation,
    label_swap,
    scatter_coords,
    vae_interpolation,
    vae_manifold,
)
from genduel.io import atomic_write
from genduel.models.gan import Generator
from genduel.models.vae import VAE
from genduel.runtime import make_generator

log = logging.getLogger(__name__)

def plot_scatter(coords: np.ndarray, labels: np.ndarray, classes: list[str], axes: list[str],
                 title: str, path: Path) -> None:
    """Scatter of coords (N, 2) coloured by label (N,), legend with the class names."""
    import matplotlib

    matplotlib.use("Agg")
    # not genduel.report.figures: evaluate must not depend on the report
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for c, name in enumerate(classes):
        pts = coords[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.6, color=cmap(c % cmap.N), label=name)
    ax.set(xlabel=axes[0], ylabel=axes[1], title=title)
    ax.legend(markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    plt.close(fig)


def _t_values(steps: int) -> str:
    return f"t = 0, 1/{steps - 1}, ..., 1" if steps > 2 else "t = 0, 1"


def _class_list(classes: list[str]) -> str:
    return ", ".join(f"{i} {name}" for i, name in enumerate(classes))


def _class_grid_figure(model: Model, name: str, test: Split, out_dir: Path,
                       rng: torch.Generator) -> dict[str, str]:
    file = f"class_grid_{'vae' if isinstance(model, VAE) else 'gan'}.png"
    save_grid(class_grid(model, GRID_COLUMNS, rng), out_dir / file, nrow=GRID_COLUMNS)
    what = "decoder means" if isinstance(model, VAE) else "generator outputs"
    return {"file": file, "title": f"{name} samples, one row per class",
            "caption": f"{name} {what} with the label fixed per row, top to bottom: "
                       f"{_class_list(test.classes)}. Column j uses the same noise "
                       f"z_j ~ N(0, I) in every row, so it shows one latent code drawn as each "
                       f"class."}


def _vae_interp_figure(vae: VAE, name: str, test: Split, out_dir: Path,
                       cpu_rng: torch.Generator) -> dict[str, str]:
    a, b = choose_pairs(test.labels, min(INTERP_PAIRS, len(test)), cpu_rng)
    x_a, x_b = to_model_range(test.images[a]), to_model_range(test.images[b])
    mid = vae_interpolation(vae, x_a, test.labels[a], x_b, test.labels[b])  # (P, T, C, H, W)
    rows = torch.cat([x_a.unsqueeze(1), mid, x_b.unsqueeze(1)], dim=1)  # (P, T + 2, C, H, W)
    save_grid(rows.flatten(0, 1), out_dir / "interp_vae.png", nrow=INTERP_STEPS + 2)
    cond = (" The one-hot class code is interpolated the same way, from x_a's label to x_b's."
            if vae.conditional else "")
    return {"file": "interp_vae.png", "title": f"{name} interpolation through the encoder",
            "caption": f"Each row joins two randomly chosen test images x_a and x_b of different "
                       f"classes, shown real in the first and last columns. The {INTERP_STEPS} "
                       f"columns between are decoder means at z = (1 - t) mu(x_a) + t mu(x_b), "
                       f"{_t_values(INTERP_STEPS)}, with mu the posterior mean, so the second "
                       f"and second-to-last columns are reconstructions.{cond}"}


def _gan_interp_figure(generator: Generator, name: str, test: Split, out_dir: Path,
                       rng: torch.Generator) -> dict[str, str]:
    imgs = gan_interpolation(generator, INTERP_PAIRS, rng)  # (P, T, C, H, W)
    save_grid(imgs.flatten(0, 1), out_dir / "interp_gan.png", nrow=INTERP_STEPS)
    d = generator.latent_dim
    cond = (f" The label is fixed along each row: row i (from 0) uses class i mod "
            f"{test.num_classes} ({_class_list(test.classes)})." if generator.conditional else "")
    return {"file": "interp_gan.png", "title": f"{name} interpolation between noise vectors",
            "caption": f"Each row is G(z_t) along the spherical interpolation (slerp) between two "
                       f"noise vectors z_a, z_b ~ N(0, I_{d}), {_t_values(INTERP_STEPS)}; the "
                       f"first and last columns are G(z_a) and G(z_b). Slerp rather than a "
                       f"straight line because Gaussian noise concentrates near the sphere of "
                       f"radius sqrt({d}), which linear midpoints fall inside (White 2016).{cond}"}


def _arithmetic_figure(vae: VAE, name: str, test: Split, mu: torch.Tensor, out_dir: Path,
                       cpu_rng: torch.Generator) -> dict[str, str] | None:
    n = len(mu)
    present = torch.bincount(test.labels[:n], minlength=test.num_classes).nonzero()[:, 0].tolist()
    if not present:
        return None
    idx = choose_sources(test.labels[:n], present[:ARITH_SOURCES], cpu_rng)
    x, y = to_model_range(test.images[idx]), test.labels[idx]
    if vae.conditional:
        out = label_swap(vae, x, y, present)
        how = ("Column of target class b: decoder mean at z = mu(x, a) decoded with label b. "
               "Keeping z and swapping the label is the CVAE's own way to change the class "
               "and keep the style (its label carries the class), so class-mean arithmetic is "
               "not used.")
        title = f"{name} class transfer: same z, another label"
    else:
        out = class_mean_arithmetic(vae, x, y, class_latent_means(mu, test.labels[:n],
                                                                  test.num_classes), present)
        how = (f"Column of target class b: decoder mean at z = mu(x) - m_a + m_b, where m_c is "
               f"the average posterior mean of the class-c images among the first {n} test "
               f"images.")
        title = f"{name} latent arithmetic on class means"
    rows = torch.cat([x.unsqueeze(1), out], dim=1)  # (S, 1 + B, C, H, W)
    save_grid(rows.flatten(0, 1), out_dir / "arithmetic_vae.png", nrow=1 + len(present))
    names = ", ".join(test.classes[c] for c in present)
    sources = ", ".join(test.classes[c] for c in present[:ARITH_SOURCES])
    return {"file": "arithmetic_vae.png", "title": title,
            "caption": f"First column: a random test image x of class a, one row per source "
                       f"class ({sources}, top to bottom). {how} The column b = a is the "
                       f"reconstruction. Target columns left to right: {names}."}


def _manifold_figure(vae: VAE, name: str, test: Split, out_dir: Path) -> dict[str, str]:
    save_grid(vae_manifold(vae), out_dir / "manifold_vae.png", nrow=MANIFOLD_SIZE)
    lo, hi = MANIFOLD_QUANTILES
    cond = f" Every point is decoded with label 0 ({test.classes[0]})." if vae.conditional else ""
    return {"file": "manifold_vae.png", "title": f"{name} learned manifold (2-D latent)",
            "caption": f"Decoder means on a {MANIFOLD_SIZE} x {MANIFOLD_SIZE} grid of "
                       f"z = (Phi^-1(u1), Phi^-1(u2)), u evenly spaced from {lo} to {hi}, i.e. "
                       f"equal steps of prior probability covering the central "
                       f"{round(100 * (hi - lo))} % of each coordinate (Kingma & Welling 2013, "
                       f"Fig. 4); z1 grows left to right, z2 bottom to top.{cond}"}


def _scatter_figure(vae: VAE, name: str, test: Split, mu: torch.Tensor,
                    out_dir: Path) -> dict[str, str]:
    coords, ratio = scatter_coords(mu)
    if ratio is None:
        axes = ["z1", "z2"]
        how = "their two latent coordinates"
    else:
        axes = [f"PC{k + 1} ({100 * r:.1f} % of variance)" for k, r in enumerate(ratio)]
        how = (f"their first two principal components (of {vae.latent_dim} latent dimensions), "
               f"which explain {100 * ratio[0]:.1f} % and {100 * ratio[1]:.1f} % of the variance")
    title = f"{name} posterior means of test images"
    plot_scatter(coords, test.labels[:len(mu)].numpy(), test.classes, axes, title,
                 out_dir / "latent_scatter_vae.png")
    cond = (" The CVAE encoder also sees the label, so its z need not separate the classes."
            if vae.conditional else "")
    return {"file": "latent_scatter_vae.png", "title": title,
            "caption": f"Posterior means mu(x) of the first {len(mu)} test images, coloured by "
                       f"class, plotted on {how}.{cond}"}


def write_studies(vae: VAE, generator: Generator, test: Split, out_dir: Path, *, seed: int,
                  device: torch.device) -> list[dict[str, str]]:
    """Write the latent-space figures and ``out_dir/index.json``; return the index entries.

    Figures, in order: per-class sample grids of the conditional models, VAE interpolation
    through the encoder, GAN slerp interpolation, VAE latent arithmetic (label swap for a CVAE),
    the learned manifold (latent_dim 2 only) and the posterior-mean scatter. Each study draws
    from its own generator seeded ``seed + k``, so the figures do not depend on one another.

    Returns:
        ``[{"file": "<name>.png", "title": ..., "caption": ...}, ...]``, as in index.json.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vae, generator = vae.to(device), generator.to(device)
    vae_name = "CVAE" if vae.conditional else "VAE"
    gan_name = "Conditional GAN" if generator.conditional else "GAN"
    figures: list[dict[str, str] | None] = []
    if vae.conditional:
        figures.append(_class_grid_figure(vae, vae_name, test, out_dir,
                                          make_generator(seed, device)))
    if generator.conditional:
        figures.append(_class_grid_figure(generator, gan_name, test, out_dir,
                                          make_generator(seed + 1, device)))
    figures.append(_vae_interp_figure(vae, vae_name, test, out_dir, make_generator(seed + 2)))
    figures.append(_gan_interp_figure(generator, gan_name, test, out_dir,
                                      make_generator(seed + 3, device)))
    n = min(ENCODED_IMAGES, len(test))
    mu = encode_means(vae, test.images[:n], test.labels[:n])  # (n, D)
    figures.append(_arithmetic_figure(vae, vae_name, test, mu, out_dir, make_generator(seed + 4)))
    if vae.latent_dim == 2:
        figures.append(_manifold_figure(vae, vae_name, test, out_dir))
    figures.append(_scatter_figure(vae, vae_name, test, mu, out_dir))
    index = [f for f in figures if f is not None]
    atomic_write(out_dir / "index.json", (json.dumps({"figures": index}, indent=2) + "\n").encode())
    log.info("wrote %d latent-space figures to %s", len(index), out_dir)
    return index
