"""Metrics against known answers and against independent implementations (torch-fidelity,
torchmetrics, scipy; density and coverage, which neither library has, against a float64
implementation of the paper's formulas)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg, spatial, stats

from genduel import metrics as M
from genduel.metrics import features as _features

torch.set_default_dtype(torch.float32)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _fid_scipy(mu1, s1, mu2, s2) -> float:
    """Reference FID with scipy's general (Schur) matrix square root."""
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


class _Identity(torch.nn.Module):
    """A 'feature extractor' that returns its input, so library metrics see our features."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# ---------------------------------------------------------------------------------------- FID
def test_fid_statistics_are_float64_mean_and_unbiased_covariance():
    x = _rng().standard_normal((300, 7)).astype(np.float32)
    mu, sigma = M.fid_statistics(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10)


def test_fid_of_a_set_with_itself_is_zero_even_with_dead_features():
    x = _rng().standard_normal((500, 32))
    x[:, :5] = 0.0  # dead ReLU units: singular covariance
    assert M.fid(x, x) == pytest.approx(0.0, abs=1e-8)
    assert M.fid(torch.from_numpy(x), x) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fid_from_statistics_matches_scipy_sqrtm(seed):
    rng = _rng(seed)
    d = 40
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    got = M.fid_from_statistics(mu1, s1, mu2, s2)
    assert got == pytest.approx(_fid_scipy(mu1, s1, mu2, s2), rel=1e-6)
    assert got == pytest.approx(M.fid_from_statistics(mu2, s2, mu1, s1), rel=1e-9)


def test_fid_from_statistics_with_a_singular_covariance_matches_torch_fidelity():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = _rng(5)
    d, r = 30, 12
    a = rng.standard_normal((d, r))
    s1, s2 = a @ a.T, _random_cov(rng, d)  # s1 has rank 12: the eigh branch, not Cholesky
    mu1, mu2 = rng.standard_normal(d), np.zeros(d)
    ref = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)
    got = M.fid_from_statistics(mu1, s1, mu2, s2)
    assert got == pytest.approx(ref["frechet_inception_distance"], rel=1e-8)
    assert got == pytest.approx(M.fid_from_statistics(mu2, s2, mu1, s1), rel=1e-8)


def test_fid_of_gaussian_samples_approaches_the_closed_form():
    rng = _rng(3)
    d, n = 6, 200_000
    mu1, mu2 = np.zeros(d), np.full(d, 0.3)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    a = rng.multivariate_normal(mu1, s1, size=n)
    b = rng.multivariate_normal(mu2, s2, size=n)
    assert M.fid(a, b) == pytest.approx(_fid_scipy(mu1, s1, mu2, s2), rel=0.02)


def test_fid_matches_torchmetrics_and_torch_fidelity():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = _rng(4)
    a = torch.from_numpy(rng.standard_normal((1000, 24)) @ rng.standard_normal((24, 24)))
    b = torch.from_numpy(rng.standard_normal((800, 24)) + 0.5)
    metric = FrechetInceptionDistance(feature=_Identity(24))
    for chunk in a.split(300):  # torchmetrics accumulates sums over batches
        metric.update(chunk, real=True)
    metric.update(b, real=False)
    ours = M.fid(a, b)
    assert ours == pytest.approx(float(metric.compute()), rel=1e-6)
    tf = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b),
                                  verbose=False)
    assert ours == pytest.approx(tf["frechet_inception_distance"], rel=1e-8)


def test_fid_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="disagree"):
        M.fid_from_statistics(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="N >= 2"):
        M.fid(np.zeros((1, 3)), np.zeros((5, 3)))


# ---------------------------------------------------------------------------------------- KID
def test_kid_equals_torch_fidelity_with_the_same_seed():
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = _rng(5)
    a, b = rng.standard_normal((400, 16)), rng.standard_normal((300, 16)) + 0.2
    ref = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=7,
                                 kid_subset_size=150, rng_seed=11, verbose=False)
    mean, std = M.kid(a, b, subsets=7, subset_size=150, seed=11)
    # same subsets; our Gram matrices are float32 (accumulated in float64), theirs float64
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-5)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-4)


def test_kid_is_unbiased_for_equal_distributions_and_positive_for_shifted_ones():
    rng = _rng(6)
    draws, n, d = 300, 100, 8
    same = [M.kid(rng.standard_normal((n, d)), rng.standard_normal((n, d)), subsets=1,
                  subset_size=n, seed=i)[0] for i in range(draws)]
    se = np.std(same, ddof=1) / math.sqrt(draws)
    assert abs(np.mean(same)) < 3 * se
    shifted = [M.kid(rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.5, subsets=1,
                     subset_size=n, seed=i)[0] for i in range(30)]
    assert np.mean(shifted) > 10 * se and min(shifted) > 0


def test_kid_clips_the_subset_size_to_the_smaller_set(caplog):
    rng = _rng(7)
    a, b = rng.standard_normal((50, 4)), rng.standard_normal((80, 4))
    with caplog.at_level("WARNING"):
        clipped = M.kid(a, b, subsets=3, subset_size=1000, seed=1)
    assert "clipped to 50" in caplog.text
    assert clipped == M.kid(a, b, subsets=3, subset_size=50, seed=1)


# ----------------------------------------------------------------------------------------- IS
def test_inception_score_is_one_for_identical_predictions():
    logits = np.tile(_rng(8).standard_normal(10), (100, 1))
    mean, std = M.inception_score(logits, splits=4)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_is_k_for_balanced_one_hot_predictions_even_when_saturated():
    k = 10
    logits = 1e4 * np.eye(k)[np.arange(200) % k]  # softmax underflows to exact one-hot
    mean, std = M.inception_score(logits, splits=2)
    assert mean == pytest.approx(k, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)


@pytest.mark.filterwarnings("ignore:std\\(\\)")  # torchmetrics' std of a single split
def test_inception_score_matches_torch_fidelity_and_torchmetrics():
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torchmetrics.image.inception import InceptionScore

    logits = torch.from_numpy(3.0 * _rng(9).standard_normal((1000, 10)))
    ref = isc_features_to_metric(logits, splits=10, shuffle=False)
    mean, std = M.inception_score(logits, splits=10)
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-12)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-9)
    with pytest.warns(UserWarning):  # torchmetrics warns that it buffers features
        tm = InceptionScore(feature=_Identity(10), splits=1)
    tm.update(logits)
    assert M.inception_score(logits, splits=1)[0] == pytest.approx(float(tm.compute()[0]),
                                                                   rel=1e-10)


# ------------------------------------------------------------------------ precision / recall
def test_precision_and_recall_are_one_for_identical_sets_and_zero_for_far_ones():
    x = _rng(10).standard_normal((400, 16))
    assert M.precision_recall(x, x.copy(), k=3) == (1.0, 1.0)
    assert M.precision_recall(x, x + 100.0, k=3) == (0.0, 0.0)


def test_precision_recall_argument_order_collapsed_fakes_are_precise_not_diverse():
    rng = _rng(11)
    real = rng.standard_normal((1000, 4))
    fake = 0.05 * rng.standard_normal((1000, 4))  # all near the real mode
    precision, recall = M.precision_recall(real, fake, k=3)
    assert precision > 0.95 and recall < 0.2


def test_precision_recall_do_not_depend_on_the_block_size():
    rng = _rng(19)
    real, fake = rng.standard_normal((500, 8)), rng.standard_normal((450, 8)) + 0.3
    want = M.precision_recall(real, fake, k=3, block=10_000)
    assert 0 < want[0] < 1 and 0 < want[1] < 1
    for block in (1, 33, 449):
        _features._REAL_RADII.clear()  # the real set's radii too, not the remembered ones
        assert M.precision_recall(real, fake, k=3, block=block) == want


def test_the_remembered_real_radii_are_those_of_the_real_set_passed():
    rng = _rng(20)
    real, fake = rng.standard_normal((300, 6)), rng.standard_normal((280, 6)) + 0.2
    _features._REAL_RADII.clear()
    want = M.precision_recall(real, fake, k=3)
    assert M.precision_recall(real.copy(), fake, k=3) == want  # the same set: served again
    moved = real.copy()
    moved[:150] *= 3.0  # another real set of the same shape: its own radii
    got = M.precision_recall(moved, fake, k=3)
    _features._REAL_RADII.clear()
    assert got == M.precision_recall(moved, fake, k=3) and got != want


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_match_torch_fidelity(k):
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    rng = _rng(12 + k)
    real, fake = rng.standard_normal((700, 12)), rng.standard_normal((600, 12)) * 1.2 + 0.1
    ref_p, ref_r = calculate_precision_recall_full(torch.from_numpy(fake), torch.from_numpy(real),
                                                   neighborhood=k)
    p, r = M.precision_recall(real, fake, k=k, block=256)  # several blocks
    assert abs(p - ref_p) <= 1 / 600 and abs(r - ref_r) <= 1 / 700  # one float32 flip at most


# ----------------------------------------------------------------------- density / coverage
def _density_coverage_reference(real, fake, k):
    """Naeem et al. (2020), Eqs. 3-4, in float64 from all pairwise distances."""
    nnd_k = np.sort(spatial.distance.cdist(real, real), axis=1)[:, k]  # column 0: X_i itself
    inside = spatial.distance.cdist(fake, real) <= nnd_k  # (M, N): Y_j in B(X_i, NND_k(X_i))
    return inside.sum() / (k * len(fake)), inside.any(axis=0).mean()


def _integer_set(seed: int, n_half: int = 100, d: int = 8) -> np.ndarray:
    """Integers in [-100, 100], symmetric about 0: the real mean is exactly 0 and every float32
    distance :func:`M.density_coverage` computes is an exact integer (< 2^24), so it must agree
    exactly with the float64 reference, points on a ball's boundary included."""
    a = _rng(seed).integers(-100, 101, size=(n_half, d)).astype(np.float64)
    return np.vstack([a, -a])


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("n_real, n_fake", [(200, 150), (150, 260)])
def test_density_coverage_match_the_paper_formulas_in_float64(k, n_real, n_fake):
    rng = _rng(30 + k)
    real = rng.standard_normal((n_real, 8))
    fake = rng.standard_normal((n_fake, 8)) * 1.2 + 0.2
    _features._REAL_RADII.clear()
    density, coverage = M.density_coverage(real, fake, k=k, block=64)  # several blocks
    ref_density, ref_coverage = _density_coverage_reference(real, fake, k)
    assert 0 < coverage < 1
    assert abs(density - ref_density) <= 1 / (k * n_fake)  # one float32 flip at most
    assert abs(coverage - ref_coverage) <= 1 / n_real


@pytest.mark.parametrize("k", [1, 3, 5])
def test_density_coverage_are_exact_on_integer_features(k):
    real = _integer_set(40)
    for fake in (real.copy(), _rng(41).integers(-100, 101, size=(150, 8)).astype(np.float64),
                 real[::3] + 1.0):
        assert M.density_coverage(real, fake, k=k, block=64) == \
            _density_coverage_reference(real, fake, k)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_density_coverage_of_fakes_equal_to_the_reals(k):
    # Each ball B(X_i, NND_k(X_i)) holds its centre, the k - 1 nearer neighbours and, on its
    # closed boundary, the k-th: N (k + 1) memberships, so density = (k + 1) / k, coverage = 1.
    real = _integer_set(42)
    nnd = np.sort(spatial.distance.cdist(real, real), axis=1)
    assert (nnd[:, k] < nnd[:, k + 1]).all()  # no ties at the k-th neighbour in this set
    assert M.density_coverage(real, real.copy(), k=k) == ((k + 1) / k, 1.0)
    # Continuous features: float32 rounding can put a k-th neighbour just outside its boundary
    # (the centre and the k - 1 nearer neighbours lie well inside it: density >= 1).
    x = _rng(43).standard_normal((400, 16))
    density, coverage = M.density_coverage(x, x.copy(), k=k)
    assert coverage == 1.0 and 1.0 <= density <= (k + 1) / k


def test_density_coverage_are_zero_for_far_fakes():
    x = _rng(44).standard_normal((300, 8))
    assert M.density_coverage(x, x + 100.0) == (0.0, 0.0)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_density_coverage_of_one_point_repeated_at_a_real_point(k):
    real = _integer_set(45)
    fake = np.tile(real[0], (50, 1))  # every fake at X_0
    nnd_k = np.sort(spatial.distance.cdist(real, real), axis=1)[:, k]
    balls = int((np.linalg.norm(real - real[0], axis=1) <= nnd_k).sum())  # balls holding X_0
    assert balls >= 1  # its own
    assert M.density_coverage(real, fake, k=k) == (balls / k, balls / len(real))


def test_density_exceeds_one_for_fakes_crowded_at_the_real_mode():
    # In 8 dimensions the k-NN balls of 1000 standard normal points are wide enough that the
    # mode lies in many of them: fakes packed there count several times over.
    rng = _rng(46)
    real, fake = rng.standard_normal((1000, 8)), 0.1 * rng.standard_normal((500, 8))
    density, coverage = M.density_coverage(real, fake)
    assert density > 2 and coverage < 0.1
    assert (density, coverage) == pytest.approx(_density_coverage_reference(real, fake, 5),
                                                abs=1 / 500)


def test_density_coverage_of_identically_distributed_sets_follow_the_paper_lemmas():
    # Naeem et al. (2020), Lemma 1: E[density] = 1; Lemma 2: E[coverage] =
    # 1 - prod_{i=1..k} (N - i) / (N + M - i), about 1 - 2^-k for M = N. Per-draw std at
    # N = M = 2000 in 4 dims: ~0.012 (density), ~0.006 (coverage); 4 draws averaged.
    n, k = 2000, 5
    draws = []
    for seed in range(4):
        rng = _rng(50 + seed)
        draws.append(M.density_coverage(rng.standard_normal((n, 4)),
                                        rng.standard_normal((n, 4)), k=k))
    density, coverage = np.mean(draws, axis=0)
    expected = 1 - np.prod([(n - i) / (2 * n - i) for i in range(1, k + 1)])
    assert density == pytest.approx(1.0, abs=0.03)
    assert coverage == pytest.approx(expected, abs=0.015)


def test_density_coverage_do_not_depend_on_the_block_size():
    rng = _rng(47)
    real, fake = rng.standard_normal((500, 8)), rng.standard_normal((450, 8)) + 0.3
    _features._REAL_RADII.clear()
    want = M.density_coverage(real, fake, block=10_000)
    for block in (1, 33, 449):
        _features._REAL_RADII.clear()
        assert M.density_coverage(real, fake, block=block) == want


def test_the_real_radii_of_both_ks_are_remembered_side_by_side():
    # Each draw calls precision_recall (pr_k) then density_coverage (dc_k) on one real set:
    # neither evicts the other's radii.
    rng = _rng(49)
    real, fake = rng.standard_normal((300, 6)), rng.standard_normal((280, 6)) + 0.2
    _features._REAL_RADII.clear()
    want = M.precision_recall(real, fake, k=3), M.density_coverage(real, fake, k=5)
    assert [sorted(r) for r in _features._REAL_RADII.values()] == [[3, 5]]
    assert (M.precision_recall(real, fake, k=3), M.density_coverage(real, fake, k=5)) == want
    M.density_coverage(2.0 * real, fake, k=5)  # another real set: the first one's are dropped
    assert [sorted(r) for r in _features._REAL_RADII.values()] == [[5]]


def test_density_coverage_reject_bad_inputs():
    x = _rng(48).standard_normal((10, 4))
    with pytest.raises(ValueError, match="density_coverage: feature dims differ"):
        M.density_coverage(x, x[:, :3])
    for k in (0, 10):
        with pytest.raises(ValueError, match="density_coverage: need 1 <= k < real set size 10"):
            M.density_coverage(x, x, k=k)
    with pytest.raises(ValueError, match="fake_feat: features contain NaN"):
        M.density_coverage(x, np.full((5, 4), np.nan))


# ----------------------------------------------------------------------------- class coverage
def test_class_coverage_of_one_repeated_image():
    k = 10
    logits = np.tile(_rng(13).standard_normal(k), (500, 1))
    cov = M.class_coverage(logits, k)
    assert cov["classes_covered"] == cov["classes_well_covered"] == 1
    assert cov["class_kl_to_uniform_nats"] == pytest.approx(math.log(k), rel=1e-12)
    assert cov["class_counts"].sum() == 500 and cov["class_counts"].dtype == np.int64


def test_class_coverage_balanced_and_the_well_covered_threshold():
    k = 10
    labels = np.r_[np.repeat(np.arange(9), 100), np.full(10, 9)]  # class 9: 10/910 ~ 1.1 %
    cov = M.class_coverage(np.eye(k)[labels], k)
    assert cov["classes_covered"] == 10 and cov["classes_well_covered"] == 9
    balanced = M.class_coverage(np.eye(k)[np.arange(1000) % k], k)
    assert balanced["class_kl_to_uniform_nats"] == pytest.approx(0.0, abs=1e-12)
    loose = M.class_coverage(np.eye(k)[labels], k, min_relative_share=0.1)
    assert loose["classes_well_covered"] == 10


def test_class_kl_to_reference_against_a_hand_computation():
    k = 3
    fake = np.eye(k)[[0, 0, 0, 1]]
    ref = np.eye(k)[[0, 1, 2, 2]]  # counts 1, 1, 2 -> +1 each: 2/7, 2/7, 3/7
    want = 0.75 * math.log(0.75 / (2 / 7)) + 0.25 * math.log(0.25 / (2 / 7))
    assert M.class_kl_to_reference(fake, ref, k) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="shape"):
        M.class_coverage(np.zeros((5, 4)), 10)


# ------------------------------------------------------------------------------------- Parzen
def test_parzen_single_centre_is_the_gaussian_log_density():
    rng = _rng(14)
    centre, test = rng.standard_normal((1, 20)), rng.standard_normal((30, 20))
    want = stats.multivariate_normal(centre[0], 0.7**2 * np.eye(20)).logpdf(test)
    got = M.parzen_log_densities(centre, test, [0.7])[:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert M.parzen_log_likelihood(centre, test, 0.7) == pytest.approx(want.mean(), rel=1e-12)


def test_parzen_mixture_matches_a_direct_sum_and_does_not_depend_on_batch_size():
    rng = _rng(15)
    samples, test = rng.random((200, 50)), rng.random((37, 50))
    direct = np.log(np.mean([stats.multivariate_normal(c, 0.3**2 * np.eye(50)).pdf(test)
                             for c in samples], axis=0))
    full = M.parzen_log_densities(samples, test, [0.3], batch_size=37)[:, 0]
    np.testing.assert_allclose(full, direct, rtol=1e-10)
    for batch in (1, 7, 1000):
        got = M.parzen_log_likelihood(samples, test, 0.3, batch_size=batch)
        assert got == pytest.approx(full.mean(), rel=1e-12)


def test_select_parzen_sigma_takes_the_best_of_the_grid():
    rng = _rng(16)
    samples, val = rng.standard_normal((500, 5)), rng.standard_normal((200, 5))
    sigmas = [0.05, 0.2, 0.5, 1.0, 5.0]
    best, scores = M.select_parzen_sigma(samples, val, sigmas, batch_size=64)
    assert list(scores) == sigmas and best == max(scores, key=scores.get)
    assert best not in (0.05, 5.0)  # too narrow and too wide both lose
    assert scores[0.5] == pytest.approx(M.parzen_log_likelihood(samples, val, 0.5), rel=1e-12)


# ----------------------------------------------------------------------- draws, table, top level
def test_summarize_draws_and_repeat_metric():
    out = M.summarize_draws([{"fid": 1.0, "kid": 0.1}, {"fid": 3.0, "kid": 0.3}])
    assert out["draws"] == 2 and out["fid"] == 2.0
    assert out["fid_std"] == pytest.approx(math.sqrt(2.0))
    assert M.summarize_draws([{"fid": 1.0}])["fid_std"] == 0.0
    with pytest.raises(ValueError, match="keys"):
        M.summarize_draws([{"fid": 1.0}, {"kid": 1.0}])
    x = _rng(17).standard_normal((3, 50, 4))
    s = M.repeat_metric(lambda draw: M.fid(draw, x[0]), list(x))
    assert s.n == 3 and s.mean > 0 and s.std > 0


def test_metric_table_directions_and_iwae_keys():
    required = {"fid", "kid", "inception_score", "precision", "recall", "density", "coverage",
                "classes_covered", "class_kl_to_uniform_nats", "parzen_ll_nats", "elbo_nats",
                "bits_per_dim", "iwae_nats", "judge_accuracy"}
    assert required <= set(M.METRICS)
    assert all(key == info.key for key, info in M.METRICS.items())
    assert not M.METRICS["fid"].higher_is_better and M.METRICS["inception_score"].higher_is_better
    assert M.METRICS["density"].higher_is_better and M.METRICS["coverage"].higher_is_better
    keys = list(M.METRICS)
    assert keys[keys.index("recall") + 1:][:2] == ["density", "coverage"]
    assert M.metric_info("iwae_k100_nats").higher_is_better
    assert not M.metric_info("iwae_k10_bits_per_dim").higher_is_better
    with pytest.raises(KeyError):
        M.metric_info("iwae_nats_k5")


def test_compute_sample_metrics_keys_and_a_perfect_model():
    rng = _rng(18)
    feats, logits = rng.standard_normal((600, 16)), 5 * rng.standard_normal((600, 10))
    out = M.compute_sample_metrics(feats, logits, feats.copy(), logits, num_classes=10,
                                   is_splits=3, kid_subsets=5, kid_subset_size=1000, seed=0)
    spreads = {"kid_subset_std", "inception_score_split_std"}
    assert set(out) - spreads <= set(M.METRICS) and spreads <= set(out)
    assert all(isinstance(v, float) for v in out.values())
    assert out["fid"] == pytest.approx(0.0, abs=1e-8)
    # KID assumes independent sets: for X against itself the diagonal k(x, x) enters the cross
    # term only, so it is negative by about 2 (mean k(x, x) - mean k(x, y)) / N.
    assert out["kid"] < 0
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0
    assert 1.0 <= out["density"] <= 6 / 5  # (k + 1) / k, k = 5, up to float32 boundary flips
    assert out["classes_covered"] == 10.0 and out["class_kl_to_real_nats"] < 1e-3


@pytest.mark.parametrize(("pr_k", "dc_k", "block"), [(3, 5, 2048), (1, 1, 7), (4, 2, 50)])
def test_manifold_metrics_are_precision_recall_and_density_coverage_in_one_pass(pr_k, dc_k,
                                                                                block):
    """The same four numbers as the two functions (a decision may flip only for a point within
    float32 rounding of a boundary: at most one point's share here)."""
    from genduel.metrics.features import density_coverage, manifold_metrics, precision_recall

    rng = np.random.default_rng(pr_k * 10 + dc_k)
    real, fake = rng.normal(size=(300, 16)), rng.normal(0.3, 1.1, size=(240, 16))
    out = manifold_metrics(real, fake, pr_k=pr_k, dc_k=dc_k, block=block)
    precision, recall = precision_recall(real, fake, k=pr_k, block=block)
    density, coverage = density_coverage(real, fake, k=dc_k, block=block)
    assert out["precision"] == pytest.approx(precision, abs=1 / 240 + 1e-12)
    assert out["recall"] == pytest.approx(recall, abs=1 / 300 + 1e-12)
    assert out["density"] == pytest.approx(density, abs=1 / (dc_k * 240) + 1e-12)
    assert out["coverage"] == pytest.approx(coverage, abs=1 / 300 + 1e-12)
    assert 0 < out["precision"] < 1 and 0 < out["coverage"] < 1  # a case that can fail
    with pytest.raises(ValueError, match="dc_k"):
        manifold_metrics(real, fake, pr_k=3, dc_k=300)
