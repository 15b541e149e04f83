"""The mixture of discretized logistics: a pmf over the 256 levels, one logistic when K = 1."""

from __future__ import annotations

import math

import pytest
import torch

from genduel.config import VAEConfig
from genduel.models.likelihood import (
    discretized_logistic_log_prob,
    discretized_logistic_mixture_log_prob,
)
from genduel.models.vae import VAE, elbo_terms

LEVELS = torch.arange(256, dtype=torch.float64) / 127.5 - 1  # the 8-bit grid in [-1, 1]


def test_mixture_of_identical_components_is_the_single_logistic():
    g = torch.Generator().manual_seed(0)
    x = (torch.randint(0, 256, (3, 1, 4, 4), generator=g) / 127.5 - 1).double()
    mean, log_scale = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1, torch.rand(3, 1, 4, 4) - 3
    k3 = lambda t: t.unsqueeze(1).expand(-1, 3, -1, -1, -1)  # noqa: E731
    logits = torch.randn(3, 3, 1, 4, 4, generator=g)
    torch.testing.assert_close(
        discretized_logistic_mixture_log_prob(x, logits, k3(mean), k3(log_scale)),
        discretized_logistic_log_prob(x, mean, log_scale).double())


def test_mixture_is_a_pmf_over_the_256_levels_and_mixes_its_components():
    # one pixel, two components at the background and the ink level, weights 0.7 / 0.3
    x = LEVELS.view(256, 1, 1, 1)
    logits = torch.log(torch.tensor([0.7, 0.3], dtype=torch.float64)).view(1, 2, 1, 1, 1)
    means = torch.tensor([-1.0, 0.6], dtype=torch.float64).view(1, 2, 1, 1, 1)
    log_scales = torch.full((1, 2, 1, 1, 1), -3.0, dtype=torch.float64)
    log_p = discretized_logistic_mixture_log_prob(x, logits.expand(256, -1, -1, -1, -1),
                                                  means.expand(256, -1, -1, -1, -1),
                                                  log_scales.expand(256, -1, -1, -1, -1))
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
    single = [discretized_logistic_log_prob(x, torch.full_like(x, m), torch.full_like(x, -3.0))
              .exp() for m in (-1.0, 0.6)]
    torch.testing.assert_close(log_p.exp(), 0.7 * single[0] + 0.3 * single[1])


def test_a_mixture_decoder_vae_gives_finite_bounds_and_means_in_range():
    model = VAE(VAEConfig(latent_dim=4, width=4, decoder_components=3), (1, 8, 8))
    assert model.decoder.body[-1].out_channels == 9  # 3 x (logit, mean, log-scale)
    x = torch.randint(0, 256, (5, 1, 8, 8)) / 127.5 - 1
    terms = elbo_terms(model, x, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(terms.elbo_nats).all()
    assert (terms.log_px_z_nats < 0).all()  # log of a probability mass
    assert terms.log_px_z_nats.min() > -64 * 20  # an untrained net: wide, not degenerate
    mean = model.sample(6, torch.Generator().manual_seed(1))
    assert mean.shape == (6, 1, 8, 8) and mean.abs().max() <= 1


def test_mode_image_takes_each_pixels_most_probable_component_and_mean_mixes_them():
    model = VAE(VAEConfig(latent_dim=2, width=4, decoder_components=2), (1, 4, 4))
    with torch.no_grad():
        last = model.decoder.body[-1]
        last.weight.zero_()
        # channels: logits (k0, k1), means (k0, k1), log-scales (k0, k1)
        last.bias.copy_(torch.tensor([2.0, 0.0, -5.0, 5.0, -3.0, -3.0]))
    model.eval()
    z = torch.zeros(3, 2)
    pi0 = torch.sigmoid(torch.tensor(2.0))  # softmax weight of component 0
    mean, mode = model.image(z, kind="mean"), model.image(z, kind="mode")
    torch.testing.assert_close(mode, torch.full_like(mode, math.tanh(-5.0)))  # component 0
    want = pi0 * math.tanh(-5.0) + (1 - pi0) * math.tanh(5.0)
    torch.testing.assert_close(mean, torch.full_like(mean, want.item()))
    one = VAE(VAEConfig(latent_dim=2, width=4), (1, 4, 4)).eval()
    assert torch.equal(one.image(z, kind="mode"), one.image(z, kind="mean"))  # K = 1: the same
    with pytest.raises(Exception, match="not one of"):
        one.image(z, kind="median")
