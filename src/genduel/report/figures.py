"""Every figure of the report, drawn or copied into ``<out>/figures`` by :func:`draw_all`.

Sample grids come from the evaluate and prepare stages and are copied; training curves, class
histograms and the GAN diagnostics plot are drawn here with matplotlib (Agg backend, imported
inside the functions that draw, so importing the report stays fast); latent-study figures listed
in ``eval/studies/index.json`` are copied under flat names (``studies_<file>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genduel.evaluate import gan_diagnostics as diagnostics
from genduel.io import atomic_write
from genduel.report.inputs import COLUMNS, ReportInputs


def draw_all(inp: ReportInputs, *, eval_dir: Path, artifacts_dir: Path, data_dir: Path,
             fig_dir: Path) -> dict[str, str]:
    """Copy the grids and study figures and draw the plots into ``fig_dir``.

    Returns:
        figure name -> path relative to the report directory: ``real``, ``vae``, ``gan``,
        ``recon``, ``memorization_<row>`` (where evaluate drew it), ``vae_curves``,
        ``gan_curves``, ``class_histograms``, ``gan_diagnostics`` (when
        ``inp`` has diagnostics) and ``studies/<file>`` per study.
    """
    fig_dir.mkdir(parents=True, exist_ok=True)
    copies = {"real": data_dir / "real_grid.png", "vae": eval_dir / "samples_vae.png",
              "gan": eval_dir / "samples_gan.png", "recon": eval_dir / "reconstructions_vae.png"}
    out = {}
    for name in ("vae", "gan"):  # the report shows the two models' figures
        copies[f"memorization_{name}"] = eval_dir / f"memorization_{name}.png"
    for name, src in copies.items():
        if name.startswith("memorization_") and not src.is_file():
            continue  # evaluated before the memorization check existed
        atomic_write(fig_dir / f"{name}.png", src.read_bytes())
        out[name] = f"figures/{name}.png"
    plot_vae_curves(artifacts_dir / "train_vae" / "history.csv",
                    artifacts_dir / "train_vae" / "epochs.csv", fig_dir / "vae_curves.png")
    plot_gan_curves(artifacts_dir / "train_gan" / "history.csv", fig_dir / "gan_curves.png")
    logits = {COLUMNS[m]: np.load(eval_dir / f"features_{m}.npz")["logits"]
              for m in ("vae", "gan")}
    logits[COLUMNS["real"]] = np.load(eval_dir / "features_real.npz")["test_logits"]
    plot_class_histograms(logits, inp.classes, fig_dir / "class_histograms.png")
    out.update({n: f"figures/{n}.png" for n in ("vae_curves", "gan_curves", "class_histograms")})
    if inp.diagnostics:
        plot_gan_diagnostics(inp.diagnostics, fig_dir / "gan_diagnostics.png", len(inp.classes))
        out["gan_diagnostics"] = "figures/gan_diagnostics.png"
    for entry in inp.studies:  # load_inputs checked that each file exists
        name = "studies_" + entry["file"].replace("/", "_")
        atomic_write(fig_dir / name, (inp.studies_dir / entry["file"]).read_bytes())
        out[f"studies/{entry['file']}"] = f"figures/{name}"
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _smooth(values: np.ndarray, window: int = 20) -> np.ndarray:
    """Trailing moving average (the raw per-step curves are noisy)."""
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_vae_curves(history_csv: Path, epochs_csv: Path, path: Path) -> None:
    """Left: per-step -ELBO terms (nats). Right: validation ELBO per epoch."""
    import pandas as pd

    plt = _pyplot()
    hist, epochs = pd.read_csv(history_csv), pd.read_csv(epochs_csv)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for col, label in (("recon_nats", "reconstruction -log p(x|z)"), ("kl_nats", "KL"),
                       ("elbo_nats", "ELBO")):
        if col in hist:
            ax1.plot(hist["step"], _smooth(hist[col].to_numpy()), label=label)
    ax1.set(xlabel="step", ylabel="nats per image", title="VAE training terms (smoothed)")
    ax1.legend()
    ax2.plot(epochs["epoch"], epochs["val_elbo_nats"], marker="o")
    ax2.set(xlabel="epoch", ylabel="nats per image", title="VAE validation ELBO (higher is better)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def plot_gan_curves(history_csv: Path, path: Path) -> None:
    """Left: D and G losses per step. Right: mean D(x) and D(G(z)) per step."""
    import pandas as pd

    plt = _pyplot()
    hist = pd.read_csv(history_csv)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for col in ("d_loss", "g_loss"):
        ax1.plot(hist["step"], _smooth(hist[col].to_numpy()), label=col)
    ax1.set(xlabel="generator step", ylabel="loss", title="GAN losses (smoothed)")
    ax1.legend()
    for col, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))")):
        ax2.plot(hist["step"], _smooth(hist[col].to_numpy()), label=label)
    ax2.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax2.set(xlabel="generator step", ylabel="probability", ylim=(0, 1),
            title="Discriminator outputs (0.5 = equilibrium)")
    ax2.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def plot_class_histograms(logits: dict[str, np.ndarray], classes: Sequence[str],
                          path: Path) -> None:
    """Fraction of images per judge-predicted class, one bar group per source."""
    plt = _pyplot()
    k = len(classes)
    fig, ax = plt.subplots(figsize=(11, 3.8))
    width = 0.8 / max(1, len(logits))
    for i, (name, lg) in enumerate(logits.items()):
        counts = np.bincount(lg.argmax(axis=1), minlength=k) / len(lg)
        ax.bar(np.arange(k) + i * width, counts, width=width, label=name)
    ax.axhline(1 / k, color="grey", lw=0.8, ls="--", label="uniform")
    ax.set_xticks(np.arange(k) + width * (len(logits) - 1) / 2, classes, rotation=30, ha="right")
    ax.set(ylabel="fraction of images", title="Judge-predicted class of each image")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def plot_gan_diagnostics(rows_or_csv: Sequence[dict[str, Any]] | Path | str, path: Path,
                         num_classes: int | None = None) -> None:
    """Per-epoch GAN diagnostics (rows of :func:`genduel.evaluate.gan_diagnostics.epoch_table`
    or its CSV).

    Left: discriminator (critic) accuracy on real vs fake, with the equilibrium 0.5 and the
    saturation threshold. Right: classes covered and well covered by the epoch's samples
    (absent when no per-epoch samples were saved), with ``num_classes`` as a reference line.
    """
    rows = (diagnostics.read_table(Path(rows_or_csv)) if isinstance(rows_or_csv, str | Path)
            else list(rows_or_csv))

    def col(key: str) -> np.ndarray:
        return np.array([diagnostics.number(r, key) for r in rows], dtype=np.float64)

    plt = _pyplot()
    epochs = col("epoch")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax1.plot(epochs, col("d_acc"), marker="o", label="accuracy")
    ax1.axhline(0.5, color="grey", lw=0.8, ls="--", label="0.5 (chance / equilibrium)")
    ax1.axhline(diagnostics.SATURATED_ACCURACY, color="tab:red", lw=0.8, ls=":",
                label=f"{diagnostics.SATURATED_ACCURACY} (saturated)")
    ax1.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02),
            title="Discriminator accuracy, real vs fake")
    ax1.legend(loc="lower right")
    _coverage_panel(ax2, epochs, col("classes_covered"), col("classes_well_covered"),
                    num_classes)
    for ax in (ax1, ax2):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _coverage_panel(ax, epochs: np.ndarray, covered: np.ndarray, well: np.ndarray,
                    num_classes: int | None) -> None:
    """Classes covered and well covered per epoch; a note when no epoch has samples."""
    ax.set(xlabel="epoch", ylabel="classes", title="Judge classes in each epoch's samples")
    if not np.isfinite(well).any():
        ax.text(0.5, 0.5, "no per-epoch samples saved", ha="center", va="center",
                transform=ax.transAxes)
        return
    ax.plot(epochs, covered, marker="s", label="covered (>= 1 sample)")
    ax.plot(epochs, well, marker="o", label="well covered")
    if num_classes:
        ax.axhline(num_classes, color="grey", lw=0.8, ls="--", label=f"all {num_classes}")
    ax.set_ylim(0, (num_classes or np.nanmax(covered)) + 0.5)
    ax.legend(loc="lower right")
