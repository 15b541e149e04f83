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
    assert summary.verdict == ("**In short: the VAE is ahead.** It wins 3 of the 5 sample "
                               "metrics, the GAN 1, and 1 is a tie within noise.")
    assert "3 sample draws" in summary.caveat and verdict.RERUN_EXAMPLE in summary.caveat


def test_opening_says_tie_when_every_gap_is_within_noise():
    evals = {"vae": {"fid": 100.0, "fid_std": 5.0, "recall": 0.2, "recall_std": 0.1},
             "gan": {"fid": 103.0, "fid_std": 5.0, "recall": 0.25, "recall_std": 0.1}}
    summary = opening(evals, 3)
    assert summary.groups[0] == ("**Distance to the data** (FID): a **tie**, every gap is within "
                                 "noise.")
    assert summary.verdict.startswith("**In short: a tie.**")
    evals["gan"]["fid"] = 80.0  # GAN wins FID by 20 > 7.1; recall still tied
    assert opening(evals, 3).verdict.startswith("**In short: the GAN is ahead.**")
    evals["vae"].update(recall=0.6)  # and the VAE recall by 0.35 > 0.14: one win each
    assert opening(evals, 3).verdict.startswith("**In short: neither model is ahead.**")
