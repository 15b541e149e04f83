"""Nearest-neighbour distances and the memorization summary: exact copies, novel draws."""

from __future__ import annotations

import numpy as np

from genduel.metrics.memorization import memorization_stats, nearest_neighbours


def test_nearest_neighbours_match_brute_force_and_give_zero_for_copies():
    rng = np.random.default_rng(0)
    ref = rng.random((300, 20)).astype(np.float32)
    queries = np.concatenate([ref[[5, 17]], rng.random((50, 20)).astype(np.float32)])
    dist, idx = nearest_neighbours(queries, ref, chunk=7)
    brute = np.linalg.norm(queries[:, None].astype(np.float64) - ref[None], axis=2)
    np.testing.assert_array_equal(idx, brute.argmin(1))
    np.testing.assert_allclose(dist, brute.min(1), rtol=1e-12)
    assert dist[0] == 0.0 and dist[1] == 0.0 and list(idx[:2]) == [5, 17]


def test_novel_samples_score_like_test_data_and_copies_are_flagged():
    rng = np.random.default_rng(1)
    train, test, fresh = (rng.normal(size=(n, 10)) for n in (2000, 1000, 1000))
    test_nn, _ = nearest_neighbours(test, train)
    novel = memorization_stats(nearest_neighbours(fresh, train)[0], test_nn)
    assert abs(novel["nn_ratio"] - 1) < 0.05 and novel["copy_share"] < 0.03
    copies = memorization_stats(nearest_neighbours(train[:1000], train)[0], test_nn)
    assert copies == {"nn_ratio": 0.0, "copy_share": 1.0}
    noisy = memorization_stats(nearest_neighbours(train[:1000] + 0.01, train)[0], test_nn)
    assert noisy["nn_ratio"] < 0.1 and noisy["copy_share"] == 1.0
    far = memorization_stats(nearest_neighbours(fresh * 3, train)[0], test_nn)
    assert far["nn_ratio"] > 2 and far["copy_share"] == 0.0
