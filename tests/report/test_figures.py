"""Figures: grids recognised by their geometry and cut into labelled rows, plots readable (whole
epochs on epoch axes, the KL term on an axis of its own)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from genduel.report import figures, plots
from genduel.report.figures import grid_shape

TILE = 28  # the fixture manifest's image size


def test_grid_shape_recognises_save_grid_geometry_only():
    assert grid_shape((242, 242), 28) == (8, 8)  # 64 images, 2 px padding
    assert grid_shape((302, 32), 28) == (1, 10)
    assert grid_shape((640, 360), 28) is None  # a matplotlib plot
    assert grid_shape((2, 2), 28) is None


def _pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def test_crop_rows_returns_exactly_those_rows_with_their_padding(tmp_path, grid_png):
    grid_png(tmp_path / "g.png", rows=4, cols=3, seed=7)
    data = (tmp_path / "g.png").read_bytes()
    whole = _pixels(data)
    row1 = _pixels(figures._crop_rows(data, TILE, 1, 2))  # rows 1 and 2
    step = TILE + 2
    assert row1.shape == (2 * step + 2, 3 * step + 2)
    np.testing.assert_array_equal(row1, whole[step:3 * step + 2])


def test_draw_all_cuts_the_epoch_strip_and_the_class_rows(tmp_path, fake_run):
    inp = fake_run(tmp_path, extras=True)
    figs = figures.draw_all(inp, eval_dir=tmp_path / "eval", artifacts_dir=tmp_path / "artifacts",
                            data_dir=tmp_path / "data", fig_dir=tmp_path / "out" / "figures")
    assert [label for label, _ in figs.rows["epochs_gan"]] == ["epoch 1", "epoch 2"]
    step, out = TILE + 2, tmp_path / "out"
    first = _pixels((out / figs.rows["epochs_vae"][1][1]).read_bytes())
    grids = tmp_path / "artifacts" / "train_vae" / "grids"
    saved = _pixels((grids / "samples_epoch002.png").read_bytes())
    np.testing.assert_array_equal(first, saved[:figures.STRIP_ROWS * step + 2])
    classes = figs.rows["classes_vae"]
    assert [label for label, _ in classes] == list("abcdefghij")
    assert _pixels((out / classes[3][1]).read_bytes()).shape == (step + 2, 10 * step + 2)
    assert "classes_gan" not in figs.rows  # no class grid for the GAN
    assert figs["vae"].grid and figs["studies/interp_vae.png"].grid
    assert not figs["vae_curves"].grid and not figs["class_histograms"].grid


def test_the_strip_keeps_at_most_eight_epochs_first_and_last_included(tmp_path, grid_png):
    for epoch in range(1, 13):
        grid_png(tmp_path / "train" / "grids" / f"samples_epoch{epoch:03d}.png", 8, 8, epoch)
    rows = figures._epoch_strip(tmp_path / "train", TILE, tmp_path / "figs", "epochs_x")
    labels = [label for label, _ in rows]
    assert len(labels) == figures.STRIP_EPOCHS and labels[0] == "epoch 1"
    assert labels[-1] == "epoch 12"


@pytest.fixture
def kept_figure(monkeypatch):
    """The figure a plot function drew (plt.close made a no-op while it runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.setattr(plt, "close", lambda *a: None)
    yield lambda: plt.gcf()
    monkeypatch.undo()
    plt.close("all")


def test_epoch_axes_tick_at_whole_epochs(tmp_path, kept_figure):
    (tmp_path / "epochs.csv").write_text("epoch,val_elbo_nats\n1,-2100\n2,-2000\n3,-1950\n")
    plots.plot_vae_validation(tmp_path / "epochs.csv", tmp_path / "v.png")
    ax = kept_figure().axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_the_kl_term_gets_its_own_axis(tmp_path, kept_figure):
    (tmp_path / "h.csv").write_text("step,elbo_nats,recon_nats,kl_nats\n"
                                    + "".join(f"{s},{-2900 + s},{2880 - s},{20 + s / 100}\n"
                                              for s in range(1, 50)))
    plots.plot_vae_terms(tmp_path / "h.csv", tmp_path / "t.png")
    top, bottom = kept_figure().axes
    assert top.get_ylim()[0] > 1000  # -ELBO and reconstruction, both ~2900 nats
    lo, hi = bottom.get_ylim()
    assert 0 < lo < 21 and 20 < hi < 25  # the KL curve fills its own axis
    assert (tmp_path / "t.png").stat().st_size > 0
