"""The evaluate stage: every metric row (``vae``, ``gan``, ``real``) and the files it writes.

:func:`run_evaluate` is the stage body: it loads the judge, the two models and the splits
(:func:`load_inputs`), computes the rows under the stage's MLflow run (:func:`evaluate_all`),
writes ``metrics/eval_<row>.json`` (numbers only) and ``eval/details_<row>.json`` (protocol and
model settings, :func:`split_details`), and records each row in MLflow, linked to the model it
scores (:func:`~genduel.tracking.evaluation.log_evaluation`).

A row gathers the sample metrics (:mod:`~genduel.evaluate.samples`, whose docstring states the
sampling protocol), the Parzen window and, for the VAE, the ELBO/IWAE bounds
(:mod:`~genduel.evaluate.likelihood`), the VAE's inference-model metrics
(:mod:`~genduel.evaluate.inference`) and, when ``eval.inception_weights`` is set, Inception-v3
metrics (:mod:`~genduel.evaluate.inception`). The GAN's per-epoch diagnostics
(:mod:`~genduel.evaluate.gan_diagnostics`) and the latent-space studies
(:mod:`~genduel.evaluate.study_figures`) are written beside them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genduel import timings
from genduel.checkpoint import load_checkpoint, rebuild
from genduel.config import EvalConfig, RuntimeConfig, TrackingConfig, flatten
from genduel.data.splits import Split, load_split
from genduel.errors import DataError
from genduel.evaluate.gan_diagnostics import (
    COVERAGE_COLUMNS,
    diagnostics_series,
    epoch_diagnostics,
    read_gan_artifacts,
    write_table,
)
from genduel.evaluate.inception import check_weights, inception_rows
from genduel.evaluate.inference import inference_metrics, save_reconstructions
from genduel.evaluate.likelihood import parzen_rows, two_stage_bounds
from genduel.evaluate.memorization import memorization_rows
from genduel.evaluate.prior_gap import prior_gap, write_prior_gap
from genduel.evaluate.protocol import protocol_block, reference_size, split_details
from genduel.evaluate.samples import (
    FeatureSet,
    SamplerResult,
    embed,
    evaluate_real,
    evaluate_sampler,
    label_accuracy,
    subset,
)
from genduel.evaluate.study_figures import write_studies
from genduel.io import digest, write_json
from genduel.models.baselines import PixelGaussian
from genduel.models.gan import build_generator
from genduel.models.judge import build_judge
from genduel.models.vae import build_vae
from genduel.provenance import RUNS_DIR, read_run_record, write_run_record
from genduel.runtime import resolve_device, seed_everything
from genduel.tracking.base import dataset_refs
from genduel.tracking.evaluation import log_evaluation
from genduel.tracking.mlflow_store import stage_run
from genduel.workdir import staged

log = logging.getLogger(__name__)

#: The baseline ladder above real data, stronger rung first: rows that learn nothing but pixel
#: statistics of the training images (:class:`~genduel.models.baselines.PixelGaussian`), scored
#: like the models. With ``real`` (test images, the floor no model can go below) they give every
#: number a scale.
BASELINES = {"class_gaussians": True, "pixel_gaussian": False}  # row -> per_class
#: The models' rows: the VAE sampled from N(0, I), the same VAE sampled from its fitted prior
#: (the fit_prior stage's checkpoint), and the GAN.
MODELS = ("vae", "vae_prior", "gan")
#: Every row of the evaluate stage, as ``metrics/eval_<row>.json``.
ROWS = (*MODELS, "real", *BASELINES)


@dataclass(frozen=True)
class EvalInputs:
    """Everything the evaluate stage reads, loaded."""

    judge: torch.nn.Module
    vae: torch.nn.Module
    #: the same VAE with the prior fitted by fit_prior (``vae_prior.prior``)
    vae_prior: torch.nn.Module
    generator: torch.nn.Module
    train: Split
    val: Split
    test: Split
    judge_sha256: str
    judge_accuracy: float
    #: row -> the params section each model was trained with (from its checkpoint; the
    #: vae_prior row's also names its prior)
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: train_gan's artifacts (epochs.csv, epoch_samples.pt) for the per-epoch diagnostics
    gan_artifacts: Path | None = None
    #: their content, read and checked by :func:`load_inputs` (None: read from gan_artifacts)
    gan_epochs: tuple[list[dict[str, float]], list[torch.Tensor]] | None = None


@dataclass(frozen=True)
class EvalPaths:
    """The evaluate stage's files, as ``dvc.yaml`` names them (``deps`` first, then ``outs``)."""

    data: Path  #: prepared splits (``train.pt``, ``val.pt``, ``test.pt``)
    judge: Path  #: judge checkpoint
    vae: Path  #: VAE checkpoint
    vae_prior: Path  #: the VAE with its fitted prior (fit_prior's checkpoint)
    gan: Path  #: GAN checkpoint
    gan_artifacts: Path  #: train_gan's ``epochs.csv`` and ``epoch_samples.pt``
    out: Path  #: ``eval/``: features, grids, details, diagnostics, studies
    metrics_dir: Path  #: where ``eval_<row>.json`` go
    #: run records: the training runs' MLflow ids are read from here (not a DVC dependency),
    #: ``evaluate.json`` is written here
    runs_dir: Path = RUNS_DIR

    def outputs(self) -> list[Path]:
        """Every output, as the stage publishes them (:func:`genduel.workdir.staged`)."""
        return [self.out, *(self.metrics_dir / f"eval_{row}.json" for row in ROWS),
                self.runs_dir / "evaluate.json"]


#: The row whose model a training stage logged (its run record holds the MLflow run id).
TRAINING_STAGES = {"vae": "train_vae", "vae_prior": "fit_prior", "gan": "train_gan"}


def prior_params(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The vae_prior row's settings: the VAE's params section and, under ``prior``, the
    fitted prior's params and its chosen size (from fit_prior's checkpoint)."""
    extra = ckpt.get("extra") or {}
    fit = extra.get("prior") or {}
    return {**(extra.get("config") or {}),
            "prior": {**(fit.get("config") or {}), "chosen_components":
                      fit.get("chosen_components")}}


def load_inputs(paths: EvalPaths) -> EvalInputs:
    """Rebuild the judge, the VAE and the generator from their checkpoints; load the splits and
    train_gan's per-epoch artifacts. Every input is read and checked here, before any work.

    Raises:
        DataError: a missing, truncated or malformed input, named with its fix.
    """
    judge_ckpt = load_checkpoint(paths.judge, "judge")
    ckpts = {"vae": load_checkpoint(paths.vae, "vae"),
             "vae_prior": load_checkpoint(paths.vae_prior, "vae"),
             "gan": load_checkpoint(paths.gan, "gan")}
    accuracy = (judge_ckpt.get("extra") or {}).get("test_accuracy")
    if not isinstance(accuracy, int | float):
        raise DataError(f"{paths.judge}: no extra.test_accuracy in the judge checkpoint; "
                        "re-run the judge stage (dvc repro judge)")
    return EvalInputs(
        judge=rebuild(judge_ckpt, "judge", build_judge, paths.judge),
        vae=rebuild(ckpts["vae"], "vae", build_vae, paths.vae),
        vae_prior=rebuild(ckpts["vae_prior"], "vae", build_vae, paths.vae_prior),
        generator=rebuild(ckpts["gan"], "generator", build_generator, paths.gan),
        train=load_split(paths.data, "train"), val=load_split(paths.data, "val"),
        test=load_split(paths.data, "test"),
        judge_sha256=digest(paths.judge),
        judge_accuracy=float(accuracy),
        model_params={**{m: (c.get("extra") or {}).get("config", {}) for m, c in ckpts.items()},
                      "vae_prior": prior_params(ckpts["vae_prior"])},
        gan_artifacts=paths.gan_artifacts,
        gan_epochs=read_gan_artifacts(paths.gan_artifacts))


def run_evaluate(cfg: EvalConfig, rt: RuntimeConfig, tracking: TrackingConfig,
                 paths: EvalPaths, seed: int | None = None) -> dict[str, dict[str, Any]]:
    """The evaluate stage: check and load every input, then evaluate, write the metrics and
    details files and the run record, log to MLflow.

    Inputs are read first (``eval.inception_weights`` before anything else), so a bad file
    stops the stage in seconds, before the MLflow run opens. The outputs are written to the
    stage's work directory and published together at the end (:func:`genduel.workdir.staged`):
    on any error or interruption ``eval/``, ``metrics/eval_*.json`` and ``runs/evaluate.json``
    keep what they held.

    The stage's run gets the data splits as inputs and the sample grids; each row's numbers go
    to a run ``evaluate/<row>`` nested under it, under the names of the metrics JSON, linked to
    the model the row's training run logged (run ids from the training stages' run records,
    ``runs/train_vae.json`` / ``runs/train_gan.json``), the GAN's also with the per-epoch class
    coverage as histories (:func:`~genduel.tracking.evaluation.log_evaluation`; the training
    runs get them too when they belong to this pipeline run). ``seed``: the training seed whose
    models these are (the MLflow run ``evaluate@<seed>`` with its tag and param).

    Returns:
        The rows of :func:`evaluate_all`.
    """
    start = time.perf_counter()
    if cfg.inception_weights:
        check_weights(Path(cfg.inception_weights))
    inputs = load_inputs(paths)
    trained = {name: str(read_run_record(stage, paths.runs_dir).get("mlflow_run_id") or "")
               for name, stage in TRAINING_STAGES.items()}
    seed_everything(cfg.seed)
    device = resolve_device(rt)
    with (stage_run("evaluate", tracking, {**flatten("runtime", rt), **flatten("eval", cfg)},
                    seed=seed) as tracker,
          staged("evaluate" if seed is None else f"evaluate@{seed}", paths.outputs()) as staging):
        out = staging.path(paths.out)
        tracker.log_inputs(dataset_refs(paths.data))
        phases: dict[str, float] = {}
        results = evaluate_all(cfg, inputs, device, out, phases)
        rows = {}
        for name, values in results.items():
            rows[name], details = split_details(values)
            write_json(staging.path(paths.metrics_dir / f"eval_{name}.json"), rows[name])
            write_json(out / f"details_{name}.json", details)
        for name in MODELS:
            tracker.log_artifact(out / f"samples_{name}.png", "grids")
        # Only the judge's class coverage: the other columns are train_gan's own epoch means.
        coverage = [(step, {k: v for k, v in row.items()
                            if k.removeprefix("diag/") in COVERAGE_COLUMNS})
                    for step, row in diagnostics_series(out / "gan_diagnostics.csv")]
        log_evaluation(tracker, rows, trained, {"gan": coverage})
        write_run_record("evaluate", {"mlflow_run_id": tracker.run_id,
                                      "training_run_ids": trained,
                                      "eval_seconds": round(time.perf_counter() - start, 2),
                                      "phase_seconds": phases},
                         staging.path(paths.runs_dir / "evaluate.json").parent)
    return results


def evaluate_all(cfg: EvalConfig, inputs: EvalInputs, device: torch.device,
                 out_dir: Path, phases: dict[str, float] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """All metrics for every row of :data:`ROWS`, each with a ``protocol`` block.

    Writes feature matrices (``features_*.npz``), sample/reconstruction grids, the latent-space
    studies (``studies/``, see :mod:`genduel.evaluate.study_figures`) and the GAN's per-epoch
    diagnostics (``gan_diagnostics.csv``) to ``out_dir``. The model rows also carry
    ``model_params``. Each phase's wall time is logged and, when ``phases`` is given, added to
    it by name (:func:`genduel.timings.phase`; on a GPU after a synchronize).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    reference_size(cfg, len(inputs.train), len(inputs.test))
    phases = {} if phases is None else phases
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def timed(name: str) -> contextlib.AbstractContextManager[None]:
        return timings.phase(name, phases, sync=sync)

    judge, vae, vae_prior, gen = (m.to(device) for m in (inputs.judge, inputs.vae,
                                                         inputs.vae_prior, inputs.generator))
    with timed("reference_features"):
        reference = embed(judge, subset(inputs.train, cfg.num_samples, cfg.seed),
                          cfg.batch_size, device)
        test_fs = embed(judge, inputs.test.images, cfg.batch_size, device)
    with timed("sample_metrics"):
        runs, results = _sample_rows(cfg, {"vae": vae, "vae_prior": vae_prior, "gan": gen},
                                     inputs, judge=judge, reference=reference, test_fs=test_fs,
                                     device=device, out_dir=out_dir)
    with timed("memorization"):
        for name, values in memorization_rows(
                {name: (run.first_draw, run.first_features) for name, run in runs.items()},
                inputs.train, inputs.test,
                judge=judge, n=cfg.memorization_samples, seed=cfg.seed,
                batch_size=cfg.batch_size, device=device, out_dir=out_dir).items():
            results[name].update(values)
    with timed("likelihood_bounds"):
        standard, two_stage = two_stage_bounds(vae, vae_prior.prior, inputs.test, cfg, device)
        results["vae"].update(standard)
        results["vae_prior"].update(two_stage)
    with timed("inference_probes"):
        results["vae"].update(inference_metrics(vae, inputs.train, inputs.test, cfg, device))
    with timed("prior_gap"):
        save_reconstructions(vae, inputs.test, out_dir / "reconstructions_vae.png", device)
        gap = prior_gap(vae, vae_prior.prior, inputs.train, inputs.val,
                        n=cfg.memorization_samples, seed=cfg.seed, batch_size=cfg.batch_size,
                        device=device)
        for name, values in gap.rows.items():
            results[name].update(values)
        write_prior_gap(gap, out_dir / "prior_gap.png")
    with timed("studies"):
        # The studies sample the VAE from its fitted prior (the same encoder and decoder).
        write_studies(vae_prior, gen, inputs.test, out_dir / "studies", seed=cfg.seed,
                      device=device)
    epochs = inputs.gan_epochs
    if epochs is None and inputs.gan_artifacts is not None:
        epochs = read_gan_artifacts(inputs.gan_artifacts)
    if epochs is not None:
        with timed("gan_diagnostics"):
            rows = epoch_diagnostics(judge, *epochs, inputs.train.num_classes, gen.loss,
                                     cfg.batch_size, device)
            write_table(rows, out_dir / "gan_diagnostics.csv")
    n_parzen = min(cfg.parzen_samples, cfg.num_samples)
    centres = {name: run.first_draw[:n_parzen] for name, run in runs.items()}
    centres["real"] = subset(inputs.train, n_parzen, cfg.seed)
    with timed("parzen"):
        parzen = parzen_rows(
            centres, subset(inputs.val, cfg.parzen_val_images, cfg.seed),
            subset(inputs.test, cfg.parzen_test_images, cfg.seed), cfg.parzen_sigmas,
            cfg.batch_size)
    protocol = protocol_block(
        cfg, {"train": len(inputs.train), "val": len(inputs.val), "test": len(inputs.test)},
        judge=(inputs.judge_sha256, inputs.judge_accuracy),
        reference_shape=tuple(reference.features.shape),
        n_centres={name: len(c) for name, c in centres.items()})
    for name, values in results.items():
        values.update(parzen[name])
        values["protocol"] = protocol
        if name in inputs.model_params:
            values["model_params"] = inputs.model_params[name]
    if cfg.inception_weights:
        samples = {name: run.first_draw for name, run in runs.items()}
        with timed("inception"):
            for name, values in inception_rows(cfg, samples, inputs.train, inputs.test,
                                               device).items():
                results[name].update(values)
    return results


def _sample_rows(cfg: EvalConfig, models: dict[str, Any], inputs: EvalInputs, *,
                 judge: torch.nn.Module, reference: FeatureSet, test_fs: FeatureSet,
                 device: torch.device, out_dir: Path
                 ) -> tuple[dict[str, SamplerResult], dict[str, dict[str, Any]]]:
    """Each model's and baseline's sample draws, the real row, and the label accuracy of
    conditional models (and of the judge on the test set, for comparison, when any model is
    conditional)."""
    k = inputs.train.num_classes
    samplers = {**models, **{name: PixelGaussian(inputs.train.images, inputs.train.labels,
                                                 per_class=per_class).to(device)
                             for name, per_class in BASELINES.items()}}
    runs = {name: evaluate_sampler(cfg, name, _sample_fn(model, name, cfg), (model,),
                                   judge=judge, reference=reference, num_classes=k,
                                   device=device, out_dir=out_dir)
            for name, model in samplers.items()}
    results: dict[str, dict[str, Any]] = {name: run.metrics for name, run in runs.items()}
    results["real"] = evaluate_real(cfg, test=test_fs, reference=reference, num_classes=k,
                                    out_dir=out_dir)
    conditional = {name: m for name, m in models.items() if m.conditional}
    for name, model in conditional.items():
        results[name]["label_accuracy"] = label_accuracy(
            model, judge, k, cfg.num_samples, cfg.batch_size, cfg.seed, device)
    if conditional:
        truth = inputs.test.labels.numpy()
        results["real"]["label_accuracy"] = float((test_fs.logits.argmax(1) == truth).mean())
    return runs, results


def _sample_fn(model: Any, name: str, cfg: EvalConfig) -> Callable:
    """``(n, generator) -> images`` of one row; the VAE decodes to ``eval.vae_image``."""
    if name.startswith("vae"):
        return lambda n, g: model.sample(n, generator=g, image=cfg.vae_image)
    return lambda n, g: model.sample(n, generator=g)
