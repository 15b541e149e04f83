"""How the evaluate stage's numbers were obtained: the ``protocol`` block of every row, the
sample counts actually used, and the split of a row into numbers and details.

``eval.num_samples`` larger than a split is clamped to it (:func:`reference_size`), with a
WARNING and the numbers used recorded in the protocol (``reference_images``, ``real_images``).
"""

from __future__ import annotations

import logging
from typing import Any

from genduel.config import EvalConfig
from genduel.io import numeric
from genduel.provenance import library_versions, machine

log = logging.getLogger(__name__)


def reference_size(cfg: EvalConfig, n_train: int, n_test: int) -> tuple[int, int]:
    """(reference images, real-row images per draw): ``eval.num_samples`` clamped to the train
    and test splits, with a WARNING naming both numbers when it is."""
    n_ref, n_real = min(cfg.num_samples, n_train), min(cfg.num_samples, n_test)
    for used, have, split in ((n_ref, n_train, "train (reference)"), (n_real, n_test, "test")):
        if used < cfg.num_samples:
            log.warning("eval.num_samples = %d is larger than the %d images of the %s split; "
                        "using %d (set eval.num_samples <= %d to compare like with like)",
                        cfg.num_samples, have, split, used, have)
    return n_ref, n_real


def protocol_block(cfg: EvalConfig, sizes: dict[str, int], *, judge: tuple[str, float],
                   reference_shape: tuple[int, ...], n_centres: dict[str, int]) -> dict[str, Any]:
    """The ``protocol`` block every metrics file carries: how each number was obtained, on
    which machine and torch build (what explains last-bit differences between hosts).

    Args:
        cfg: the eval section.
        sizes: images per split (``train``, ``val``, ``test``).
        judge: the judge checkpoint's sha256 and test accuracy.
        reference_shape: ``(images, feature dims)`` of the reference features.
        n_centres: Parzen centres per row (``vae``, ``gan``, ``real``).
    """
    n_val = min(cfg.parzen_val_images, sizes["val"])
    n_test = sizes["test"]
    n_parzen_test = min(cfg.parzen_test_images, n_test)
    n_probe = min(cfg.probe_train_images, sizes["train"])
    n_ref, n_real = reference_shape[0], min(cfg.num_samples, n_test)
    return {
        "num_samples": cfg.num_samples, "draws": cfg.draws,
        "reference_images": n_ref, "real_images": n_real,
        "sample_seeds": [cfg.seed + d for d in range(cfg.draws)],
        "reference": f"{n_ref} train images (seed {cfg.seed})",
        "real_row": f"{n_real} test images per draw",
        "pixels": "samples rounded to 8-bit like the data",
        "vae_image": cfg.vae_image,
        "features": f"judge penultimate layer ({reference_shape[1]} dims)",
        "judge_sha256": judge[0], "judge_test_accuracy": judge[1],
        "is_splits": cfg.is_splits, "kid_subsets": cfg.kid_subsets,
        "kid_subset_size": cfg.kid_subset_size, "pr_k": cfg.pr_k, "dc_k": cfg.dc_k,
        "iwae_k": list(cfg.iwae_k),
        "parzen": (f"Gaussian Parzen window, pixels in [0, 1]; centres: {n_centres['vae']} VAE / "
                   f"{n_centres['gan']} GAN samples of draw 0, {n_centres['real']} train images "
                   f"(seed {cfg.seed}) for the real row; sigma by mean LL on {n_val} val images; "
                   f"mean LL on {n_parzen_test} test images (seed {cfg.seed})"),
        "parzen_sigmas": [float(s) for s in cfg.parzen_sigmas],
        "baselines": ("pixel_gaussian: one Gaussian over all pixels (mean and full covariance "
                      "of the train images); class_gaussians: one per class, classes drawn at "
                      "their train frequencies; sampled like a model and rounded to 8 bits"),
        "memorization": (f"nearest neighbour among all {sizes['train']} train images of the "
                         f"first {cfg.memorization_samples} samples of draw 0 and of as many "
                         f"test images (seed {cfg.seed}), Euclidean in pixels in [0, 1] and in "
                         "judge features; nn_ratio = median sample NN distance / median test "
                         "NN distance; copy_share = share of samples nearer than the 1 % "
                         "quantile of the test distances"),
        "probe": (f"VAE posterior means mu(x): logistic regression (standardized) and "
                  f"{cfg.probe_knn_k}-NN fit on the first {n_probe} train images, accuracy on "
                  f"the true labels of all {n_test} test images"),
        "reconstruction": ("decoder mean at z = mu(x), all test images; MSE in [0, 1] pixel "
                           "units, MAE in 8-bit levels"),
        "libraries": library_versions(),
        "machine": machine(),
    }


def split_details(values: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """(numbers, the rest) of a row: ``metrics/eval_*.json`` holds only the numbers, so that
    ``dvc metrics show`` and ``dvc exp show`` list metrics, not protocol text; the protocol and
    model settings go to ``eval/details_*.json``, which the report merges back in.

    The numbers keep their type (an int count is written as ``10``, not ``10.0``).
    """
    numbers = {k: values[k] for k in numeric(values)}
    return numbers, {k: v for k, v in values.items() if k not in numbers}
