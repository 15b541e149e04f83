"""All sample-based metrics of one sample draw, and their spread over independent draws.

Uncertainty has two levels, kept apart by name:

* within one draw, KID and IS carry their spread over subsets / splits (``kid_subset_std``,
  ``inception_score_split_std``): this shows the estimator's noise for a fixed sample set;
* over independent draws from the model (fresh seeds), :func:`summarize_draws` gives every key's
  mean as ``<key>`` and the sample std as ``<key>_std``: this is the error bar to compare models
  with, as it includes the sampling noise of the model itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, TypeVar

import numpy as np
import torch

from genduel.metrics.classes import class_coverage, class_kl_to_reference, inception_score
from genduel.metrics.features import fid, kid, manifold_metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

Array = np.ndarray | torch.Tensor


class DrawSummary(NamedTuple):
    """A metric over independent draws: mean, sample std (``ddof=1``; 0.0 when n = 1), count."""

    mean: float
    std: float
    n: int


def _summary(values: Sequence[float]) -> DrawSummary:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no draws to summarize")
    return DrawSummary(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))


def repeat_metric(fn: Callable[[T], float], draws: Sequence[T]) -> DrawSummary:
    """``fn`` applied to each independent draw (e.g. a feature matrix), summarized."""
    return _summary([fn(d) for d in draws])


def summarize_draws(per_draw: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """``{key: mean, key_std: sample std}`` over draws for every key, plus ``draws: n``.

    Raises:
        ValueError: no draws, or draws with different keys.
    """
    if not per_draw:
        raise ValueError("no draws to summarize")
    keys = list(per_draw[0])
    if any(set(d) != set(keys) for d in per_draw):
        raise ValueError("draws disagree on their metric keys")
    out: dict[str, float] = {"draws": len(per_draw)}
    for key in keys:
        s = _summary([d[key] for d in per_draw])
        out[key], out[f"{key}_std"] = s.mean, s.std
    return out


def compute_sample_metrics(fake_features: Array, fake_logits: Array, real_features: Array,
                           real_logits: Array, *, num_classes: int, is_splits: int = 10,
                           kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0,
                           pr_k: int = 3, dc_k: int = 5) -> dict[str, float]:
    """Every sample-based metric of one draw of fake samples against real reference images.

    Args:
        fake_features, real_features: judge features ``(N_fake, D)``, ``(N_real, D)``.
        fake_logits, real_logits: judge logits ``(N_fake, K)``, ``(N_real, K)``.
        num_classes: K.
        is_splits, kid_subsets, kid_subset_size, pr_k, dc_k: see :func:`inception_score`,
            :func:`kid` (subset size clipped to the smaller set), :func:`precision_recall`,
            :func:`density_coverage` (both from one distance pass: :func:`manifold_metrics`).
        seed: KID subset draws (everything else is deterministic).

    Returns:
        ``fid``, ``kid``, ``kid_subset_std``, ``inception_score``,
        ``inception_score_split_std``, ``precision``, ``recall``, ``density``, ``coverage``,
        ``classes_covered``, ``classes_well_covered``, ``class_kl_to_uniform_nats``,
        ``class_kl_to_real_nats``, all floats; directions in :data:`genduel.metrics.METRICS`.
    """
    kid_mean, kid_std = kid(fake_features, real_features, subsets=kid_subsets,
                            subset_size=kid_subset_size, seed=seed)
    is_mean, is_std = inception_score(fake_logits, splits=is_splits)
    manifold = manifold_metrics(real_features, fake_features, pr_k=pr_k, dc_k=dc_k)
    precision, recall = manifold["precision"], manifold["recall"]
    density, coverage = manifold["density"], manifold["coverage"]
    classes = class_coverage(fake_logits, num_classes)
    out = {
        "fid": fid(fake_features, real_features),
        "kid": kid_mean,
        "kid_subset_std": kid_std,
        "inception_score": is_mean,
        "inception_score_split_std": is_std,
        "precision": precision,
        "recall": recall,
        "density": density,
        "coverage": coverage,
        "classes_covered": float(classes["classes_covered"]),
        "classes_well_covered": float(classes["classes_well_covered"]),
        "class_kl_to_uniform_nats": classes["class_kl_to_uniform_nats"],
        "class_kl_to_real_nats": class_kl_to_reference(fake_logits, real_logits, num_classes),
    }
    log.debug("sample metrics: %s", out)
    return out
