"""GAN training diagnostics per epoch: the discriminator's state, loss noise and class coverage.

Each row of ``artifacts/train_gan/epochs.csv`` (columns :data:`EPOCH_COLUMNS`) is joined with the
class coverage of a fixed set of generator samples saved after that epoch and scored by the
judge (:func:`genduel.metrics.classes.class_coverage`), then checked against a few flags
(:func:`gan_epoch_diagnostics`). The table is written to ``eval/gan_diagnostics.csv``
(:func:`write_table`), read back by the report (:func:`read_table`, :func:`summary`) and logged as
metric histories of the GAN's training run (:func:`diagnostics_series`).

The flags are **heuristics** with hand-picked thresholds: they point at epochs worth a look at the
sample grids and prove nothing on their own. For one epoch, with ``a`` the discriminator's
accuracy on real vs fake (threshold D = 1/2; for WGAN-GP, a score counts as real above the
midpoint of the batch's mean real and fake scores), ``m_L`` and ``s_L`` the mean and std of the
per-step losses ``L`` in {d_loss, g_loss}, ``W`` the classes well covered out of ``K`` and
``KL(h || U_K)`` the divergence of the predicted-class histogram ``h`` from uniform:

* *discriminator saturated* (BCE losses) / *critic separates real and fake almost perfectly*
  (WGAN-GP): ``a >= SATURATED_ACCURACY``;
* *near equilibrium*: ``|a - 1/2| <= EQUILIBRIUM_TOLERANCE``;
* *losses oscillate*: ``s_L / scale_L > OSCILLATION_RELATIVE_STD`` for either loss, where
  ``scale_L = max(|m_L|, log 2)`` for the BCE losses and ``max(|mean f(x) - mean f(G(z))|, log 2)``
  (the critic's Wasserstein estimate) for WGAN-GP, whose losses carry the critic's arbitrary
  offset;
* *possible mode collapse*: ``W < K - COLLAPSE_MISSING_CLASSES``, or
  ``KL(h || U_K) > COLLAPSE_KL_NATS``, or ``W`` fell by at least ``COLLAPSE_LOST_CLASSES`` since
  the previous epoch.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genduel.checkpoint import load_pt
from genduel.config import GAN_LOSSES
from genduel.errors import DataError
from genduel.evaluate.samples import embed
from genduel.io import atomic_write, numeric, read_csv
from genduel.metrics.classes import class_coverage
from genduel.runtime import progress
from genduel.train.gan import EPOCH_COLUMNS

# EPOCH_COLUMNS (imported from genduel.train.gan): the columns of ``epochs.csv``, in order.
#: The class-coverage columns added from the judge's logits of each epoch's samples.
COVERAGE_COLUMNS = ("classes_covered", "classes_well_covered", "class_kl_to_uniform_nats",
                    "class_counts")
#: The columns of ``eval/gan_diagnostics.csv``, in order.
TABLE_COLUMNS = (*EPOCH_COLUMNS, *COVERAGE_COLUMNS, "flags")
#: Text columns: ``class_counts`` is the histogram as space-separated integers.
STRING_COLUMNS = frozenset({"class_counts", "flags"})
INT_COLUMNS = frozenset({"epoch", "step", "classes_covered", "classes_well_covered"})

#: D classifies 95 % of real and fake images right: for the BCE losses D(G(z)) is near 0, where
#: the minimax generator's gradient of log(1 - D(G(z))) vanishes (Goodfellow et al. 2014, sec. 3).
#: A WGAN critic does not saturate, so there it only says the critic separates the two sets.
SATURATED_ACCURACY = 0.95
#: Accuracy within 0.05 of chance: D = 1/2 everywhere is the equilibrium of the theory
#: (Goodfellow et al. 2014, Prop. 1), but a D that has stopped learning looks the same.
EQUILIBRIUM_TOLERANCE = 0.05
#: Per-step loss std above half the loss's own scale. Minibatch noise of a calm run is a few
#: tenths of that (std/scale ~ 0.05-0.3 on Fashion-MNIST); larger means the players swing.
OSCILLATION_RELATIVE_STD = 0.5
#: Floor of the loss scale: log 2 nats is one BCE term at the equilibrium D = 1/2, and keeps the
#: ratio from blowing up when a mean loss (or the critic gap) is near 0.
LOSS_SCALE_FLOOR = math.log(2)
#: More than two of K classes below the "well covered" share (2 % of samples for K = 10): the
#: judge's own errors can thin out one or two look-alike classes (shirt/T-shirt), not three.
COLLAPSE_MISSING_CLASSES = 2
#: KL(h || U_K) = log K - H(h) above log 2 nats: the histogram's perplexity exp(H(h)) is below
#: K / 2, i.e. the samples spread like fewer than half the classes.
COLLAPSE_KL_NATS = math.log(2)
#: Well-covered classes lost in one epoch: one may be sampling noise at the 2 % boundary.
COLLAPSE_LOST_CLASSES = 2

FLAG_SATURATED = "discriminator saturated"
FLAG_CRITIC = "critic separates real and fake almost perfectly"
FLAG_EQUILIBRIUM = "near equilibrium"
FLAG_OSCILLATION = "losses oscillate"
FLAG_COLLAPSE = "possible mode collapse"
#: What each flag means, in the words of the report's summary sentences.
FLAG_MEANING = {
    FLAG_SATURATED: f"discriminator saturated (accuracy >= {SATURATED_ACCURACY})",
    FLAG_CRITIC: f"critic separates real and fake almost perfectly "
                 f"(accuracy >= {SATURATED_ACCURACY})",
    FLAG_EQUILIBRIUM: f"near equilibrium (|accuracy - 0.5| <= {EQUILIBRIUM_TOLERANCE})",
    FLAG_OSCILLATION: f"losses oscillate (per-step std > {OSCILLATION_RELATIVE_STD} × loss scale)",
    FLAG_COLLAPSE: "possible mode collapse (classes missing or unbalanced)",
}


def number(row: dict[str, Any], key: str) -> float:
    """``row[key]`` as a float; NaN when absent, empty or not a number."""
    value = row.get(key)
    try:
        return float(value) if value not in (None, "") else math.nan
    except (TypeError, ValueError):
        return math.nan


def accuracy_flags(row: dict[str, Any], loss: str) -> list[str]:
    """Saturation and equilibrium flags of one epoch from its accuracy ``d_acc``."""
    acc = number(row, "d_acc")
    if math.isnan(acc):
        return []
    if acc >= SATURATED_ACCURACY:
        if loss == "wgan_gp":
            return [f"{FLAG_CRITIC} (accuracy {acc:.3f} >= {SATURATED_ACCURACY})"]
        # The minimax gradient per fake is -D(G(z)): its mean says how far it has vanished.
        return [f"{FLAG_SATURATED} (accuracy {acc:.3f} >= {SATURATED_ACCURACY}, mean D(G(z)) "
                f"{number(row, 'd_fake'):.3f})"]
    if abs(acc - 0.5) <= EQUILIBRIUM_TOLERANCE:
        return [f"{FLAG_EQUILIBRIUM} (accuracy {acc:.3f})"]
    return []


def loss_scale(row: dict[str, Any], key: str, loss: str) -> float:
    """The scale a loss's per-step std is read against (see the module docstring)."""
    typical = (abs(number(row, "d_real") - number(row, "d_fake")) if loss == "wgan_gp"
               else abs(number(row, key)))
    return max(typical, LOSS_SCALE_FLOOR) if not math.isnan(typical) else LOSS_SCALE_FLOOR


def oscillation_flags(row: dict[str, Any], loss: str) -> list[str]:
    """One flag naming the losses with ``std / scale > OSCILLATION_RELATIVE_STD``."""
    parts = []
    for key in ("d_loss", "g_loss"):
        ratio = number(row, f"{key}_std") / loss_scale(row, key, loss)
        if ratio > OSCILLATION_RELATIVE_STD:  # False for NaN (no std column)
            parts.append(f"{key} std = {ratio:.2f} × scale")
    return [f"{FLAG_OSCILLATION} ({', '.join(parts)})"] if parts else []


def collapse_flags(row: dict[str, Any], previous: dict[str, Any] | None,
                   num_classes: int) -> list[str]:
    """One flag when the epoch's samples miss classes, are unbalanced, or lost classes."""
    well, kl = number(row, "classes_well_covered"), number(row, "class_kl_to_uniform_nats")
    before = number(previous, "classes_well_covered") if previous else math.nan
    reasons = []
    if well < num_classes - COLLAPSE_MISSING_CLASSES:
        reasons.append(f"{well:.0f} of {num_classes} classes well covered")
    if kl > COLLAPSE_KL_NATS:
        reasons.append(f"class KL to uniform {kl:.2f} nats > log 2")
    if before - well >= COLLAPSE_LOST_CLASSES:
        reasons.append(f"well-covered classes fell from {before:.0f} to {well:.0f}")
    return [f"{FLAG_COLLAPSE} ({', '.join(reasons)})"] if reasons else []


def _coverage(logits: np.ndarray, num_classes: int) -> dict[str, Any]:
    """The coverage columns of one epoch's judge logits ``(N, K)``."""
    cov = class_coverage(logits, num_classes)
    return {"classes_covered": cov["classes_covered"],
            "classes_well_covered": cov["classes_well_covered"],
            "class_kl_to_uniform_nats": cov["class_kl_to_uniform_nats"],
            "class_counts": " ".join(str(int(c)) for c in cov["class_counts"])}


def epoch_table(epoch_rows: list[dict[str, float]], logits_by_epoch: Sequence[np.ndarray],
                num_classes: int, loss: str) -> list[dict[str, Any]]:
    """One diagnostics row per epoch: the epochs.csv columns, class coverage and flags.

    Args:
        epoch_rows: the parsed rows of ``epochs.csv`` (at least :data:`EPOCH_COLUMNS`; a missing
            column becomes NaN, extra columns are kept after the standard ones).
        logits_by_epoch: judge logits ``(N, K)`` of the samples saved after each epoch, one per
            row, or empty when none were saved (the coverage columns are then NaN / "").
        num_classes: K, the judge's number of classes.
        loss: ``gan.loss``, one of :data:`genduel.config.GAN_LOSSES` (selects the WGAN-GP
            wording and scale).

    Returns:
        Dicts with the keys :data:`TABLE_COLUMNS` (then any extra epochs.csv columns);
        ``epoch``, ``step`` and the class counts are ints, ``flags`` a ``"; "``-joined string.

    Raises:
        ValueError: unknown ``loss``, or a number of logit arrays other than 0 or the epochs'.
    """
    if loss not in GAN_LOSSES:
        raise ValueError(f"epoch_table: loss must be one of {GAN_LOSSES}, got {loss!r}")
    if logits_by_epoch and len(logits_by_epoch) != len(epoch_rows):
        raise ValueError(f"epoch_table: {len(logits_by_epoch)} logit arrays for "
                         f"{len(epoch_rows)} epochs")
    out: list[dict[str, Any]] = []
    for i, src in enumerate(epoch_rows):
        row: dict[str, Any] = {k: number(src, k) for k in EPOCH_COLUMNS}
        row.update({k: v for k, v in src.items() if k not in row})
        row.update({k: int(row[k]) for k in ("epoch", "step") if not math.isnan(row[k])})
        row.update(_coverage(logits_by_epoch[i], num_classes) if logits_by_epoch else
                   {**dict.fromkeys(COVERAGE_COLUMNS[:3], math.nan), "class_counts": ""})
        flags = (accuracy_flags(row, loss) + oscillation_flags(row, loss)
                 + collapse_flags(row, out[-1] if out else None, num_classes))
        row["flags"] = "; ".join(flags)
        out.append(row)
    return out


def _ranges(epochs: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"Epochs 1-3, 5"``; one epoch -> ``"Epoch 4"``."""
    spans: list[list[int]] = []
    for e in epochs:
        if spans and e == spans[-1][1] + 1:
            spans[-1][1] = e
        else:
            spans.append([e, e])
    text = ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in spans)
    return ("Epoch " if len(epochs) == 1 else "Epochs ") + text


def flag_kinds(flags: str) -> list[str]:
    """The flag names in a ``flags`` cell, without their details in parentheses."""
    kinds = [f.split(" (")[0].strip() for f in flags.split("; ")] if flags else []
    return [k for k in kinds if k in FLAG_MEANING]


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Short sentences for the report: which epochs raised which flag, then the last epoch.

    E.g. ``"Epochs 1-2: discriminator saturated (accuracy >= 0.95)."``. Accepts the rows of
    :func:`epoch_table` or :func:`read_table`.
    """
    by_kind: dict[str, list[int]] = {}
    for row in rows:
        for kind in flag_kinds(str(row.get("flags") or "")):
            by_kind.setdefault(kind, []).append(int(row["epoch"]))
    lines = [f"{_ranges(epochs)}: {FLAG_MEANING[kind]}." for kind, epochs in by_kind.items()]
    if rows and not lines:
        lines.append("No diagnostic flag fired in any epoch.")
    if rows:
        last, well = rows[-1], number(rows[-1], "classes_well_covered")
        cover = "" if math.isnan(well) else f", {well:.0f} classes well covered"
        lines.append(f"Last epoch ({int(last['epoch'])}): accuracy "
                     f"{number(last, 'd_acc'):.3f}{cover}.")
    return lines


def numeric_columns(row: dict[str, Any]) -> dict[str, float]:
    """The finite numeric columns of a row except ``epoch`` (e.g. to log as metrics per epoch)."""
    return {key: value for key, value in numeric(row).items()
            if key != "epoch" and key not in STRING_COLUMNS and math.isfinite(value)}


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as CSV: :data:`TABLE_COLUMNS` first, extra keys after; NaN as ``nan``."""
    extra = [k for row in rows for k in row if k not in TABLE_COLUMNS]
    columns = [*TABLE_COLUMNS, *dict.fromkeys(extra)]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, text.getvalue().encode("utf-8"))


def _parse(key: str, text: str) -> Any:
    if key in STRING_COLUMNS:
        return text
    try:
        value = float(text) if text != "" else math.nan
    except ValueError:
        return text  # an extra text column
    return int(value) if key in INT_COLUMNS and value.is_integer() else value


def read_table(path: Path) -> list[dict[str, Any]]:
    """Read :func:`write_table`'s CSV: numbers as float (ints for counts), text columns as str.

    Raises:
        DataError: the file is missing, lacks ``epoch`` or ``step``, or has a partial row.
    """
    fix = "restore it with `dvc checkout eval` or re-run evaluate (dvc repro evaluate)"
    return [{k: _parse(k, v) for k, v in row.items()}
            for row in read_csv(path, fix, ("epoch", "step"), numbers=False)]


#: The epochs.csv columns the diagnostics need (a wall-time column may come and go).
REQUIRED_EPOCH_COLUMNS = ("epoch", "step", "d_real", "d_fake", "d_acc", "d_loss", "g_loss")
_ARTIFACT_FIX = ("restore it with `dvc checkout` or re-run the seed's train_gan "
                 "(dvc repro train_gan@<seed>)")


def read_gan_artifacts(artifacts_dir: Path) -> tuple[list[dict[str, float]], list[torch.Tensor]]:
    """train_gan's ``epochs.csv`` rows and the samples of ``epoch_samples.pt`` (one uint8 batch
    ``(N, C, H, W)`` per epoch; [] when none were saved), read and checked before any work.

    Returns ([], []) when there is no epochs table.

    Raises:
        DataError: a missing column, a partial row, a truncated or malformed samples file, or
            a number of sample batches other than the epochs'.
    """
    epochs_csv, samples_pt = artifacts_dir / "epochs.csv", artifacts_dir / "epoch_samples.pt"
    if not epochs_csv.is_file():
        return [], []
    rows = read_csv(epochs_csv, _ARTIFACT_FIX, REQUIRED_EPOCH_COLUMNS)
    if not samples_pt.is_file():
        return rows, []
    saved = load_pt(samples_pt, _ARTIFACT_FIX)
    images = saved.get("images") if isinstance(saved, dict) else None
    if not (isinstance(images, torch.Tensor) and images.ndim == 5
            and images.dtype == torch.uint8):
        raise DataError(f"{samples_pt}: no 'images' tensor, uint8 (epochs, N, C, H, W); "
                        f"{_ARTIFACT_FIX}")
    if len(images) != len(rows):
        raise DataError(f"{samples_pt}: {len(images)} epochs of samples but {epochs_csv} has "
                        f"{len(rows)} rows; {_ARTIFACT_FIX}")
    return rows, list(images.unbind(0))


def epoch_diagnostics(judge: torch.nn.Module, rows: list[dict[str, float]],
                      images: Sequence[torch.Tensor], num_classes: int, loss: str,
                      batch_size: int, device: torch.device) -> list[dict[str, Any]]:
    """:func:`epoch_table` of ``epochs.csv`` rows and the judge's logits of each epoch's
    samples (:func:`read_gan_artifacts`)."""
    logits = [embed(judge, batch, batch_size, device).logits
              for batch in progress(images, desc="GAN epoch coverage", unit="epoch")]
    return epoch_table(rows, logits, num_classes, loss)


def gan_epoch_diagnostics(judge: torch.nn.Module, artifacts_dir: Path, num_classes: int,
                          loss: str, batch_size: int, device: torch.device
                          ) -> list[dict[str, Any]]:
    """Per-epoch GAN diagnostics: ``epochs.csv`` of train_gan joined with class coverage.

    The judge classifies the fixed-noise samples train_gan saved after every epoch
    (``epoch_samples.pt``); :func:`epoch_table` merges the coverage with D(x), D(G(z)), D
    accuracy and loss spread, and adds the flags. Returns [] when no epochs table exists; without
    saved samples (``gan.diag_samples: 0``) the coverage columns are empty.
    """
    rows, images = read_gan_artifacts(artifacts_dir)
    return epoch_diagnostics(judge, rows, images, num_classes, loss, batch_size, device)


def diagnostics_series(path: Path) -> list[tuple[int, dict[str, float]]]:
    """``(step, {"diag/<column>": value})`` per epoch of ``gan_diagnostics.csv`` ([] if absent):
    the per-epoch diagnostics as MLflow metric histories of the GAN's training run."""
    if not path.is_file():
        return []
    series = []
    for row in read_table(path):
        values = {f"diag/{k}": v for k, v in row.items() if k not in ("epoch", "step", "flags")}
        series.append((int(row["step"]), values))
    return series
