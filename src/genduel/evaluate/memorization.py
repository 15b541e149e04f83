"""The memorization check of every sampler: NN distances to the training set, in pixels and in
judge features, against those of held-out test images (:mod:`genduel.metrics.memorization`).

For each row the first ``eval.memorization_samples`` images of draw 0 are matched to their
nearest image among *all* training images; the same number of test images (seeded subset) gives
the reference distances. Keys: ``nn_ratio_pixels``, ``copy_share_pixels`` (pixels in [0, 1]) and
``nn_ratio_features``, ``copy_share_features`` (judge penultimate features). The figure
``memorization_<row>.png`` shows 16 samples (odd rows) above their nearest training images in
pixels (even rows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genduel.data.pixels import save_grid
from genduel.data.splits import Split
from genduel.evaluate.samples import FeatureSet, embed, subset
from genduel.metrics.memorization import memorization_stats, nearest_neighbours
from genduel.runtime import progress

#: Samples (and their nearest training images) shown per figure.
FIGURE_PAIRS = 16


def _pixels(images: torch.Tensor) -> np.ndarray:
    return images.flatten(1).numpy().astype(np.float32) / 255.0  # (N, D) in [0, 1]


def memorization_rows(samples: dict[str, tuple[torch.Tensor, np.ndarray]], train: Split,
                      test: Split, *, judge: torch.nn.Module, n: int, seed: int, batch_size: int,
                      device: torch.device, out_dir: Path) -> dict[str, dict[str, float]]:
    """The four memorization keys of each row of ``samples``: row -> (uint8 images (N, C, H, W),
    their judge features (N, F), as the sample metrics computed them).

    Writes ``out_dir/memorization_<row>.png`` for each row.
    """
    train_px = _pixels(train.images)
    train_fs: FeatureSet = embed(judge, train.images, batch_size, device,
                                 desc="judge features (train)")
    test_images = subset(test, n, seed)
    test_px_nn, _ = nearest_neighbours(_pixels(test_images), train_px)
    test_ft_nn, _ = nearest_neighbours(embed(judge, test_images, batch_size, device).features,
                                       train_fs.features)
    rows = {}
    for name, (images, features) in progress(samples.items(), desc="memorization",
                                             total=len(samples), unit="row"):
        images = images[:n]
        px_nn, px_idx = nearest_neighbours(_pixels(images), train_px)
        ft_nn, _ = nearest_neighbours(features[:n], train_fs.features)
        px, ft = memorization_stats(px_nn, test_px_nn), memorization_stats(ft_nn, test_ft_nn)
        rows[name] = {"nn_ratio_pixels": px["nn_ratio"], "copy_share_pixels": px["copy_share"],
                      "nn_ratio_features": ft["nn_ratio"],
                      "copy_share_features": ft["copy_share"]}
        cols = min(8, len(images))
        k = min(FIGURE_PAIRS, len(images)) // cols * cols
        pairs = torch.stack([images[:k], train.images[torch.from_numpy(px_idx[:k])]])
        # rows of 8: samples 0-7, their neighbours, samples 8-15, their neighbours
        grid = pairs.view(2, -1, cols, *images.shape[1:]).transpose(0, 1).reshape(
            -1, *images.shape[1:])
        save_grid(grid, out_dir / f"memorization_{name}.png", nrow=cols)
    return rows
