"""The VAE's inference model: what its posterior means ``mu(x)`` of ``q(z | x)`` keep.

Only the VAE has an encoder, so these rows are the VAE's alone:

* ``probe_linear_accuracy``: multinomial logistic regression (on standardized ``mu``) trained on
  the first ``eval.probe_train_images`` *train* images, accuracy on the true *test* labels;
* ``probe_knn_accuracy``: k-NN (Euclidean on ``mu``, ``k = eval.probe_knn_k``), same data;
* ``recon_mse`` / ``recon_mae_levels``: error of the decoder mean at ``z = mu(x)`` over every
  test image (:func:`reconstruction_errors`);
* ``reconstructions_vae.png``: test images next to their reconstructions
  (:func:`save_reconstructions`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from genduel.config import EvalConfig
from genduel.data.pixels import save_grid, to_model_range
from genduel.data.splits import Split
from genduel.evaluate.likelihood import unit_pixels
from genduel.runtime import eval_batches, eval_mode


def posterior_means(vae: Any, images: torch.Tensor, batch_size: int, device: torch.device,
                    *, reconstruct: bool = False, labels: torch.Tensor | None = None
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """``mu(x)`` of ``q(z | x)`` for uint8 images ``(N, C, H, W)``, in batches, eval mode.

    A CVAE encodes ``q(z | x, y)`` with ``labels`` (N,), the true labels.

    Returns:
        ``mu`` float64 ``(N, latent_dim)`` and, with ``reconstruct``, the decoder mean at
        ``z = mu`` as float64 ``(N, C*H*W)`` in ``[0, 1]`` (else ``None``).
    """

    def batch(s: slice) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = to_model_range(images[s]).to(device)  # (b, C, H, W)
        y = labels[s].to(device) if vae.conditional else None
        mu = vae.encode(x, y)[0]  # (b, latent_dim)
        mu64 = mu.double().cpu()
        if not reconstruct:
            return mu64, None
        mean = vae.decode(mu, y)[0]  # (b, C, H, W) in [-1, 1]
        return mu64, ((mean.double().cpu() + 1.0) / 2.0).flatten(1)

    pieces = eval_batches(batch, len(images), batch_size, vae, desc="VAE posterior means")
    recon = torch.cat([r for _, r in pieces]).numpy() if reconstruct else None
    return torch.cat([mu for mu, _ in pieces]).numpy(), recon


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


def save_reconstructions(vae: Any, test: Split, path: Path, device: torch.device,
                         n: int = 32) -> None:
    """Save a grid whose rows alternate 8 test images and their reconstructions (the decoder mean
    at the posterior mean); ``n`` (a multiple of 8) test images in all."""
    x = to_model_range(test.images[:n]).to(device)  # (n, C, H, W)
    with eval_mode(vae):
        recon = vae.reconstruct(x, test.labels[:n].to(device) if vae.conditional else None)
    pairs = torch.stack([x.cpu(), recon.float().cpu()], dim=1)  # (n, 2, C, H, W)
    rows = pairs.view(n // 8, 8, 2, *x.shape[1:]).transpose(1, 2).reshape(-1, *x.shape[1:])
    save_grid(rows, path, nrow=8)
