"""Likelihood rows: the ELBO/IWAE bounds are ordered and consistent, the Parzen window finds the
width of a known Gaussian, and a bad Parzen grid is refused when the params are validated."""

from __future__ import annotations

import math

import pytest
import torch

from genduel.config import EvalConfig, VAEConfig, validate
from genduel.data.splits import Split
from genduel.errors import ConfigError
from genduel.evaluate.likelihood import likelihood_bounds, parzen_row, two_stage_bounds
from genduel.models.prior import GMMPrior
from genduel.models.vae import VAE


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


def test_iwae_bounds_use_the_first_likelihood_images_and_no_more():
    """n = 5 images in batches of 2: the last batch holds image 4 alone, whatever follows it."""
    vae = VAE(VAEConfig(latent_dim=2, width=4), (1, 28, 28), 1)
    images = torch.randint(0, 256, (7, 1, 28, 28), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    cfg = EvalConfig(likelihood_images=5, batch_size=8, iwae_k=[3])  # IWAE batch = 8 // 4
    outs = []
    for tail in (images[5:], 255 - images[5:]):  # images 5, 6 differ; 0..4 are the same
        test = Split(torch.cat([images[:5], tail]), torch.zeros(7, dtype=torch.int64), ["a"])
        outs.append(likelihood_bounds(vae, test, cfg, torch.device("cpu")))
    assert outs[0]["likelihood_images"] == outs[1]["likelihood_images"] == 5
    assert outs[0]["iwae_k3_nats"] == outs[1]["iwae_k3_nats"]
    assert outs[0]["elbo_nats"] != outs[1]["elbo_nats"]  # the ELBO covers every test image


def test_parzen_row_chooses_the_sigma_of_a_known_gaussian():
    # Every centre is the same grey image c, so the Parzen window is N(c, sigma^2 I) exactly;
    # val/test images are drawn from N(c, s^2 I) with s = 0.1 (in [0, 1] pixel units), so the
    # validation likelihood peaks at sigma = s and the test LL is the Gaussian's: D = 64,
    # E log N(x; c, s^2 I) = -D/2 log(2 pi s^2) - D/2.
    s, d = 0.1, 64
    rng = torch.Generator().manual_seed(0)
    centres = torch.full((3, 1, 8, 8), 128, dtype=torch.uint8)

    def noisy(n: int) -> torch.Tensor:
        x = 128 + 255 * s * torch.randn(n, 1, 8, 8, generator=rng)
        return x.round().clamp(0, 255).to(torch.uint8)

    out = parzen_row(centres, noisy(300), noisy(300), [0.05, 0.08, 0.1, 0.13, 0.2])
    assert out["parzen_sigma"] == 0.1
    want = -d / 2 * math.log(2 * math.pi * s**2) - d / 2
    assert abs(out["parzen_ll_nats"] - want) < 4 * out["parzen_ll_nats_sem"] + 1.0
    assert 0 < out["parzen_ll_nats_sem"] < 2.0


def test_a_bad_parzen_grid_is_refused_before_any_sampling():
    # eval.parzen_sigmas is checked when params.yaml is validated, before the stage samples.
    for bad in ([], [0.1, 0.0], [0.1, True]):
        with pytest.raises(ConfigError, match="eval.parzen_sigmas"):
            validate("eval", EvalConfig, {"parzen_sigmas": bad})
    validate("eval", EvalConfig, {"parzen_sigmas": [0.1, 1]})


def test_two_stage_bounds_with_a_standard_normal_mixture_are_the_standard_bounds():
    """A one-component mixture at N(0, I) is the VAE's own prior: its IWAE bounds come from the
    same draws and equal the standard ones; its ELBO (Monte Carlo KL) matches the closed form
    up to Monte Carlo noise; the standard row is exactly likelihood_bounds'."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=2, width=4), (1, 8, 8))
    images = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    test = Split(images, torch.zeros(16, dtype=torch.int64), ["a"])
    cfg = EvalConfig(iwae_k=[1, 20], batch_size=8, likelihood_images=0)
    gmm = GMMPrior(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None])
    standard, two_stage = two_stage_bounds(vae, gmm, test, cfg, torch.device("cpu"))
    assert standard == likelihood_bounds(vae, test, cfg, torch.device("cpu"))
    for k in cfg.iwae_k:
        assert two_stage[f"iwae_k{k}_nats"] == pytest.approx(standard[f"iwae_k{k}_nats"],
                                                             rel=1e-6)
    assert two_stage["recon_log_px_z_nats"] == standard["recon_log_px_z_nats"]
    assert two_stage["kl_nats"] == pytest.approx(standard["kl_nats"], rel=0.1, abs=0.05)
    assert two_stage["elbo_nats"] == pytest.approx(
        two_stage["recon_log_px_z_nats"] - two_stage["kl_nats"], rel=1e-9)
