"""Standard Inception-v3 FID / KID / IS, next to the judge's metrics, when weights are given.

``eval.inception_weights: <path>`` (empty by default) turns this path on. The network is
torch-fidelity's ``FeatureExtractorInceptionV3``: the TF-ported 2015-12-05 Inception-v3 of the
original FID and IS code, whose weights file is normally
``weights-inception-2015-12-05-6726825d.pth`` (as pytorch-fid's ``pt_inception-2015-12-05``).
torchmetrics' ``FrechetInceptionDistance`` wraps the same class (``NoTrainInceptionV3``) but
returns one feature layer per forward; torch-fidelity's returns the pool features and the
logits in one pass. Nothing here downloads: the weights are read from the given file only
(torch-fidelity downloads when its ``feature_extractor_weights_path`` is ``None``, which this
module never passes).

Feature layers (torch-fidelity's defaults per metric):

* FID, KID: ``"2048"``, the average-pool features ``(N, 2048)``;
* IS: ``"logits_unbiased"``, ``pool @ W^T`` without the fc bias ``(N, 1008)``, as the original
  TF Inception Score code (Salimans et al. 2016) and torch-fidelity's ``isc``.

The metrics themselves are the project's functions in :mod:`genduel.metrics` (float64, same
estimators and KID subset draws as for the judge); only the features differ. IS splits are
contiguous chunks without shuffling, so values differ from torch-fidelity's shuffled default
``isc`` by split noise only.

Cost: Inception-v3 at 299 x 299 is ~5.7 GFLOP per image. On a 2-core CPU the forward runs at
about 1.3-2 images/s (batches of 8-48, float32; ~1.8 GB resident at batch 48), so 10k images
take 1.5-2 hours; a GPU does thousands per second. :func:`inception_rows` takes
``eval.inception_samples`` images per set. The FID of 2048-d features also costs one or two
2048 x 2048 symmetric eigenproblems per set (seconds).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from genduel.config import EvalConfig
from genduel.data.splits import Split
from genduel.errors import DataError
from genduel.evaluate.samples import subset
from genduel.io import digest
from genduel.metrics import fid, inception_score, kid
from genduel.runtime import eval_batches, progress

log = logging.getLogger(__name__)

#: torch-fidelity's feature names: pool features for FID/KID, bias-free logits for IS.
FEATURE_LAYER = "2048"
LOGITS_LAYER = "logits_unbiased"
FEATURE_DIM = 2048
NUM_LOGITS = 1008


class InceptionOutputs(NamedTuple):
    """Inception-v3 outputs of a set of images, float32 numpy arrays."""

    features: np.ndarray  # (N, 2048) average-pool features
    logits: np.ndarray  # (N, 1008) logits without the fc bias


def grayscale_to_rgb(images_u8: torch.Tensor) -> torch.Tensor:
    """Replicate a single grey channel to three: ``(N, 1, H, W)`` -> ``(N, 3, H, W)``, uint8.

    The one place where grayscale images become RGB for Inception-v3 (R = G = B = grey, as
    Fashion-MNIST is fed to ImageNet networks in the literature). A 3-channel batch passes
    through unchanged.

    Raises:
        ValueError: not a 4-D uint8 tensor, or a channel count other than 1 or 3.
    """
    if images_u8.dtype != torch.uint8 or images_u8.dim() != 4:
        raise ValueError(f"grayscale_to_rgb: expected a uint8 (N, C, H, W) tensor, got "
                         f"{images_u8.dtype} of shape {tuple(images_u8.shape)}")
    channels = images_u8.shape[1]
    if channels == 3:
        return images_u8
    if channels != 1:
        raise ValueError(f"grayscale_to_rgb: expected 1 or 3 channels, got {channels}")
    return images_u8.expand(-1, 3, -1, -1)  # (N, 3, H, W), a view of the one channel


def _one_line(err: Exception, limit: int = 300) -> str:
    """An exception's message on one line, cut at ``limit`` characters."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _missing_message(weights_path: Path) -> str:
    return (f"eval.inception_weights: {weights_path} not found; put the pt_inception-2015-12-05 "
            f"weights there or set eval.inception_weights: ''")


def check_weights(weights_path: Path) -> None:
    """Refuse a missing or unreadable ``eval.inception_weights`` file, or one that is not a plain
    tensor state dict; the evaluate stage calls this first, before any work.

    Raises:
        DataError: one line naming the file and the fix.
    """
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise DataError(_missing_message(weights_path))
    fix = "put the pt_inception-2015-12-05 weights there or set eval.inception_weights: ''"
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors: all mean "not a weights file"
        raise DataError(f"eval.inception_weights: {weights_path} is not a readable PyTorch "
                        f"state dict ({type(err).__name__}: {_one_line(err, 120)}); {fix}"
                        ) from None
    if not isinstance(state, dict):
        raise DataError(f"eval.inception_weights: {weights_path} holds a "
                        f"{type(state).__name__}, not a state dict; {fix}")


def load_inception(weights_path: Path, device: torch.device | str = "cpu") -> nn.Module:
    """torch-fidelity's FID Inception-v3 with weights from a local file, in eval mode.

    The file must hold the state dict of ``FeatureExtractorInceptionV3`` (566 tensors, 23.9 M
    parameters). It is first read with ``torch.load(weights_only=True)``, so a file that is not
    a plain tensor state dict is refused before torch-fidelity unpickles it itself (it calls
    an unrestricted unpickling ``torch.load``).

    Args:
        weights_path: the weights file (``eval.inception_weights``).
        device: where the network runs.

    Returns:
        The network; ``model(x_u8)`` with ``x_u8`` uint8 ``(N, 3, H, W)`` in [0, 255] returns
        ``(features (N, 2048), logits (N, 1008))`` float32; it resizes to 299 x 299 itself.

    Raises:
        DataError: the file is missing, unreadable or has another layout.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    weights_path = Path(weights_path)
    check_weights(weights_path)
    try:
        model = FeatureExtractorInceptionV3(
            "inception-v3-compat", [FEATURE_LAYER, LOGITS_LAYER],
            feature_extractor_weights_path=str(weights_path))
    except RuntimeError as err:  # load_state_dict: missing / unexpected keys, wrong shapes
        raise DataError(f"eval.inception_weights: {weights_path} does not match torch-fidelity's "
                        f"Inception-v3 layout: {_one_line(err)}") from err
    log.info("Inception-v3 weights loaded from %s", weights_path)
    return model.to(device).eval()


@torch.inference_mode()
def inception_features(model: nn.Module, images_u8: torch.Tensor, batch_size: int,
                       device: torch.device | str = "cpu") -> InceptionOutputs:
    """Inception-v3 pool features and bias-free logits of uint8 images, in batches.

    Images go in as torch-fidelity expects them: uint8 in [0, 255], 3 channels
    (:func:`grayscale_to_rgb`), any size; the network resizes to 299 x 299 (TF1-exact bilinear)
    and scales to [-1, 1] itself. Batches are independent (eval-mode batch norm), so the
    result does not depend on ``batch_size`` beyond float32 rounding.

    Args:
        model: from :func:`load_inception`.
        images_u8: ``(N, 1 or 3, H, W)`` uint8, N >= 1.
        batch_size: images per forward pass.
        device: where ``model`` lives.

    Returns:
        :class:`InceptionOutputs` with ``features`` ``(N, 2048)`` and ``logits`` ``(N, 1008)``.
    """
    if batch_size < 1:
        raise ValueError(f"inception_features: batch_size must be >= 1, got {batch_size}")
    if len(images_u8) < 1:
        raise ValueError("inception_features: no images")
    rgb = grayscale_to_rgb(images_u8)  # (N, 3, H, W)

    def batch(s: slice) -> tuple[torch.Tensor, torch.Tensor]:
        feat, logit = model(rgb[s].to(device))  # (B, 2048), (B, 1008)
        return feat.float().cpu(), logit.float().cpu()

    start = time.perf_counter()
    pieces = eval_batches(batch, len(rgb), batch_size, model, desc="Inception features")
    seconds = time.perf_counter() - start
    log.info("Inception-v3 forward: %d images in %.1f s (%.2f images/s)", len(rgb), seconds,
             len(rgb) / max(seconds, 1e-9))
    return InceptionOutputs(torch.cat([f for f, _ in pieces]).numpy(),
                            torch.cat([lg for _, lg in pieces]).numpy())


def inception_metrics(weights_path: Path, reference_u8: torch.Tensor,
                      sets_u8: dict[str, torch.Tensor], *, batch_size: int,
                      device: torch.device | str = "cpu", is_splits: int = 10,
                      kid_subsets: int = 100, kid_subset_size: int = 1000,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """Inception-v3 FID, KID and IS of each named image set against reference images.

    Features come from :func:`inception_features`; the metrics are :func:`genduel.metrics.fid`,
    :func:`genduel.metrics.kid` and :func:`genduel.metrics.inception_score`, called as
    :func:`genduel.metrics.compute_sample_metrics` calls them for the judge (set first,
    reference second; the same KID ``seed`` for every set). The reference is embedded once.

    Args:
        weights_path: Inception-v3 weights file (see :func:`load_inception`).
        reference_u8: real images ``(N_ref, 1 or 3, H, W)`` uint8, N_ref >= 2.
        sets_u8: name -> images ``(N, 1 or 3, H, W)`` uint8, N >= max(2, is_splits).
        batch_size, device: see :func:`inception_features`.
        is_splits, kid_subsets, kid_subset_size, seed: see :func:`genduel.metrics.kid` and
            :func:`genduel.metrics.inception_score`.

    Returns:
        name -> ``inception_fid``, ``inception_kid``, ``inception_kid_subset_std``,
        ``inception_is``, ``inception_is_split_std``. FID and KID: lower is better; IS: higher
        is better (1 ... 1008).

    Raises:
        DataError: the weights file is missing or unreadable (before any image is embedded).
    """
    model = load_inception(weights_path, device)
    reference = inception_features(model, reference_u8, batch_size, device)
    out: dict[str, dict[str, float]] = {}
    for name, images in progress(sets_u8.items(), desc="Inception rows", total=len(sets_u8),
                                 unit="row"):
        sample = inception_features(model, images, batch_size, device)
        kid_mean, kid_std = kid(sample.features, reference.features, subsets=kid_subsets,
                                subset_size=kid_subset_size, seed=seed)
        is_mean, is_std = inception_score(sample.logits, splits=is_splits)
        out[name] = {
            "inception_fid": fid(sample.features, reference.features),
            "inception_kid": kid_mean,
            "inception_kid_subset_std": kid_std,
            "inception_is": is_mean,
            "inception_is_split_std": is_std,
        }
        log.info("Inception-v3 metrics of %s: %s", name, out[name])
    return out


def inception_rows(cfg: EvalConfig, samples: dict[str, torch.Tensor], train: Split, test: Split,
                   device: torch.device) -> dict[str, dict[str, Any]]:
    """Standard Inception-v3 FID/KID/IS (``eval.inception_weights``) for every row.

    ``eval.inception_samples`` images per set: the first of each model's draw 0, a seeded subset
    of the test images for the real row, against a seeded subset of train images. Inception-v3
    costs ~6 GFLOP per image at 299x299, so on a CPU keep the count small (1000: minutes).

    Args:
        cfg: the eval section (weights path, image count, metric settings, seed).
        samples: row name -> uint8 samples ``(N, C, H, W)`` of draw 0.
        train, test: the splits the reference and the real row are drawn from.
        device: where the network runs.

    Returns:
        row name (the sample names and ``real``) -> the :func:`inception_metrics` keys plus
        ``inception_protocol``, a note naming the weights file, its sha256 and the image count.
    """
    weights = Path(cfg.inception_weights)
    n = min(cfg.inception_samples, cfg.num_samples, len(test))
    sets = {name: images[:n] for name, images in samples.items()}
    sets["real"] = subset(test, n, cfg.seed)
    rows = inception_metrics(weights, subset(train, n, cfg.seed), sets,
                             batch_size=min(cfg.batch_size, 100), device=device,
                             is_splits=cfg.is_splits, kid_subsets=cfg.kid_subsets,
                             kid_subset_size=min(cfg.kid_subset_size, n), seed=cfg.seed)
    note = f"{weights} (sha256 {digest(weights)}), {n} images per set"
    return {name: {**values, "inception_protocol": note} for name, values in rows.items()}
