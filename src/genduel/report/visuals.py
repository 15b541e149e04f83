"""The report's sections that show images: samples, latent space, training and the GAN
diagnostics. Each is a function of the inputs and of the figures of
:func:`genduel.report.figures.draw_all`, returning its document blocks.

Grids of samples are shown :data:`~genduel.report.document.PIXEL_SCALE` times enlarged with
square pixels; a conditional model's samples are also shown one row per class (cut from its
class grid), and the fixed-noise samples saved after each training epoch as a strip. Sections
whose inputs are optional return ``[]`` when those are absent: "GAN training diagnostics"
without ``eval/gan_diagnostics.csv``, "Latent space" without study figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from genduel.evaluate import gan_diagnostics as diag
from genduel.report.document import (
    PIXEL_SCALE,
    Block,
    Figure,
    Gallery,
    Heading,
    ImageRows,
    Para,
    Table,
    fmt,
)
from genduel.report.figures import Figures, Image
from genduel.report.glossary import link
from genduel.report.inputs import COLUMNS, ReportInputs
from genduel.report.sections import vae_image
from genduel.report.variants import DASH

DIAGNOSTICS_NOTE = (
    f"**Reading the flags** (heuristics with hand-picked thresholds; check them against the "
    f"GAN's samples after each epoch in [Training](#training)). *Discriminator saturated*: D "
    f"classifies at least {diag.SATURATED_ACCURACY:.0%} of real and fake images right: it "
    f"rejects the fakes confidently, and as D(G(z)) → 0 the minimax generator's gradient "
    f"vanishes (Goodfellow et al. 2014, sec. 3); the non-saturating loss keeps a gradient "
    f"there. For WGAN-GP the same accuracy only says the critic separates the two sets: critic "
    f"gradients do not saturate. *Near equilibrium*: accuracy within "
    f"{diag.EQUILIBRIUM_TOLERANCE} of 0.5: D cannot tell real from fake, the D = 1/2 of the "
    f"theory, or D has stopped learning. *Losses oscillate*: the per-step std of a loss exceeds "
    f"{diag.OSCILLATION_RELATIVE_STD} × its scale (the larger of its |epoch mean| and log 2; "
    f"for WGAN-GP, of the critic gap f(x) − f(G(z)) and log 2). *Possible mode collapse*: the "
    f"judge finds fewer than K − {diag.COLLAPSE_MISSING_CLASSES} classes well covered in the "
    f"epoch's samples, or their class histogram is more than log 2 nats from uniform (it "
    f"spreads like fewer than K/2 classes), or {diag.COLLAPSE_LOST_CLASSES} or more "
    f"well-covered classes were lost since the previous epoch.")


def shown(image: Image, caption: str) -> Figure:
    """A figure block: grids of samples enlarged with square pixels, plots at their size."""
    return Figure(image.path, caption, PIXEL_SCALE if image.grid else 1)


def _conditional(inp: ReportInputs, model: str) -> bool:
    return bool((inp.evals[model].get("model_params") or {}).get("conditional"))


def samples_blocks(inp: ReportInputs, figs: Figures) -> list[Block]:
    """Real images, both models' sample grids (and one row per class for a conditional model),
    the VAE's reconstructions and the class histograms."""
    blocks: list[Block] = [
        Heading("Samples"),
        Para(f"Grids are shown {PIXEL_SCALE} × enlarged in the HTML report (each image pixel as "
             f"{PIXEL_SCALE} × {PIXEL_SCALE} screen pixels, no smoothing) where the page is wide "
             "enough."),
        Gallery([shown(figs["real"], "Real test images"),
                 shown(figs["vae"], f"{COLUMNS['vae']} ({vae_image(inp)})"),
                 shown(figs["vae_prior"], f"{COLUMNS['vae_prior']} ({vae_image(inp)})"),
                 shown(figs["gan"], "GAN samples")]),
    ]
    for model in ("vae", "gan"):
        rows = figs.rows.get(f"classes_{model}")
        if rows and _conditional(inp, model):
            blocks.append(ImageRows(f"{model.upper()} samples, one row per class (the model is "
                                    "class-conditional: each row is drawn with that label, and "
                                    "column j uses the same noise in every row; cut from "
                                    f"eval/seeds/{inp.seeds[0]}/studies/"
                                    f"class_grid_{model}.png)", rows))
    blocks += [
        shown(figs["recon"], "VAE reconstructions: odd rows test images, even rows their "
                             "reconstructions (decoder mean at the posterior mean)"),
        shown(figs["class_histograms"], "Class histogram of the judge's predictions: a model "
                                        "that drops classes (mode collapse) shows missing bars"),
    ]
    return blocks


def prior_blocks(inp: ReportInputs, figs: Figures) -> list[Block]:
    """"Why the prior matters": where N(0, I) and the fitted prior draw against the training
    posterior (eval/prior_gap.png), the active latent dimensions, and the fitted prior's size
    by validation log-likelihood (metrics/fit_prior.json)."""
    fit, vae, fitted = inp.prior_fit, inp.evals["vae"], inp.evals["vae_prior"]
    dims = (vae.get("model_params") or {}).get("latent_dim", "?")
    prior = (fitted.get("model_params") or {}).get("prior") or {}
    sizes = sorted((int(k.removeprefix("val_ll_nats_k")), v) for k, v in fit.items()
                   if k.startswith("val_ll_nats_k"))
    on = {"mean": "posterior means μ(x)", "sample": "one draw z ~ q(z ∣ x)"}.get(
        prior.get("fit_on"), "latents")
    active, temperature = vae.get("active_units"), prior.get("temperature", 1.0)
    rest = ("" if active is None or active == dims
            else "; the others are noise the decoder ignores")
    widened = ("" if temperature == 1.0 else
               f" After the fit every component's covariance is widened by the temperature "
               f"{fmt(temperature)} (× {fmt(temperature ** 2)}), which trades a little "
               "precision for diversity; the sampled density gives the validation latents "
               f"{fmt(fit.get('sampled_val_ll_nats'))} nats each, and the likelihood rows of "
               "the fitted-prior column are its bounds.")
    return [
        Heading("Why the prior matters"),
        Para("The VAE is trained with the prior p(z) = N(0, I), but its encoder does not fill "
             "N(0, I): the aggregate posterior q(z) = E_x q(z ∣ x), where the decoder learned to "
             "draw, leaves holes, and latents drawn there decode to images of nothing. The "
             f"fit_prior stage fits a full-covariance Gaussian mixture to the {on} of the "
             "training images and the row *" + COLUMNS["vae_prior"] + "* samples from it: the "
             "same encoder and decoder, another p(z) (ex-post density estimation, Ghosh et al. "
             "2020; the two-stage VAE of Dai & Wipf 2019). The number of components is chosen "
             "by the log-likelihood of held-out validation latents, never of the fitted ones."
             + widened),
        shown(figs["prior_gap"], "Left: distance of each latent to the nearest training "
                                 "image's posterior mean. Right: mean KL(q(z_d ∣ x) ‖ N(0, 1)) "
                                 "of each latent dimension on validation images"),
        Para(f"Draws from N(0, I) lie {fmt(vae.get('latent_nn_ratio'))} × as far from the "
             "nearest training latent as held-out images' latents do (median), draws from the "
             f"fitted prior {fmt(fitted.get('latent_nn_ratio'))} × (1 = where new data lands). "
             f"{fmt(active)} of the {dims} latent dimensions carry information (mean KL above "
             f"0.01 nats){rest}."),
        Table(["Mixture components K", "Validation latents, log-likelihood (nats/latent)",
               "Chosen"],
              [[str(k), fmt(v), "✓" if k == fit.get("components") else ""] for k, v in sizes],
              link()),
    ]


def latent_blocks(inp: ReportInputs, figs: Figures) -> list[Block]:
    """The "Latent space" section: one sub-heading and figure per study; [] when none. A class
    grid already shown as labelled rows under "Samples" is not repeated."""
    if not inp.studies:
        return []
    blocks: list[Block] = [Heading("Latent space")]
    for entry in inp.studies:
        model = Path(entry["file"]).stem.removeprefix("class_grid_")
        if entry["file"].startswith("class_grid_") and f"classes_{model}" in figs.rows \
                and _conditional(inp, model):
            continue
        blocks += [Heading(entry.get("title") or Path(entry["file"]).stem, 3),
                   shown(figs[f"studies/{entry['file']}"],
                         entry.get("caption") or entry.get("title") or entry["file"])]
    return blocks if len(blocks) > 1 else []


#: The footnote of every table value read from a run record.
RUN_RECORD_NOTE = ("¹ From the run records runs/<stage>.json, written when a stage runs: "
                   "informational, not a DVC dependency of the report (a re-run that changes "
                   "only them does not re-run the report, so they may be older than the "
                   "report); — when absent.")


def training_blocks(inp: ReportInputs, figs: Figures) -> list[Block]:
    """Both models' training curves, their samples after each epoch, and epochs, steps and
    wall time."""
    blocks: list[Block] = [
        Heading("Training"),
        Gallery([shown(figs["vae_curves"], "VAE: −ELBO and reconstruction per step; the KL term "
                                          "on its own axis"),
                 shown(figs["vae_validation"], "VAE: validation ELBO after each epoch")]),
        Gallery([shown(figs["gan_curves"], "GAN: losses per generator step"),
                 shown(figs["gan_outputs"], "GAN: discriminator outputs per generator step")]),
    ]
    for model in ("vae", "gan"):
        rows = figs.rows.get(f"epochs_{model}")
        if rows:
            blocks.append(ImageRows(
                f"{model.upper()} samples after each epoch: the first rows of the grid drawn "
                "from the same fixed noise every epoch, so columns are comparable "
                f"(all grids: artifacts/seeds/{inp.seeds[0]}/train_{model}/grids/)", rows))
    runs = {m: inp.runs.get(f"train_{m}", {}) for m in inp.training}
    blocks.append(Table(["Model", "Epochs", "Steps", "Training time (s)¹", "MLflow run¹"],
                        [[m.upper(), fmt(t.get("epochs")), fmt(t.get("steps")),
                          fmt(runs[m].get("train_seconds")),
                          f"`{runs[m]['mlflow_run_id']}`" if runs[m].get("mlflow_run_id")
                          else DASH] for m, t in inp.training.items()],
                        link()))
    blocks.append(Para(RUN_RECORD_NOTE))
    return blocks


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
    wgan = inp.gan_loss == "wgan_gp"
    real, fake, acc = (("critic f(x)", "critic f(G(z))", "Critic accuracy") if wgan
                       else ("D(x)", "D(G(z))", "D accuracy"))
    header = ["Epoch", real, fake, acc, "d_loss ± std", "g_loss ± std",
              f"Classes covered / well covered (of {num_classes})", "Flags"]
    diag_n = (inp.evals["gan"].get("model_params") or {}).get("diag_samples")
    blocks: list[Block] = [
        Heading("GAN training diagnostics"),
        Para("Per epoch of GAN training: mean discriminator outputs and accuracy on real vs "
             "fake over all steps, the mean ± std of the per-step losses, and the judge's view "
             f"of a fixed set of {f'{diag_n:,} ' if diag_n else ''}generator samples saved "
             "after the epoch. These class counts use fewer samples than the sample-quality "
             "table (see the note there), so they can differ from it by a class."),
        Table(header, diagnostics_rows(rows), link()),
        Para(" ".join(diag.summary(rows))),
        Para(DIAGNOSTICS_NOTE),
    ]
    plots = [shown(figs[n], c) for n, c in (
        ("gan_accuracy", f"{acc} per epoch with chance (0.5) and the saturation threshold "
                         f"({diag.SATURATED_ACCURACY})"),
        ("gan_coverage", "Classes covered and well covered by each epoch's saved samples"))
        if n in figs]
    if plots:
        blocks.append(Gallery(plots))
    return blocks
