"""The evaluate stage's extra rows: Parzen-window log-likelihood and the VAE's inference model.

Parzen window (Goodfellow et al. 2014, Table 1 protocol), for the VAE, the GAN and real data:

* kernel centres: ``n = min(eval.parzen_samples, eval.num_samples)`` images, flattened and
  scaled to ``[0, 1]`` (``x = u8 / 255``, D = C*H*W): the first ``n`` samples of draw 0 for a
  model, a seeded random subset of the *train* split for the real row;
* ``sigma``: the value of ``eval.parzen_sigmas`` with the highest mean log-likelihood on
  ``eval.parzen_val_images`` *val* images;
* score: mean log density of ``eval.parzen_test_images`` *test* images at that sigma, nats per
  image (``parzen_ll_nats``), its standard error over the test images
  (``parzen_ll_nats_sem``) and the sigma (``parzen_sigma``).

It is a density on ``[0, 1]^D``, not a probability of 8-bit images, so it is not comparable with
the VAE's ELBO/IWAE bounds; it is biased and has high variance in high dimension (Theis et al.
2016). See :mod:`genduel.metrics.parzen`.

Inference model (only the VAE has one): posterior means ``mu(x)`` of ``q(z | x)``

* ``probe_linear_accuracy``: multinomial logistic regression (on standardized ``mu``) trained on
  the first ``eval.probe_train_images`` *train* images, accuracy on the true *test* labels;
* ``probe_knn_accuracy``: k-NN (Euclidean on ``mu``, ``k = eval.probe_knn_k``), same data;
* ``recon_mse`` / ``recon_mae_levels``: error of the decoder mean at ``z = mu(x)`` over every
  test image (:func:`reconstruction_errors`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genduel import metrics
from genduel.config import EvalConfig
from genduel.data.pixels import to_model_range
from genduel.data.splits import Split
from genduel.errors import ConfigError
from genduel.runtime import eval_mode

log = logging.getLogger(__name__)


def check_parzen_sigmas(sigmas: Sequence[Any]) -> None:
    """Refuse an empty grid or a width that is not a number > 0 (before any sampling)."""
    if not sigmas or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0
                         for s in sigmas):
        raise ConfigError(f"params.yaml: eval.parzen_sigmas = {list(sigmas)!r} must be a "
                          "non-empty list of numbers > 0")


def unit_pixels(images: torch.Tensor) -> np.ndarray:
    """uint8 images ``(N, C, H, W)`` -> float64 ``(N, C*H*W)`` in ``[0, 1]`` (``u8 / 255``)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"unit_pixels expects uint8 pixels, got {images.dtype}")
    return images.reshape(len(images), -1).numpy().astype(np.float64) / 255.0


def parzen_row(centres: torch.Tensor, val: torch.Tensor, test: torch.Tensor,
               sigmas: Sequence[float], batch_size: int = 500) -> dict[str, float]:
    """Parzen-window score of one set of kernel centres (all uint8 ``(N, C, H, W)``).

    ``sigma* = argmax_s mean_{x in val} log p_s(x)`` over the grid, then
    ``parzen_ll_nats = mean_{x in test} log p_{sigma*}(x)`` with
    ``log p_s(x) = logsumexp_i(-|x - c_i|^2 / (2 s^2)) - log N - D/2 log(2 pi s^2)``, pixels in
    ``[0, 1]``, summed over the D pixels. ``parzen_ll_nats_sem`` = std / sqrt(M) over the M test
    images (it leaves out the variance from the choice of centres and of sigma).
    """
    c = unit_pixels(centres)
    sigma, scores = metrics.select_parzen_sigma(c, unit_pixels(val), sigmas,
                                                batch_size=batch_size)
    log.info("parzen val LL by sigma: %s", {s: round(v, 1) for s, v in scores.items()})
    if len(sigmas) > 1 and sigma in (min(sigmas), max(sigmas)):
        log.warning("parzen sigma %.4g is at the edge of eval.parzen_sigmas %s; widen the grid",
                    sigma, list(sigmas))
    ll = metrics.parzen_log_densities(c, unit_pixels(test), [sigma],
                                      batch_size=batch_size)[:, 0]  # (M,)
    return {"parzen_ll_nats": float(ll.mean()),
            "parzen_ll_nats_sem": float(ll.std(ddof=1) / math.sqrt(len(ll))) if len(ll) > 1
            else 0.0,
            "parzen_sigma": sigma}


def posterior_means(vae: Any, images: torch.Tensor, batch_size: int, device: torch.device,
                    *, reconstruct: bool = False, labels: torch.Tensor | None = None
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """``mu(x)`` of ``q(z | x)`` for uint8 images ``(N, C, H, W)``, in batches, eval mode.

    A CVAE encodes ``q(z | x, y)`` with ``labels`` (N,), the true labels.

    Returns:
        ``mu`` float64 ``(N, latent_dim)`` and, with ``reconstruct``, the decoder mean at
        ``z = mu`` as float64 ``(N, C*H*W)`` in ``[0, 1]`` (else ``None``).
    """
    mus, recons = [], []
    with eval_mode(vae), torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = to_model_range(images[start:start + batch_size]).to(device)  # (b, C, H, W)
            y = labels[start:start + batch_size].to(device) if vae.conditional else None
            mu = vae.encode(x, y)[0]  # (b, latent_dim)
            mus.append(mu.double().cpu())
            if reconstruct:
                mean = vae.decode(mu, y)[0]  # (b, C, H, W) in [-1, 1]
                recons.append(((mean.double().cpu() + 1.0) / 2.0).flatten(1))
    recon = torch.cat(recons).numpy() if reconstruct else None
    return torch.cat(mus).numpy(), recon


def probe_accuracies(train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray,
                     test_y: np.ndarray, k: int = 5) -> dict[str, float]:
    """Accuracy of a linear and a k-NN classifier on latent codes ``(N, Dz)``, labels ``(N,)``.

    Linear: standardization (train statistics) + multinomial logistic regression (lbfgs, L2,
    C = 1), deterministic. k-NN: Euclidean distance on the raw codes, uniform vote.
    Both are fit on ``train_*`` and scored on ``test_*``: the share of correct predictions.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    linear.fit(train_z, train_y)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_z))).fit(train_z, train_y)
    return {"probe_linear_accuracy": float(linear.score(test_z, test_y)),
            "probe_knn_accuracy": float(knn.score(test_z, test_y))}


def reconstruction_errors(images: np.ndarray, recon: np.ndarray) -> dict[str, float]:
    """Per-pixel errors of reconstructions; both ``(N, D)`` in ``[0, 1]`` pixel units.

    ``recon_mse = mean_{n,d} (recon - x)^2`` ([0, 1] units) and
    ``recon_mae_levels = 255 * mean_{n,d} |recon - x|`` (8-bit grey levels), float64.
    """
    x, r = np.asarray(images, dtype=np.float64), np.asarray(recon, dtype=np.float64)
    if x.shape != r.shape:
        raise ValueError(f"reconstruction_errors: shapes differ: {x.shape} vs {r.shape}")
    diff = r - x
    return {"recon_mse": float(np.mean(diff * diff)),
            "recon_mae_levels": float(255.0 * np.mean(np.abs(diff)))}


def inference_metrics(vae: Any, train: Split, test: Split, cfg: EvalConfig,
                      device: torch.device) -> dict[str, float]:
    """Latent probes and reconstruction errors of the VAE on the whole test set (module doc).

    A CVAE is given the true labels, so its probes measure how much class information z keeps
    beyond the label it was conditioned on.
    """
    n = min(cfg.probe_train_images, len(train))
    train_z, _ = posterior_means(vae, train.images[:n], cfg.batch_size, device,
                                 labels=train.labels[:n])
    test_z, recon = posterior_means(vae, test.images, cfg.batch_size, device, reconstruct=True,
                                    labels=test.labels)
    out = probe_accuracies(train_z, train.labels[:n].numpy(), test_z, test.labels.numpy(),
                           k=cfg.probe_knn_k)
    out.update(reconstruction_errors(unit_pixels(test.images), recon))
    out["probe_train_images"] = n
    return out


def parzen_rows(centres: dict[str, torch.Tensor], val: torch.Tensor, test: torch.Tensor,
                sigmas: Sequence[float], batch_size: int = 500) -> dict[str, dict[str, float]]:
    """:func:`parzen_row` for each named set of uint8 centres, the same val and test images."""
    import time

    out = {}
    for name, images in centres.items():
        start = time.perf_counter()
        out[name] = parzen_row(images, val, test, sigmas, batch_size)
        log.info("%s parzen: %.1f nats (sigma %.3g, %d centres) in %.1f s", name,
                 out[name]["parzen_ll_nats"], out[name]["parzen_sigma"], len(images),
                 time.perf_counter() - start)
    return out


def inception_rows(cfg: EvalConfig, samples: dict[str, torch.Tensor], train: Split, test: Split,
                   device: torch.device) -> dict[str, dict[str, Any]]:
    """Standard Inception-v3 FID/KID/IS (``eval.inception_weights``) for every row.

    ``eval.inception_samples`` images per set: the first of each model's draw 0, a seeded subset
    of the test images for the real row, against a seeded subset of train images. Inception-v3
    costs ~6 GFLOP per image at 299x299, so on a CPU keep the count small (1000: minutes).
    """
    from genduel.evaluate.inception import inception_metrics
    from genduel.evaluate.run import subset
    from genduel.io import sha256_file

    weights = Path(cfg.inception_weights)
    n = min(cfg.inception_samples, cfg.num_samples, len(test))
    sets = {name: images[:n] for name, images in samples.items()}
    sets["real"] = subset(test, n, cfg.seed)
    rows = inception_metrics(weights, subset(train, n, cfg.seed), sets,
                             batch_size=min(cfg.batch_size, 100), device=device,
                             is_splits=cfg.is_splits, kid_subsets=cfg.kid_subsets,
                             kid_subset_size=min(cfg.kid_subset_size, n), seed=cfg.seed)
    note = f"{weights} (sha256 {sha256_file(weights)}), {n} images per set"
    return {name: {**values, "inception_protocol": note} for name, values in rows.items()}


def gan_epoch_diagnostics(judge: torch.nn.Module, artifacts_dir: Path, num_classes: int,
                          loss: str, batch_size: int, device: torch.device
                          ) -> list[dict[str, Any]]:
    """Per-epoch GAN diagnostics: ``epochs.csv`` of train_gan joined with class coverage.

    The judge classifies the fixed-noise samples train_gan saved after every epoch
    (``epoch_samples.pt``); :func:`genduel.diagnostics.epoch_table` merges the coverage with
    D(x), D(G(z)), D accuracy and loss spread, and adds the flags. Returns [] when train_gan
    saved no samples (``gan.diag_samples: 0``) and no epochs table exists.
    """
    import csv

    from genduel.evaluate import gan_diagnostics as diagnostics
    from genduel.evaluate.run import embed

    epochs_csv, samples_pt = artifacts_dir / "epochs.csv", artifacts_dir / "epoch_samples.pt"
    if not epochs_csv.is_file():
        return []
    with epochs_csv.open(newline="") as fh:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    logits = []
    if samples_pt.is_file():
        saved = torch.load(samples_pt, map_location="cpu", weights_only=True)
        logits = [embed(judge, images, batch_size, device).logits for images in saved["images"]]
    return diagnostics.epoch_table(rows, logits, num_classes, loss)
