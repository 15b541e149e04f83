"""The report's text and table sections: each a function of the inputs returning its blocks
(the sections that show figures are in :mod:`genduel.report.visuals`).

Sections whose inputs are optional return ``[]`` when those are absent: "Models compared"
without ``model_params`` in the eval files, "Memorization check" without its keys. Which table a
metric goes in comes from its ``kind`` in :data:`genduel.metrics.table.METRICS`; which model is
better on a row, or whether the row is a tie, from :mod:`genduel.report.verdict`. Every table
links to its explanation in "How to read this" (:mod:`genduel.report.glossary`).
"""

from __future__ import annotations

from typing import Any

from genduel.metrics.seeds import ALPHA, MIN_SEEDS_FOR_TEST
from genduel.metrics.table import INFERENCE, LIKELIHOOD, MEMORIZATION, METRICS, SAMPLE, keys_of_kind
from genduel.report import verdict
from genduel.report.document import (
    PIXEL_SCALE,
    Block,
    Bullets,
    Figure,
    Gallery,
    Heading,
    Para,
    Table,
    fmt,
)
from genduel.report.figures import Figures
from genduel.report.glossary import link
from genduel.report.inputs import BASELINES, COLUMNS, ROWS, SAMPLERS, ReportInputs
from genduel.report.variants import DASH, settings_rows

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

def _arrow(key: str) -> str:
    return "↑\u00a0higher" if METRICS[key].higher_is_better else "↓\u00a0lower"  # no wrap


#: ``eval.vae_image`` -> how the report names the VAE's sample images.
VAE_IMAGE_NAMES = {"mean": "decoder mean",
                   "mode": "per-pixel mode, each pixel's most probable component"}


def vae_image(inp: ReportInputs) -> str:
    """How the VAE's samples were made, from the protocol (older runs: the decoder mean)."""
    return VAE_IMAGE_NAMES.get(inp.protocol.get("vae_image", "mean"), "decoder mean")


def header_blocks(inp: ReportInputs) -> list[Block]:
    """Title, the opening summary in words (who wins on what, by how much, what is within
    noise), and what was compared and how."""
    proto = inp.protocol
    summary = verdict.opening(inp.evals, proto.get("draws", "?"))
    return [
        Heading(inp.title, 1),
        Para(summary.verdict, lead=True),
        *([Bullets(summary.groups)] if summary.groups else []),
        Para(summary.caveat),
        Para(verdict_row_note(inp.evals)),
        Para(f"Dataset **{inp.manifest.get('dataset')}**, code commit `{inp.commit}`. Every "
             f"sample metric is {_mean_of(inp)}; the *Real data* column "
             "scores held-out test images the same way, i.e. what a perfect model would get at "
             "this sample size. Each table links to [How to read this](#how-to-read-this), "
             "which explains every metric once."),
    ]


def _mean_of(inp: ReportInputs) -> str:
    """What each number of the tables is a mean of, and what its ± is."""
    proto, n = inp.protocol, len(inp.seeds)
    draws = (f"{proto.get('draws', '?')} independent draws of {proto.get('num_samples', '?')} "
             "samples")
    if n == 1:
        return f"the mean ± std over {draws} per model"
    return (f"the mean ± std over {n} training seeds of the models, each seed's value the mean "
            f"over {draws} (the real data and baseline columns: ± over the draws)")


def verdict_row_note(evals: dict[str, dict[str, Any]]) -> str:
    """Which VAE row the verdict compares with the GAN, and why."""
    if verdict.vae_row(evals) != "vae_prior":
        return (f"The verdict compares the GAN with the *{COLUMNS['vae']}* row (this run has no "
                "fitted-prior row).")
    return (f"The VAE appears twice: *{COLUMNS['vae']}*, the lecture's sampler, and "
            f"*{COLUMNS['vae_prior']}*, the same trained encoder and decoder sampled from a "
            "density fitted to where its posterior puts mass. The verdict compares the GAN with "
            f"the second: it is the VAE's sampler in this pipeline (`genduel sample "
            "models/seeds/0/vae_prior.pt`, the MLflow model of fit_prior), and the first draws "
            "from "
            "regions no training image maps to (see [Why the prior matters]"
            "(#why-the-prior-matters)).")


def model_blocks(inp: ReportInputs) -> list[Block]:
    """The "Models compared" section from each eval JSON's ``model_params``; [] when absent."""
    vae, gan = inp.evals["vae"].get("model_params"), inp.evals["gan"].get("model_params")
    if vae is None and gan is None:
        return []
    prior = (inp.evals.get("vae_prior", {}).get("model_params") or {}).get("prior") or {}
    blocks: list[Block] = [Heading("Models compared"),
                           Table(["Setting", "VAE", "GAN"], settings_rows(vae, gan), link())]
    if prior:
        on = {"mean": "posterior means μ(x)", "sample": "single draws z ~ q(z ∣ x)"}.get(
            prior.get("fit_on"), "latents")
        blocks.append(Para(
            f"Two VAE rows, one trained VAE: *{COLUMNS['vae']}* decodes latents drawn from the "
            f"prior it was trained with; *{COLUMNS['vae_prior']}* decodes latents drawn from a "
            f"{prior.get('chosen_components', '?')}-component full-covariance Gaussian mixture "
            f"fitted by EM to the {on} of the training images (stage fit_prior; K chosen among "
            f"{prior.get('components', '?')} by the log-likelihood of validation latents; "
            f"temperature {fmt(prior.get('temperature', 1.0))})."))
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


def winner_cells(evals: dict[str, dict[str, Any]], key: str, std_suffix: str = "_std"
                 ) -> tuple[str, list[str]]:
    """The "Winner" cell of a row (**VAE**, **GAN**, ``tie`` or DASH when either lacks the
    number) and the cells of every row of :data:`ROWS`, the winner's value in bold."""
    cells = [fmt(evals.get(m, {}).get(key), evals.get(m, {}).get(key + std_suffix))
             for m in ROWS]
    comp = verdict.compare(evals, key)
    if comp is None:
        return DASH, cells
    if comp.winner == verdict.TIE:
        return "tie", cells
    i = ROWS.index(verdict.vae_row(evals) if comp.winner == verdict.VAE else "gan")
    cells[i] = f"**{cells[i]}**"
    return f"**{comp.winner}**", cells


def metric_rows(evals: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per sample metric present in the files: label, direction, both VAE rows, GAN, the
    winner (by the tie rule of :mod:`genduel.report.verdict`), then real data and the
    baselines."""
    rows = []
    for key in keys_of_kind(SAMPLE):
        if not any(key in evals.get(m, {}) for m in ROWS):
            continue
        winner, cells = winner_cells(evals, key)
        n = len(SAMPLERS)
        rows.append([METRICS[key].label, _arrow(key), *cells[:n], winner, *cells[n:]])
    return rows


def sample_metric_blocks(inp: ReportInputs) -> list[Block]:
    """The sample-quality table (judge features), models, real data and baselines side by side."""
    blocks: list[Block] = [
        Heading("Sample quality and diversity (judge features)"),
        Table(["Metric", "Better", *(COLUMNS[m] for m in SAMPLERS), "Winner",
               *(COLUMNS[m] for m in ROWS[len(SAMPLERS):])],
              metric_rows(inp.evals), link(SAMPLE)),
        Para(f"*Winner*: the better of *{COLUMNS[verdict.vae_row(inp.evals)]}* and GAN (in "
             "bold), or *tie* when the gap is within noise (the rule: [How sure is the "
             "verdict?](#how-sure-is-the-verdict)). FID and KID use "
             "the pipeline's own judge classifier, not Inception-v3: compare them only across "
             "GenDuel runs with the same judge. The two "
             "baseline columns learn nothing but the mean and covariance of the training pixels "
             "(of each class, or of all images)."),
    ]
    if inp.diagnostics and "classes_well_covered" in inp.evals["gan"]:
        blocks.append(Para(coverage_note(inp)))
    return blocks


def coverage_note(inp: ReportInputs) -> str:
    """Why the GAN's "classes well covered" here and in the diagnostics' last epoch can differ:
    different sample sets of different sizes, one class near the threshold."""
    proto, gan = inp.protocol, inp.evals["gan"]
    diag_n = (gan.get("model_params") or {}).get("diag_samples")
    last = inp.diagnostics[-1].get("classes_well_covered")
    diag_text = f"{diag_n:,} fixed-noise samples" if diag_n else "the fixed-noise samples"
    return (f"*Classes well covered* counts classes with at least 2 % of a draw's "
            f"{proto.get('num_samples', '?'):,} samples (mean over the draws): "
            f"{fmt(gan['classes_well_covered'])} for the GAN here. The GAN training diagnostics "
            f"below count the same on the {diag_text} saved after each epoch ({fmt(last)} after "
            "the last one): a class whose share is near the 2 % line can land on either side in "
            "a smaller or different sample set, so the two counts may differ by a class "
            "without contradicting each other.")


#: Metrics the ladder compares: every sample metric but the conditional-only label accuracy,
#: and the Parzen estimate (the one likelihood every row has).
LADDER_KEYS = (*(k for k in keys_of_kind(SAMPLE) if k != "label_accuracy"), "parzen_ll_nats")


def beats(model: dict[str, Any], rung: dict[str, Any], key: str) -> str | None:
    """"✓" when ``model`` is better than ``rung`` on ``key``, "✗" when worse, "≈" when the gap
    is within their combined ± (the tie rule of :func:`genduel.report.verdict.decide`), None
    when either lacks the key."""
    a, b = model.get(key), rung.get(key)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return None
    side = verdict.decide(a, b, verdict.spread(model, key), verdict.spread(rung, key),
                          METRICS[key].higher_is_better)
    return {1: "✓", -1: "✗", 0: "≈"}[side]


def ladder_rows(evals: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Metric, direction, then for each sampler (both VAE rows, the GAN) whether it beats real
    data, the per-class Gaussians and the one pixel Gaussian."""
    rungs = ("real", *BASELINES)
    rows = []
    for key in LADDER_KEYS:
        cells = [beats(evals.get(m, {}), evals.get(r, {}), key)
                 for m in SAMPLERS for r in rungs]
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
    return f"*{COLUMNS[model]}* beats " + "; ".join(parts) + "."


def ladder_blocks(inp: ReportInputs) -> list[Block]:
    """The baseline ladder: for each model and metric, which rungs it beats."""
    rungs = ("Real data", "Per-class G.", "Pixel G.")
    short = {"vae": "VAE N(0, I)", "vae_prior": "VAE fitted", "gan": "GAN"}
    header = ["Metric", "Better", *(f"{short[m]} vs {r}" for m in SAMPLERS for r in rungs)]
    return [
        Heading("Against the baseline ladder"),
        Para("Every number needs a scale. ✓: the model is better than that row on the metric, "
             "✗: worse, ≈: within the combined ± of the two. *Real data* (held-out test "
             "images) is the floor a perfect model reaches at this sample size; the *per-class "
             "pixel Gaussians* (mean and full covariance of each class's training pixels) and "
             "*one pixel Gaussian* learn nothing else."),
        Table(header, ladder_rows(inp.evals), link(SAMPLE)),
        Para(" ".join(ladder_summary(inp.evals, m) for m in SAMPLERS)),
    ]


def memorization_rows(evals: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Row name, then the memorization keys (pixels, judge features) of every sampler."""
    keys = keys_of_kind(MEMORIZATION)
    return [[COLUMNS[m], *(fmt(evals[m].get(k)) for k in keys)]
            for m in (*SAMPLERS, *BASELINES) if any(k in evals.get(m, {}) for k in keys)]


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
        Table(header, rows, link(MEMORIZATION)),
        Para("No winner is marked: a higher NN ratio means less copying, not better samples "
             "(blurry samples lie far from every training image)."),
    ]
    shown = [Figure(figs[f"memorization_{m}"].path, f"{COLUMNS[m]}: samples (odd rows) above "
                    "their nearest training images (even rows)", PIXEL_SCALE)
             for m in SAMPLERS if f"memorization_{m}" in figs]
    if shown:
        blocks.append(Gallery(shown))
    return blocks


def likelihood_rows(evals: dict[str, dict[str, Any]], iwae_k: list[int]) -> list[list[str]]:
    """Label, direction, then every row of :data:`ROWS`: the VAE's test-set bounds on log p(x)
    (the GAN defines no likelihood, real data and the baselines are not scored by them), then
    the Parzen-window estimate of every column."""
    vae, fitted = evals["vae"], evals.get("vae_prior", {})
    none = "no likelihood (implicit model)"

    def vae_only(label: str, direction: str, key: str, gan: str = none) -> list[str]:
        # ± only over training seeds (2 or more): within one seed these are the test set's
        return [label, direction, fmt(vae.get(key), vae.get(f"{key}_std")),
                fmt(fitted.get(key), fitted.get(f"{key}_std")), gan, "-",
                *["-"] * len(BASELINES)]

    rows = [vae_only("ELBO (nats/image)", _arrow("elbo_nats"), "elbo_nats"),
            vae_only("ELBO (bits/dim)", _arrow("bits_per_dim"), "bits_per_dim")]
    rows += [vae_only(f"IWAE k={k} (nats/image)", _arrow("iwae_nats"), f"iwae_k{k}_nats")
             for k in iwae_k]
    rows.append(vae_only("Reconstruction E_q log p(x ∣ z) (nats)", "↑\u00a0higher",
                         "recon_log_px_z_nats", "no encoder"))
    rows.append(vae_only("KL(q(z ∣ x) ‖ p(z)) (nats)", "(trade-off)", "kl_nats", "-"))
    cols = [evals.get(m, {}) for m in ROWS]
    if any("parzen_ll_nats" in c for c in cols):
        # the ± the winner is judged by: the std over seeds with 2 or more, else the SE
        seeded = verdict.seed_count(evals) >= 2
        _, cells = winner_cells(evals, "parzen_ll_nats", "_std" if seeded else "_sem")
        rows.append(["Parzen window log-likelihood (nats/image, pixels in [0, 1])",
                     _arrow("parzen_ll_nats"), *cells])
        rows.append(["Parzen σ (chosen on validation images)", "(selected)",
                     *(fmt(c.get("parzen_sigma")) for c in cols)])
    return rows


def likelihood_blocks(inp: ReportInputs) -> list[Block]:
    """The likelihood section: bounds and Parzen rows, then what they mean and do not mean."""
    header = ["Quantity (test set)", "Better", *(COLUMNS[m] for m in ROWS)]
    return [
        Heading("Likelihood"),
        Table(header, likelihood_rows(inp.evals, inp.protocol.get("iwae_k", [])),
              link(LIKELIHOOD)),
        Para("The VAE's decoder is a discretized logistic over the 256 pixel levels, so its "
             "ELBO and IWAE rows are true lower bounds on the log-probability of the 8-bit test "
             "images (bits/dim = -bound / (pixels · ln 2)). The fitted-prior column bounds the "
             "two-stage model, the same encoder and decoder with the fitted mixture as p(z): "
             "the same reconstruction term, a KL to the mixture estimated by Monte Carlo (no "
             "closed form), and IWAE bounds from the same importance samples. The GAN is an "
             "implicit model with no density: it has no likelihood to report."),
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
              inference_rows(inp.evals["vae"], judge_accuracy), link(INFERENCE)),
        Para("Only the VAE has an inference model q(z ∣ x). The probes, a logistic regression "
             "and a k-NN vote on the posterior means μ(x) fit on train images (see Protocol), "
             "predict the **true** class labels of the test images; the judge classifier's "
             "accuracy on the same test set is the ceiling they are read against. "
             "Reconstructions are the decoder mean at z = μ(x). The GAN has no encoder, so none "
             "of these exist for it."),
    ]


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
        ["VAE samples", f"{vae_image(inp)} of p(x ∣ z) at z ~ N(0, I), and at z ~ the fitted "
                        "prior (row *" + COLUMNS["vae_prior"] + "*)"],
        ["Feature extractor", proto["features"]],
        ["Judge sha256", f"`{proto['judge_sha256']}`"],
        ["Judge test accuracy", f"{100 * inp.judge.get('test_accuracy', float('nan')):.2f} %"],
        ["IS splits / KID subsets x size / PR k / DC k",
         f"{proto['is_splits']} / {proto['kid_subsets']} x {proto['kid_subset_size']} / "
         f"{proto['pr_k']} / {proto['dc_k']}"],
        ["Parzen window", proto.get("parzen", "n/a")],
        ["Parzen σ grid", ", ".join(map(str, proto.get("parzen_sigmas", [])))],
        ["Baselines", proto.get("baselines", "n/a")],
        ["Memorization check", proto.get("memorization", "n/a")],
        ["Latent probes", proto.get("probe", "n/a")],
        ["Reconstructions", proto.get("reconstruction", "n/a")],
        ["Libraries", libs],
        ["Machine, evaluate", machine_text(proto.get("machine"))],
        *([f"Machine, {stage}¹", machine_text(inp.runs[stage].get("machine"))]
          for stage in ("judge", "train_vae", "train_gan") if inp.runs.get(stage)),
        ["MLflow runs¹", ", ".join(f"{stage}: `{rec['mlflow_run_id']}`"
                                   for stage, rec in inp.runs.items()
                                   if rec.get("mlflow_run_id")) or DASH],
    ]


def machine_text(info: Any) -> str:
    """``provenance.machine()`` in one cell: what explains last-bit differences between hosts."""
    if not isinstance(info, dict) or not info:
        return "not recorded"
    cuda = info.get("torch_cuda", "none")
    return (f"{info.get('cpu', '?')} ({info.get('cpu_count', '?')} CPUs, "
            f"{info.get('torch_cpu_capability', '?')}); GPU {info.get('gpu', 'none')}; "
            f"torch {info.get('torch', '?')}" + (f" CUDA {cuda}" if cuda != "none" else "")
            + (f" cuDNN {info['cudnn']}" if info.get("cudnn") else ""))


def protocol_blocks(inp: ReportInputs) -> list[Block]:
    """The "Protocol" section: one table of settings and provenance."""
    return [Heading("Protocol"), Table(["Item", "Value"], protocol_rows(inp), link()),
            Para("¹ From the run records runs/<stage>.json: informational, not a DVC "
                 "dependency of the report, so they may be older than it.")]


#: The metrics of the seeds table, with the rows that report each: (key, rows).
SEED_TABLE = (*((k, ("vae_prior", "gan")) for k in ("fid", "kid", "precision", "recall",
                                                     "density", "coverage")),
              ("bits_per_dim", ("vae", "vae_prior")))


def seed_rows(evals: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Metric, model, each seed's value, mean ± std over seeds, the draws' std (mean over
    seeds) and the ratio of the two spreads."""
    out = []
    for key, rows in SEED_TABLE:
        for row in rows:
            values = evals.get(row, {})
            if key not in values or key not in METRICS:
                continue
            seeds = verdict.seeds_of(values, key) or [values[key]]
            std, draw = values.get(f"{key}_std"), values.get(f"{key}_draw_std")
            many = len(seeds) > 1
            ratio = (f"{std / draw:.1f} ×" if many and isinstance(std, float)
                     and isinstance(draw, float) and draw > 0 else DASH)
            out.append([METRICS[key].label, COLUMNS[row], ", ".join(fmt(v) for v in seeds),
                        fmt(values[key], std if many else None),
                        fmt(draw) if draw is not None else DASH, ratio])
    return out


def seed_blocks(inp: ReportInputs, figs: Figures) -> list[Block]:
    """"How sure is the verdict?": each training seed's numbers, their spread against the
    draws', the rule that reads them, and the strip plots."""
    seeds = inp.seeds
    listed = ", ".join(map(str, seeds))
    if len(seeds) == 1:
        lead = (f"This run trained the VAE, its prior and the GAN with one training seed "
                f"(`runtime.seeds = [{listed}]`). Its ± is the spread over the sample draws of "
                f"one trained model, and retraining moves the numbers more "
                f"({verdict.MEASURED_SPREAD}): the verdict above compares two trained models, "
                f"not two recipes. `{verdict.SEEDS_COMMAND}` trains two more seeds (only their "
                "stages run) and tests every gap across the three.")
    elif len(seeds) < MIN_SEEDS_FOR_TEST:
        lead = (f"This run trained the VAE, its prior and the GAN with {len(seeds)} training "
                f"seeds (`runtime.seeds = [{listed}]`): each number above is their mean ± "
                f"their std, but with fewer than {MIN_SEEDS_FOR_TEST} seeds per model no test "
                f"is possible. `{verdict.SEEDS_COMMAND}` gives one.")
    else:
        lead = (f"This run trained the VAE, its prior and the GAN with {len(seeds)} training "
                f"seeds (`runtime.seeds = [{listed}]`; the judge once): each number above is "
                f"their mean ± their std. A model wins a metric when Welch's t-test on the "
                f"per-seed values (two-sided, unequal variances) gives p < {ALPHA}; otherwise "
                f"the metric is a tie, however large the gap between the means.")
    blocks: list[Block] = [
        Heading("How sure is the verdict?"),
        Para(lead),
        Table(["Metric", "Model", "Each seed", "Mean ± std over seeds", "Draws' std",
               "Seeds' std / draws'"], seed_rows(inp.evals), link(SAMPLE)),
        Para("*Draws' std*: the spread over one trained model's sample draws (mean over the "
             "seeds), the only ± a single seed can measure; the last column is how many times "
             "wider retraining spreads the number. Bits per dim has no draws: within one seed "
             "its uncertainty is the standard error over the test images (the likelihood "
             f"table). The pictures in this report are seed {seeds[0]}'s."),
    ]
    if "seeds" in figs:
        blocks.append(Figure(figs["seeds"].path, "Each seed's value (dots) and their mean "
                             "(bar) per model; grey lines: real data and the two pixel "
                             "baselines, which do not depend on the training seed"))
    return blocks
