"""Numbers over training seeds: the gathered row and Welch's test, on known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genduel.metrics.seeds import ALPHA, gather_row, seed_test, seed_values


def _row(fid: float, draw_std: float, **extra: float) -> dict:
    return {"draws": 3, "fid": fid, "fid_std": draw_std, "elbo_nats": -fid, "elbo_nats_sem": 1.0,
            "kid_subset_std": 0.3, "kid_subset_std_std": 0.01, **extra}


def test_one_seed_keeps_its_numbers_and_its_draws_spread():
    row = _row(80.0, 0.4)
    out = gather_row([row])
    assert out["seeds"] == 1 and out["draws"] == 3
    assert out["fid"] == 80.0 and out["fid_std"] == 0.4 and out["fid_draw_std"] == 0.4
    assert out["elbo_nats"] == -80.0 and out["elbo_nats_sem"] == 1.0


def test_seeds_give_the_mean_the_sample_std_and_the_mean_draw_std():
    rows = [_row(78.0, 0.2), _row(81.0, 0.4), _row(84.0, 0.6)]
    out = gather_row(rows)
    assert out["seeds"] == 3
    assert out["fid"] == pytest.approx(81.0)
    assert out["fid_std"] == pytest.approx(3.0)  # std of 78, 81, 84 with ddof 1
    assert out["fid_std"] == pytest.approx(np.std([78.0, 81.0, 84.0], ddof=1))
    assert out["fid_draw_std"] == pytest.approx(0.4)
    assert out["elbo_nats_std"] == pytest.approx(3.0) and out["elbo_nats_sem"] == 1.0


def test_a_metric_named_like_a_spread_is_gathered_as_a_metric():
    """kid_subset_std (the spread over KID's subsets) is a number of its own; its draws'
    spread is kid_subset_std_std."""
    out = gather_row([_row(80.0, 0.1, kid_subset_std=0.2), _row(80.0, 0.1, kid_subset_std=0.4)])
    assert out["kid_subset_std"] == pytest.approx(0.3)
    assert out["kid_subset_std_std"] == pytest.approx(math.sqrt(0.02))
    assert out["kid_subset_std_draw_std"] == pytest.approx(0.01)


def test_identical_seeds_have_no_spread_and_missing_values_are_left_out():
    out = gather_row([_row(80.0, 0.5, parzen_sigma=0.2), _row(80.0, 0.5)])
    assert out["fid_std"] == 0.0 and "parzen_sigma" not in out  # not in every seed
    with pytest.raises(ValueError, match="no seed"):
        gather_row([])
    assert seed_values([{"fid": 1.0}, {"fid": float("nan")}, {"fid": 3.0}], "fid") == [1.0, 3.0]


def test_welch_matches_scipy_and_needs_three_seeds_per_model():
    from scipy import stats

    a, b = [1.0, 2.0, 4.0], [5.0, 7.0, 6.5, 8.0]
    test = seed_test(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert test.t == pytest.approx(ref.statistic) and test.p == pytest.approx(ref.pvalue)
    # Welch-Satterthwaite degrees of freedom, by hand
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    assert test.dof == pytest.approx((va + vb) ** 2 / (va**2 / 2 + vb**2 / 3))
    assert test.seeds == (3, 4) and test.significant == (ref.pvalue < ALPHA)
    assert seed_test([1.0, 2.0], [5.0, 6.0, 7.0]) is None


def test_welch_calls_a_false_alarm_about_one_time_in_twenty():
    """Same distribution: p < 0.05 in about 5 % of 2000 experiments of 3 vs 3 seeds."""
    rng = np.random.default_rng(0)
    hits = sum(seed_test(rng.normal(80, 2, 3), rng.normal(80, 2, 3)).significant
               for _ in range(2000))
    assert 0.02 < hits / 2000 < 0.08
