"""The whole evaluate stage on tiny models: every row gets every key, the GAN diagnostics and the
latent-space studies are written."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import torch

from genduel.checkpoint import load_checkpoint, rebuild
from genduel.config import EvalConfig, GANConfig, VAEConfig
from genduel.evaluate import gan_diagnostics as diagnostics
from genduel.evaluate.run import EvalInputs, evaluate_all
from genduel.models.gan import build_generator
from genduel.models.prior import GMMPrior
from genduel.models.vae import VAE
from genduel.tracking.base import RecordingTracker
from genduel.train.gan import train_gan


def test_evaluate_all_writes_every_new_key_for_every_row(tmp_path, banded, stub_judge):
    torch.manual_seed(0)
    shape = (1, 8, 8)
    cfg = EvalConfig(num_samples=40, draws=1, batch_size=20, is_splits=2, kid_subsets=2,
                     kid_subset_size=10, iwae_k=[1], likelihood_images=8, parzen_samples=30,
                     parzen_val_images=10, parzen_test_images=12, parzen_sigmas=[0.1, 0.3],
                     probe_train_images=50)
    train = banded(60, 0, shape)
    gan_cfg = GANConfig(latent_dim=4, width=4, batch_size=20, epochs=2, diag_samples=12)
    train_gan(gan_cfg, train, device=torch.device("cpu"), amp=False, tracker=RecordingTracker(),
              checkpoint_path=tmp_path / "gan.pt", artifacts_dir=tmp_path / "art")
    generator = rebuild(load_checkpoint(tmp_path / "gan.pt", "gan"), "generator", build_generator)
    vae = VAE(VAEConfig(latent_dim=2, width=4), shape)
    vae_prior = copy.deepcopy(vae)  # the same VAE, sampled from a two-component mixture
    vae_prior.prior = GMMPrior(torch.tensor([0.3, 0.7]), torch.tensor([[1.0, 0.0], [-1.0, 0.5]]),
                               torch.eye(2).expand(2, 2, 2) * 0.2)
    inputs = EvalInputs(judge=stub_judge, vae=vae, vae_prior=vae_prior, generator=generator,
                        train=train,
                        val=banded(20, 1, shape), test=banded(40, 2, shape),
                        judge_sha256="0" * 64, judge_accuracy=0.9,
                        model_params={"gan": dataclasses.asdict(gan_cfg)},
                        gan_artifacts=tmp_path / "art")
    out = evaluate_all(cfg, inputs, torch.device("cpu"), tmp_path / "eval")
    for name in ("vae", "vae_prior", "gan", "real"):
        assert math.isfinite(out[name]["parzen_ll_nats"])
        assert out[name]["parzen_sigma"] in (0.1, 0.3)
        assert "30 VAE / 30 GAN samples of draw 0, 30 train" in out[name]["protocol"]["parzen"]
    for key in ("probe_linear_accuracy", "probe_knn_accuracy", "recon_mse", "recon_mae_levels"):
        assert math.isfinite(out["vae"][key]) and key not in out["gan"]
    assert out["gan"]["model_params"]["loss"] == "non_saturating"
    # the two VAE rows: one decoder, two priors (same reconstruction term, other KL and bounds)
    assert out["vae_prior"]["recon_log_px_z_nats"] == out["vae"]["recon_log_px_z_nats"]
    assert out["vae_prior"]["kl_nats"] != out["vae"]["kl_nats"]
    for key in ("elbo_nats", "iwae_k1_nats", "latent_nn_ratio", "nn_ratio_pixels", "fid"):
        assert math.isfinite(out["vae_prior"][key]), key
    assert 0 <= out["vae"]["active_units"] <= 2 and "active_units" not in out["vae_prior"]
    assert (tmp_path / "eval" / "prior_gap.png").is_file()
    assert (tmp_path / "eval" / "samples_vae_prior.png").is_file()
    assert "model_params" not in out["vae"]  # none given for it
    rows = diagnostics.read_table(tmp_path / "eval" / "gan_diagnostics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(1 <= r["classes_covered"] <= 4 for r in rows)  # the stub judge has 4 classes
    index = json.loads((tmp_path / "eval" / "studies" / "index.json").read_text())
    assert all((tmp_path / "eval" / "studies" / f["file"]).is_file() for f in index["figures"])
    assert any("manifold" in f["file"] for f in index["figures"])  # latent_dim 2
