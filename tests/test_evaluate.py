"""Evaluate helpers: seeded sampling is reproducible, samples land on the 8-bit grid."""

from __future__ import annotations

import math

import torch

from genduel.config import EvalConfig, VAEConfig
from genduel.data import Split
from genduel.evaluate import FeatureSet, draw_samples, evaluate_real, likelihood_bounds, subset
from genduel.models.vae import VAE


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.tanh(self.scale * torch.randn(n, 1, 4, 4, generator=generator))


def test_draw_samples_is_seeded_batch_independent_and_8bit():
    model, cpu = Tiny(), torch.device("cpu")
    a = draw_samples(model.sample, (model,), 10, 10, seed=3, device=cpu)
    b = draw_samples(model.sample, (model,), 10, 10, seed=3, device=cpu)
    c = draw_samples(model.sample, (model,), 10, 10, seed=4, device=cpu)
    assert a.dtype == torch.uint8 and a.shape == (10, 1, 4, 4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training  # eval mode is restored


def test_subset_is_seeded_and_whole_set_when_large():
    split = Split(torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1), torch.zeros(20,
                  dtype=torch.int64), ["a"])
    assert torch.equal(subset(split, 5, 0), subset(split, 5, 0))
    assert len(set(subset(split, 5, 0).flatten().tolist())) == 5
    assert subset(split, 50, 0) is split.images


def test_real_row_equal_draws_have_zero_spread(tmp_path):
    rng = torch.Generator().manual_seed(0)
    feats = torch.randn(60, 4, generator=rng).numpy()
    logits = torch.randn(60, 3, generator=rng).numpy()
    ref = FeatureSet(feats[:30], logits[:30])
    cfg = EvalConfig(num_samples=30, draws=2, kid_subsets=5, kid_subset_size=10, is_splits=2)
    out = evaluate_real(cfg, test=FeatureSet(feats[30:], logits[30:]), reference=ref,
                        num_classes=3, out_dir=tmp_path)
    assert out["draws"] == 2 and out["fid_std"] == 0.0 and out["fid"] > 0
    assert (tmp_path / "features_real.npz").exists()


def test_likelihood_bounds_are_ordered_and_consistent():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=2, width=4), (1, 8, 8))
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    test = Split(images, torch.zeros(16, dtype=torch.int64), ["a"])
    cfg = EvalConfig(iwae_k=[1, 50], batch_size=8, likelihood_images=0)
    out = likelihood_bounds(vae, test, cfg, torch.device("cpu"))
    # IWAE_1 is the ELBO estimator itself: same value up to Monte Carlo noise
    assert abs(out["elbo_nats"] - out["iwae_k1_nats"]) < 5 * out["elbo_nats_sem"] + 1.0
    assert abs(out["elbo_nats"] - (out["recon_log_px_z_nats"] - out["kl_nats"])) < 1e-4
    assert math.isclose(out["bits_per_dim"], -out["elbo_nats"] / (64 * math.log(2)))
    assert out["kl_nats"] >= 0 and out["likelihood_images"] == 16
