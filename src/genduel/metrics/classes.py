"""Metrics of the judge's class predictions: Inception Score and class coverage.

Inputs are logits ``(N, K)`` (numpy or CPU tensor); everything computes in float64 and in log
space (``log_softmax``, ``logsumexp``), so saturated logits give finite, exact scores. NumPy and
SciPy, not torch: these arrays are small, and torch's threaded kernels cost more in start-up
(tens of ms on a busy 2-core host) than the work itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.special import log_softmax, logsumexp

#: A class is "well covered" when its share of samples is at least this fraction of the uniform
#: share 1/K: 0.2 / K = 2 % of samples for K = 10. A judge that misclassifies some real images
#: scatters a few samples of any model into most classes, so "at least one sample"
#: (``classes_covered``) says little once N is in the thousands.
WELL_COVERED_RELATIVE_SHARE = 0.2


def _as_logits(logits: np.ndarray | torch.Tensor, num_classes: int | None = None) -> np.ndarray:
    """A float64 ``(N, K)`` array with N >= 1 and finite entries, or a ValueError."""
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim != 2 or len(arr) < 1 or (num_classes is not None and arr.shape[1] != num_classes):
        want = f"(N, {num_classes or 'K'})"
        raise ValueError(f"expected logits of shape {want}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("logits contain NaN or inf")
    return arr


def _split_inception_score(log_p: np.ndarray) -> float:
    """exp( mean_x KL(p(y|x) || p(y)) ) for one split; p(y) = mean_x p(y|x), in log space."""
    log_marginal = logsumexp(log_p, axis=0) - math.log(len(log_p))  # (K,)
    kl = (np.exp(log_p) * (log_p - log_marginal)).sum(axis=1)  # (n,) nats
    return math.exp(kl.mean())


def inception_score(logits: np.ndarray | torch.Tensor, *, splits: int = 10) -> tuple[float, float]:
    """Inception Score of class logits (Salimans et al. 2016), mean and std over splits.

    ``IS = exp(E_x KL(p(y|x) || p(y)))`` with ``p(y|x) = softmax(logits)`` and ``p(y)`` the mean
    of ``p(y|x)`` over the split. It is 1 when every sample gets the same posterior and K when
    the posteriors are one-hot and balanced over K classes. Splits are the contiguous chunks
    ``[i N // splits, (i + 1) N // splits)`` in input order (samples are i.i.d. draws, so no
    shuffle; torch-fidelity's ``isc_features_to_metric(..., shuffle=False)`` is the same).

    Returns:
        ``(mean, std)`` over splits; std with ``ddof=0`` as torch-fidelity and the original code.
    """
    log_p = log_softmax(_as_logits(logits), axis=1)  # (N, K)
    n = len(log_p)
    if not 1 <= splits <= n:
        raise ValueError(f"inception_score: need 1 <= splits <= N = {n}, got {splits}")
    scores = np.array([_split_inception_score(log_p[i * n // splits:(i + 1) * n // splits])
                       for i in range(splits)])
    return float(scores.mean()), float(scores.std())


def _kl_nats(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) = sum_k p_k log(p_k / q_k) in nats, with 0 log 0 = 0; q > 0 where p > 0."""
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def class_counts(logits: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """Histogram ``(K,)`` int64 of the predicted classes ``argmax_k logits`` (ties: lowest k)."""
    pred = _as_logits(logits, num_classes).argmax(axis=1)
    return np.bincount(pred, minlength=num_classes).astype(np.int64)


def class_coverage(logits: np.ndarray | torch.Tensor, num_classes: int, *,
                   min_relative_share: float = WELL_COVERED_RELATIVE_SHARE) -> dict[str, Any]:
    """Which classes the judge sees in a sample set, and how far from balanced it is.

    With ``h_k`` the share of samples predicted as class k:

    * ``class_counts``: ``(K,)`` int64 histogram of predicted classes;
    * ``classes_covered``: number of k with at least one sample;
    * ``classes_well_covered``: number of k with ``h_k >= min_relative_share / K``;
    * ``class_kl_to_uniform_nats``: ``KL(h || U_K) = log K - H(h)``, 0 when balanced and
      ``log K`` when every sample gets one class.
    """
    counts = class_counts(logits, num_classes)
    share = counts / counts.sum()
    uniform = np.full(num_classes, 1.0 / num_classes)
    return {
        "class_counts": counts,
        "classes_covered": int((counts > 0).sum()),
        "classes_well_covered": int((share >= min_relative_share / num_classes).sum()),
        "class_kl_to_uniform_nats": _kl_nats(share, uniform),
    }


def class_kl_to_reference(logits: np.ndarray | torch.Tensor,
                          reference_logits: np.ndarray | torch.Tensor, num_classes: int) -> float:
    """KL(h_samples || h_reference) in nats between predicted-class histograms.

    Measured against the judge's own predictions on real images, the judge's class bias
    cancels. The reference histogram gets one pseudo-count per class (Laplace) so the KL stays
    finite when the judge never predicts a class on real data; with ``N_ref`` reference images
    this moves the value by ``O(K / N_ref)``.
    """
    share = class_counts(logits, num_classes) / len(logits)
    ref = class_counts(reference_logits, num_classes) + 1.0
    return _kl_nats(share, ref / ref.sum())
