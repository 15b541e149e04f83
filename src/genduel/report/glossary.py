"""The "How to read this" section: every number of the report explained once.

Each table of the report links here (:func:`link`: an anchor in the HTML, GitHub's heading
anchor in the Markdown). Every metric of
:data:`genduel.metrics.table.METRICS` that a table can show has one entry in :data:`EXPLAIN`
(checked at import), printed with its direction from the metric table.
"""

from __future__ import annotations

from genduel.metrics.table import INFERENCE, LIKELIHOOD, MEMORIZATION, METRICS, SAMPLE, keys_of_kind
from genduel.report.document import Block, Heading, Para, slug

TITLE = "How to read this"

#: (sub-heading, keys) of the section, in order; sub-headings unique in the report.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Reading the sample metrics", keys_of_kind(SAMPLE)),
    ("Reading the likelihood rows", keys_of_kind(LIKELIHOOD)),
    ("Reading the inference rows", keys_of_kind(INFERENCE)),
    ("Reading the memorization check", keys_of_kind(MEMORIZATION)),
)
_PART_OF_KIND = dict(zip((SAMPLE, LIKELIHOOD, INFERENCE, MEMORIZATION), (t for t, _ in PARTS)))


def link(kind: str | None = None) -> str:
    """A table's caption: a link to the explanation of its metrics (of ``kind``), or to the
    whole section."""
    if kind is None:
        return f"How to read this table: [{TITLE}](#{slug(TITLE)})."
    part = _PART_OF_KIND[kind]
    return (f"How to read this table: [{part[0].lower() + part[1:]}](#{slug(part)}) in "
            f"[{TITLE}](#{slug(TITLE)}).")

EXPLAIN: dict[str, str] = {
    "fid": "Fréchet distance between Gaussians fitted to the judge's features of the samples "
           "and of the reference images (Heusel et al. 2017): it grows when samples are off the "
           "data or miss part of it. 0 for identical feature statistics; biased upwards at small "
           "sample sizes, so the *Real data* column (held-out images, same size) is the floor.",
    "kid": "Kernel Inception Distance: an unbiased estimate of the squared MMD between sample "
           "and reference features with a cubic polynomial kernel, averaged over random subsets "
           "(Bińkowski et al. 2018). Like FID but unbiased, so 0 is reachable.",
    "inception_fid": "FID with the standard Inception-v3 features (only with "
                     "eval.inception_weights); comparable with published FIDs at equal sample "
                     "counts, unlike the judge FID.",
    "inception_kid": "KID with Inception-v3 features (only with eval.inception_weights).",
    "inception_score": "exp E_x KL(p(y ∣ x) ‖ p(y)) of the judge's class posteriors (Salimans et "
                       "al. 2016), from 1 to the number of classes K: high when each sample is "
                       "confidently one class and all classes occur. Blind to realism within a "
                       "class.",
    "inception_is": "Inception Score from Inception-v3's 1008 ImageNet classes (only with "
                    "eval.inception_weights); of little meaning for grey 28 × 28 clothes.",
    "precision": "Share of samples that fall inside the k-NN balls of the reference features "
                 "(Kynkäänniemi et al. 2019): fidelity, how many samples look like data.",
    "recall": "Share of reference images that fall inside the k-NN balls of the sample features: "
              "diversity, how much of the data the samples reach.",
    "density": "How many reference k-NN balls hold each sample, divided by k and averaged "
               "(Naeem et al. 2020): fidelity that a few outlying reference images with huge "
               "balls cannot inflate. About 1 when samples match the data; above 1 when they "
               "crowd into its dense regions.",
    "coverage": "Share of reference images whose k-NN ball (among the reference features) "
                "holds at least one sample (Naeem et al. 2020): diversity that outlying "
                "samples cannot inflate, since it builds no balls around samples.",
    "classes_covered": "Classes the judge assigns to at least one sample.",
    "classes_well_covered": "Classes the judge assigns to at least 0.2 / K of the samples (2 % "
                            "for K = 10). Counted per draw and averaged, so 9.67 means one draw "
                            "missed a class. On fewer samples (the GAN diagnostics use the 2,000 "
                            "saved per epoch) a class near the 2 % line can fall either side.",
    "class_kl_to_uniform_nats": "KL(predicted-class histogram ‖ uniform) = log K − entropy: 0 "
                                "for balanced classes, log K when every sample is one class.",
    "class_kl_to_real_nats": "KL from the samples' predicted-class histogram to that of the "
                             "reference images: 0 when the classes come in the data's "
                             "proportions.",
    "label_accuracy": "For a class-conditional model: the share of samples the judge assigns to "
                      "the label they were drawn with. Real data: the judge's test accuracy.",
    "parzen_ll_nats": "Mean log density of test images under a Gaussian kernel density fitted "
                      "to samples (Goodfellow et al. 2014), nats per image, pixels in [0, 1]; "
                      "± is the standard error over test images. Weak: biased, high variance, "
                      "ranks blurry samples well (Theis et al. 2016). Compare only across its "
                      "own row.",
    "elbo_nats": "Evidence lower bound on log p(x) of the 8-bit test images under the VAE's "
                 "discretized-logistic decoder, nats per image: a true lower bound on the "
                 "log-likelihood.",
    "bits_per_dim": "The negative bound per pixel in bits: −bound / (D ln 2), D = pixels. The "
                    "unit of published likelihoods; 8 bits/dim is a uniform guess over 256 grey "
                    "levels.",
    "iwae_nats": "Importance-weighted bound with k posterior samples (Burda et al. 2016): "
                 "tighter than the ELBO as k grows (k = 1 is the ELBO), still a lower bound.",
    "probe_linear_accuracy": "Accuracy on the true test labels of a logistic regression on the "
                             "VAE's posterior means μ(x) (fit on train images): how linearly "
                             "the latent space separates the classes. The judge's accuracy is "
                             "the ceiling.",
    "probe_knn_accuracy": "The same with a k-NN vote in latent space: are neighbours in z "
                          "neighbours in class?",
    "recon_mse": "Mean squared error of the reconstruction at z = μ(x), pixels in [0, 1].",
    "recon_mae_levels": "Mean absolute error of the reconstruction, in grey levels 0-255.",
    "nn_ratio_pixels": "Median pixel distance of samples to their nearest training image divided "
                       "by the same for held-out test images: about 1 for samples as novel as "
                       "new data, above 1 for samples off the data (blurry or broken), far below "
                       "1 for copies. Higher means less copying, not better samples.",
    "copy_share_pixels": "Share of samples closer to a training image than 99 % of test images "
                         "are: about 0.01 when nothing is copied, 1 for a model that returns "
                         "training images.",
    "nn_ratio_features": "The NN ratio on judge features instead of pixels.",
    "copy_share_features": "The near-copy share on judge features instead of pixels.",
}
_SHOWN = {k for _, keys in PARTS for k in keys}
if _SHOWN != set(EXPLAIN):
    raise ImportError(f"glossary.EXPLAIN must explain exactly the metrics the report shows; "
                      f"missing {sorted(_SHOWN - set(EXPLAIN))}, extra "
                      f"{sorted(set(EXPLAIN) - _SHOWN)}")

GENERAL = (
    "**Mean ± std.** Each sample metric is the mean over independent draws of samples from one "
    "trained model, ± their standard deviation. The ± says how much the number moves when new "
    "samples are drawn; it does not cover training noise (another seed, another machine), "
    "which is larger.",
    "**Winner and ties.** A model wins a row when the gap to the other is at least the combined "
    "uncertainty √(s_VAE² + s_GAN²) of the two ±; closer than that the row is marked *tie*. "
    "↑ / ↓ in the *Better* column give the direction. In the baseline ladder ✓ is better, ✗ "
    "worse and ≈ within noise.",
    "**Columns.** *Real data* scores held-out test images the same way: what a perfect model "
    "gets at this sample size. *Per-class pixel Gaussians* and *one pixel Gaussian* sample from "
    "Gaussians fitted to the training pixels (per class, or all images): a model that loses to "
    "them on a metric has learned, by that metric, no more than pixel statistics.",
    "**Judge features.** FID, KID, precision and recall use the features of the pipeline's own "
    "judge classifier, not Inception-v3, so compare them across GenDuel runs with the same "
    "judge checksum (see Protocol), not with published numbers.",
)


def glossary_blocks() -> list[Block]:
    """The section: the general rules, then one paragraph per metric with its direction."""
    blocks: list[Block] = [Heading(TITLE), *(Para(text) for text in GENERAL)]
    for title, keys in PARTS:
        blocks.append(Heading(title, 3))
        for key in keys:
            info = METRICS[key]
            direction = "higher is better" if info.higher_is_better else "lower is better"
            unit = f", {info.unit}" if info.unit else ""
            blocks.append(Para(f"**{info.label}** ({direction}{unit}). {EXPLAIN[key]}"))
    return blocks
