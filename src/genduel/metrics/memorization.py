"""Memorization check: are a model's samples closer to the training set than new data is?

A model that copies training images gets excellent sample metrics and has learned nothing about
new data. The check compares two sets of nearest-neighbour (NN) distances to the training set:
those of the model's samples and those of held-out test images, which come from the same
distribution but were never trained on, so they show how close a *fresh* draw from p_data lies to
the training set. The summary (both in one space: pixels or judge features):

* ``nn_ratio = median NN distance of samples / median NN distance of test images``: about 1 for a
  model whose samples are as novel as new data, above 1 for samples off the data manifold
  (blurry, broken), and well below 1 when samples hug training images.
* ``copy_share``: the share of samples whose NN distance is below the ``quantile`` (1 %) of the
  test images' NN distances, i.e. closer to a training image than all but 1 % of new data: about
  0.01 for novel samples, 1 for a model that returns training images.

These are the tests of Webster et al. 2019 ("Detecting overfitting of deep generative networks
via latent recovery", sample-to-train vs test-to-train distances) in their simplest form.
"""

from __future__ import annotations

import numpy as np
import torch


def nearest_neighbours(queries: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor,
                       chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance (float64) and index of each query's nearest reference row.

    Args:
        queries: (N, D) rows; reference: (M, D) rows, any float or integer dtype.
        chunk: queries per distance block (the block is chunk x M float32).

    Returns:
        (distances (N,), indices (N,)). The argmin is found on float32 squared distances
        ``|q|^2 + |r|^2 - 2 q.r``; the returned distance is recomputed exactly in float64 from
        the pair, so an exact copy gives 0.
    """
    q = torch.as_tensor(np.asarray(queries), dtype=torch.float64).flatten(1)
    r = torch.as_tensor(np.asarray(reference), dtype=torch.float64).flatten(1)
    q32, r32 = q.float(), r.float()
    r_sq = (r32 * r32).sum(1)  # (M,)
    indices = torch.empty(len(q), dtype=torch.long)
    for start in range(0, len(q), chunk):
        block = q32[start:start + chunk]  # (b, D)
        sq = (block * block).sum(1, keepdim=True) + r_sq - 2.0 * block @ r32.T  # (b, M)
        indices[start:start + chunk] = sq.argmin(dim=1)
    distances = (q - r[indices]).norm(dim=1)
    return distances.numpy(), indices.numpy()


def memorization_stats(sample_nn: np.ndarray, test_nn: np.ndarray,
                       quantile: float = 0.01) -> dict[str, float]:
    """``nn_ratio`` and ``copy_share`` (see the module docstring) from the two NN distance sets.

    Args:
        sample_nn: (N,) NN distances of model samples to the training set.
        test_nn: (M,) NN distances of held-out test images to the same training set.
        quantile: the test-image quantile below which a sample counts as a near-copy.
    """
    sample_nn, test_nn = np.asarray(sample_nn, np.float64), np.asarray(test_nn, np.float64)
    test_median = float(np.median(test_nn))
    threshold = float(np.quantile(test_nn, quantile))
    return {"nn_ratio": float(np.median(sample_nn)) / test_median if test_median > 0 else
            float("inf"),
            "copy_share": float((sample_nn < threshold).mean()) if threshold > 0 else
            float((sample_nn <= 0).mean())}
