"""The tie rule, each metric's direction, and the opening paragraph built on them."""

from __future__ import annotations

import math

import pytest

from genduel.metrics.table import METRICS, SAMPLE, keys_of_kind
from genduel.report import verdict
from genduel.report.verdict import GAN, TIE, VAE, compare, decide, opening


def test_equal_means_tie_whatever_the_spread():
    assert decide(5.0, 5.0, 0.0, 0.0, True) == 0
    assert decide(5.0, 5.0, 1.0, 2.0, False) == 0


def test_a_gap_of_three_combined_stds_has_a_winner_in_the_metrics_direction():
    s_a, s_b = 0.3, 0.4  # combined 0.5
    a, b = 10.0, 10.0 + 3 * math.hypot(s_a, s_b)
    assert decide(a, b, s_a, s_b, higher_is_better=True) == -1  # b is higher: b wins
    assert decide(a, b, s_a, s_b, higher_is_better=False) == 1  # lower is better: a wins


def test_a_gap_below_the_combined_std_is_a_tie_even_when_above_each_std():
    # gap 0.45: above either std (0.3, 0.4), below their combination 0.5
    assert decide(1.0, 1.45, 0.3, 0.4, True) == 0
    assert decide(1.0, 1.55, 0.3, 0.4, True) == -1


def test_compare_reads_direction_from_the_metric_table():
    assert not METRICS["fid"].higher_is_better and METRICS["recall"].higher_is_better
    evals = {"vae": {"fid": 350.0, "fid_std": 2.0, "recall": 0.046, "recall_std": 0.03},
             "gan": {"fid": 340.0, "fid_std": 1.0, "recall": 0.036}}
    fid = compare(evals, "fid")
    assert fid.winner == GAN and fid.gap == 10.0 and fid.noise == pytest.approx(math.sqrt(5))
    assert compare(evals, "recall").winner == TIE  # the example: 0.046 ± 0.03 vs 0.036
    assert compare(evals, "kid") is None
    evals["gan"]["fid"] = 360.0  # lower is better: now the VAE
    assert compare(evals, "fid").winner == VAE


def test_without_a_spread_any_difference_decides():
    evals = {"vae": {"inception_score": 7.0}, "gan": {"inception_score": 5.0}}
    c = compare(evals, "inception_score")
    assert c.winner == VAE and c.noise == 0
    assert "no spread measured" in verdict.describe(c)


def test_every_sample_metric_is_in_exactly_one_group():
    grouped = [k for keys in verdict.GROUPS.values() for k in keys]
    assert sorted(grouped) == sorted(keys_of_kind(SAMPLE)) and len(set(grouped)) == len(grouped)


def test_opening_names_the_winner_of_each_group_on_the_fixture_run(tmp_path, fake_run):
    inp = fake_run(tmp_path, extras=True)
    # FID 30 ± 0.5 vs 20: GAN. IS 7 vs 5 (no std): VAE; precision tie; recall 0.30 vs 0.10:
    # VAE. Coverage 10 vs 8 (no std): VAE.
    summary = opening(inp.evals, 3)
    distance, quality, coverage = summary.groups
    assert distance.startswith("**Distance to the data** (FID): the **GAN** is better.")
    assert "FID 20 for the GAN vs 30 (gap 10 = 20 × the combined ± 0.5)" in distance
    assert quality.startswith("**Sample quality and diversity** (Inception Score, Precision, "
                              "Recall): the **VAE** is better.")
    assert quality.endswith("; within noise: Precision.")
    assert coverage.startswith("**Class coverage** (Classes well covered): the **VAE** is better")
    assert summary.verdict == ("**In short, for these trained models (one training seed): the "
                               "VAE is ahead.** It wins 3 of the 5 sample metrics, the GAN 1, "
                               "and 1 is a tie within noise.")
    assert "3 sample draws" in summary.caveat and verdict.MEASURED_SPREAD in summary.caveat


def test_opening_says_tie_when_every_gap_is_within_noise():
    evals = {"vae": {"fid": 100.0, "fid_std": 5.0, "recall": 0.2, "recall_std": 0.1},
             "gan": {"fid": 103.0, "fid_std": 5.0, "recall": 0.25, "recall_std": 0.1}}
    summary = opening(evals, 3)
    assert summary.groups[0] == ("**Distance to the data** (FID): a **tie**, every gap is within "
                                 "noise.")
    one_seed = "**In short, for these trained models (one training seed): "
    assert summary.verdict.startswith(one_seed + "a tie.**")
    evals["gan"]["fid"] = 80.0  # GAN wins FID by 20 > 7.1; recall still tied
    assert opening(evals, 3).verdict.startswith(one_seed + "the GAN is ahead.**")
    evals["vae"].update(recall=0.6)  # and the VAE recall by 0.35 > 0.14: one win each
    assert opening(evals, 3).verdict.startswith(one_seed + "neither model is ahead.**")


# --- The rule across training seeds -------------------------------------------------------


def _seeded(vae: list[float], gan: list[float], key: str = "fid") -> dict:
    """Report rows over seeds as the report's inputs build them: the mean, the std over seeds
    (one seed: the draws' std, here 0.5) and each seed's value."""
    def row(values: list[float]) -> dict:
        n = len(values)
        mean = sum(values) / n
        std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.5)
        return {key: mean, f"{key}_std": std, f"{key}_draw_std": 0.5, "seeds": n,
                verdict.PER_SEED: {key: list(values)}}

    return {"vae_prior": row(vae), "gan": row(gan)}


def test_identical_seed_distributions_tie():
    evals = _seeded([80.0, 84.0, 78.0, 82.0], [80.0, 84.0, 78.0, 82.0])
    c = compare(evals, "fid")
    assert c.winner == TIE and c.test is not None and c.test.p == pytest.approx(1.0)
    # the same values in another order are the same distribution
    evals = _seeded([80.0, 84.0, 78.0, 82.0], [84.0, 78.0, 82.0, 80.0])
    assert compare(evals, "fid").winner == TIE


def test_a_gap_of_several_seed_stds_wins_and_the_direction_follows_the_metric():
    vae, gan = [70.0, 72.0, 71.0], [80.0, 82.0, 81.0]  # seed std 1, gap 10
    c = compare(_seeded(vae, gan), "fid")
    assert c.winner == VAE and c.test.p < 0.01  # lower FID is better
    assert "Welch" in verdict.describe(c) and "3 and 3 seeds" in verdict.describe(c)
    assert compare(_seeded(vae, gan, key="recall"), "recall").winner == GAN  # higher is better


def test_the_seed_rule_matches_scipy_welch_and_ignores_the_draws():
    from scipy import stats

    vae, gan = [75.0, 79.0, 77.5, 80.0], [81.0, 79.5, 84.0]
    c = compare(_seeded(vae, gan), "fid")
    ref = stats.ttest_ind(vae, gan, equal_var=False)
    assert c.test.p == pytest.approx(ref.pvalue) and c.test.t == pytest.approx(ref.statistic)
    assert c.winner == (VAE if ref.pvalue < 0.05 else TIE)
    # A gap of 3.5 is 7 x the draws' ± 0.5, but within the seeds' spread: no win
    close = _seeded([75.0, 80.0, 76.0], [79.0, 77.0, 85.5])
    assert abs(close["vae_prior"]["fid"] - close["gan"]["fid"]) > 6 * 0.5
    assert compare(close, "fid").winner == TIE


def test_seeds_without_spread_are_certainly_equal_or_certainly_different():
    assert compare(_seeded([5.0] * 3, [5.0] * 3), "fid").winner == TIE
    c = compare(_seeded([5.0] * 3, [6.0] * 3), "fid")
    assert c.winner == VAE and c.test.p == 0.0


def test_one_seed_never_claims_more_than_it_can():
    """One seed: the draws' rule, a verdict scoped to these trained models, and a caveat that
    says it cannot separate training noise and gives the command that can."""
    evals = _seeded([70.0], [80.0])  # a gap of 20 draw-stds
    c = compare(evals, "fid")
    assert c.winner == VAE and c.test is None
    summary = opening(evals, 3)
    assert summary.verdict.startswith("**In short, for these trained models (one training seed)")
    assert "over" not in summary.verdict.split("**")[1]
    assert "cannot separate the models from training noise" in summary.caveat
    assert verdict.SEEDS_COMMAND in summary.caveat and "Welch" not in summary.caveat
    assert summary.caveat.count(". ") == 0  # one sentence


def test_two_seeds_say_no_test_is_possible():
    evals = _seeded([70.0, 71.0], [80.0, 81.0])
    c = compare(evals, "fid")
    assert c.test is None and c.winner == VAE  # gap 10 > the seeds' combined ± 1.0
    summary = opening(evals, 3)
    assert "no test across seeds is possible" in summary.caveat
    assert "(2 training seeds)" in summary.verdict


def test_three_seeds_scope_the_verdict_to_the_recipes_and_quote_the_spread_ratio():
    evals = _seeded([70.0, 72.0, 71.0], [80.0, 82.0, 81.0])
    summary = opening(evals, 3)
    assert summary.verdict.startswith("**In short, over 3 training seeds: the VAE is ahead.**")
    assert "Welch" in summary.caveat and "2.0 × the draws'" in summary.caveat  # 1.0 / 0.5
    assert verdict.seed_count({**evals, "gan": {**evals["gan"], "seeds": 5}}) == 3
