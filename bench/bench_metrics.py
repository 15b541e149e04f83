"""Time every metric on evaluate-sized inputs; prints a table, asserts nothing.

    python bench/bench_metrics.py               # 10k x 256 features, 10k x 10 logits
    python bench/bench_metrics.py --compare     # also torch-fidelity's KID and PRC

Target: the sample metrics of one draw (``compute_sample_metrics``) within ~5 s on 2 CPU cores.
FID on 10k x 2048 (Inception-sized) and Parzen on 784 pixels are listed for reference.
Timings are the median of ``--repeats`` runs; the host drifts, compare rows of one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from genduel import metrics as M


def _time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _features(rng: np.random.Generator, n: int, d: int, shift: float) -> np.ndarray:
    """ReLU-like, correlated features as a judge's penultimate layer gives (float32)."""
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return np.maximum(rng.standard_normal((n, d)) @ mix + shift, 0.0).astype(np.float32)


def sample_rows(n: int, d: int, k: int, repeats: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    real, fake = _features(rng, n, d, 0.0), _features(rng, n, d, 0.1)
    real_logits = (3 * rng.standard_normal((n, k))).astype(np.float32)
    fake_logits = (3 * rng.standard_normal((n, k))).astype(np.float32)
    stats = M.fid_statistics(real)
    rows = [
        (f"fid_statistics ({n}x{d})", lambda: M.fid_statistics(fake)),
        ("fid_from_statistics", lambda: M.fid_from_statistics(*stats, *stats)),
        ("kid (100 subsets x 1000)", lambda: M.kid(fake, real, subsets=100, subset_size=1000)),
        ("inception_score (10 splits)", lambda: M.inception_score(fake_logits, splits=10)),
        ("precision_recall (k=3)", lambda: M.precision_recall(real, fake, k=3)),
        ("density_coverage (k=5)", lambda: M.density_coverage(real, fake, k=5)),
        ("class_coverage + kl_to_reference", lambda: (M.class_coverage(fake_logits, k),
                                                      M.class_kl_to_reference(fake_logits,
                                                                              real_logits, k))),
        ("compute_sample_metrics (all)", lambda: M.compute_sample_metrics(
            fake, fake_logits, real, real_logits, num_classes=k, seed=0)),
    ]
    return [(name, _time(fn, repeats)) for name, fn in rows]


def reference_rows(n: int, repeats: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(1)
    a, b = _features(rng, n, 2048, 0.0), _features(rng, n, 2048, 0.1)
    sa, sb = M.fid_statistics(a), M.fid_statistics(b)
    pixels = rng.random((n, 784))  # Parzen centres: samples as flattened [0, 1] pixels
    test = rng.random((1000, 784))
    sigmas = np.logspace(-1, 0, 10)
    return [
        (f"fid_statistics ({n}x2048)", _time(lambda: M.fid_statistics(a), repeats)),
        ("fid_from_statistics (2048)", _time(lambda: M.fid_from_statistics(*sa, *sb), repeats)),
        (f"parzen ({n} centres x 784, 1000 test, 1 sigma)",
         _time(lambda: M.parzen_log_likelihood(pixels, test, 0.2), repeats)),
        ("select_parzen_sigma (same, 10 sigmas)",
         _time(lambda: M.select_parzen_sigma(pixels, test, sigmas), repeats)),
    ]


def library_rows(n: int, d: int) -> list[tuple[str, float]]:
    """torch-fidelity on the same inputs (KID timed on 10 subsets and scaled to 100)."""
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    rng = np.random.default_rng(0)
    real, fake = (torch.from_numpy(_features(rng, n, d, s)) for s in (0.0, 0.1))
    kid10 = _time(lambda: kid_features_to_metric(fake.double(), real.double(), kid_subsets=10,
                                                 kid_subset_size=1000, verbose=False), 1)
    prc = _time(lambda: calculate_precision_recall_full(fake, real, neighborhood=3), 1)
    return [("torch-fidelity kid (x10 of 10 subsets)", 10 * kid10),
            ("torch-fidelity prc full (float32)", prc)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-reference", action="store_true", help="no 2048-d FID / Parzen")
    parser.add_argument("--compare", action="store_true", help="also time torch-fidelity")
    args = parser.parse_args(argv)

    rows = sample_rows(args.n, args.dim, args.classes, args.repeats)
    parts = sum(t for name, t in rows[:-1])
    rows.append(("sum of the parts above", parts))
    if not args.skip_reference:
        rows += reference_rows(args.n, max(1, args.repeats // 3))
    if args.compare:
        rows += library_rows(args.n, args.dim)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    width = max(len(name) for name, _ in rows)
    print(f"{'metric':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.3f}")


if __name__ == "__main__":
    main()
