"""Every figure of the report, copied, cut or drawn into ``<out>/figures`` by :func:`draw_all`.

Sample grids come from the prepare, train and evaluate stages (``save_grid``: tiles of the
dataset's image size with 2 px of padding) and are copied; :func:`draw_all` also cuts them into
labelled rows: the first rows of the fixed-noise grid after each training epoch (a strip that
shows how the samples formed), and one row per class of a conditional model's class grid. Plots
are drawn by :mod:`genduel.report.plots`. Latent-study figures listed in
``eval/studies/index.json`` are copied under flat names (``studies_<file>``).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from genduel.io import atomic_write
from genduel.metrics.table import METRICS
from genduel.report import plots
from genduel.report.document import png_size
from genduel.report.inputs import BASELINES, COLUMNS, SAMPLERS, ReportInputs
from genduel.report.verdict import PER_SEED

PAD = 2  #: save_grid's padding between tiles, in pixels
STRIP_ROWS = 2  #: rows of each epoch's grid shown in the training strip
STRIP_EPOCHS = 8  #: at most this many epochs in the strip (evenly spaced, the last included)
_EPOCH_GRID = re.compile(r"^samples_epoch(\d+)\.png$")
#: The metrics of the seeds figure ("How sure is the verdict?"), and the rows it shows per seed.
SEED_STRIP_KEYS = ("fid", "kid", "precision", "recall", "density", "coverage", "bits_per_dim")
SEED_STRIP_MODELS = {"vae": "VAE\nN(0, I)", "vae_prior": "VAE\nfitted prior", "gan": "GAN"}


class Image(NamedTuple):
    path: str  # relative to the report directory
    grid: bool  # a grid of small images (shown enlarged with square pixels), not a plot


@dataclass(frozen=True)
class Figures:
    """What :func:`draw_all` wrote: single images by name, and labelled rows by name
    (``epochs_<model>``: label ``epoch N``; ``classes_<model>``: a class name)."""

    images: dict[str, Image] = field(default_factory=dict)
    rows: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.images

    def __getitem__(self, name: str) -> Image:
        return self.images[name]


def grid_shape(size: tuple[int, int], tile: int) -> tuple[int, int] | None:
    """(rows, columns) of a ``save_grid`` image of ``tile`` px tiles; None when ``size``
    (width, height) is not such a grid (e.g. a matplotlib plot)."""
    step = tile + PAD
    w, h = size
    if (w - PAD) % step or (h - PAD) % step or w < step + PAD or h < step + PAD:
        return None
    return (h - PAD) // step, (w - PAD) // step


def _crop_rows(data: bytes, tile: int, first: int, count: int) -> bytes:
    """PNG of grid rows ``first .. first + count - 1`` (with their padding)."""
    from PIL import Image as PILImage

    step = tile + PAD
    with PILImage.open(io.BytesIO(data)) as img:
        part = img.crop((0, first * step, img.width, (first + count) * step + PAD))
        buf = io.BytesIO()
        part.save(buf, format="PNG")
    return buf.getvalue()


def _tile(inp: ReportInputs) -> int | None:
    shape = inp.manifest.get("image_shape")
    return int(shape[-1]) if shape else None


def _epoch_strip(train_dir: Path, tile: int, fig_dir: Path, name: str) -> list[tuple[str, str]]:
    """The first :data:`STRIP_ROWS` rows of each saved epoch grid, as (label, path) rows."""
    grids = sorted((int(m[1]), p) for p in (train_dir / "grids").glob("samples_epoch*.png")
                   if (m := _EPOCH_GRID.match(p.name)))
    if len(grids) > STRIP_EPOCHS:
        keep = np.unique(np.linspace(0, len(grids) - 1, STRIP_EPOCHS).round().astype(int))
        grids = [grids[i] for i in keep]
    rows = []
    for epoch, path in grids:
        data = path.read_bytes()
        shape = grid_shape(png_size(data) or (0, 0), tile)
        if shape is None:
            continue
        file = f"{name}_{epoch:03d}.png"
        atomic_write(fig_dir / file, _crop_rows(data, tile, 0, min(STRIP_ROWS, shape[0])))
        rows.append((f"epoch {epoch}", f"figures/{file}"))
    return rows


def _class_rows(data: bytes, tile: int, classes: list[str], fig_dir: Path,
                name: str) -> list[tuple[str, str]]:
    """One (class name, path) row per row of a class grid; [] when it has not one per class."""
    shape = grid_shape(png_size(data) or (0, 0), tile)
    if shape is None or shape[0] != len(classes):
        return []
    rows = []
    for k, label in enumerate(classes):
        file = f"{name}_{k:02d}.png"
        atomic_write(fig_dir / file, _crop_rows(data, tile, k, 1))
        rows.append((label, f"figures/{file}"))
    return rows


def _copy(src: Path, fig_dir: Path, name: str, tile: int | None) -> Image:
    data = src.read_bytes()
    atomic_write(fig_dir / name, data)
    size = png_size(data)
    return Image(f"figures/{name}", tile is not None and size is not None
                 and grid_shape(size, tile) is not None)


def _draw_plots(inp: ReportInputs, *, eval_dir: Path, artifacts_dir: Path,
                fig_dir: Path) -> dict[str, Image]:
    vae_dir, gan_dir = artifacts_dir / "train_vae", artifacts_dir / "train_gan"
    plots.plot_vae_terms(vae_dir / "history.csv", fig_dir / "vae_curves.png")
    plots.plot_vae_validation(vae_dir / "epochs.csv", fig_dir / "vae_validation.png")
    plots.plot_gan_losses(gan_dir / "history.csv", fig_dir / "gan_curves.png")
    plots.plot_gan_outputs(gan_dir / "history.csv", fig_dir / "gan_outputs.png")
    logits = {COLUMNS[m]: np.load(eval_dir / f"features_{m}.npz")["logits"] for m in SAMPLERS}
    logits[COLUMNS["real"]] = np.load(eval_dir / "features_real.npz")["test_logits"]
    plots.plot_class_histograms(logits, inp.classes, fig_dir / "class_histograms.png")
    names = ["vae_curves", "vae_validation", "gan_curves", "gan_outputs", "class_histograms",
             "seeds"]
    keys = [k for k in SEED_STRIP_KEYS if any(k in inp.evals.get(m, {}) for m in SEED_STRIP_MODELS)]
    plots.plot_seed_strips(inp.evals, keys, SEED_STRIP_MODELS,
                           {m: COLUMNS[m] for m in ("real", *BASELINES)},
                           {k: f"{METRICS[k].label} ({'↑' if METRICS[k].higher_is_better else '↓'})"
                            for k in keys if k in METRICS},
                           fig_dir / "seeds.png", per_seed=PER_SEED)
    if inp.diagnostics:
        plots.plot_gan_accuracy(inp.diagnostics, fig_dir / "gan_accuracy.png",
                                "Critic accuracy" if inp.gan_loss == "wgan_gp" else "D accuracy")
        plots.plot_gan_coverage(inp.diagnostics, fig_dir / "gan_coverage.png", len(inp.classes))
        names += ["gan_accuracy", "gan_coverage"]
    return {n: Image(f"figures/{n}.png", False) for n in names}


def draw_all(inp: ReportInputs, *, eval_dir: Path, artifacts_dir: Path, data_dir: Path,
             fig_dir: Path) -> Figures:
    """Copy the grids and study figures, cut the row strips and draw the plots into ``fig_dir``.

    Returns:
        images ``real``, ``vae``, ``gan``, ``recon``, ``memorization_<model>`` (where evaluate
        drew it), the plots of :func:`_draw_plots` and ``studies/<file>`` per study; rows
        ``epochs_<model>`` (where training saved epoch grids) and ``classes_<model>`` (where a
        study drew one row per class).
    """
    fig_dir.mkdir(parents=True, exist_ok=True)
    tile = _tile(inp)
    copies = {"real": data_dir / "real_grid.png",
              **{m: eval_dir / f"samples_{m}.png" for m in SAMPLERS},
              "recon": eval_dir / "reconstructions_vae.png",
              "prior_gap": eval_dir / "prior_gap.png"}
    for name in SAMPLERS:  # the report shows every sampler's figures
        src = eval_dir / f"memorization_{name}.png"
        if src.is_file():  # absent when evaluated before the memorization check existed
            copies[f"memorization_{name}"] = src
    out = Figures({name: _copy(src, fig_dir, f"{name}.png", tile) for name, src in copies.items()})
    out.images.update(_draw_plots(inp, eval_dir=eval_dir, artifacts_dir=artifacts_dir,
                                  fig_dir=fig_dir))
    for entry in inp.studies:  # load_inputs checked that each file exists
        name = "studies_" + entry["file"].replace("/", "_")
        out.images[f"studies/{entry['file']}"] = _copy(inp.studies_dir / entry["file"], fig_dir,
                                                       name, tile)
    if tile is None:
        return out
    for model in ("vae", "gan"):
        strip = _epoch_strip(artifacts_dir / f"train_{model}", tile, fig_dir, f"epochs_{model}")
        if strip:
            out.rows[f"epochs_{model}"] = strip
        class_grid = inp.studies_dir / f"class_grid_{model}.png"
        if any(e["file"] == class_grid.name for e in inp.studies):
            rows = _class_rows(class_grid.read_bytes(), tile, inp.classes, fig_dir,
                               f"classes_{model}")
            if rows:
                out.rows[f"classes_{model}"] = rows
    return out
