"""The report's sections: each a function of the inputs (and, where it shows figures, of the
figure paths of :func:`genduel.report.figures.draw_all`) returning its document blocks.

Sections whose inputs are optional return ``[]`` when those are absent: "Models compared"
without ``model_params`` in the eval files, "GAN training diagnostics" without
``eval/gan_diagnostics.csv``, "Latent space" without study figures. Which table a metric goes
in comes from its ``kind`` in :data:`genduel.metrics.table.METRICS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genduel import config
from genduel.evaluate import gan_diagnostics as diag
from genduel.metrics.table import INFERENCE, MEMORIZATION, METRICS, SAMPLE, keys_of_kind
from genduel.report.document import Block, Figure, Heading, Para, Table, fmt
from genduel.report.inputs import BASELINES, COLUMNS, ROWS, ReportInputs
from genduel.report.variants import DASH, settings_rows

Figures = Mapping[str, str]  # figure name -> path relative to the report

NO_ENCODER = "no inference model (no encoder)"
PARZEN_CAVEAT = (
    "**Parzen window, read with care.** The Parzen row fits a Gaussian kernel density (one "
    "kernel of width σ per sample, pixels scaled to [0, 1]) to each model's samples, or to train "
    "images for the real-data column, picks σ on validation images and reports the mean log "
    "density of test images, as in Table 1 of Goodfellow et al. (2014); ± is the standard error "
    "over the test images. It is a weak estimate: biased, with high variance in "
    "high-dimensional pixel space, dependent on σ and on the pixel scale, and Euclidean pixel "
    "distance can rank blurry or memorized samples above good ones (Theis et al. 2016). It is "
    "a density on [0, 1] pixels, not a probability of 8-bit images, so it is not comparable "
    "with the ELBO and IWAE rows: compare it only across the columns of its own row.")

DIAGNOSTICS_NOTE = (
    f"**Reading the flags** (heuristics with hand-picked thresholds; check them against the "
    f"per-epoch sample grids). *Discriminator saturated*: D classifies at least "
    f"{diag.SATURATED_ACCURACY:.0%} of real and fake images right: it rejects the fakes "
    f"confidently, and as D(G(z)) → 0 the minimax generator's gradient vanishes (Goodfellow et "
    f"al. 2014, sec. 3); the non-saturating loss keeps a gradient there. For WGAN-GP the "
    f"same accuracy only says the critic separates the two sets: critic gradients do not "
    f"saturate. *Near equilibrium*: "
    f"accuracy within {diag.EQUILIBRIUM_TOLERANCE} of 0.5: D cannot tell real from fake, the "
    f"D = 1/2 of the theory, or D has stopped learning. *Losses oscillate*: the per-step std of "
    f"a loss exceeds {diag.OSCILLATION_RELATIVE_STD} × its scale (the larger of its |epoch mean| "
    f"and log 2; for WGAN-GP, of the critic gap f(x) − f(G(z)) and log 2). *Possible mode "
    f"collapse*: the judge finds fewer than K − {diag.COLLAPSE_MISSING_CLASSES} classes well "
    f"covered in the epoch's samples, or their class histogram is more than log 2 nats from "
    f"uniform (it spreads like fewer than K/2 classes), or {diag.COLLAPSE_LOST_CLASSES} or more "
    f"well-covered classes were lost since the previous epoch.")


def _arrow(key: str) -> str:
    return "↑ higher" if METRICS[key].higher_is_better else "↓ lower"


def header_blocks(inp: ReportInputs) -> list[Block]:
    """Title, what was compared and how, and the verdict by metric."""
    proto = inp.protocol
    return [
        Heading(inp.title, 1),
        Para(f"Dataset **{inp.manifest.get('dataset')}**, code commit `{inp.commit}`. Every "
             f"number below is the mean ± std over {proto['draws']} independent draws of "
             f"{proto['num_samples']} samples per model; the *Real data* column scores held-out "
             "test images the same way, i.e. what a perfect model would get at this sample size."),
        Para("**Verdict by metric.** " + winners(inp.evals)),
    ]


def winners(evals: dict[str, dict[str, Any]]) -> str:
    """One sentence per sample metric naming the better model."""
    parts = []
    for key in keys_of_kind(SAMPLE):
        if key not in evals["vae"] or key not in evals["gan"]:
            continue
        v, g = evals["vae"][key], evals["gan"][key]
        if v == g:
            continue
        better = "VAE" if (v > g) == METRICS[key].higher_is_better else "GAN"
        parts.append(f"{METRICS[key].label}: **{better}**")
    return "; ".join(parts) + "." if parts else "No sample metric separates the models."


def model_blocks(inp: ReportInputs) -> list[Block]:
    """The "Models compared" section from each eval JSON's ``model_params``; [] when absent."""
    vae, gan = inp.evals["vae"].get("model_params"), inp.evals["gan"].get("model_params")
    if vae is None and gan is None:
        return []
    blocks: list[Block] = [Heading("Models compared"),
                           Table(["Setting", "VAE", "GAN"], settings_rows(vae, gan))]
    vae_cond, gan_cond = bool((vae or {}).get("conditional")), bool((gan or {}).get("conditional"))
    if vae_cond:
        blocks.append(Para(
            "The VAE is class-conditional, so it models p(x ∣ y) with a uniform p(y) = 1/K. Its "
            "likelihood rows still bound the marginal log p(x) = log Σ_y p(y) p(x ∣ y): the ELBO "
            "row is ELBO(x ∣ true y) − log K (q(y ∣ x) a point mass on the true label), the "
            "IWAE rows enumerate the K labels, log p(x) ≥ logsumexp_y IWAE_k(x ∣ y) − log K "
            "(K bound evaluations per image)."))
    if vae_cond or gan_cond:
        which = ("VAE and GAN draw their" if vae_cond and gan_cond
                 else f"{'VAE' if vae_cond else 'GAN'} draws its")
        blocks.append(Para(
            f"The conditional {which} samples with labels drawn uniformly over the K "
            "classes, so the sample metrics see balanced classes by construction: class "
            "coverage measures whether the model honours the label, not whether it learned the "
            "class frequencies."))
    return blocks


def metric_rows(evals: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per sample metric present in the files: label, direction, then every row of
    :data:`ROWS` (models, real data, baselines)."""
    rows = []
    for key in keys_of_kind(SAMPLE):
        if not any(key in evals.get(m, {}) for m in ROWS):
            continue
        cells = [fmt(evals.get(m, {}).get(key), evals.get(m, {}).get(f"{key}_std"))
                 for m in ROWS]
        rows.append([METRICS[key].label, _arrow(key), *cells])
    return rows


def sample_metric_blocks(inp: ReportInputs) -> list[Block]:
    """The sample-quality table (judge features), models, real data and baselines side by side."""
    return [
        Heading("Sample quality and diversity (judge features)"),
        Table(["Metric", "Better", *(COLUMNS[m] for m in ROWS)], metric_rows(inp.evals)),
        Para("FID and KID here use the features of the pipeline's own judge classifier, not "
             "Inception-v3: compare them across GenDuel runs with the same judge checksum, not "
             "with numbers published for Inception features. The two baseline columns learn "
             "nothing but the mean and covariance of the training pixels (of each class, or of "
             "all images); a model that loses to them on a metric has not learned, by that "
             "metric, more than pixel statistics."),
    ]


#: Metrics the ladder compares: every sample metric but the conditional-only label accuracy,
#: and the Parzen estimate (the one likelihood every row has).
LADDER_KEYS = (*(k for k in keys_of_kind(SAMPLE) if k != "label_accuracy"), "parzen_ll_nats")


def beats(model: dict[str, Any], rung: dict[str, Any], key: str) -> str | None:
    """"✓" when ``model`` is strictly better than ``rung`` on ``key``, "✗" when worse, "=" when
    equal, None when either lacks the key."""
    a, b = model.get(key), rung.get(key)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return None
    if a == b:
        return "="
    return "✓" if (a > b) == METRICS[key].higher_is_better else "✗"


def ladder_rows(evals: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Metric, direction, then for VAE and GAN whether each beats real data, the per-class
    Gaussians and the one pixel Gaussian."""
    rungs = ("real", *BASELINES)
    rows = []
    for key in LADDER_KEYS:
        cells = [beats(evals.get(m, {}), evals.get(r, {}), key)
                 for m in ("vae", "gan") for r in rungs]
        if all(c is None for c in cells):
            continue
        rows.append([METRICS[key].label, _arrow(key), *(c or DASH for c in cells)])
    return rows


def ladder_summary(evals: dict[str, dict[str, Any]], model: str) -> str:
    """"<Model> beats the per-class pixel Gaussians on n of m metrics (...)" for both rungs."""
    parts = []
    for rung in BASELINES:
        won = [METRICS[k].label for k in LADDER_KEYS
               if beats(evals.get(model, {}), evals.get(rung, {}), k) == "✓"]
        total = sum(beats(evals.get(model, {}), evals.get(rung, {}), k) is not None
                    for k in LADDER_KEYS)
        which = ": " + ", ".join(won) if won else ""
        name = COLUMNS[rung][0].lower() + COLUMNS[rung][1:]
        parts.append(f"the {name} on {len(won)} of {total}{which}")
    return f"The {model.upper()} beats " + "; ".join(parts) + "."


def ladder_blocks(inp: ReportInputs) -> list[Block]:
    """The baseline ladder: for each model and metric, which rungs it beats."""
    rungs = ("Real data", "Per-class G.", "Pixel G.")
    header = ["Metric", "Better", *(f"{m} vs {r}" for m in ("VAE", "GAN") for r in rungs)]
    return [
        Heading("Against the baseline ladder"),
        Para("Every number needs a scale. ✓: the model is better than that row on the metric, "
             "✗: worse. *Real data* (held-out test images) is the floor a perfect model reaches "
             "at this sample size; the *per-class pixel Gaussians* (mean and full covariance "
             "of each class's training pixels) and *one pixel Gaussian* learn nothing else."),
        Table(header, ladder_rows(inp.evals)),
        Para(" ".join(ladder_summary(inp.evals, m) for m in ("vae", "gan"))),
    ]


def memorization_rows(evals: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Row name, then the memorization keys (pixels, judge features) of every sampler."""
    keys = keys_of_kind(MEMORIZATION)
    return [[COLUMNS[m], *(fmt(evals[m].get(k)) for k in keys)]
            for m in ("vae", "gan", *BASELINES) if any(k in evals.get(m, {}) for k in keys)]


def memorization_blocks(inp: ReportInputs, figs: Figures) -> list[Block]:
    """The memorization check: NN-distance ratios and near-copy shares, and the figures of
    samples beside their nearest training images; [] when the eval files have none."""
    rows = memorization_rows(inp.evals)
    if not rows:
        return []
    header = ["Samples", *(METRICS[k].label + (" (≈ 1: novel, ≪ 1: copies)" if "ratio" in k
                                               else " (≈ 0.01: novel, 1: copies)")
                           for k in keys_of_kind(MEMORIZATION))]
    blocks: list[Block] = [
        Heading("Memorization check"),
        Para("Is a model copying its training set? Each sample is matched to its nearest "
             "training image, and so is each of as many held-out test images, which show how "
             "close new data from the same distribution lies to the training set. *NN ratio* = "
             "median sample distance / median test distance: about 1 for samples as novel as "
             "new data, above 1 for samples off the data (blurry or broken), far below 1 for "
             "copies. *Near-copy share*: samples closer to a training image than 99 % of test "
             "images are; about 0.01 when nothing is copied, 1 for a model that returns training "
             "images."),
        Table(header, rows),
    ]
    pairs = [(m, figs[f"memorization_{m}"]) for m in ("vae", "gan")
             if f"memorization_{m}" in figs]
    if pairs:
        blocks.append(Table([f"{m.upper()}: samples (odd rows) above their nearest training "
                             "images (even rows)" for m, _ in pairs],
                            [[f"![{m} nearest training images]({path})" for m, path in pairs]]))
    return blocks


def likelihood_rows(evals: dict[str, dict[str, Any]], iwae_k: list[int]) -> list[list[str]]:
    """Label, direction, then every row of :data:`ROWS`: the VAE's test-set bounds on log p(x)
    (the GAN defines no likelihood, real data and the baselines are not scored by them), then
    the Parzen-window estimate of every column."""
    vae, none = evals["vae"], "no likelihood (implicit model)"

    def vae_only(label: str, direction: str, key: str, gan: str = none) -> list[str]:
        return [label, direction, fmt(vae.get(key)), gan, "-", *["-"] * len(BASELINES)]

    rows = [vae_only("ELBO (nats/image)", _arrow("elbo_nats"), "elbo_nats"),
            vae_only("ELBO (bits/dim)", _arrow("bits_per_dim"), "bits_per_dim")]
    rows += [vae_only(f"IWAE k={k} (nats/image)", _arrow("iwae_nats"), f"iwae_k{k}_nats")
             for k in iwae_k]
    rows.append(vae_only("Reconstruction E_q log p(x ∣ z) (nats)", "↑ higher",
                         "recon_log_px_z_nats", "no encoder"))
    rows.append(vae_only("KL(q(z ∣ x) ‖ p(z)) (nats)", "(trade-off)", "kl_nats", "-"))
    cols = [evals.get(m, {}) for m in ROWS]
    if any("parzen_ll_nats" in c for c in cols):
        rows.append(["Parzen window log-likelihood (nats/image, pixels in [0, 1])",
                     _arrow("parzen_ll_nats"),
                     *(fmt(c.get("parzen_ll_nats"), c.get("parzen_ll_nats_sem")) for c in cols)])
        rows.append(["Parzen σ (chosen on validation images)", "(selected)",
                     *(fmt(c.get("parzen_sigma")) for c in cols)])
    return rows


def likelihood_blocks(inp: ReportInputs) -> list[Block]:
    """The likelihood section: bounds and Parzen rows, then what they mean and do not mean."""
    header = ["Quantity (test set)", "Better", *(COLUMNS[m] for m in ROWS)]
    return [
        Heading("Likelihood"),
        Table(header, likelihood_rows(inp.evals, inp.protocol.get("iwae_k", []))),
        Para("The VAE's decoder is a discretized logistic over the 256 pixel levels, so its "
             "ELBO and IWAE rows are true lower bounds on the log-probability of the 8-bit test "
             "images (bits/dim = -bound / (pixels · ln 2)). The GAN is an implicit model with no "
             "density: it has no likelihood to report."),
        Para(PARZEN_CAVEAT),
    ]


def inference_rows(vae: dict[str, Any], judge_accuracy: Any) -> list[list[str]]:
    """Label, direction, VAE, GAN, reference: what only a model with an encoder can report.

    Probes are read against the judge's test accuracy (the ceiling), errors against 0.
    """
    rows = []
    for key in keys_of_kind(INFERENCE):
        info = METRICS[key]
        ref = f"judge: {fmt(judge_accuracy)}" if key.startswith("probe") else "0 (perfect)"
        rows.append([f"{info.label} ({info.unit or 'true labels'})", _arrow(key),
                     fmt(vae.get(key)), NO_ENCODER, ref])
    return rows


def inference_blocks(inp: ReportInputs) -> list[Block]:
    """The inference-model section: latent probes and reconstruction error (VAE only)."""
    judge_accuracy = inp.judge.get("test_accuracy", inp.protocol.get("judge_test_accuracy"))
    return [
        Heading("Inference model"),
        Table(["Inference model (test set)", "Better", "VAE", "GAN", "Reference"],
              inference_rows(inp.evals["vae"], judge_accuracy)),
        Para("Only the VAE has an inference model q(z ∣ x). The probes, a logistic regression "
             "and a k-NN vote on the posterior means μ(x) fit on train images (see Protocol), "
             "predict the **true** class labels of the test images; the judge classifier's "
             "accuracy on the same test set is the ceiling they are read against. "
             "Reconstructions are the decoder mean at z = μ(x). The GAN has no encoder, so none "
             "of these exist for it."),
    ]


#: ``eval.vae_image`` -> how the report names the VAE's sample images.
VAE_IMAGE_NAMES = {"mean": "decoder mean",
                   "mode": "per-pixel mode, each pixel's most probable component"}


def _vae_image(inp: ReportInputs) -> str:
    """How the VAE's samples were made, from the protocol (older runs: the decoder mean)."""
    return VAE_IMAGE_NAMES.get(inp.protocol.get("vae_image", "mean"), "decoder mean")


def samples_blocks(inp: ReportInputs, figs: Figures) -> list[Block]:
    """Real images, both models' sample grids, the VAE's reconstructions, class histograms."""
    return [
        Heading("Samples"),
        Figure(figs["real"], "Real test images"),
        Table([f"VAE samples ({_vae_image(inp)})", "GAN samples"],
              [[f"![VAE samples]({figs['vae']})", f"![GAN samples]({figs['gan']})"]]),
        Figure(figs["recon"], "VAE reconstructions: odd rows test images, even rows their "
                              "reconstructions (decoder mean at the posterior mean)"),
        Figure(figs["class_histograms"], "Class histogram of the judge's predictions: a model "
                                         "that drops classes (mode collapse) shows missing bars"),
    ]


def latent_blocks(inp: ReportInputs, figs: Figures) -> list[Block]:
    """The "Latent space" section: one sub-heading and figure per study; [] when none."""
    if not inp.studies:
        return []
    blocks: list[Block] = [Heading("Latent space")]
    for entry in inp.studies:
        path = figs[f"studies/{entry['file']}"]
        blocks += [Heading(entry.get("title") or Path(entry["file"]).stem, 3),
                   Figure(path, entry.get("caption") or entry.get("title") or entry["file"])]
    return blocks


def training_blocks(inp: ReportInputs, figs: Figures) -> list[Block]:
    """Both models' training curves and their epochs, steps and wall time."""
    return [
        Heading("Training"),
        Figure(figs["vae_curves"], "VAE: training terms per step and validation ELBO per epoch"),
        Figure(figs["gan_curves"], "GAN: losses and discriminator outputs per generator step"),
        Table(["Model", "Epochs", "Steps", "Training time (s)"],
              [[m.upper(), fmt(t.get("epochs")), fmt(t.get("steps")),
                fmt(t.get("train_seconds"))] for m, t in inp.training.items()]),
    ]


def _loss_of(evals: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """``gan.loss`` from the GAN's model_params; without them, critic scores outside [0, 1]
    mean WGAN-GP (probabilities cannot leave it)."""
    loss = (evals["gan"].get("model_params") or {}).get("loss")
    if loss in config.GAN_LOSSES:
        return loss
    values = [diag.number(r, k) for r in rows for k in ("d_real", "d_fake")]
    return "wgan_gp" if any(v < 0 or v > 1 for v in values) else "non_saturating"


def diagnostics_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One table row per epoch: epoch, D(x), D(G(z)), accuracy, losses ± std, classes, flags."""
    out = []
    for r in rows:
        cov, well = diag.number(r, "classes_covered"), diag.number(r, "classes_well_covered")
        classes = "n/a" if math.isnan(cov) else f"{cov:.0f} / {well:.0f}"  # NaN: no samples
        out.append([str(r["epoch"]), fmt(diag.number(r, "d_real")), fmt(diag.number(r, "d_fake")),
                    fmt(diag.number(r, "d_acc")),
                    fmt(diag.number(r, "d_loss"), diag.number(r, "d_loss_std")),
                    fmt(diag.number(r, "g_loss"), diag.number(r, "g_loss_std")),
                    classes, str(r.get("flags") or "") or DASH])
    return out


def diagnostics_blocks(inp: ReportInputs, figs: Figures) -> list[Block]:
    """The "GAN training diagnostics" section; [] when evaluate wrote no diagnostics."""
    rows, num_classes = inp.diagnostics, len(inp.classes)
    if not rows:
        return []
    wgan = _loss_of(inp.evals, rows) == "wgan_gp"
    real, fake, acc = (("critic f(x)", "critic f(G(z))", "Critic accuracy") if wgan
                       else ("D(x)", "D(G(z))", "D accuracy"))
    header = ["Epoch", real, fake, acc, "d_loss ± std", "g_loss ± std",
              f"Classes covered / well covered (of {num_classes})", "Flags"]
    blocks: list[Block] = [
        Heading("GAN training diagnostics"),
        Para("Per epoch of GAN training: mean discriminator outputs and accuracy on real vs "
             "fake over all steps, the mean ± std of the per-step losses, and the judge's view "
             "of a fixed set of generator samples saved after the epoch."),
        Table(header, diagnostics_rows(rows)),
        Para(" ".join(diag.summary(rows))),
        Para(DIAGNOSTICS_NOTE),
    ]
    if "gan_diagnostics" in figs:
        blocks.append(Figure(figs["gan_diagnostics"], f"{acc} per epoch with chance (0.5) and "
                             f"the saturation threshold ({diag.SATURATED_ACCURACY}); classes "
                             "covered and well covered by each epoch's samples"))
    return blocks


def protocol_rows(inp: ReportInputs) -> list[list[str]]:
    """Item, value: how the numbers were made (data, sampling, judge, estimators, versions)."""
    proto = inp.protocol
    libs = ", ".join(f"{k} {v}" for k, v in proto["libraries"].items())
    counts = {k: v["count"] for k, v in inp.manifest.get("splits", {}).items()}
    return [
        ["Git commit", f"`{inp.commit}`"],
        ["Data splits", ", ".join(f"{k}: {v}" for k, v in counts.items())],
        ["Samples per draw / draws", f"{proto['num_samples']} / {proto['draws']}"],
        ["Sample seeds", ", ".join(map(str, proto["sample_seeds"]))],
        ["Reference set", proto["reference"]],
        ["Pixels", proto["pixels"]],
        ["VAE samples", f"{_vae_image(inp)} of p(x ∣ z) at z ~ N(0, I)"],
        ["Feature extractor", proto["features"]],
        ["Judge sha256", f"`{proto['judge_sha256']}`"],
        ["Judge test accuracy", f"{100 * inp.judge.get('test_accuracy', float('nan')):.2f} %"],
        ["IS splits / KID subsets x size / PR k",
         f"{proto['is_splits']} / {proto['kid_subsets']} x {proto['kid_subset_size']} / "
         f"{proto['pr_k']}"],
        ["Parzen window", proto.get("parzen", "n/a")],
        ["Parzen σ grid", ", ".join(map(str, proto.get("parzen_sigmas", [])))],
        ["Baselines", proto.get("baselines", "n/a")],
        ["Memorization check", proto.get("memorization", "n/a")],
        ["Latent probes", proto.get("probe", "n/a")],
        ["Reconstructions", proto.get("reconstruction", "n/a")],
        ["Libraries", libs],
        ["MLflow runs", ", ".join(f"{m}: `{t.get('mlflow_run_id', '')}`"
                                  for m, t in inp.training.items())],
    ]


def protocol_blocks(inp: ReportInputs) -> list[Block]:
    """The "Protocol" section: one table of settings and provenance."""
    return [Heading("Protocol"), Table(["Item", "Value"], protocol_rows(inp))]
