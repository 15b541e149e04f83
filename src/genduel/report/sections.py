"""Optional report sections: the models' settings, the GAN's per-epoch diagnostics, latent studies.

Each section is built only from inputs that exist: an eval JSON without ``model_params`` (older
runs) drops the settings table, a missing ``eval/gan_diagnostics.csv`` the diagnostics section,
a missing ``eval/studies/index.json`` the latent-space section. :func:`load_extras` reads the
two eval files, :func:`draw_extra_figures` draws and copies their figures into the report, and
the ``*_blocks`` functions turn them into document blocks.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genduel.errors import DataError
from genduel.evaluate import gan_diagnostics as diag
from genduel.report.document import Block, Figure, Heading, Para, Table, fmt

log = logging.getLogger(__name__)

DASH = "—"  # a setting that does not apply to that model
GAN_LOSSES = {
    "minimax": "minimax: D maximizes log D(x) + log(1 − D(G(z))), G minimizes the same",
    "non_saturating": "non-saturating: G maximizes log D(G(z)) (Goodfellow et al. 2014, sec. 3)",
    "wgan_gp": "WGAN-GP: critic f, Wasserstein loss with gradient penalty (Gulrajani et al. 2017)",
}
#: train_vae builds Adam with a cosine learning-rate decay; there is no parameter to report.
VAE_OPTIMIZER = "Adam, cosine learning-rate decay"
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


@dataclass(frozen=True)
class Extras:
    """The optional eval outputs the report shows when they exist."""

    diagnostics: list[dict[str, Any]] = field(default_factory=list)  # gan_diagnostics.csv
    studies: list[dict[str, str]] = field(default_factory=list)  # studies/index.json figures
    studies_dir: Path = Path("eval/studies")


def load_extras(eval_dir: Path) -> Extras:
    """Read ``gan_diagnostics.csv`` and ``studies/index.json`` of ``eval_dir`` where present."""
    csv_path, index = eval_dir / "gan_diagnostics.csv", eval_dir / "studies" / "index.json"
    rows = diag.read_table(csv_path) if csv_path.is_file() else []
    studies = []
    if index.is_file():
        try:
            studies = json.loads(index.read_text())["figures"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{index} is not a {{'figures': [...]}} index ({exc!r}); re-run "
                            "the evaluate stage") from exc
    return Extras(rows, studies, eval_dir / "studies")


def draw_extra_figures(extras: Extras, fig_dir: Path, num_classes: int) -> dict[str, str]:
    """Draw the diagnostics plot and copy the study figures; figure name -> report path."""
    from genduel.report import figures

    out = {}
    if extras.diagnostics:
        figures.plot_gan_diagnostics(extras.diagnostics, fig_dir / "gan_diagnostics.png",
                                     num_classes)
        out["gan_diagnostics"] = "figures/gan_diagnostics.png"
    for entry in extras.studies:
        src, name = _study_names(entry, extras.studies_dir)
        if not src.is_file():
            raise DataError(f"{extras.studies_dir / 'index.json'} lists {entry['file']!r} but "
                            f"{src} does not exist; re-run the evaluate stage")
        shutil.copyfile(src, fig_dir / name)
        out[f"studies/{entry['file']}"] = f"figures/{name}"
    return out


def _study_names(entry: dict[str, str], studies_dir: Path) -> tuple[Path, str]:
    """Source path and flat report file name (``studies_<file>``) of one index entry."""
    if not isinstance(entry, dict) or not entry.get("file"):
        raise DataError(f"{studies_dir / 'index.json'}: entry {entry!r} has no 'file'")
    return studies_dir / entry["file"], "studies_" + entry["file"].replace("/", "_")


def _setting(params: dict[str, Any] | None, key: str) -> str:
    """A setting as text: yes/no for flags, 4 significant digits for numbers, DASH if absent."""
    if params is None or params.get(key) is None:
        return DASH
    value = params[key]
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _gan_optimizer(gan: dict[str, Any]) -> str:
    if gan.get("optimizer") == "sgd_momentum":
        return f"SGD, momentum {_setting(gan, 'momentum')}"
    if gan.get("optimizer") == "adam":
        return f"Adam, β1 {_setting(gan, 'beta1')}, β2 {_setting(gan, 'beta2')}"
    return _setting(gan, "optimizer")


def _vae_objective(vae: dict[str, Any]) -> str:
    beta = vae.get("beta")
    if beta is None:
        return DASH
    if beta == 1:
        return "ELBO (β = 1)"
    return f"β-VAE: reconstruction − {beta:.4g} · KL (not the ELBO)"


Cell = Callable[[dict[str, Any]], str]


def _key(key: str) -> Cell:
    return lambda p: _setting(p, key)


def _none(_: dict[str, Any]) -> str:
    return DASH


#: (setting, VAE cell, GAN cell): the settings that define each variant.
SETTINGS: list[tuple[str, Cell, Cell]] = [
    ("Class-conditional", _key("conditional"), _key("conditional")),
    ("Objective", _vae_objective, lambda g: GAN_LOSSES.get(g.get("loss"), _setting(g, "loss"))),
    ("Gradient penalty weight λ", _none,
     lambda g: _setting(g, "gp_weight") if g.get("loss") == "wgan_gp" else DASH),
    ("Monte Carlo samples of z per image", _key("mc_samples"), _none),
    ("D (critic) steps per G step", _none, _key("d_steps")),
    ("Latent dimension", _key("latent_dim"), _key("latent_dim")),
    ("Width (channels of the first conv block)", _key("width"), _key("width")),
    ("Generator initialized from the VAE decoder", _none, _key("init_from_vae")),
    ("Optimizer", lambda v: VAE_OPTIMIZER, _gan_optimizer),
    ("Learning rate", _key("lr"),
     lambda g: f"G {_setting(g, 'lr_g')}, D {_setting(g, 'lr_d')}"),
    ("Epochs × batch size", lambda p: f"{_setting(p, 'epochs')} × {_setting(p, 'batch_size')}",
     lambda p: f"{_setting(p, 'epochs')} × {_setting(p, 'batch_size')}"),
]


def model_blocks(evals: dict[str, dict[str, Any]]) -> list[Block]:
    """The "Models compared" section from each eval JSON's ``model_params``; [] when absent."""
    vae, gan = evals["vae"].get("model_params"), evals["gan"].get("model_params")
    if vae is None and gan is None:
        return []
    rows = [[label, vae_cell(vae) if vae is not None else DASH,
             gan_cell(gan) if gan is not None else DASH] for label, vae_cell, gan_cell in SETTINGS]
    rows = [r for r in rows if r[1:] != [DASH, DASH]]  # e.g. λ of a GAN without WGAN-GP
    blocks: list[Block] = [Heading("Models compared"), Table(["Setting", "VAE", "GAN"], rows)]
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


def _loss_of(evals: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """``gan.loss`` from the GAN's model_params; without them, critic scores outside [0, 1]
    mean WGAN-GP (probabilities cannot leave it)."""
    loss = (evals["gan"].get("model_params") or {}).get("loss")
    if loss in diag.LOSSES:
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


def diagnostics_blocks(extras: Extras, evals: dict[str, dict[str, Any]], figs: dict[str, str],
                       num_classes: int) -> list[Block]:
    """The "GAN training diagnostics" section; [] when evaluate wrote no diagnostics."""
    rows = extras.diagnostics
    if not rows:
        return []
    wgan = _loss_of(evals, rows) == "wgan_gp"
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


def latent_blocks(extras: Extras, figs: dict[str, str]) -> list[Block]:
    """The "Latent space" section: one sub-heading and figure per study; [] when none."""
    if not extras.studies:
        return []
    blocks: list[Block] = [Heading("Latent space")]
    for entry in extras.studies:
        path = figs[f"studies/{entry['file']}"]
        blocks += [Heading(entry.get("title") or Path(entry["file"]).stem, 3),
                   Figure(path, entry.get("caption") or entry.get("title") or entry["file"])]
    return blocks
