"""The evaluate stage's library: draw samples, embed them with the judge, compute every metric.

Protocol (written into every metrics file):

* Each model draws ``eval.num_samples`` samples per draw, ``eval.draws`` independent draws, from
  ``torch.Generator`` seeds ``eval.seed + draw``. Samples are rounded to 8-bit pixels, exactly the
  grid the real data lives on, before anything looks at them.
* The reference distribution is a fixed random subset of the *train* split (``num_samples``
  images, seed ``eval.seed``); the real-data row compares the held-out *test* images with it, so it
  shows the value a perfect model would get at this sample size.
* Features and logits come from the judge (penultimate layer; checksum in the protocol). The exact
  matrices are saved as ``.npz`` so anyone can recompute every number.
* Sample metrics are reported as mean and std over draws (``<key>`` and ``<key>_std``).
* Parzen-window log-likelihood (all three rows) and the VAE's inference-model metrics (latent
  probes, reconstruction error) come from :mod:`genduel.evaluate_extra`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from genduel import metrics
from genduel.config import EvalConfig
from genduel.data.pixels import save_grid, to_model_range, to_uint8
from genduel.data.splits import Split
from genduel.evaluate import extra as evaluate_extra
from genduel.models.likelihood import bits_per_dim
from genduel.runtime import eval_mode, make_generator

log = logging.getLogger(__name__)

SampleFn = Callable[[int, torch.Generator], torch.Tensor]


class SamplerResult(NamedTuple):
    """What :func:`evaluate_sampler` returns: summarized metrics and draw 0's uint8 images."""

    metrics: dict[str, float]
    first_draw: torch.Tensor  # uint8 (num_samples, C, H, W)


@dataclass(frozen=True)
class FeatureSet:
    """Judge outputs for a set of images: features (N, D) and logits (N, K), float32."""

    features: np.ndarray
    logits: np.ndarray


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embed(judge: torch.nn.Module, images: torch.Tensor, batch_size: int,
          device: torch.device) -> FeatureSet:
    """Judge features and logits of uint8 images (N, C, H, W), in batches, eval mode."""
    feats, logits = [], []
    with eval_mode(judge):
        for start in range(0, len(images), batch_size):
            x = to_model_range(images[start:start + batch_size]).to(device)
            out = judge(x)
            feats.append(out.features.float().cpu())
            logits.append(out.logits.float().cpu())
    return FeatureSet(torch.cat(feats).numpy(), torch.cat(logits).numpy())


def draw_samples(sample: SampleFn, modules: tuple[torch.nn.Module, ...], n: int,
                 batch_size: int, seed: int, device: torch.device) -> torch.Tensor:
    """``n`` samples as uint8 (N, C, H, W) from one seeded generator, model(s) in eval mode."""
    gen = make_generator(seed, device)
    out = []
    with eval_mode(*modules):
        for start in range(0, n, batch_size):
            x = sample(min(batch_size, n - start), gen)  # (b, C, H, W) in [-1, 1]
            out.append(to_uint8(x.float().cpu()))
    return torch.cat(out)


def label_accuracy(model: Any, judge: torch.nn.Module, num_classes: int, n: int,
                   batch_size: int, seed: int, device: torch.device) -> float:
    """Share of ``n`` samples of a conditional model that the judge assigns to the label they
    were drawn with (labels 0, 1, ..., K-1, 0, ...; rounded to 8 bits like every sample)."""
    labels = torch.arange(n) % num_classes  # (n,)
    gen, images = make_generator(seed, device), []
    with eval_mode(model):
        for y in labels.split(batch_size):
            images.append(to_uint8(model.sample(len(y), gen, labels=y.to(device)).float().cpu()))
    predicted = embed(judge, torch.cat(images), batch_size, device).logits.argmax(1)  # (n,)
    return float((torch.from_numpy(predicted) == labels).double().mean())


def subset(split: Split, n: int, seed: int) -> torch.Tensor:
    """A seeded random subset of ``n`` images (all of them when ``n >= len(split)``)."""
    if n >= len(split):
        return split.images
    perm = torch.randperm(len(split), generator=make_generator(seed))
    return split.images[perm[:n]]


def sample_metrics(cfg: EvalConfig, fake: FeatureSet, reference: FeatureSet, num_classes: int,
                   seed: int) -> dict[str, float]:
    """Every sample-based metric of one draw against the reference set."""
    return metrics.compute_sample_metrics(
        fake.features, fake.logits, reference.features, reference.logits,
        num_classes=num_classes, is_splits=cfg.is_splits, kid_subsets=cfg.kid_subsets,
        kid_subset_size=cfg.kid_subset_size, seed=seed, pr_k=cfg.pr_k)


def evaluate_sampler(cfg: EvalConfig, name: str, sample: SampleFn,
                     modules: tuple[torch.nn.Module, ...], *, judge: torch.nn.Module,
                     reference: FeatureSet, num_classes: int, device: torch.device,
                     out_dir: Path) -> SamplerResult:
    """Draw ``cfg.draws`` sample sets from one model; metrics per draw, summarized.

    Writes ``<out_dir>/features_<name>.npz`` (features, logits, draw index) and
    ``<out_dir>/samples_<name>.png`` (the first images of the first draw).
    """
    per_draw, feats, logits = [], [], []
    for d in range(cfg.draws):
        images = draw_samples(sample, modules, cfg.num_samples, cfg.batch_size, cfg.seed + d,
                              device)
        if d == 0:
            first = images
            save_grid(images[:64], out_dir / f"samples_{name}.png")
        fs = embed(judge, images, cfg.batch_size, device)
        per_draw.append(sample_metrics(cfg, fs, reference, num_classes, cfg.seed + d))
        feats.append(fs.features)
        logits.append(fs.logits)
        log.info("%s draw %d/%d: %s", name, d + 1, cfg.draws, _brief(per_draw[-1]))
    np.savez_compressed(out_dir / f"features_{name}.npz", features=np.concatenate(feats),
                        logits=np.concatenate(logits),
                        draw=np.repeat(np.arange(cfg.draws), cfg.num_samples))
    return SamplerResult(metrics.summarize_draws(per_draw), first)


def evaluate_real(cfg: EvalConfig, *, test: FeatureSet, reference: FeatureSet,
                  num_classes: int, out_dir: Path) -> dict[str, float]:
    """The real-data row: held-out test images against the train reference.

    Draw ``d`` takes a seeded random subset of the test features of the same size as a model's
    draw; when the test set is no larger than ``num_samples`` every draw is the whole test set
    and the std is 0 by construction.
    """
    n = min(cfg.num_samples, len(test.features))
    per_draw: list[dict[str, float]] = []
    for d in range(cfg.draws):
        if n == len(test.features) and per_draw:  # every draw is the whole test set
            per_draw.append(per_draw[0])
            continue
        idx = torch.randperm(len(test.features), generator=make_generator(cfg.seed + d))[:n]
        idx = np.sort(idx.numpy())
        fs = FeatureSet(test.features[idx], test.logits[idx])
        per_draw.append(sample_metrics(cfg, fs, reference, num_classes, cfg.seed + d))
    np.savez_compressed(out_dir / "features_real.npz", test_features=test.features,
                        test_logits=test.logits, reference_features=reference.features,
                        reference_logits=reference.logits)
    return metrics.summarize_draws(per_draw)


def likelihood_bounds(vae: Any, test: Split, cfg: EvalConfig,
                      device: torch.device) -> dict[str, float]:
    """Test-set ELBO (all test images) and IWAE_k bounds (first ``likelihood_images``).

    Returns nats per image (higher is better) and bits per dim (lower is better); each IWAE_k
    is a lower bound on log p(x) that tightens with k (Burda et al. 2016). A CVAE's bounds
    are on log p(x) too: its ELBO is ELBO(x | true y) - log K
    (:func:`~genduel.models.vae.cvae_elbo`) and its IWAE_k enumerate the labels
    (:func:`~genduel.models.vae.marginal_bound`, K times the cost); its ``recon``/``kl`` terms
    are those of the true label.
    """
    from genduel.models.vae import cvae_elbo, elbo_terms, iwae_bound, marginal_bound, num_dims

    dims = num_dims(test.image_shape)
    gen = make_generator(cfg.seed, device)
    elbos, recons, kls = [], [], []
    with eval_mode(vae):
        for start in range(0, len(test), cfg.batch_size):
            x = to_model_range(test.images[start:start + cfg.batch_size]).to(device)
            y = test.labels[start:start + cfg.batch_size].to(device) if vae.conditional else None
            terms = elbo_terms(vae, x, 1, gen, y)
            elbo = cvae_elbo(terms, vae.num_classes) if vae.conditional else terms.elbo_nats
            elbos.append(elbo.double().cpu())
            recons.append(terms.log_px_z_nats.double().cpu())
            kls.append(terms.kl_nats.double().cpu())
        elbo = torch.cat(elbos)
        out = {"elbo_nats": float(elbo.mean()),
               "elbo_nats_sem": float(elbo.std() / math.sqrt(len(elbo))),
               "bits_per_dim": float(bits_per_dim(elbo.mean(), dims)),
               "recon_log_px_z_nats": float(torch.cat(recons).mean()),
               "kl_nats": float(torch.cat(kls).mean())}
        n = len(test) if cfg.likelihood_images == 0 else min(cfg.likelihood_images, len(test))
        batch = max(1, cfg.batch_size // 4)
        for k in cfg.iwae_k:
            xs = (to_model_range(test.images[s:s + batch]).to(device) for s in range(0, n, batch))
            values = [marginal_bound(vae, x, lambda c, x=x, k=k: iwae_bound(vae, x, k, gen, y=c))
                      .double().cpu() for x in xs]
            bound = torch.cat(values)
            out[f"iwae_k{k}_nats"] = float(bound.mean())
            out[f"iwae_k{k}_bits_per_dim"] = float(bits_per_dim(bound.mean(), dims))
    out["likelihood_images"] = n
    return out


def _brief(values: dict[str, float]) -> str:
    keys = ("fid", "kid", "inception_score", "precision", "recall")
    return ", ".join(f"{k}={values[k]:.4g}" for k in keys if k in values)


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


def evaluate_all(cfg: EvalConfig, inputs: EvalInputs, device: torch.device,
                 out_dir: Path) -> dict[str, dict[str, Any]]:
    """All metrics for ``vae``, ``gan`` and ``real``, each with a ``protocol`` block.

    Writes feature matrices (``features_*.npz``), sample/reconstruction grids, the latent-space
    studies (``studies/``, see :mod:`genduel.study_figures`) and the GAN's per-epoch diagnostics
    (``gan_diagnostics.csv``) to ``out_dir``. The model rows also carry ``model_params``.
    """
    from genduel.evaluate import gan_diagnostics as diagnostics
    from genduel.evaluate import study_figures

    evaluate_extra.check_parzen_sigmas(cfg.parzen_sigmas)
    out_dir.mkdir(parents=True, exist_ok=True)
    judge, vae, gen = (m.to(device) for m in (inputs.judge, inputs.vae, inputs.generator))
    k = inputs.train.num_classes
    reference = embed(judge, subset(inputs.train, cfg.num_samples, cfg.seed), cfg.batch_size,
                      device)
    test_fs = embed(judge, inputs.test.images, cfg.batch_size, device)
    common = dict(judge=judge, reference=reference, num_classes=k, device=device, out_dir=out_dir)
    runs = {
        "vae": evaluate_sampler(cfg, "vae", lambda n, g: vae.sample(n, generator=g), (vae,),
                                **common),
        "gan": evaluate_sampler(cfg, "gan", lambda n, g: gen.sample(n, generator=g), (gen,),
                                **common),
    }
    results = {name: run.metrics for name, run in runs.items()}
    results["real"] = evaluate_real(cfg, test=test_fs, reference=reference, num_classes=k,
                                    out_dir=out_dir)
    conditional = {name: m for name, m in (("vae", vae), ("gan", gen)) if m.conditional}
    for name, model in conditional.items():
        results[name]["label_accuracy"] = label_accuracy(
            model, judge, k, cfg.num_samples, cfg.batch_size, cfg.seed, device)
    if conditional:
        truth = inputs.test.labels.numpy()
        results["real"]["label_accuracy"] = float((test_fs.logits.argmax(1) == truth).mean())
    results["vae"].update(likelihood_bounds(vae, inputs.test, cfg, device))
    results["vae"].update(evaluate_extra.inference_metrics(vae, inputs.train, inputs.test, cfg,
                                                           device))
    save_reconstructions(vae, inputs.test, out_dir / "reconstructions_vae.png", device)
    study_figures.write_studies(vae, gen, inputs.test, out_dir / "studies", seed=cfg.seed,
                          device=device)
    if inputs.gan_artifacts is not None:
        rows = evaluate_extra.gan_epoch_diagnostics(judge, inputs.gan_artifacts, k, gen.loss,
                                                    cfg.batch_size, device)
        diagnostics.write_table(rows, out_dir / "gan_diagnostics.csv")
    n_parzen = min(cfg.parzen_samples, cfg.num_samples)
    centres = {name: run.first_draw[:n_parzen] for name, run in runs.items()}
    centres["real"] = subset(inputs.train, n_parzen, cfg.seed)
    parzen = evaluate_extra.parzen_rows(
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
        for name, values in evaluate_extra.inception_rows(cfg, samples, inputs.train,
                                                         inputs.test, device).items():
            results[name].update(values)
    return results


def _protocol(cfg: EvalConfig, inputs: EvalInputs, reference: FeatureSet, n_test: int,
              n_centres: dict[str, int]) -> dict[str, Any]:
    """The ``protocol`` block every metrics file carries: how each number was obtained."""
    from genduel.provenance import library_versions

    n_val = min(cfg.parzen_val_images, len(inputs.val))
    n_parzen_test = min(cfg.parzen_test_images, len(inputs.test))
    n_probe = min(cfg.probe_train_images, len(inputs.train))
    return {
        "num_samples": cfg.num_samples, "draws": cfg.draws,
        "sample_seeds": [cfg.seed + d for d in range(cfg.draws)],
        "reference": f"{len(reference.features)} train images (seed {cfg.seed})",
        "real_row": f"{min(cfg.num_samples, n_test)} test images per draw",
        "pixels": "samples rounded to 8-bit like the data",
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
        "probe": (f"VAE posterior means mu(x): logistic regression (standardized) and "
                  f"{cfg.probe_knn_k}-NN fit on the first {n_probe} train images, accuracy on "
                  f"the true labels of all {n_test} test images"),
        "reconstruction": ("decoder mean at z = mu(x), all test images; MSE in [0, 1] pixel "
                           "units, MAE in 8-bit levels"),
        "libraries": library_versions(),
    }


def save_reconstructions(vae: Any, test: Split, path: Path, device: torch.device,
                         n: int = 32) -> None:
    """Rows alternate test images and their reconstructions (decoder mean at the posterior
    mean)."""
    x = to_model_range(test.images[:n]).to(device)  # (n, C, H, W)
    with eval_mode(vae):
        recon = vae.reconstruct(x, test.labels[:n].to(device) if vae.conditional else None)
    pairs = torch.stack([x.cpu(), recon.float().cpu()], dim=1)  # (n, 2, C, H, W)
    rows = pairs.view(n // 8, 8, 2, *x.shape[1:]).transpose(1, 2).reshape(-1, *x.shape[1:])
    save_grid(rows, path, nrow=8)


def diagnostics_series(path: Path) -> list[tuple[int, dict[str, float]]]:
    """``(step, {"diag/<column>": value})`` per epoch of ``gan_diagnostics.csv`` ([] if absent):
    the per-epoch diagnostics as MLflow metric histories of the GAN's training run."""
    from genduel.evaluate import gan_diagnostics as diagnostics

    if not path.is_file():
        return []
    series = []
    for row in diagnostics.read_table(path):
        values = {f"diag/{k}": v for k, v in row.items() if k not in ("epoch", "step", "flags")}
        series.append((int(row["step"]), values))
    return series


def split_details(values: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """(numbers, the rest) of a row: ``metrics/eval_*.json`` holds only the numbers, so that
    ``dvc metrics show`` and ``dvc exp show`` list metrics, not protocol text; the protocol and
    model settings go to ``eval/details_*.json``, which the report merges back in."""
    numbers = {k: v for k, v in values.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return numbers, {k: v for k, v in values.items() if k not in numbers}
