"""Known answers for the VAE: likelihood, KL, ELBO/IWAE bounds, model shapes, training loop."""

from __future__ import annotations

import math

import pytest
import torch

from genduel.config import VAEConfig
from genduel.data.pixels import to_model_range
from genduel.models.likelihood import (
    bits_per_dim,
    discretized_logistic_log_prob,
    gaussian_kl_standard,
    gaussian_log_prob,
    iwae_from_log_weights,
)
from genduel.models.vae import (
    VAE,
    ELBOTerms,
    VAEOutput,
    elbo_estimate,
    elbo_terms,
    iwae_bound,
    iwae_estimate,
    log_importance_weights,
    vae_log_likelihood_fn,
    vae_loss,
)
from genduel.runtime import eval_mode, make_generator

GRID = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0  # the 256 pixel values in [-1, 1]
SMALL = VAEConfig(latent_dim=4, width=8, batch_size=16, lr=2e-3, log_every=1, grid_images=16)


def _pixel_log_probs(mean: float, log_scale: float, dtype=torch.float64) -> torch.Tensor:
    """log P(u) for all 256 values u of one pixel, (256,), via the library function."""
    x = GRID.to(dtype).view(256, 1, 1, 1)  # (256, C=1, H=1, W=1)
    m = torch.full_like(x, mean)
    s = torch.full_like(x, log_scale)
    return discretized_logistic_log_prob(x, m, s)


PIXEL_PARAMS = [(0.0, 0.0), (0.3, -2.0), (-0.97, -5.0), (1.0, -7.0), (-1.0, -7.0),
                (0.5, 1.5), (-0.2, 4.0), (1.4, -3.0), (0.001, -7.0)]


@pytest.mark.parametrize(("mean", "log_scale"), PIXEL_PARAMS)
def test_discretized_logistic_is_a_pmf_over_256_values(mean: float, log_scale: float) -> None:
    for dtype in (torch.float32, torch.float64):
        total = torch.logsumexp(_pixel_log_probs(mean, log_scale, dtype).double(), dim=0)
        assert abs(total.exp().item() - 1.0) < 1e-5


@pytest.mark.parametrize(("mean", "log_scale"), PIXEL_PARAMS)
def test_discretized_logistic_matches_cdf_differences(mean: float, log_scale: float) -> None:
    s = math.exp(log_scale)
    a, b = (GRID + 1 / 255 - mean) / s, (GRID - 1 / 255 - mean) / s  # bin edges, logistic units
    cdf_a, cdf_b = torch.sigmoid(a), torch.sigmoid(b)
    sf_a, sf_b = torch.sigmoid(-a), torch.sigmoid(-b)  # 1 - CDF without cancellation
    cdf_a[-1], sf_a[-1], cdf_b[0], sf_b[0] = 1.0, 0.0, 0.0, 1.0  # edge bins take the tails
    # CDF(a) - CDF(b), written as SF(b) - SF(a) right of the mean so float64 keeps tiny masses.
    direct = torch.where(GRID > mean, sf_b - sf_a, cdf_a - cdf_b)
    ours = _pixel_log_probs(mean, log_scale).exp()
    assert torch.allclose(ours, direct, rtol=1e-9, atol=1e-300)
    ours32 = _pixel_log_probs(mean, log_scale, torch.float32).double().exp()
    assert torch.allclose(ours32, direct, rtol=1e-4, atol=1e-7)


def test_discretized_logistic_far_tails_stay_finite_with_gradients() -> None:
    x = torch.full((1, 1, 2, 2), -1 + 2 / 255)  # an interior bin at the far left
    mean = torch.ones(1, 1, 2, 2, requires_grad=True)
    log_scale = torch.tensor([-7.0, -3.0, 5.0, 12.0]).view(1, 1, 2, 2).requires_grad_()
    lp = discretized_logistic_log_prob(x, mean, log_scale)
    lp.sum().backward()
    assert torch.isfinite(lp).all() and lp.item() < -1000  # e^-1800 mass: no -inf, no NaN
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()


def test_sum_over_pixels_and_bits_per_dim() -> None:
    x = GRID[torch.randint(0, 256, (3, 2, 4, 4))]
    mean, log_scale = torch.zeros_like(x), torch.full_like(x, -1.0)
    per_image = discretized_logistic_log_prob(x, mean, log_scale)
    per_pixel = discretized_logistic_log_prob(x.reshape(-1, 1, 1, 1), mean.reshape(-1, 1, 1, 1),
                                              log_scale.reshape(-1, 1, 1, 1))
    assert per_image.shape == (3,)
    assert torch.allclose(per_image, per_pixel.view(3, 32).sum(1))
    assert bits_per_dim(-32 * math.log(256), 32) == pytest.approx(8.0)  # uniform: 8 bits


def test_kl_closed_form_zero_and_monte_carlo() -> None:
    assert gaussian_kl_standard(torch.zeros(2, 5), torch.zeros(2, 5)).abs().max() == 0
    g = make_generator(0)
    mu = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.1, -0.3]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, -1.0, 0.7], [-2.0, 0.3, 0.0]], dtype=torch.float64)
    n = 200_000
    z = mu.unsqueeze(1) + (0.5 * logvar).exp().unsqueeze(1) * torch.randn(
        2, n, 3, generator=g, dtype=torch.float64)  # (B, n, D)
    diff = gaussian_log_prob(z, mu.unsqueeze(1), logvar.unsqueeze(1)) - gaussian_log_prob(
        z, torch.zeros_like(z), torch.zeros_like(z))  # (B, n) log q - log p
    stderr = diff.std(dim=1) / math.sqrt(n)
    closed = gaussian_kl_standard(mu, logvar)
    assert ((diff.mean(dim=1) - closed).abs() < 5 * stderr).all()


def test_gaussian_log_prob_matches_torch_distributions() -> None:
    z, mu, logvar = torch.randn(3, 4, 5, dtype=torch.float64).unbind(0)
    ref = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    assert torch.allclose(gaussian_log_prob(z, mu, logvar), ref)


# ----------------------------------------------------------------- linear-Gaussian known answers
class LinearGaussian:
    """p(z) = N(0, I), p(x | z) = N(W z + b, sigma^2 I): p(x) = N(b, W W^T + sigma^2 I).

    W has orthogonal columns (W^T W = diag(s^2)), so the exact posterior is diagonal:
    var = 1 / (1 + s^2 / sigma^2), mean = var * W^T (x - b) / sigma^2; q can equal it exactly.
    """

    def __init__(self, n: int, seed: int = 0, dx: int = 6, sigma: float = 0.5) -> None:
        g = make_generator(seed)
        q, _ = torch.linalg.qr(torch.randn(dx, 2, generator=g, dtype=torch.float64))
        self.s = torch.tensor([1.5, 0.8], dtype=torch.float64)
        self.w, self.sigma = q * self.s, sigma  # (dx, 2)
        self.b = torch.randn(dx, generator=g, dtype=torch.float64)
        z = torch.randn(n, 2, generator=g, dtype=torch.float64)
        self.x = z @ self.w.T + self.b + sigma * torch.randn(n, dx, generator=g,
                                                             dtype=torch.float64)  # (n, dx)
        cov = self.w @ self.w.T + sigma**2 * torch.eye(dx, dtype=torch.float64)
        self.log_px = torch.distributions.MultivariateNormal(self.b, cov).log_prob(self.x)
        self.post_var = 1 / (1 + self.s.square() / sigma**2)  # (2,)
        self.post_mu = (self.x - self.b) @ self.w * self.post_var / sigma**2  # (n, 2)
        self.post_logvar = self.post_var.log().expand(n, 2)

    def log_px_z(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, S, 2) -> log p(x | z) (B, S): the callable the library estimators take."""
        resid = self.x.unsqueeze(1) - z @ self.w.T - self.b  # (B, S, dx)
        dx = self.x.shape[1]
        return -0.5 * (resid.square().sum(-1) / self.sigma**2
                       + dx * math.log(2 * math.pi * self.sigma**2))


def test_elbo_equals_log_px_under_the_exact_posterior() -> None:
    lg = LinearGaussian(256)
    log_w = log_importance_weights(lg.log_px_z, lg.post_mu, lg.post_logvar, 8, make_generator(1))
    assert torch.allclose(log_w, lg.log_px.unsqueeze(1).expand(-1, 8), atol=1e-10)
    terms = elbo_estimate(lg.log_px_z, lg.post_mu, lg.post_logvar, 1000, make_generator(2))
    assert torch.allclose(terms.elbo_nats, terms.log_px_z_nats - terms.kl_nats)
    # Unbiased per x; only the recon term is noisy (std ~0.003 nats for this mean over B x L).
    assert (terms.elbo_nats - lg.log_px).mean().abs() < 0.02
    iwae = iwae_estimate(lg.log_px_z, lg.post_mu, lg.post_logvar, 10, make_generator(3))
    assert torch.allclose(iwae, lg.log_px, atol=1e-10)


def test_elbo_gap_is_the_kl_to_the_posterior_for_a_perturbed_q() -> None:
    lg = LinearGaussian(256)
    mu_q = lg.post_mu + 0.5 * lg.post_var.sqrt()
    logvar_q = lg.post_logvar + math.log(1.5)
    terms = elbo_estimate(lg.log_px_z, mu_q, logvar_q, 200, make_generator(4))
    # KL(q || posterior) between diagonal Gaussians, in closed form: the exact ELBO gap.
    var_ratio = 1.5
    kl = 0.5 * (var_ratio + 0.25 - 1 - math.log(var_ratio)) * 2
    assert (terms.elbo_nats < lg.log_px).float().mean() > 0.95
    assert (lg.log_px - terms.elbo_nats).mean().item() == pytest.approx(kl, abs=0.02)


def test_iwae_bounds_increase_with_k_towards_log_px() -> None:
    lg = LinearGaussian(128)
    mu_q = lg.post_mu + lg.post_var.sqrt()  # one posterior std off: ELBO gap = 1 nat
    log_w = log_importance_weights(lg.log_px_z, mu_q, lg.post_logvar, 10_000, make_generator(5))
    gaps = []
    for k in (1, 10, 100, 1000):
        groups = log_w.view(128 * 10_000 // k, k)  # 10_000 / k independent IWAE_k per x
        iwae_k = iwae_from_log_weights(groups).view(128, -1).mean(dim=1)  # (B,) mean over groups
        gaps.append((lg.log_px - iwae_k).mean().item())
    elbo = elbo_estimate(lg.log_px_z, mu_q, lg.post_logvar, 1000, make_generator(6)).elbo_nats
    assert (lg.log_px - elbo).mean().item() == pytest.approx(1.0, abs=0.02)
    assert gaps[0] == pytest.approx(1.0, abs=0.02)  # IWAE_1 is the ELBO
    assert all(a > b + 1e-3 for a, b in zip(gaps, gaps[1:]))  # strictly tighter with k
    assert -2e-3 < gaps[-1] < 0.01  # IWAE_1000 within 0.01 nats of log p(x), not above it
    iwae = iwae_estimate(lg.log_px_z, mu_q, lg.post_logvar, 1000, make_generator(7), chunk_k=96)
    assert (lg.log_px - iwae).mean().item() == pytest.approx(gaps[-1], abs=0.01)


# ----------------------------------------------------------------- the conv VAE
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_vae_output_shapes(smooth_images, shape: tuple[int, int, int]) -> None:
    model = VAE(SMALL, shape)
    x = to_model_range(smooth_images(5, shape))
    out = model(x, generator=make_generator(0))
    assert isinstance(out, VAEOutput)
    assert out.mean.shape == out.log_scale.shape == (5, *shape)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (5, 4)
    assert out.mean.abs().max() <= 1 and out.log_scale.min() >= -7
    with eval_mode(model):
        assert model.sample(3, make_generator(1)).shape == (3, *shape)
        assert model.reconstruct(x).shape == (5, *shape)
    terms = elbo_terms(model, x, mc_samples=3)
    assert isinstance(terms, ELBOTerms) and terms.elbo_nats.shape == (5,)
    assert vae_loss(terms, 1.0).item() == pytest.approx(-terms.elbo_nats.mean().item(), rel=1e-6)


def test_iwae_k1_is_the_single_sample_elbo_in_expectation(smooth_images) -> None:
    torch.manual_seed(0)
    model = VAE(SMALL, (1, 28, 28)).eval()
    x = to_model_range(smooth_images(4))
    reps = 500
    with torch.no_grad():
        mu, logvar = model.encode(x)
        log_w = log_importance_weights(vae_log_likelihood_fn(model, x), mu, logvar, 1,
                                       make_generator(1))  # (B, 1)
        assert torch.equal(iwae_bound(model, x, 1, make_generator(1)), log_w[:, 0])
        # `reps` independent single-sample bounds per image (eval mode: images do not interact).
        iwae1 = iwae_bound(model, x.repeat_interleave(reps, 0), 1, make_generator(2))
        iwae1 = iwae1.view(4, reps)  # (B, reps)
        elbo = elbo_terms(model, x, mc_samples=reps, generator=make_generator(3)).elbo_nats
        iwae50 = iwae_bound(model, x, 50, make_generator(4), chunk=4 * 7)  # 7 samples a pass
    stderr = iwae1.std(dim=1) / math.sqrt(reps)
    assert ((iwae1.mean(dim=1) - elbo).abs() < 5 * stderr + 0.05).all()
    assert (iwae50 > elbo).all()
