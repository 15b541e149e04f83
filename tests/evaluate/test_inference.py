"""The VAE's inference model: latent probes read a linearly encoded class and stay at chance on
unrelated labels; reconstruction errors give known answers."""

from __future__ import annotations

import math

import numpy as np
import torch

from genduel.config import EvalConfig
from genduel.evaluate.inference import inference_metrics, probe_accuracies, reconstruction_errors


def test_reconstruction_errors_known_answers():
    x = torch.rand(5, 12, generator=torch.Generator().manual_seed(1)).double().numpy()
    assert reconstruction_errors(x, x) == {"recon_mse": 0.0, "recon_mae_levels": 0.0}
    out = reconstruction_errors(x, x + 0.1)  # a constant offset of 0.1 = 25.5 grey levels
    assert math.isclose(out["recon_mse"], 0.01, rel_tol=1e-9)
    assert math.isclose(out["recon_mae_levels"], 25.5, rel_tol=1e-9)


class PixelVAE(torch.nn.Module):
    """A perfect autoencoder: mu(x) = the pixels, decoder mean at mu = x itself."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape = shape

    conditional = False

    def encode(self, x: torch.Tensor, y: None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mu = x.flatten(1)  # (B, C*H*W)
        return mu, torch.zeros_like(mu)

    def decode(self, z: torch.Tensor, y: None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mean = z.view(len(z), *self.shape)  # (B, C, H, W)
        return mean, torch.zeros_like(mean)


def test_probes_read_a_linearly_encoded_class_and_perfect_recon_is_zero(banded):
    train, test = banded(300, 0), banded(200, 1)
    cfg = EvalConfig(probe_train_images=200, probe_knn_k=5, batch_size=64)
    out = inference_metrics(PixelVAE((1, 4, 4)), train, test, cfg, torch.device("cpu"))
    assert out["probe_linear_accuracy"] == 1.0 and out["probe_knn_accuracy"] == 1.0
    assert out["recon_mse"] < 1e-12 and out["recon_mae_levels"] < 1e-4
    assert out["probe_train_images"] == 200


def test_probe_on_labels_unrelated_to_the_codes_is_near_chance():
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((800, 4)), rng.integers(0, 4, 800)
    out = probe_accuracies(z[:400], y[:400], z[400:], y[400:], k=5)
    assert out["probe_linear_accuracy"] < 0.4 and out["probe_knn_accuracy"] < 0.4
