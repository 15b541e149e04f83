"""The latent priors: the mixture's density against scikit-learn, sampling, the choice of K on
held-out latents, and the two-stage bounds against the standard ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genduel.config import VAEConfig
from genduel.models.likelihood import gaussian_kl_standard
from genduel.models.prior import GMMPrior, StandardNormalPrior, build_prior, fit_gmm
from genduel.models.vae import VAE, build_vae, iwae_bound, kl_monte_carlo


def _clusters(n: int, seed: int) -> np.ndarray:
    """n points (n, 2) around three well-separated centres."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])
    return centres[np.arange(n) % 3] + rng.normal(size=(n, 2)) * [0.5, 1.5]


def _standard_as_gmm(dim: int) -> GMMPrior:
    """A one-component mixture at N(0, I)."""
    return GMMPrior(torch.ones(1), torch.zeros(1, dim), torch.eye(dim)[None])


def test_gmm_log_prob_matches_sklearn_score_samples():
    from sklearn.mixture import GaussianMixture

    train = _clusters(300, 0)
    gmm = GaussianMixture(3, covariance_type="full", random_state=0).fit(train)
    prior = GMMPrior(torch.from_numpy(gmm.weights_), torch.from_numpy(gmm.means_),
                     torch.from_numpy(gmm.covariances_))
    z = _clusters(50, 1)
    ours = prior.log_prob(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(ours, gmm.score_samples(z), rtol=1e-10, atol=1e-10)
    # chunking and extra leading dimensions change nothing
    z3 = torch.from_numpy(z).view(5, 10, 2)
    np.testing.assert_allclose(prior.log_prob(z3, chunk=7).view(-1).numpy(), ours, rtol=1e-12)


def test_one_component_at_standard_normal_is_the_standard_prior():
    z = torch.randn(100, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(_standard_as_gmm(4).log_prob(z).numpy(),
                               StandardNormalPrior(4).log_prob(z).numpy(), rtol=1e-12)


def test_gmm_sampling_is_seeded_and_has_the_mixture_moments():
    weights = torch.tensor([0.2, 0.8])
    means = torch.tensor([[-3.0, 0.0], [2.0, 1.0]])
    covs = torch.stack([torch.eye(2) * 0.25, torch.tensor([[1.0, 0.6], [0.6, 1.0]])])
    prior = GMMPrior(weights, means, covs)
    a = prior.sample(20000, torch.Generator().manual_seed(3), dtype=torch.float64)
    b = prior.sample(20000, torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(a, b)
    assert not torch.equal(a, prior.sample(20000, torch.Generator().manual_seed(4)).double())
    mean = (weights[:, None] * means).sum(0).double()  # E z = sum pi_k m_k
    np.testing.assert_allclose(a.mean(0).numpy(), mean.numpy(), atol=0.05)
    # Cov z = sum pi_k (S_k + m_k m_k^T) - E z E z^T
    second = sum(w * (c + torch.outer(m, m)) for w, m, c in zip(weights, means, covs))
    np.testing.assert_allclose(np.cov(a.numpy().T), (second.double() - torch.outer(mean, mean))
                               .numpy(), atol=0.1)


def test_fit_gmm_chooses_k_on_held_out_latents():
    train, val = _clusters(30, 0), _clusters(600, 1)
    prior, fits = fit_gmm(train, val, [1, 3, 12], seed=0, reg_covar=1e-6)
    by_k = {f.components: f for f in fits}
    # More components always fit the fitted latents better; held-out latents stop at the truth.
    assert by_k[12].train_ll_nats > by_k[3].train_ll_nats > by_k[1].train_ll_nats
    assert max(fits, key=lambda f: f.val_ll_nats).components == 3 == prior.components
    assert prior.log_prob(torch.from_numpy(val)).mean().item() == pytest.approx(
        by_k[3].val_ll_nats, rel=1e-9)


def test_build_prior_round_trip_through_a_vae_checkpoint():
    vae = VAE(VAEConfig(latent_dim=2, width=4), (1, 8, 8))
    vae.prior = GMMPrior(torch.tensor([0.5, 0.5]), torch.tensor([[1.0, 0.0], [0.0, -1.0]]),
                         torch.eye(2).expand(2, 2, 2) * 0.1)
    config = vae.model_config()
    assert config["prior"] == {"kind": "gmm", "dim": 2, "components": 2}
    again = build_vae(config)
    again.load_state_dict(vae.state_dict())
    assert isinstance(again.prior, GMMPrior)
    with torch.no_grad():
        for model in (vae, again):
            model.eval()
        a = vae.sample(6, torch.Generator().manual_seed(1))
        b = again.sample(6, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    # a VAE with the standard prior keeps its checkpoint as before: no prior entry
    assert "prior" not in VAE(VAEConfig(latent_dim=2, width=4), (1, 8, 8)).model_config()
    assert isinstance(build_prior(None, 3), StandardNormalPrior)


def test_monte_carlo_kl_equals_the_closed_form():
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen) * 0.3
    mc = kl_monte_carlo(mu.double(), logvar.double(), StandardNormalPrior(4), 200000,
                        torch.Generator().manual_seed(1))
    np.testing.assert_allclose(mc.numpy(), gaussian_kl_standard(mu, logvar).double().numpy(),
                               rtol=0.02)


def test_two_priors_share_draws_and_a_standard_gmm_gives_the_standard_bound():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=3, width=4), (1, 8, 8)).eval()
    x = torch.randint(0, 256, (5, 1, 8, 8)).float() / 127.5 - 1
    with torch.no_grad():
        plain = iwae_bound(vae, x, 20, torch.Generator().manual_seed(2))
        both = iwae_bound(vae, x, 20, torch.Generator().manual_seed(2),
                          priors=(StandardNormalPrior(3), _standard_as_gmm(3)))
    assert both.shape == (5, 2)
    np.testing.assert_allclose(both[:, 0].numpy(), plain.numpy(), rtol=1e-5)
    np.testing.assert_allclose(both[:, 1].numpy(), plain.numpy(), rtol=1e-5)


def test_gmm_rejects_shapes_that_disagree():
    with pytest.raises(ValueError, match="shapes"):
        GMMPrior(torch.ones(2), torch.zeros(3, 2), torch.eye(2).expand(3, 2, 2))
    assert math.isfinite(_standard_as_gmm(2).log_prob(torch.zeros(1, 2)).item())


def test_temperature_scales_the_spread_and_keeps_the_means():
    prior = GMMPrior(torch.tensor([1.0]), torch.tensor([[1.0, -1.0]]), torch.eye(2)[None] * 0.5)
    hot = prior.tempered(2.0)
    assert torch.allclose(hot.means, prior.means)
    cov = hot.scale_tril @ hot.scale_tril.transpose(-1, -2)
    assert torch.allclose(cov, torch.eye(2, dtype=torch.float64)[None] * 2.0)  # 0.5 * 2^2
    draws = hot.sample(20000, torch.Generator().manual_seed(0), dtype=torch.float64)
    np.testing.assert_allclose(draws.std(0).numpy(), [math.sqrt(2.0)] * 2, rtol=0.03)
