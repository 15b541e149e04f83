"""Sample metrics: draw seeded samples, embed them with the judge, score them against real data.

Protocol (also written into every metrics file, see :func:`genduel.evaluate.run._protocol`):

* Each model draws ``eval.num_samples`` samples per draw, ``eval.draws`` independent draws, from
  ``torch.Generator`` seeds ``eval.seed + draw``. Samples are rounded to 8-bit pixels, exactly the
  grid the real data lives on, before anything looks at them.
* The reference distribution is a fixed random subset of the *train* split (``num_samples``
  images, seed ``eval.seed``); the real-data row compares the held-out *test* images with it, so it
  shows the value a perfect model would get at this sample size.
* Features and logits come from the judge (penultimate layer; checksum in the protocol). The exact
  matrices are saved as ``.npz`` so anyone can recompute every number.
* Sample metrics are reported as mean and std over draws (``<key>`` and ``<key>_std``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from genduel import metrics
from genduel.config import EvalConfig
from genduel.data.pixels import save_grid, to_model_range, to_uint8
from genduel.data.splits import Split
from genduel.io import atomic_write
from genduel.runtime import eval_batches, make_generator, progress

log = logging.getLogger(__name__)

#: ``sample(n, generator)`` -> ``n`` images (n, C, H, W) in [-1, 1].
SampleFn = Callable[[int, torch.Generator], torch.Tensor]


class SamplerResult(NamedTuple):
    """What :func:`evaluate_sampler` returns: summarized metrics, draw 0's uint8 images and
    their judge features."""

    metrics: dict[str, float]
    first_draw: torch.Tensor  # uint8 (num_samples, C, H, W)
    first_features: np.ndarray  # float32 (num_samples, feature_dim)


@dataclass(frozen=True)
class FeatureSet:
    """Judge outputs for a set of images: features (N, D) and logits (N, K), float32."""

    features: np.ndarray
    logits: np.ndarray


def embed(judge: torch.nn.Module, images: torch.Tensor, batch_size: int,
          device: torch.device, *, desc: str = "judge features") -> FeatureSet:
    """Judge features and logits of uint8 images (N, C, H, W), in batches, eval mode
    (``desc`` names the progress bar)."""

    def batch(s: slice) -> tuple[torch.Tensor, torch.Tensor]:
        out = judge(to_model_range(images[s]).to(device))
        return out.features.float().cpu(), out.logits.float().cpu()

    pieces = eval_batches(batch, len(images), batch_size, judge, desc=desc)
    return FeatureSet(torch.cat([f for f, _ in pieces]).numpy(),
                      torch.cat([lg for _, lg in pieces]).numpy())


def draw_samples(sample: SampleFn, modules: tuple[torch.nn.Module, ...], n: int,
                 batch_size: int, seed: int, device: torch.device, *,
                 desc: str = "sampling") -> torch.Tensor:
    """``n`` samples as uint8 (N, C, H, W) from one seeded generator, model(s) in eval mode
    (``desc`` names the progress bar)."""
    gen = make_generator(seed, device)

    def batch(s: slice) -> torch.Tensor:
        x = sample(s.stop - s.start, gen)  # (b, C, H, W) in [-1, 1]
        return to_uint8(x.float().cpu())

    return torch.cat(eval_batches(batch, n, batch_size, *modules, desc=desc))


def label_accuracy(model: Any, judge: torch.nn.Module, num_classes: int, n: int,
                   batch_size: int, seed: int, device: torch.device) -> float:
    """Share of ``n`` samples of a conditional model that the judge assigns to the label they
    were drawn with (labels 0, 1, ..., K-1, 0, ...; rounded to 8 bits like every sample)."""
    labels = torch.arange(n) % num_classes  # (n,)
    gen = make_generator(seed, device)

    def batch(s: slice) -> torch.Tensor:
        y = labels[s]
        return to_uint8(model.sample(len(y), gen, labels=y.to(device)).float().cpu())

    images = torch.cat(eval_batches(batch, n, batch_size, model, desc="label accuracy samples"))
    predicted = embed(judge, images, batch_size, device).logits.argmax(1)  # (n,)
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
        kid_subset_size=cfg.kid_subset_size, seed=seed, pr_k=cfg.pr_k, dc_k=cfg.dc_k)


def evaluate_sampler(cfg: EvalConfig, name: str, sample: SampleFn,
                     modules: tuple[torch.nn.Module, ...], *, judge: torch.nn.Module,
                     reference: FeatureSet, num_classes: int, device: torch.device,
                     out_dir: Path) -> SamplerResult:
    """Draw ``cfg.draws`` sample sets from one model; metrics per draw, summarized.

    Writes ``<out_dir>/features_<name>.npz`` (features, logits, draw index) and
    ``<out_dir>/samples_<name>.png`` (the first images of the first draw).
    """
    per_draw, feats, logits = [], [], []
    for d in progress(range(cfg.draws), desc=f"{name} draws", unit="draw"):
        images = draw_samples(sample, modules, cfg.num_samples, cfg.batch_size, cfg.seed + d,
                              device, desc=f"{name} samples")
        if d == 0:
            first = images
            save_grid(images[:64], out_dir / f"samples_{name}.png")
        fs = embed(judge, images, cfg.batch_size, device, desc=f"{name} judge features")
        per_draw.append(sample_metrics(cfg, fs, reference, num_classes, cfg.seed + d))
        feats.append(fs.features)
        logits.append(fs.logits)
        log.info("%s draw %d/%d: %s", name, d + 1, cfg.draws, _brief(per_draw[-1]))
    save_npz(out_dir / f"features_{name}.npz", features=np.concatenate(feats),
             logits=np.concatenate(logits), draw=np.repeat(np.arange(cfg.draws), cfg.num_samples))
    return SamplerResult(metrics.summarize_draws(per_draw), first, feats[0])


def evaluate_real(cfg: EvalConfig, *, test: FeatureSet, reference: FeatureSet,
                  num_classes: int, out_dir: Path) -> dict[str, float]:
    """The real-data row: held-out test images against the train reference.

    Draw ``d`` takes a seeded random subset of the test features of the same size as a model's
    draw; when the test set is no larger than ``num_samples`` every draw is the whole test set
    and the std is 0 by construction. Writes ``<out_dir>/features_real.npz``.
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
    save_npz(out_dir / "features_real.npz", test_features=test.features, test_logits=test.logits,
             reference_features=reference.features, reference_logits=reference.logits)
    return metrics.summarize_draws(per_draw)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write named arrays as a compressed ``.npz`` file (``np.savez_compressed``), atomically."""
    buffer = BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def _brief(values: dict[str, float]) -> str:
    keys = ("fid", "kid", "inception_score", "precision", "recall", "density", "coverage")
    return ", ".join(f"{k}={values[k]:.4g}" for k in keys if k in values)
