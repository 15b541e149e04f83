"""Distances between two sets of judge features: FID, KID, k-NN precision/recall, density/coverage.

Inputs are ``(N, D)`` numpy arrays or CPU tensors. FID and KID compute in float64; precision,
recall, density and coverage compare distances in float32 (see :func:`precision_recall`).

Why not call torch-fidelity directly (its functions are the references in the tests):
``metric_kid`` cubes the kernel with ``np.power`` (several times the matmul's cost per subset),
``metric_prc`` uses ``torch.kthvalue`` (~7x slower than ``topk`` on CPU) and ``metric_fid`` takes
``eigvals`` of the non-symmetric ``S1 S2`` (general eigensolver, complex rounding noise).
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

#: KID kernel k(x, y) = (x.y / D + 1)^3 (Binkowski et al. 2018, Sec. 4; torch-fidelity default).
KID_DEGREE = 3


def _as_features(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """A float64 ``(N, D)`` array with N >= 2 and finite entries, or a ValueError naming it."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"{name}: expected features of shape (N >= 2, D), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return arr


def fid_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of features, in float64.

    Args:
        features: ``(N, D)``, N >= 2.

    Returns:
        ``mu`` ``(D,)`` and ``sigma = (X - mu)^T (X - mu) / (N - 1)`` ``(D, D)``, as ``np.cov``.
    """
    x = _as_features(features, "features")
    mu = x.mean(axis=0)
    xc = x - mu  # (N, D)
    sigma = xc.T @ xc / (len(x) - 1)  # numpy runs A^T A as a symmetric rank-k update
    return mu, sigma


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr sqrt(S1 S2)`` for symmetric PSD ``S1``, ``S2`` via a symmetric eigenproblem.

    ``S1 S2`` is similar to the symmetric PSD ``M = R^T S2 R`` for any ``R`` with ``R R^T = S1``,
    so ``tr sqrt(S1 S2) = sum_i sqrt(lambda_i(M))``. ``R`` is the Cholesky factor when ``S1`` is
    positive definite (~2.5x cheaper at D = 2048), else ``S1^1/2`` from ``eigh`` (singular
    covariances, e.g. dead ReLU features). Eigenvalues below 0 are rounding; clamped to 0.
    """
    try:
        root = np.linalg.cholesky(sigma1)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(sigma1)
        root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root.T @ sigma2 @ root
    lam = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def fid_from_statistics(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                        sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017).

    ``d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)`` in float64, the trace of the
    matrix square root from a symmetric eigenproblem (:func:`_trace_sqrt_product`), not from the
    non-symmetric ``eigvals(S1 S2)`` or ``sqrtm``. The result is clamped at 0: FID(X, X) is 0 up
    to rounding.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"FID statistics disagree: mu {mu1.shape}, {mu2.shape}; "
                         f"sigma {sigma1.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    value = (diff @ diff + np.trace(sigma1) + np.trace(sigma2)
             - 2.0 * _trace_sqrt_product(sigma1, sigma2))
    return float(max(value, 0.0))


def fid(feat_a: np.ndarray | torch.Tensor, feat_b: np.ndarray | torch.Tensor) -> float:
    """FID between two feature sets ``(N_a, D)`` and ``(N_b, D)``; symmetric in its arguments."""
    return fid_from_statistics(*fid_statistics(feat_a), *fid_statistics(feat_b))


def _kid_rows(x: np.ndarray) -> np.ndarray:
    """Rows ``[x / sqrt(D), 1]``: then ``a . b = x.y / D + 1``, the kernel's base, in one matmul.

    float32: the (m, m) Gram matmuls are the whole cost of KID and run twice as fast; each
    entry's relative error (~1e-7) is far below the spread over subsets, and the kernel sums
    are accumulated in float64 (:func:`_mmd2_unbiased`).
    """
    return np.hstack([x / np.sqrt(x.shape[1]), np.ones((len(x), 1))]).astype(np.float32)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, gram: np.ndarray, cube: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size subsets of :func:`_kid_rows`; gram, cube: (m, m)
    float32 buffers."""
    m = len(x)
    sums = []
    for a, b in ((x, x), (y, y), (x, y)):
        np.matmul(a, b.T, out=gram)  # (m, m) = x.y / D + 1; a @ a.T runs as a rank-k update
        np.multiply(gram, gram, out=cube)
        np.multiply(cube, gram, out=cube)  # k^3 without np.power (~20x slower)
        total = float(cube.sum(dtype=np.float64))  # accumulated in float64
        diag = np.diagonal(gram).astype(np.float64)
        sums.append(total - np.sum(diag ** KID_DEGREE) if a is b else total)
    return (sums[0] + sums[1]) / (m * (m - 1)) - 2.0 * sums[2] / (m * m)


def kid(feat_a: np.ndarray | torch.Tensor, feat_b: np.ndarray | torch.Tensor, *,
        subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2, cubic polynomial kernel, over random subsets.

    Per subset (m rows of each set, drawn without replacement)::

        MMD^2 = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
                - 2 sum_{i,j} k(x_i, y_j) / m^2,     k(x, y) = (x.y / D + 1)^3

    (Binkowski et al. 2018). Unbiased, so it can be slightly negative for equal distributions.
    Subsets are drawn exactly as torch-fidelity's ``kid_features_to_metric`` draws them
    (``np.random.RandomState(seed).choice``, set a then set b), so the values match it.

    Args:
        subset_size: clipped to the smaller set size (with a warning).

    Returns:
        ``(mean, std)`` over subsets; std is the population std (``ddof=0``, as torch-fidelity).
    """
    x, y = _as_features(feat_a, "feat_a"), _as_features(feat_b, "feat_b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"KID: feature dims differ: {x.shape[1]} vs {y.shape[1]}")
    if subsets < 1:
        raise ValueError(f"KID: subsets must be >= 1, got {subsets}")
    m = min(subset_size, len(x), len(y))
    if m < subset_size:
        log.warning("KID subset size %d clipped to %d (set sizes %d, %d)", subset_size, m,
                    len(x), len(y))
    if m < 2:
        raise ValueError(f"KID: subset size must be >= 2, got {m}")
    x, y = _kid_rows(x), _kid_rows(y)
    gram, cube = np.empty((m, m), dtype=np.float32), np.empty((m, m), dtype=np.float32)
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for s in range(subsets):
        xs = x[rng.choice(len(x), m, replace=False)]
        ys = y[rng.choice(len(y), m, replace=False)]
        mmds[s] = _mmd2_unbiased(xs, ys, gram, cube)
    return float(mmds.mean()), float(mmds.std())


def _knn_radii_sq(x: torch.Tensor, x_sq: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """Squared distance from each row of x to its k-th nearest other row ``(N,)``.

    The point itself is the first of the ``k + 1`` smallest (its distance is set to exactly 0),
    as ``kthvalue(k + 1)`` in torch-fidelity's ``metric_prc``. Rows are ranked by
    ``|x_j|^2 - 2 x_i.x_j``, the squared distance less the row constant ``|x_i|^2``.
    """
    radii = []
    for start in range(0, len(x), block):
        rows = torch.arange(start, min(start + block, len(x)))
        g = torch.addmm(x_sq.unsqueeze(0), x[rows], x.T, alpha=-2.0)  # (b, N)
        g[rows - start, rows] = -x_sq[rows]  # the point itself, at distance exactly 0
        kth = g.topk(k + 1, dim=1, largest=False).values[:, k]
        radii.append((kth + x_sq[rows]).clamp_(min=0.0))
    return torch.cat(radii)


# The k-NN radii of the last real set seen, per k: evaluate compares every model's samples with
# one real reference, whose radii (for precision/recall's k and density/coverage's) are then
# computed once instead of once per row and draw.
_REAL_RADII: dict[tuple, dict[int, torch.Tensor]] = {}


def _real_radii_sq(r: torch.Tensor, r_sq: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """:func:`_knn_radii_sq` of the (centred, float32) real set, remembered for the last set by a
    digest of its bytes (so a changed array is never served stale radii), for each k asked."""
    key = (tuple(r.shape), hashlib.blake2b(r.numpy().tobytes(), digest_size=16).digest())
    if key not in _REAL_RADII:
        _REAL_RADII.clear()
        _REAL_RADII[key] = {}
    radii = _REAL_RADII[key]
    if k not in radii:
        radii[k] = _knn_radii_sq(r, r_sq, k, block)
    return radii[k]


def precision_recall(real_feat: np.ndarray | torch.Tensor, fake_feat: np.ndarray | torch.Tensor,
                     *, k: int = 3, block: int = 2048) -> tuple[float, float]:
    """Improved precision and recall of k-NN feature manifolds (Kynkaanniemi et al. 2019).

    The manifold of a set is the union of balls around its points, each of radius the distance
    to the point's k-th nearest neighbour in the same set. Precision is the share of fake points
    inside the real manifold, recall the share of real points inside the fake manifold
    (``<=``, as torch-fidelity). Both sets are centred on the real mean (distances do not change;
    float32 rounding does) and compared in float32: a ball-membership decision flips only for a
    point within ~1e-6 relative of a boundary, and float32 halves the cost of the three
    ``N x N`` distance passes. Blocks of ``block`` rows bound memory at ``block * N`` floats.

    Returns:
        ``(precision, recall)`` in [0, 1].
    """
    real, fake = _as_features(real_feat, "real_feat"), _as_features(fake_feat, "fake_feat")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision_recall: feature dims differ: {real.shape} vs {fake.shape}")
    if not 1 <= k < min(len(real), len(fake)):
        raise ValueError(f"precision_recall: need 1 <= k < set sizes, got k={k}")
    centre = real.mean(axis=0)
    r = torch.from_numpy(real - centre).float()
    f = torch.from_numpy(fake - centre).float()
    r_sq, f_sq = r.square().sum(1), f.square().sum(1)
    r_rad, f_rad = _real_radii_sq(r, r_sq, k, block), _knn_radii_sq(f, f_sq, k, block)
    # With g_ij = |r_j|^2 - rad_r_j - 2 f_i.r_j, so that d2_ij = g_ij + |f_i|^2 + rad_r_j:
    # fake i is in real ball j iff g_ij <= -|f_i|^2; real j is in fake ball i iff
    # g_ij + |f_i|^2 - rad_f_i <= -rad_r_j. One matmul and two reductions per block.
    in_real, margin = [], torch.full((len(r),), torch.inf)
    for start in range(0, len(f), block):
        rows = slice(start, start + block)
        g = torch.addmm((r_sq - r_rad).unsqueeze(0), f[rows], r.T, alpha=-2.0)  # (b, N_real)
        in_real.append(g.amin(1) <= -f_sq[rows])
        g += (f_sq[rows] - f_rad[rows]).unsqueeze(1)
        margin = torch.minimum(margin, g.amin(0))
    precision = torch.cat(in_real).double().mean().item()
    recall = (margin <= -r_rad).double().mean().item()
    return precision, recall


def density_coverage(real_feat: np.ndarray | torch.Tensor, fake_feat: np.ndarray | torch.Tensor,
                     *, k: int = 5, block: int = 2048) -> tuple[float, float]:
    """Density and coverage of fake features on the real k-NN balls (Naeem et al. 2020).

    With ``B_i`` the closed ball around real ``X_i`` of radius ``NND_k(X_i)``, the distance to
    its k-th nearest other real point, and fakes ``Y_1..Y_M``::

        density  = 1 / (k M) sum_j sum_i 1[Y_j in B_i]
        coverage = 1 / N     sum_i 1[exists j: Y_j in B_i]

    Density (fidelity) counts how many real balls hold each fake: a fake inside only the
    oversized ball of a real outlier adds 1/k, where precision counts it fully. It is 1 in
    expectation when fakes and reals are identically distributed, and exceeds 1 when fakes
    crowd into dense real regions. Coverage (diversity, in [0, 1]) is the share of real balls
    holding a fake: unlike recall it builds no balls around fakes, which outlying fakes inflate.
    k = 5 as the paper recommends. Membership is ``<=`` as in :func:`precision_recall` (the
    authors' ``prdc`` package uses ``<``; the two differ only for a fake exactly on a boundary,
    e.g. fakes equal to reals), and distances are compared in float32 on sets centred on the
    real mean, as there. Blocks of ``block`` rows bound memory at ``block * N`` floats.

    Args:
        real_feat: ``(N, D)`` real features, N > k.
        fake_feat: ``(M, D)`` fake features, M >= 2.
        k: neighbourhood size of the real balls.
        block: fake rows (and real rows for the radii) per distance pass.

    Returns:
        ``(density, coverage)``.
    """
    real, fake = _as_features(real_feat, "real_feat"), _as_features(fake_feat, "fake_feat")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"density_coverage: feature dims differ: {real.shape} vs {fake.shape}")
    if not 1 <= k < len(real):
        raise ValueError(f"density_coverage: need 1 <= k < real set size {len(real)}, got k={k}")
    centre = real.mean(axis=0)
    r = torch.from_numpy(real - centre).float()
    f = torch.from_numpy(fake - centre).float()
    r_sq, f_sq = r.square().sum(1), f.square().sum(1)
    r_rad = _real_radii_sq(r, r_sq, k, block)
    # g_ij = |r_j|^2 - rad_j - 2 f_i.r_j: fake i is in real ball j iff g_ij <= -|f_i|^2, the
    # test precision_recall makes, here counted (density) and or-ed over fakes (coverage).
    hits, covered = 0, torch.zeros(len(r), dtype=torch.bool)
    for start in range(0, len(f), block):
        rows = slice(start, start + block)
        g = torch.addmm((r_sq - r_rad).unsqueeze(0), f[rows], r.T, alpha=-2.0)  # (b, N_real)
        inside = g <= -f_sq[rows].unsqueeze(1)  # (b, N_real)
        hits += int(inside.sum())
        covered |= inside.any(0)
    return hits / (k * len(f)), covered.double().mean().item()


def manifold_metrics(real_feat: np.ndarray | torch.Tensor, fake_feat: np.ndarray | torch.Tensor,
                     *, pr_k: int = 3, dc_k: int = 5, block: int = 2048) -> dict[str, float]:
    """:func:`precision_recall` (k = ``pr_k``) and :func:`density_coverage` (k = ``dc_k``) from
    one pass over the fake-to-real distances: the ``N_fake x N_real`` product, the costly part
    of both, is computed once per block and tested against both sets of real radii.

    The same definitions, centring and float32 comparisons as the two functions; a decision can
    differ from theirs only for a point within float32 rounding of a ball's boundary (the
    product is formed once here, then offset, where they fold the offset into it).

    Returns:
        ``precision``, ``recall``, ``density``, ``coverage``.
    """
    real, fake = _as_features(real_feat, "real_feat"), _as_features(fake_feat, "fake_feat")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"manifold_metrics: feature dims differ: {real.shape} vs {fake.shape}")
    if not 1 <= pr_k < min(len(real), len(fake)):
        raise ValueError(f"manifold_metrics: need 1 <= pr_k < set sizes, got {pr_k}")
    if not 1 <= dc_k < len(real):
        raise ValueError(f"manifold_metrics: need 1 <= dc_k < real set size, got {dc_k}")
    centre = real.mean(axis=0)
    r = torch.from_numpy(real - centre).float()
    f = torch.from_numpy(fake - centre).float()
    r_sq, f_sq = r.square().sum(1), f.square().sum(1)
    pr_rad, f_rad = _real_radii_sq(r, r_sq, pr_k, block), _knn_radii_sq(f, f_sq, pr_k, block)
    dc_rad = _real_radii_sq(r, r_sq, dc_k, block)
    pr_bias, dc_bias = (r_sq - pr_rad).unsqueeze(0), (r_sq - dc_rad).unsqueeze(0)
    in_real, margin = [], torch.full((len(r),), torch.inf)
    hits, covered = 0, torch.zeros(len(r), dtype=torch.bool)
    for start in range(0, len(f), block):
        rows = slice(start, start + block)
        dot = torch.mm(f[rows], r.T).mul_(-2.0)  # (b, N_real): -2 f_i.r_j
        bound = -f_sq[rows].unsqueeze(1)
        inside = dot + dc_bias <= bound  # fake i in real dc_k-ball j
        hits += int(inside.sum())
        covered |= inside.any(0)
        g = dot.add_(pr_bias)  # as precision_recall's g, in place
        in_real.append(g.amin(1) <= bound[:, 0])
        g += (f_sq[rows] - f_rad[rows]).unsqueeze(1)
        margin = torch.minimum(margin, g.amin(0))
    return {"precision": torch.cat(in_real).double().mean().item(),
            "recall": (margin <= -pr_rad).double().mean().item(),
            "density": hits / (dc_k * len(f)), "coverage": covered.double().mean().item()}
