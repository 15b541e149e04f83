"""The one table of metric keys: label, direction, kind, unit, meaning.

The report reads ``higher_is_better`` from here and never guesses which way is good, and
``kind`` to put each metric in its table (:func:`keys_of_kind`):

* ``sample``: scores of a model's samples against reference images, for VAE, GAN and real data
  alike (the sample-quality table and the verdict);
* ``likelihood``: (bounds on, or estimates of) the log-likelihood of test images;
* ``inference``: what only a model with an encoder q(z | x) can report (latent probes,
  reconstruction errors);
* ``memorization``: nearest-training-image distances of samples against those of test images
  (:mod:`genduel.metrics.memorization`);
* ``latent``: where a VAE's prior draws against its posterior (:mod:`genduel.evaluate.prior_gap`);
* ``protocol``: a property of the evaluation itself (the judge), not of a model.

Key conventions (every producer of metrics files follows them):

* Units are part of the key: ``*_nats`` (natural log units per image, summed over pixels),
  ``bits_per_dim`` (negative log-likelihood divided by ``D ln 2``).
* Importance-weighted bounds carry their sample count in the middle, so the unit suffix stays
  last: ``iwae_k{K}_nats`` and ``iwae_k{K}_bits_per_dim`` (e.g. ``iwae_k100_nats``).
  :func:`metric_info` resolves them to the ``iwae_nats`` / ``bits_per_dim`` rows.
* Spreads are separate keys, never rows of their own: ``<key>_std`` is the sample std over
  independent sample draws (:func:`genduel.metrics.summarize_draws`); ``kid_subset_std`` and
  ``inception_score_split_std`` are the within-draw spreads over KID subsets and IS splits.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

MetricKind = Literal["sample", "likelihood", "inference", "memorization", "latent", "protocol"]
SAMPLE: MetricKind = "sample"
LIKELIHOOD: MetricKind = "likelihood"
INFERENCE: MetricKind = "inference"
MEMORIZATION: MetricKind = "memorization"
LATENT: MetricKind = "latent"
PROTOCOL: MetricKind = "protocol"


class MetricInfo(NamedTuple):
    """One metric: key, human label, direction, kind (see above), unit and what it measures."""

    key: str
    label: str
    higher_is_better: bool
    kind: MetricKind
    unit: str
    description: str


_ROWS = (
    MetricInfo("fid", "FID", False, SAMPLE, "",
               "Frechet distance between Gaussians fitted to judge features of samples and "
               "reference images (Heusel et al. 2017)"),
    MetricInfo("kid", "KID", False, SAMPLE, "",
               "unbiased MMD^2 with the cubic polynomial kernel on judge features, mean over "
               "random subsets (Binkowski et al. 2018)"),
    MetricInfo("inception_score", "Inception Score", True, SAMPLE, "",
               "exp E_x KL(p(y|x) || p(y)) of the judge's class posteriors, mean over splits "
               "(Salimans et al. 2016); 1 ... num_classes"),
    MetricInfo("precision", "Precision", True, SAMPLE, "",
               "share of samples inside the k-NN manifold of the reference features "
               "(Kynkaanniemi et al. 2019): fidelity"),
    MetricInfo("recall", "Recall", True, SAMPLE, "",
               "share of reference images inside the k-NN manifold of the sample features "
               "(Kynkaanniemi et al. 2019): diversity"),
    MetricInfo("density", "Density", True, SAMPLE, "",
               "real k-NN balls holding each sample, / k, mean over samples (Naeem et al. "
               "2020): fidelity robust to real outliers; 1 for matching distributions, can "
               "exceed 1"),
    MetricInfo("coverage", "Coverage", True, SAMPLE, "",
               "share of reference images whose k-NN ball (among reference features) holds a "
               "sample (Naeem et al. 2020): diversity robust to outlying samples"),
    MetricInfo("inception_fid", "FID (Inception-v3)", False, SAMPLE, "",
               "FID on the 2048-d pool features of the standard Inception-v3 (only with "
               "eval.inception_weights); comparable with published FIDs at equal sample counts"),
    MetricInfo("inception_kid", "KID (Inception-v3)", False, SAMPLE, "",
               "KID on Inception-v3 pool features (only with eval.inception_weights)"),
    MetricInfo("inception_is", "Inception Score (Inception-v3)", True, SAMPLE, "",
               "IS from Inception-v3's 1008 logits (only with eval.inception_weights)"),
    MetricInfo("classes_covered", "Classes covered", True, SAMPLE, "classes",
               "classes the judge predicts for at least one sample"),
    MetricInfo("classes_well_covered", "Classes well covered", True, SAMPLE, "classes",
               "classes predicted for at least min_relative_share / K of the samples "
               "(default 0.2 / K, i.e. 2 % for K = 10)"),
    MetricInfo("class_kl_to_uniform_nats", "Class KL to uniform", False, SAMPLE, "nats",
               "KL(predicted-class histogram || uniform) = log K - entropy; 0 when balanced, "
               "log K when every sample gets one class"),
    MetricInfo("class_kl_to_real_nats", "Class KL to reference", False, SAMPLE, "nats",
               "KL(predicted-class histogram of samples || that of the reference images)"),
    MetricInfo("label_accuracy", "Label accuracy (conditional)", True, SAMPLE, "",
               "share of a conditional model's samples the judge assigns to the label they "
               "were drawn with (real row: the judge's accuracy on test images)"),
    MetricInfo("parzen_ll_nats", "Parzen log-likelihood", True, LIKELIHOOD, "nats/image",
               "mean log density of test images under a Gaussian Parzen window on samples "
               "(Goodfellow et al. 2014); a biased, high-variance estimate"),
    MetricInfo("elbo_nats", "ELBO", True, LIKELIHOOD, "nats/image",
               "evidence lower bound on log p(x), mean over test images"),
    MetricInfo("bits_per_dim", "Bits per dim", False, LIKELIHOOD, "bits/dim",
               "negative log-likelihood (bound) / (D ln 2)"),
    MetricInfo("iwae_nats", "IWAE bound", True, LIKELIHOOD, "nats/image",
               "importance-weighted lower bound on log p(x) (Burda et al. 2016); per-K keys "
               "iwae_k{K}_nats"),
    MetricInfo("probe_linear_accuracy", "Linear probe accuracy", True, INFERENCE, "",
               "share of test images whose true label a logistic regression on the VAE's "
               "posterior means mu(x) predicts (trained on train images)"),
    MetricInfo("probe_knn_accuracy", "k-NN probe accuracy", True, INFERENCE, "",
               "share of test images whose true label a k-NN vote (Euclidean, on the VAE's "
               "posterior means mu(x) of train images) predicts"),
    MetricInfo("recon_mse", "Reconstruction MSE", False, INFERENCE, "per pixel, [0, 1] units",
               "mean over test images and pixels of (decoder mean at z = mu(x) - x)^2, pixels "
               "in [0, 1]"),
    MetricInfo("recon_mae_levels", "Reconstruction MAE", False, INFERENCE,
               "8-bit levels per pixel",
               "mean over test images and pixels of |decoder mean at z = mu(x) - x|, in grey "
               "levels 0..255"),
    MetricInfo("nn_ratio_pixels", "NN ratio, pixels", True, MEMORIZATION, "",
               "median Euclidean pixel distance of samples to their nearest train image / the "
               "same for test images; ~1 novel, > 1 off the data, << 1 copies (higher: less "
               "copying)"),
    MetricInfo("copy_share_pixels", "Near-copy share, pixels", False, MEMORIZATION, "",
               "share of samples nearer (pixels) to a train image than the 1 % quantile of the "
               "test images' NN distances; ~0.01 novel, 1 copies"),
    MetricInfo("nn_ratio_features", "NN ratio, judge features", True, MEMORIZATION, "",
               "nn_ratio_pixels on judge features"),
    MetricInfo("copy_share_features", "Near-copy share, judge features", False, MEMORIZATION,
               "", "copy_share_pixels on judge features"),
    MetricInfo("latent_nn_ratio", "Latent NN ratio", False, LATENT, "",
               "median distance of prior draws to the nearest training image's posterior mean / "
               "the same for validation images' posterior means; ~1 draws where data lands, > 1 "
               "draws in the prior's holes"),
    MetricInfo("active_units", "Active latent dimensions", True, LATENT, "dimensions",
               "latent dimensions whose mean KL(q(z_d | x) || N(0, 1)) over validation images "
               "exceeds 0.01 nats"),
    MetricInfo("judge_accuracy", "Judge accuracy", True, PROTOCOL, "",
               "test accuracy of the judge classifier whose features all sample metrics use"),
)

#: key -> MetricInfo, in report order.
METRICS: dict[str, MetricInfo] = {row.key: row for row in _ROWS}


def keys_of_kind(kind: MetricKind) -> tuple[str, ...]:
    """The keys of :data:`METRICS` of one kind, in report order."""
    return tuple(key for key, info in METRICS.items() if info.kind == kind)


_IWAE_KEY = re.compile(r"^iwae_k(\d+)_(nats|bits_per_dim)$")


def metric_info(key: str) -> MetricInfo:
    """The table row of ``key``, resolving ``iwae_k{K}_nats`` / ``iwae_k{K}_bits_per_dim``.

    Raises:
        KeyError: ``key`` is neither in :data:`METRICS` nor an IWAE per-K key.
    """
    if key in METRICS:
        return METRICS[key]
    match = _IWAE_KEY.match(key)
    if match is None:
        raise KeyError(f"unknown metric key {key!r}; known: {sorted(METRICS)} and iwae_k<K>_*")
    k, unit = match.groups()
    base = METRICS["iwae_nats" if unit == "nats" else "bits_per_dim"]
    return base._replace(key=key, label=f"IWAE bound (k={k})" + (" bits/dim" * (unit != "nats")))
