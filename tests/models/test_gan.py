"""GAN losses, nets and training loop against known answers (Goodfellow et al., 2014)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genduel.config import GANConfig
from genduel.models.gan import (
    Discriminator,
    Generator,
    build_discriminator,
    d_loss,
    g_loss,
)
from genduel.runtime import eval_mode, make_generator

TINY = GANConfig(latent_dim=8, width=4, batch_size=8, log_every=2, grid_images=4, epochs=2)



def _normal_logpdf(x: torch.Tensor, mu: float, sigma: float) -> torch.Tensor:
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))


def test_d_loss_is_log4_when_d_is_one_half_everywhere():
    zeros = torch.zeros(7)
    assert d_loss(zeros, torch.zeros(5)).item() == pytest.approx(math.log(4), abs=1e-6)


def test_losses_match_the_probability_formulas():
    torch.manual_seed(0)
    real, fake = torch.randn(64) * 3, torch.randn(64) * 3
    dr, df = torch.sigmoid(real).double(), torch.sigmoid(fake).double()
    want_d = -(torch.log(dr).mean() + torch.log1p(-df).mean())
    assert d_loss(real, fake).item() == pytest.approx(want_d.item(), rel=1e-5)
    assert g_loss(fake, "minimax").item() == pytest.approx(torch.log1p(-df).mean().item(),
                                                           rel=1e-5)
    assert g_loss(fake, "non_saturating").item() == pytest.approx(-torch.log(df).mean().item(),
                                                                  rel=1e-5)


def test_losses_stay_finite_for_saturated_logits():
    big = torch.tensor([-200.0, 200.0])
    assert torch.isfinite(d_loss(big, big))
    for kind in ("minimax", "non_saturating"):
        assert torch.isfinite(g_loss(big, kind))


def test_minimax_gradient_vanishes_when_d_rejects_fakes_non_saturating_does_not():
    """Section 3 of the paper: log(1 - D(G(z))) saturates early in training; -log D does not."""
    logits = torch.tensor([-2.0, -5.0, -10.0, -20.0])  # D(G(z)) from 0.12 down to 2e-9
    grads = {}
    for kind in ("minimax", "non_saturating"):
        lg = logits.clone().requires_grad_(True)
        g_loss(lg, kind).backward()
        grads[kind] = lg.grad * len(logits)  # per-sample d loss / d logit
    d_fake = torch.sigmoid(logits)
    torch.testing.assert_close(grads["minimax"], -d_fake)  # -> 0 as D(G(z)) -> 0
    torch.testing.assert_close(grads["non_saturating"], -(1 - d_fake))  # -> -1
    assert grads["minimax"].abs()[-1] < 1e-8
    assert grads["non_saturating"].abs()[-1] > 0.999
    assert torch.all(grads["minimax"].abs().diff() < 0)  # shrinks as D gets more confident


def test_discriminator_trained_with_d_loss_approaches_the_optimal_ratio():
    """Proposition 1: for fixed G, D*(x) = p_data(x) / (p_data(x) + p_g(x))."""
    torch.manual_seed(0)
    gen = make_generator(0)
    (mu_d, s_d), (mu_g, s_g) = (0.0, 1.0), (1.0, 0.6)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                        nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 800)
    for _ in range(800):
        real = mu_d + s_d * torch.randn(1024, 1, generator=gen)
        fake = mu_g + s_g * torch.randn(1024, 1, generator=gen)
        loss = d_loss(net(real).squeeze(1), net(fake).squeeze(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    x = torch.tensor([-1.0, 0.0, 0.5, 1.0, 1.5, 2.0]).unsqueeze(1)
    log_ratio = _normal_logpdf(x, mu_d, s_d) - _normal_logpdf(x, mu_g, s_g)
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(net(x)), torch.sigmoid(log_ratio), atol=0.03,
                                   rtol=0)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_shapes_and_ranges(shape):
    G, D = Generator(TINY, shape), Discriminator(TINY, shape)
    with eval_mode(G, D):
        x = G.sample(5, generator=make_generator(0))
        assert x.shape == (5, *shape) and x.abs().max() <= 1
        assert D(x).shape == (5,)
    assert G.latent_dim == TINY.latent_dim
    assert G.model_config() == D.model_config()
    assert isinstance(build_discriminator(D.model_config()), Discriminator)


def test_hinge_losses_have_their_margins():
    from genduel.models.gan import hinge_d_loss

    zero = torch.zeros(8)
    assert hinge_d_loss(zero, zero).item() == pytest.approx(2.0)  # undecided D
    assert hinge_d_loss(torch.full((8,), 1.5), torch.full((8,), -3.0)).item() == 0.0  # margin
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-0.5, 1.0])
    assert hinge_d_loss(real, fake).item() == pytest.approx((0.5 + 0) / 2 + (0.5 + 2.0) / 2)
    assert g_loss(torch.tensor([1.0, 3.0]), "hinge").item() == pytest.approx(-2.0)


def test_spectral_norm_bounds_each_discriminator_layer_and_d_width_sets_its_channels():
    cfg = GANConfig(width=8, d_width=12, spectral_norm=True)
    D = Discriminator(cfg, (1, 28, 28))
    D.train()
    for _ in range(30):  # each training-mode forward runs one power iteration
        D(torch.rand(4, 1, 28, 28) * 2 - 1)
    convs = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert convs[0].out_channels == 12 and convs[1].out_channels == 24
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    for layer in convs:
        w = layer.weight.detach().flatten(1)  # the normalized weight W / sigma(W)
        assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.02)
    rebuilt = build_discriminator(D.model_config())
    assert rebuilt.d_width == 12 and rebuilt.spectral_norm
    rebuilt.load_state_dict(D.state_dict())
