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

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genduel.checkpoint import load_checkpoint, rebuild
from genduel.config import EvalConfig, RuntimeConfig, TrackingConfig, flatten
from genduel.data.splits import Split, load_split
from genduel.evaluate.gan_diagnostics import (
    COVERAGE_COLUMNS,
    diagnostics_series,
    gan_epoch_diagnostics,
    write_table,
)
from genduel.evaluate.inception import inception_rows
from genduel.evaluate.inference import inference_metrics, save_reconstructions
from genduel.evaluate.likelihood import likelihood_bounds, parzen_rows
from genduel.evaluate.memorization import memorization_rows
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
from genduel.io import digest, numeric, write_json
from genduel.models.baselines import PixelGaussian
from genduel.models.gan import build_generator
from genduel.models.judge import build_judge
from genduel.models.vae import build_vae
from genduel.provenance import library_versions
from genduel.runtime import resolve_device, seed_everything
from genduel.tracking.base import dataset_refs
from genduel.tracking.evaluation import log_evaluation
from genduel.tracking.mlflow_store import stage_run

log = logging.getLogger(__name__)

#: The baseline ladder above real data, stronger rung first: rows that learn nothing but pixel
#: statistics of the training images (:class:`~genduel.models.baselines.PixelGaussian`), scored
#: like the models. With ``real`` (test images, the floor no model can go below) they give every
#: number a scale.
BASELINES = {"class_gaussians": True, "pixel_gaussian": False}  # row -> per_class
#: Every row of the evaluate stage, as ``metrics/eval_<row>.json``.
ROWS = ("vae", "gan", "real", *BASELINES)


@dataclass(frozen=True)
class EvalInputs:
    """Everything the evaluate stage reads, loaded."""

    judge: torch.nn.Module
    vae: torch.nn.Module
    generator: torch.nn.Module
    train: Split
    val: Split
    test: Split
    judge_sha256: str
    judge_accuracy: float
    #: "vae"/"gan" -> the params section each model was trained with (from its checkpoint)
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: train_gan's artifacts (epochs.csv, epoch_samples.pt) for the per-epoch diagnostics
    gan_artifacts: Path | None = None


@dataclass(frozen=True)
class EvalPaths:
    """The evaluate stage's files, as ``dvc.yaml`` names them (``deps`` first, then ``outs``)."""

    data: Path  #: prepared splits (``train.pt``, ``val.pt``, ``test.pt``)
    judge: Path  #: judge checkpoint
    vae: Path  #: VAE checkpoint
    gan: Path  #: GAN checkpoint
    gan_artifacts: Path  #: train_gan's ``epochs.csv`` and ``epoch_samples.pt``
    vae_metrics: Path  #: ``metrics/train_vae.json`` (holds the training run's MLflow id)
    gan_metrics: Path  #: ``metrics/train_gan.json``
    out: Path  #: ``eval/``: features, grids, details, diagnostics, studies
    metrics_dir: Path  #: where ``eval_<row>.json`` go


def load_inputs(paths: EvalPaths) -> EvalInputs:
    """Rebuild the judge, the VAE and the generator from their checkpoints; load the splits."""
    judge_ckpt = load_checkpoint(paths.judge, "judge")
    ckpts = {"vae": load_checkpoint(paths.vae, "vae"), "gan": load_checkpoint(paths.gan, "gan")}
    return EvalInputs(
        judge=rebuild(judge_ckpt, "judge", build_judge),
        vae=rebuild(ckpts["vae"], "vae", build_vae),
        generator=rebuild(ckpts["gan"], "generator", build_generator),
        train=load_split(paths.data, "train"), val=load_split(paths.data, "val"),
        test=load_split(paths.data, "test"),
        judge_sha256=digest(paths.judge),
        judge_accuracy=float(judge_ckpt["extra"]["test_accuracy"]),
        model_params={m: c["extra"].get("config", {}) for m, c in ckpts.items()},
        gan_artifacts=paths.gan_artifacts)


def run_evaluate(cfg: EvalConfig, rt: RuntimeConfig, tracking: TrackingConfig,
                 paths: EvalPaths) -> dict[str, dict[str, Any]]:
    """The evaluate stage: seed, evaluate, write the metrics and details files, log to MLflow.

    The stage's run gets the data splits as inputs and the sample grids; each row's numbers go
    to a run ``evaluate/<row>`` nested under it, under the names of the metrics JSON, linked to
    the model the row's training run logged (run ids from ``paths.vae_metrics`` /
    ``paths.gan_metrics``), the GAN's also with the per-epoch class coverage as histories
    (:func:`~genduel.tracking.evaluation.log_evaluation`; the training runs get them too when
    they belong to this pipeline run).

    Returns:
        The rows of :func:`evaluate_all`.
    """
    seed_everything(cfg.seed)
    device = resolve_device(rt)
    inputs = load_inputs(paths)
    trained = {name: json.loads(path.read_text()).get("mlflow_run_id", "")
               for name, path in (("vae", paths.vae_metrics), ("gan", paths.gan_metrics))}
    with stage_run("evaluate", tracking, {**flatten("runtime", rt), **flatten("eval", cfg)}
                   ) as tracker:
        tracker.log_inputs(dataset_refs(paths.data))
        results = evaluate_all(cfg, inputs, device, paths.out)
        rows = {}
        for name, values in results.items():
            rows[name], details = split_details(values)
            write_json(paths.metrics_dir / f"eval_{name}.json", rows[name])
            write_json(paths.out / f"details_{name}.json",
                       {**details, "mlflow_run_id": tracker.run_id})
        tracker.log_artifact(paths.out / "samples_vae.png", "grids")
        tracker.log_artifact(paths.out / "samples_gan.png", "grids")
        # Only the judge's class coverage: the other columns are train_gan's own epoch means.
        coverage = [(step, {k: v for k, v in row.items()
                            if k.removeprefix("diag/") in COVERAGE_COLUMNS})
                    for step, row in diagnostics_series(paths.out / "gan_diagnostics.csv")]
        log_evaluation(tracker, rows, trained, {"gan": coverage})
    return results


def evaluate_all(cfg: EvalConfig, inputs: EvalInputs, device: torch.device,
                 out_dir: Path) -> dict[str, dict[str, Any]]:
    """All metrics for every row of :data:`ROWS`, each with a ``protocol`` block.

    Writes feature matrices (``features_*.npz``), sample/reconstruction grids, the latent-space
    studies (``studies/``, see :mod:`genduel.evaluate.study_figures`) and the GAN's per-epoch
    diagnostics (``gan_diagnostics.csv``) to ``out_dir``. The model rows also carry
    ``model_params``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    judge, vae, gen = (m.to(device) for m in (inputs.judge, inputs.vae, inputs.generator))
    reference = embed(judge, subset(inputs.train, cfg.num_samples, cfg.seed), cfg.batch_size,
                      device)
    test_fs = embed(judge, inputs.test.images, cfg.batch_size, device)
    runs, results = _sample_rows(cfg, {"vae": vae, "gan": gen}, inputs, judge=judge,
                                 reference=reference, test_fs=test_fs, device=device,
                                 out_dir=out_dir)
    for name, values in memorization_rows(
            {name: (run.first_draw, run.first_features) for name, run in runs.items()},
            inputs.train, inputs.test,
            judge=judge, n=cfg.memorization_samples, seed=cfg.seed, batch_size=cfg.batch_size,
            device=device, out_dir=out_dir).items():
        results[name].update(values)
    results["vae"].update(likelihood_bounds(vae, inputs.test, cfg, device))
    results["vae"].update(inference_metrics(vae, inputs.train, inputs.test, cfg, device))
    save_reconstructions(vae, inputs.test, out_dir / "reconstructions_vae.png", device)
    write_studies(vae, gen, inputs.test, out_dir / "studies", seed=cfg.seed, device=device)
    if inputs.gan_artifacts is not None:
        rows = gan_epoch_diagnostics(judge, inputs.gan_artifacts, inputs.train.num_classes,
                                     gen.loss, cfg.batch_size, device)
        write_table(rows, out_dir / "gan_diagnostics.csv")
    n_parzen = min(cfg.parzen_samples, cfg.num_samples)
    centres = {name: run.first_draw[:n_parzen] for name, run in runs.items()}
    centres["real"] = subset(inputs.train, n_parzen, cfg.seed)
    parzen = parzen_rows(
        centres, subset(inputs.val, cfg.parzen_val_images, cfg.seed),
        subset(inputs.test, cfg.parzen_test_images, cfg.seed), cfg.parzen_sigmas, cfg.batch_size)
    protocol = _protocol(cfg, inputs, reference, len(test_fs.features),
                         {name: len(c) for name, c in centres.items()})
    for name, values in results.items():
        values.update(parzen[name])
        values["protocol"] = protocol
        if name in inputs.model_params:
            values["model_params"] = inputs.model_params[name]
    if cfg.inception_weights:
        samples = {name: run.first_draw for name, run in runs.items()}
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
    if name == "vae":
        return lambda n, g: model.sample(n, generator=g, image=cfg.vae_image)
    return lambda n, g: model.sample(n, generator=g)


def _protocol(cfg: EvalConfig, inputs: EvalInputs, reference: FeatureSet, n_test: int,
              n_centres: dict[str, int]) -> dict[str, Any]:
    """The ``protocol`` block every metrics file carries: how each number was obtained."""
    n_val = min(cfg.parzen_val_images, len(inputs.val))
    n_parzen_test = min(cfg.parzen_test_images, len(inputs.test))
    n_probe = min(cfg.probe_train_images, len(inputs.train))
    return {
        "num_samples": cfg.num_samples, "draws": cfg.draws,
        "sample_seeds": [cfg.seed + d for d in range(cfg.draws)],
        "reference": f"{len(reference.features)} train images (seed {cfg.seed})",
        "real_row": f"{min(cfg.num_samples, n_test)} test images per draw",
        "pixels": "samples rounded to 8-bit like the data",
        "vae_image": cfg.vae_image,
        "features": f"judge penultimate layer ({reference.features.shape[1]} dims)",
        "judge_sha256": inputs.judge_sha256, "judge_test_accuracy": inputs.judge_accuracy,
        "is_splits": cfg.is_splits, "kid_subsets": cfg.kid_subsets,
        "kid_subset_size": cfg.kid_subset_size, "pr_k": cfg.pr_k,
        "iwae_k": list(cfg.iwae_k),
        "parzen": (f"Gaussian Parzen window, pixels in [0, 1]; centres: {n_centres['vae']} VAE / "
                   f"{n_centres['gan']} GAN samples of draw 0, {n_centres['real']} train images "
                   f"(seed {cfg.seed}) for the real row; sigma by mean LL on {n_val} val images; "
                   f"mean LL on {n_parzen_test} test images (seed {cfg.seed})"),
        "parzen_sigmas": [float(s) for s in cfg.parzen_sigmas],
        "baselines": ("pixel_gaussian: one Gaussian over all pixels (mean and full covariance "
                      "of the train images); class_gaussians: one per class, classes drawn at "
                      "their train frequencies; sampled like a model and rounded to 8 bits"),
        "memorization": (f"nearest neighbour among all {len(inputs.train)} train images of the "
                         f"first {cfg.memorization_samples} samples of draw 0 and of as many "
                         f"test images (seed {cfg.seed}), Euclidean in pixels in [0, 1] and in "
                         "judge features; nn_ratio = median sample NN distance / median test "
                         "NN distance; copy_share = share of samples nearer than the 1 % "
                         "quantile of the test distances"),
        "probe": (f"VAE posterior means mu(x): logistic regression (standardized) and "
                  f"{cfg.probe_knn_k}-NN fit on the first {n_probe} train images, accuracy on "
                  f"the true labels of all {n_test} test images"),
        "reconstruction": ("decoder mean at z = mu(x), all test images; MSE in [0, 1] pixel "
                           "units, MAE in 8-bit levels"),
        "libraries": library_versions(),
    }


def split_details(values: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """(numbers, the rest) of a row: ``metrics/eval_*.json`` holds only the numbers, so that
    ``dvc metrics show`` and ``dvc exp show`` list metrics, not protocol text; the protocol and
    model settings go to ``eval/details_*.json``, which the report merges back in.

    The numbers keep their type (an int count is written as ``10``, not ``10.0``).
    """
    numbers = {k: values[k] for k in numeric(values)}
    return numbers, {k: v for k, v in values.items() if k not in numbers}
