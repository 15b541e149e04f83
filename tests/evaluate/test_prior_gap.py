"""The prior-gap figure's numbers: nearest-latent distances and the ratio's scale."""

from __future__ import annotations

import numpy as np
import torch

from genduel.config import VAEConfig
from genduel.data.splits import Split
from genduel.evaluate.prior_gap import nearest_distances, prior_gap, write_prior_gap
from genduel.models.prior import GMMPrior
from genduel.models.vae import VAE


def test_nearest_distances_match_brute_force():
    gen = torch.Generator().manual_seed(0)
    q, p = torch.randn(37, 3, generator=gen), torch.randn(50, 3, generator=gen)
    brute = np.sqrt(((q.numpy()[:, None] - p.numpy()[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(nearest_distances(q, p, chunk=8), brute, rtol=1e-6)
    assert nearest_distances(p[:5], p).max() == 0.0  # a point is its own nearest


def test_prior_far_from_the_posterior_has_a_large_ratio(tmp_path):
    """A 'fitted' prior centred 50 units away from every posterior mean draws far from the
    training latents: its ratio is far above N(0, I)'s; the figure is written."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent_dim=2, width=4), (1, 8, 8)).eval()
    train, val = (Split(torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8),
                        torch.zeros(40, dtype=torch.int64), ["a"]) for _ in range(2))
    far = GMMPrior(torch.ones(1), torch.full((1, 2), 50.0), torch.eye(2)[None] * 0.01)
    gap = prior_gap(vae, far, train, val, n=20, seed=0, batch_size=8,
                    device=torch.device("cpu"))
    assert gap.rows["vae_prior"]["latent_nn_ratio"] > 10 * gap.rows["vae"]["latent_nn_ratio"]
    assert set(gap.distances) == {"val", "vae", "vae_prior"}
    assert gap.kl_per_dim.shape == (2,) and 0 <= gap.rows["vae"]["active_units"] <= 2
    write_prior_gap(gap, tmp_path / "gap.png")
    assert (tmp_path / "gap.png").read_bytes()[:4] == b"\x89PNG"
