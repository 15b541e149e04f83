"""The comparison report: one Markdown document (and an HTML twin) that a person reads.

The report is built as a list of blocks (headings, paragraphs, tables, figures) and rendered to
both formats from that one list, so the two never disagree. Figures are PNG files copied or drawn
into ``<out>/figures`` so the report directory is self-contained.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genduel.errors import DataError
from genduel.metrics import METRICS
from genduel.report import sections
from genduel.report.document import Block, Figure, Heading, Para, Table, fmt, to_html, to_markdown

log = logging.getLogger(__name__)

MODELS = ("vae", "gan", "real")
#: Rows of METRICS that are not sample metrics: they get the likelihood or inference table.
NOT_SAMPLE_METRICS = {"elbo_nats", "bits_per_dim", "iwae_nats", "judge_accuracy",
                      "parzen_ll_nats", "probe_linear_accuracy", "probe_knn_accuracy",
                      "recon_mse", "recon_mae_levels"}
#: The VAE-only rows of the inference-model table, in order.
INFERENCE_METRICS = ("probe_linear_accuracy", "probe_knn_accuracy", "recon_mse",
                     "recon_mae_levels")
COLUMNS = {"vae": "VAE", "gan": "GAN", "real": "Real data (test vs train)"}
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


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report reads, already parsed."""

    evals: dict[str, dict[str, Any]]  # model -> metrics JSON of the evaluate stage
    judge: dict[str, Any]  # metrics/judge.json
    training: dict[str, dict[str, Any]]  # "vae"/"gan" -> metrics/train_*.json
    manifest: dict[str, Any]  # data/prepared/manifest.json
    title: str


def load_inputs(metrics_dir: Path, data_dir: Path, title: str,
                eval_dir: Path | None = None) -> ReportInputs:
    """Read every input; each model's numbers (``metrics/eval_*.json``) are merged with their
    protocol and settings (``<eval_dir>/details_*.json``) when ``eval_dir`` is given."""
    def read(path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path} is missing or unreadable ({exc.__class__.__name__}); run "
                            "the stages before report: dvc repro") from exc

    return ReportInputs(
        evals={m: {**read(metrics_dir / f"eval_{m}.json"),
                   **(read(eval_dir / f"details_{m}.json") if eval_dir else {})}
               for m in MODELS},
        judge=read(metrics_dir / "judge.json"),
        training={m: read(metrics_dir / f"train_{m}.json") for m in ("vae", "gan")},
        manifest=read(data_dir / "manifest.json"),
        title=title,
    )


def arrow(key: str) -> str:
    return "↑ higher" if METRICS[key].higher_is_better else "↓ lower"


def metric_rows(evals: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per sample metric present in the files: label, direction, VAE, GAN, real."""
    rows = []
    for key, info in METRICS.items():
        if key in NOT_SAMPLE_METRICS or not any(key in evals[m] for m in MODELS):
            continue
        cells = [fmt(evals[m].get(key), evals[m].get(f"{key}_std")) for m in MODELS]
        rows.append([info.label, arrow(key), *cells])
    return rows


def likelihood_rows(evals: dict[str, dict[str, Any]], iwae_k: list[int]) -> list[list[str]]:
    """Label, direction, VAE, GAN, real: the VAE's test-set bounds on log p(x) (the GAN defines
    no likelihood, real data has no model), then the Parzen-window estimate of every column."""
    vae, none = evals["vae"], "no likelihood (implicit model)"

    def vae_only(label: str, direction: str, key: str, gan: str = none) -> list[str]:
        return [label, direction, fmt(vae.get(key)), gan, "-"]

    rows = [vae_only("ELBO (nats/image)", arrow("elbo_nats"), "elbo_nats"),
            vae_only("ELBO (bits/dim)", arrow("bits_per_dim"), "bits_per_dim")]
    rows += [vae_only(f"IWAE k={k} (nats/image)", arrow("iwae_nats"), f"iwae_k{k}_nats")
             for k in iwae_k]
    rows.append(vae_only("Reconstruction E_q log p(x ∣ z) (nats)", "↑ higher",
                         "recon_log_px_z_nats", "no encoder"))
    rows.append(vae_only("KL(q(z ∣ x) ‖ p(z)) (nats)", "(trade-off)", "kl_nats", "-"))
    if any("parzen_ll_nats" in evals[m] for m in MODELS):
        rows.append(["Parzen window log-likelihood (nats/image, pixels in [0, 1])",
                     arrow("parzen_ll_nats"),
                     *(fmt(evals[m].get("parzen_ll_nats"), evals[m].get("parzen_ll_nats_sem"))
                       for m in MODELS)])
        rows.append(["Parzen σ (chosen on validation images)", "(selected)",
                     *(fmt(evals[m].get("parzen_sigma")) for m in MODELS)])
    return rows


def inference_rows(vae: dict[str, Any], judge_accuracy: Any) -> list[list[str]]:
    """Label, direction, VAE, GAN, reference: what only a model with an encoder can report.

    Probes are read against the judge's test accuracy (the ceiling), errors against 0.
    """
    rows = []
    for key in INFERENCE_METRICS:
        info = METRICS[key]
        ref = f"judge: {fmt(judge_accuracy)}" if key.startswith("probe") else "0 (perfect)"
        rows.append([f"{info.label} ({info.unit or 'true labels'})", arrow(key),
                     fmt(vae.get(key)), NO_ENCODER, ref])
    return rows


def likelihood_blocks(evals: dict[str, dict[str, Any]], iwae_k: list[int]) -> list[Block]:
    """The likelihood section: bounds and Parzen rows, then what they mean and do not mean."""
    header = ["Quantity (test set)", "Better", *(COLUMNS[m] for m in MODELS)]
    return [
        Heading("Likelihood"),
        Table(header, likelihood_rows(evals, iwae_k)),
        Para("The VAE's decoder is a discretized logistic over the 256 pixel levels, so its "
             "ELBO and IWAE rows are true lower bounds on the log-probability of the 8-bit test "
             "images (bits/dim = -bound / (pixels · ln 2)). The GAN is an implicit model with no "
             "density: it has no likelihood to report."),
        Para(PARZEN_CAVEAT),
    ]


def inference_blocks(vae: dict[str, Any], judge_accuracy: Any) -> list[Block]:
    """The inference-model section: latent probes and reconstruction error (VAE only)."""
    return [
        Heading("Inference model"),
        Table(["Inference model (test set)", "Better", "VAE", "GAN", "Reference"],
              inference_rows(vae, judge_accuracy)),
        Para("Only the VAE has an inference model q(z ∣ x). The probes, a logistic regression "
             "and a k-NN vote on the posterior means μ(x) fit on train images (see Protocol), "
             "predict the **true** class labels of the test images; the judge classifier's "
             "accuracy on the same test set is the ceiling they are read against. "
             "Reconstructions are the decoder mean at z = μ(x). The GAN has no encoder, so none "
             "of these exist for it."),
    ]


def winners(evals: dict[str, dict[str, Any]]) -> str:
    """One sentence per metric naming the better model, the real-data value as context."""
    parts = []
    for key, info in METRICS.items():
        if key in NOT_SAMPLE_METRICS or key not in evals["vae"] or key not in evals["gan"]:
            continue
        v, g = evals["vae"][key], evals["gan"][key]
        if v == g:
            continue
        better = "VAE" if (v > g) == info.higher_is_better else "GAN"
        parts.append(f"{info.label}: **{better}**")
    return "; ".join(parts) + "." if parts else "No sample metric separates the models."


def draw_figures(eval_dir: Path, artifacts_dir: Path, data_dir: Path, classes: list[str],
                 fig_dir: Path) -> dict[str, str]:
    """Copy the grids and draw the plots; returns figure name -> path relative to the report."""
    from genduel.report import figures

    fig_dir.mkdir(parents=True, exist_ok=True)
    copies = {"real": data_dir / "real_grid.png", "vae": eval_dir / "samples_vae.png",
              "gan": eval_dir / "samples_gan.png", "recon": eval_dir / "reconstructions_vae.png"}
    out = {}
    for name, src in copies.items():
        shutil.copyfile(src, fig_dir / f"{name}.png")
        out[name] = f"figures/{name}.png"
    figures.plot_vae_curves(artifacts_dir / "train_vae" / "history.csv",
                            artifacts_dir / "train_vae" / "epochs.csv", fig_dir / "vae_curves.png")
    figures.plot_gan_curves(artifacts_dir / "train_gan" / "history.csv",
                            fig_dir / "gan_curves.png")
    logits = {COLUMNS[m]: np.load(eval_dir / f"features_{m}.npz")["logits"]
              for m in ("vae", "gan")}
    logits[COLUMNS["real"]] = np.load(eval_dir / "features_real.npz")["test_logits"]
    figures.plot_class_histograms(logits, classes, fig_dir / "class_histograms.png")
    out.update({n: f"figures/{n}.png" for n in ("vae_curves", "gan_curves", "class_histograms")})
    return out


def build_blocks(inp: ReportInputs, figs: dict[str, str], commit: str,
                 extras: sections.Extras | None = None) -> list[Block]:
    """The document, top to bottom; ``extras`` adds the optional sections whose inputs exist."""
    ev, proto = inp.evals, inp.evals["vae"]["protocol"]
    extras = extras or sections.Extras()
    num_classes = len(inp.manifest.get("classes") or range(10))
    header = ["Metric", "Better", COLUMNS["vae"], COLUMNS["gan"], COLUMNS["real"]]
    return [
        Heading(inp.title, 1),
        Para(f"Dataset **{inp.manifest.get('dataset')}**, code commit `{commit}`. Every number "
             f"below is the mean ± std over {proto['draws']} independent draws of "
             f"{proto['num_samples']} samples per model; the *Real data* column scores held-out "
             "test images the same way, i.e. what a perfect model would get at this sample size."),
        Para("**Verdict by metric.** " + winners(ev)),
        *sections.model_blocks(ev),
        Heading("Sample quality and diversity (judge features)"),
        Table(header, metric_rows(ev)),
        Para("FID and KID here use the features of the pipeline's own judge classifier, not "
             "Inception-v3: compare them across GenDuel runs with the same judge checksum, not "
             "with numbers published for Inception features."),
        *likelihood_blocks(ev, proto.get("iwae_k", [])),
        *inference_blocks(ev["vae"], inp.judge.get("test_accuracy",
                                                   proto.get("judge_test_accuracy"))),
        Heading("Samples"),
        Figure(figs["real"], "Real test images"),
        Table(["VAE samples (decoder mean)", "GAN samples"],
              [[f"![VAE samples]({figs['vae']})", f"![GAN samples]({figs['gan']})"]]),
        Figure(figs["recon"], "VAE reconstructions: odd rows test images, even rows their "
                              "reconstructions (decoder mean at the posterior mean)"),
        Figure(figs["class_histograms"], "Class histogram of the judge's predictions: a model "
                                         "that drops classes (mode collapse) shows missing bars"),
        *sections.latent_blocks(extras, figs),
        Heading("Training"),
        Figure(figs["vae_curves"], "VAE: training terms per step and validation ELBO per epoch"),
        Figure(figs["gan_curves"], "GAN: losses and discriminator outputs per generator step"),
        Table(["Model", "Epochs", "Steps", "Training time (s)"],
              [[m.upper(), fmt(t.get("epochs")), fmt(t.get("steps")),
                fmt(t.get("train_seconds"))] for m, t in inp.training.items()]),
        *sections.diagnostics_blocks(extras, ev, figs, num_classes),
        Heading("Protocol"),
        Table(["Item", "Value"], protocol_rows(inp, commit)),
    ]


def protocol_rows(inp: ReportInputs, commit: str) -> list[list[str]]:
    proto = inp.evals["vae"]["protocol"]
    libs = ", ".join(f"{k} {v}" for k, v in proto["libraries"].items())
    counts = {k: v["count"] for k, v in inp.manifest.get("splits", {}).items()}
    return [
        ["Git commit", f"`{commit}`"],
        ["Data splits", ", ".join(f"{k}: {v}" for k, v in counts.items())],
        ["Samples per draw / draws", f"{proto['num_samples']} / {proto['draws']}"],
        ["Sample seeds", ", ".join(map(str, proto["sample_seeds"]))],
        ["Reference set", proto["reference"]],
        ["Pixels", proto["pixels"]],
        ["Feature extractor", proto["features"]],
        ["Judge sha256", f"`{proto['judge_sha256']}`"],
        ["Judge test accuracy", f"{100 * inp.judge.get('test_accuracy', float('nan')):.2f} %"],
        ["IS splits / KID subsets x size / PR k",
         f"{proto['is_splits']} / {proto['kid_subsets']} x {proto['kid_subset_size']} / "
         f"{proto['pr_k']}"],
        ["Parzen window", proto.get("parzen", "n/a")],
        ["Parzen σ grid", ", ".join(map(str, proto.get("parzen_sigmas", [])))],
        ["Latent probes", proto.get("probe", "n/a")],
        ["Reconstructions", proto.get("reconstruction", "n/a")],
        ["Libraries", libs],
        ["MLflow runs", ", ".join(f"{m}: `{t.get('mlflow_run_id', '')}`"
                                  for m, t in inp.training.items())],
    ]


def write_report(inp: ReportInputs, *, eval_dir: Path, artifacts_dir: Path, data_dir: Path,
                 out_dir: Path, commit: str) -> Path:
    """Write ``report.md``, ``report.html`` and ``figures/`` into ``out_dir``; returns the .md."""
    classes = inp.manifest.get("classes") or [str(i) for i in range(10)]
    figs = draw_figures(eval_dir, artifacts_dir, data_dir, classes, out_dir / "figures")
    extras = sections.load_extras(eval_dir)
    figs.update(sections.draw_extra_figures(extras, out_dir / "figures", len(classes)))
    blocks = build_blocks(inp, figs, commit, extras)
    (out_dir / "report.md").write_text(to_markdown(blocks))
    (out_dir / "report.html").write_text(to_html(blocks, inp.title))
    log.info("report written to %s", out_dir / "report.md")
    return out_dir / "report.md"
