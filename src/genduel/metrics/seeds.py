"""Numbers over training seeds: one row's metrics gathered over the seeds it was trained with, and
the test that compares two models across seeds.

Each seed's value of a sample metric is already a mean over that seed's sample draws (with the
draws' std beside it, :func:`genduel.metrics.sample.summarize_draws`): the draws are nested in
the seed. Over ``S`` seeds a metric ``k`` becomes (:func:`gather_row`):

* ``k``: the mean of the seeds' values;
* ``k_std``: with ``S >= 2`` the sample std (``ddof = 1``) of the seeds' values, the spread of
  retraining; with one seed the draws' std as before (the only spread measured);
* ``k_draw_std``: the mean of the seeds' draw stds (``k_std`` of each seed), so that the ratio
  ``k_std / k_draw_std`` says how much of the spread one seed's ± misses;
* ``k_sem``: for the metrics reported with a standard error over images (``elbo_nats_sem``,
  ``parzen_ll_nats_sem``), the mean of the seeds' standard errors;
* ``seeds``: ``S``.

The test across seeds (:func:`seed_test`) is Welch's unequal-variance t-test on the two models'
per-seed values (Welch 1947), two-sided: with ``S >= 3`` seeds per model each variance has at
least two degrees of freedom. With fewer seeds no test is possible, and :func:`seed_test` says so
(None): the caller falls back to the draws' rule and says what it cannot tell.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

#: Seeds per model a test across seeds needs (each variance then has >= 2 degrees of freedom).
MIN_SEEDS_FOR_TEST = 3
#: The test's two-sided level: a gap with p below it is a win.
ALPHA = 0.05
#: Entries of an eval row that are not metrics (bookkeeping, or a value chosen per seed).
NOT_GATHERED = ("draws", "likelihood_images")
#: Suffixes of the spread entries that accompany a metric.
SPREADS = ("_std", "_sem")


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _is_spread(key: str, row: Mapping[str, Any]) -> bool:
    """Whether ``key`` is the spread of another entry (``fid_std`` of ``fid``); a metric that
    only ends like one (``kid_subset_std``, the spread over KID's subsets) is not."""
    return any(key.endswith(s) and key[:-len(s)] in row for s in SPREADS)


def _metric_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys with a finite number in every row, less spreads and bookkeeping."""
    keys = [k for k in rows[0] if k not in NOT_GATHERED and not _is_spread(k, rows[0])]
    return [k for k in keys if all(_number(r.get(k)) is not None for r in rows)]


def gather_row(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One row's metrics over the seeds (see the module's doc); ``per_seed`` in seed order.

    Raises:
        ValueError: no seed given.
    """
    if not per_seed:
        raise ValueError("gather_row: no seed's row given")
    n = len(per_seed)
    out: dict[str, Any] = {"seeds": n}
    if "draws" in per_seed[0]:
        out["draws"] = per_seed[0]["draws"]
    for key in _metric_keys(per_seed):
        values = np.array([float(r[key]) for r in per_seed])
        out[key] = float(values.mean())
        draw = [_number(r.get(f"{key}_std")) for r in per_seed]
        sem = [_number(r.get(f"{key}_sem")) for r in per_seed]
        if all(d is not None for d in draw):
            out[f"{key}_draw_std"] = float(np.mean(draw))
        if all(s is not None for s in sem):
            out[f"{key}_sem"] = float(np.mean(sem))
        if n >= 2:
            out[f"{key}_std"] = float(values.std(ddof=1))
        elif draw[0] is not None:
            out[f"{key}_std"] = draw[0]
    return out


def seed_values(per_seed: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """``key``'s value in each seed's row that has a finite one, in seed order."""
    return [v for r in per_seed if (v := _number(r.get(key))) is not None]


class SeedTest(NamedTuple):
    """Welch's t-test of two models' per-seed values of one metric."""

    t: float  # (mean_a - mean_b) / sqrt(var_a / n_a + var_b / n_b); ±inf when both are exact
    dof: float  # Welch-Satterthwaite degrees of freedom (nan when both variances are 0)
    p: float  # two-sided p-value
    seeds: tuple[int, int]  # (n_a, n_b)

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def seed_test(a: Sequence[float], b: Sequence[float]) -> SeedTest | None:
    """Welch's two-sided t-test of ``a`` against ``b`` (per-seed values of one metric), or None
    when either has fewer than :data:`MIN_SEEDS_FOR_TEST` values: no test is possible then.

    Two sets with no spread at all are either equal (p = 1) or certainly different (p = 0),
    where the t statistic itself is undefined or infinite.
    """
    if min(len(a), len(b)) < MIN_SEEDS_FOR_TEST:
        return None
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    gap = float(x.mean() - y.mean())
    if va + vb == 0:
        return SeedTest(0.0 if gap == 0 else math.copysign(math.inf, gap), math.nan,
                        1.0 if gap == 0 else 0.0, (len(x), len(y)))
    result = stats.ttest_ind(x, y, equal_var=False)
    dof = (va + vb) ** 2 / ((va**2 / (len(x) - 1) if va else 0.0)
                            + (vb**2 / (len(y) - 1) if vb else 0.0))
    return SeedTest(float(result.statistic), float(dof), float(result.pvalue), (len(x), len(y)))
