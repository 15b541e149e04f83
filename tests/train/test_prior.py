"""The fit_prior stage's work: the fitted VAE checkpoint rebuilds with its prior and its bytes
depend on the results alone (a re-run that fits the same prior leaves evaluate up to date)."""

from __future__ import annotations

import torch

from genduel.checkpoint import load_checkpoint, rebuild
from genduel.config import PriorConfig, VAEConfig
from genduel.data.splits import Split
from genduel.models.prior import GMMPrior
from genduel.models.vae import VAE, build_vae
from genduel.train.prior import fit_prior, fit_summary, save_fitted


def _split(n: int, seed: int) -> Split:
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=torch.Generator().manual_seed(seed),
                           dtype=torch.uint8)
    return Split(images, torch.zeros(n, dtype=torch.int64), ["a"])


def test_fitted_checkpoint_rebuilds_with_its_prior_and_is_byte_stable(tmp_path):
    cfg = PriorConfig(components=[1, 2], temperature=1.5, train_images=40, seed=0)
    blobs = []
    for run in range(2):
        torch.manual_seed(0)
        vae = VAE(VAEConfig(latent_dim=2, width=4), (1, 8, 8)).eval()
        source = {"kind": "vae", "extra": {"config": {"latent_dim": 2}}, "step": 3, "epoch": 1}
        fits, sampled_ll = fit_prior(cfg, vae, _split(60, 0), _split(30, 1),
                                     device=torch.device("cpu"), batch_size=16)
        path = tmp_path / str(run) / "vae_prior.pt"  # torch.save names its archive by the stem
        path.parent.mkdir()
        save_fitted(vae, source, path, fits, cfg)
        blobs.append(path.read_bytes())
    assert blobs[0] == blobs[1]
    summary = fit_summary(fits, sampled_ll)
    assert summary["components"] in (1, 2) and summary["val_ll_nats"] == max(
        summary["val_ll_nats_k1"], summary["val_ll_nats_k2"])
    assert summary["sampled_val_ll_nats"] < summary["val_ll_nats"]  # widened: a worse fit
    ckpt = load_checkpoint(tmp_path / "0" / "vae_prior.pt", "vae")
    assert ckpt["extra"]["prior"]["chosen_components"] == summary["components"]
    model = rebuild(ckpt, "vae", build_vae)
    assert isinstance(model.prior, GMMPrior) and model.prior.components == summary["components"]
    torch.testing.assert_close(model.prior.log_prob(torch.zeros(1, 2)),
                               vae.prior.log_prob(torch.zeros(1, 2)))
