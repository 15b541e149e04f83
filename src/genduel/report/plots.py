"""The report's plots, drawn with matplotlib (Agg backend, imported inside the functions).

One panel per figure, 520 px wide with 11-13 pt text, so two fit side by side on a desktop page
and the text stays readable when a phone scales the image to its width (about 0.8 ×); epoch
axes tick at whole epochs only; quantities of different scale (reconstruction ~2000 nats, KL ~20
nats) get axes of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from genduel.evaluate import gan_diagnostics as diagnostics
from genduel.io import atomic_write

DPI = 100
WIDTH_IN = 5.2  # 520 px at DPI: two side by side in the 1100 px page, ~0.8 x on a phone
STYLE = {"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": 11,
         "xtick.labelsize": 11, "ytick.labelsize": 11, "axes.spines.top": False,
         "axes.spines.right": False}


@contextmanager
def _figure(path: Path, rows: int = 1, height_in: float = 3.4):
    """Yields (fig, axes) in the report style; saves the PNG to ``path`` and closes on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, 1, figsize=(WIDTH_IN, height_in * rows),
                                 sharex=rows > 1, squeeze=False)
        try:
            yield fig, list(axes[:, 0])
            fig.tight_layout()
            atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
        finally:
            plt.close(fig)


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _smooth(values: np.ndarray, window: int = 20) -> np.ndarray:
    """Trailing moving average (the raw per-step curves are noisy)."""
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_vae_terms(history_csv: Path, path: Path) -> None:
    """Top: -ELBO and the reconstruction term per step. Bottom: the KL term on its own axis
    (two orders of magnitude smaller, it would be a flat line beside them)."""
    import pandas as pd

    hist = pd.read_csv(history_csv)
    with _figure(path, rows=2, height_in=2.5) as (_, (top, bottom)):
        for col, label, sign in (("elbo_nats", "−ELBO (the loss)", -1),
                                 ("recon_nats", "reconstruction −log p(x∣z)", 1)):
            if col in hist:
                top.plot(hist["step"], sign * _smooth(hist[col].to_numpy()), label=label)
        top.set(ylabel="nats / image", title="VAE training terms (smoothed)")
        top.legend()
        if "kl_nats" in hist:
            bottom.plot(hist["step"], _smooth(hist["kl_nats"].to_numpy()), color="tab:green")
        else:
            bottom.text(0.5, 0.5, "no KL logged", ha="center", va="center",
                        transform=bottom.transAxes)
        bottom.set(xlabel="step", ylabel="KL (nats)")


def plot_vae_validation(epochs_csv: Path, path: Path) -> None:
    """Validation ELBO per epoch."""
    import pandas as pd

    epochs = pd.read_csv(epochs_csv)
    with _figure(path) as (_, (ax,)):
        ax.plot(epochs["epoch"], epochs["val_elbo_nats"], marker="o")
        ax.set(xlabel="epoch", ylabel="nats / image", title="VAE validation ELBO (higher: better)")
        _integer_epochs(ax)


def plot_gan_losses(history_csv: Path, path: Path) -> None:
    """D and G losses per generator step."""
    import pandas as pd

    hist = pd.read_csv(history_csv)
    with _figure(path) as (_, (ax,)):
        for col in ("d_loss", "g_loss"):
            ax.plot(hist["step"], _smooth(hist[col].to_numpy()), label=col)
        ax.set(xlabel="generator step", ylabel="loss", title="GAN losses (smoothed)")
        ax.legend()


def plot_gan_outputs(history_csv: Path, path: Path) -> None:
    """Mean D(x) and D(G(z)) per step; critic scores (values outside [0, 1]) get a free axis."""
    import pandas as pd

    hist = pd.read_csv(history_csv)
    values = hist[["d_real", "d_fake"]].to_numpy()
    critic = bool(((values < 0) | (values > 1)).any())
    with _figure(path) as (_, (ax,)):
        for col, label in (("d_real", "f(x)" if critic else "D(x)"),
                           ("d_fake", "f(G(z))" if critic else "D(G(z))")):
            ax.plot(hist["step"], _smooth(hist[col].to_numpy()), label=label)
        if critic:
            ax.set(ylabel="critic score", title="Critic scores, real vs fake")
        else:
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
            ax.set(ylabel="probability", ylim=(0, 1), title="D outputs (0.5 = equilibrium)")
        ax.set(xlabel="generator step")
        ax.legend()


def plot_class_histograms(logits: dict[str, np.ndarray], classes: Sequence[str],
                          path: Path) -> None:
    """Fraction of images per judge-predicted class, one bar group per source."""
    k = len(classes)
    with _figure(path, height_in=4.0) as (_, (ax,)):
        width = 0.8 / max(1, len(logits))
        for i, (name, lg) in enumerate(logits.items()):
            counts = np.bincount(lg.argmax(axis=1), minlength=k) / len(lg)
            ax.bar(np.arange(k) + i * width, counts, width=width, label=name)
        ax.axhline(1 / k, color="grey", lw=0.8, ls="--", label="uniform")
        ax.set_xticks(np.arange(k) + width * (len(logits) - 1) / 2, classes, rotation=35,
                      ha="right")
        ax.set(ylabel="fraction of images")
        # above the axes, where no bar can hide under it
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)


def _column(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([diagnostics.number(r, key) for r in rows], dtype=np.float64)


def plot_gan_accuracy(rows: Sequence[dict[str, Any]], path: Path, label: str) -> None:
    """Discriminator (critic) accuracy per epoch, with chance (0.5) and the saturation line."""
    with _figure(path) as (_, (ax,)):
        ax.plot(_column(rows, "epoch"), _column(rows, "d_acc"), marker="o", label="accuracy")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="0.5 (chance)")
        ax.axhline(diagnostics.SATURATED_ACCURACY, color="tab:red", lw=0.8, ls=":",
                   label=f"{diagnostics.SATURATED_ACCURACY} (saturated)")
        ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02),
               title=f"{label}, real vs fake")
        ax.legend(loc="lower right")
        _integer_epochs(ax)


def plot_gan_coverage(rows: Sequence[dict[str, Any]], path: Path, num_classes: int) -> None:
    """Classes covered and well covered by each epoch's saved samples; a note when none."""
    covered, well = _column(rows, "classes_covered"), _column(rows, "classes_well_covered")
    epochs = _column(rows, "epoch")
    with _figure(path) as (_, (ax,)):
        ax.set(xlabel="epoch", ylabel="classes", title="Judge classes in each epoch's samples")
        _integer_epochs(ax)
        if not np.isfinite(well).any():
            ax.text(0.5, 0.5, "no per-epoch samples saved", ha="center", va="center",
                    transform=ax.transAxes)
            return
        ax.plot(epochs, covered, marker="s", label="covered (≥ 1 sample)")
        ax.plot(epochs, well, marker="o", label="well covered")
        ax.axhline(num_classes, color="grey", lw=0.8, ls="--", label=f"all {num_classes}")
        ax.set_ylim(0, num_classes + 0.5)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="lower right")


def plot_seed_strips(evals: dict[str, dict[str, Any]], keys: Sequence[str],
                     models: dict[str, str], lines: dict[str, str], labels: dict[str, str],
                     path: Path, per_seed: str = "per_seed") -> None:
    """One panel per metric of ``keys``: each model's value per training seed (a dot per seed,
    spread sideways so equal values stay visible) and their mean (a bar), with the rows of
    ``lines`` (real data, the baselines) as horizontal lines.

    Args:
        evals: the report's rows; a model row's per-seed values are ``row[per_seed][key]``
            (its ``key`` alone when it has none: one seed).
        keys: the metrics, one panel each (rows without a key are left out of its panel).
        models: row -> x-axis label; ``lines``: row -> legend label; ``labels``: key -> title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2
    rows = -(-len(keys) // cols)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(2 * WIDTH_IN, 2.9 * rows), squeeze=False)
        try:
            for ax, key in zip(axes.flat, keys, strict=False):
                names = [m for m in models if key in evals.get(m, {})]
                for x, model in enumerate(names):
                    row = evals[model]
                    values = np.asarray((row.get(per_seed) or {}).get(key) or [row[key]], float)
                    spread = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
                    ax.plot(x + np.asarray(spread), values, "o", color=colours[x % len(colours)],
                            alpha=0.8, markersize=6)
                    ax.plot([x - 0.25, x + 0.25], [values.mean()] * 2, "-", color="black", lw=1.5)
                for i, (model, label) in enumerate(lines.items()):
                    value = evals.get(model, {}).get(key)
                    if isinstance(value, (int, float)):
                        ax.axhline(value, ls=("--", ":", "-.")[i % 3], color="grey", lw=1,
                                   label=label)
                ax.set_xticks(range(len(names)), [models[m] for m in names])
                ax.set_xlim(-0.6, len(names) - 0.4)
                ax.set_title(labels.get(key, key))
            for ax in list(axes.flat)[len(keys):]:
                ax.axis("off")
            handles, names = max((ax.get_legend_handles_labels() for ax in axes.flat),
                                 key=lambda hl: len(hl[0]))
            fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 1))
            if handles:  # one legend for every panel, below them
                fig.legend(handles, names, loc="lower center", ncol=len(handles),
                           frameon=False)
            atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
        finally:
            plt.close(fig)
