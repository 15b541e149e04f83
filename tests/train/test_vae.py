"""Known answers for the VAE: likelihood, KL, ELBO/IWAE bounds, model shapes, training loop."""

from __future__ import annotations

import csv
import dataclasses
import math
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from genduel.checkpoint import rebuild
from genduel.config import VAEConfig
from genduel.data.pixels import to_model_range
from genduel.errors import TrainingError
from genduel.models.likelihood import (
    bits_per_dim,
)
from genduel.models.vae import (
    VAE,
    build_vae,
)
from genduel.tracking.base import RecordingTracker
from genduel.train.vae import train_vae, vae_train_step, validation_elbo_nats

GRID = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0  # the 256 pixel values in [-1, 1]
SMALL = VAEConfig(latent_dim=4, width=8, batch_size=16, lr=2e-3, log_every=1, grid_images=16)




# ----------------------------------------------------------------- the conv VAE
def test_train_step_decreases_loss_on_a_fixed_batch(smooth_images) -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(SMALL, lr=1e-2)
    model = VAE(cfg, (1, 28, 28))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    x = to_model_range(smooth_images(16))
    losses = [vae_train_step(model, opt, x, cfg, amp_ctx=nullcontext(), step=i)["loss"]
              for i in range(30)]
    stats = vae_train_step(model, opt, x, cfg, amp_ctx=nullcontext())
    assert set(stats) == {"loss", "elbo_nats", "recon_nats", "kl_nats", "bits_per_dim"}
    assert stats["elbo_nats"] == pytest.approx(-stats["recon_nats"] - stats["kl_nats"], rel=1e-5)
    assert sum(losses[-3:]) < 0.9 * sum(losses[:3])  # ~4950 -> ~4100 nats per image


def test_nan_input_raises_before_the_weights_change(smooth_images) -> None:
    model = VAE(SMALL, (1, 28, 28))
    opt = torch.optim.Adam(model.parameters(), lr=SMALL.lr)
    before = [p.detach().clone() for p in model.parameters()]
    x = to_model_range(smooth_images(8))
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(TrainingError, match=r"vae loss became NaN at step 7; lower vae\.lr"):
        vae_train_step(model, opt, x, SMALL, amp_ctx=nullcontext(), step=7)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_train_vae_end_to_end(smooth_images, tmp_path: Path) -> None:
    from genduel.data.splits import Split

    train = Split(smooth_images(256, seed=1), torch.zeros(256, dtype=torch.int64), ["a"])
    val = Split(smooth_images(40, seed=2), torch.zeros(40, dtype=torch.int64), ["a"])
    cfg = VAEConfig(latent_dim=4, width=8, epochs=1, batch_size=64, log_every=1, grid_images=16)
    tracker, ckpt_path = RecordingTracker(), tmp_path / "vae.pt"
    result = train_vae(cfg, train, val, device=torch.device("cpu"), amp=False, tracker=tracker,
                       checkpoint_path=ckpt_path, artifacts_dir=tmp_path / "art")
    assert result["steps"] == 4 and result["epochs"] == 1
    assert math.isfinite(result["val_elbo_nats"]) and result["train_seconds"] > 0
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ckpt["kind"] == "vae" and ckpt["step"] == 4 and ckpt["epoch"] == 1
    assert set(ckpt["optimizers"]) == {"vae"} and "torch" in ckpt["rng"]
    rebuilt = build_vae(ckpt["model_config"])
    rebuilt.load_state_dict(ckpt["state_dicts"]["vae"])
    again = validation_elbo_nats(rebuilt, val, cfg, device=torch.device("cpu"), amp=False)
    assert again == result["val_elbo_nats"] == ckpt["extra"]["val_elbo_nats"]
    assert result["val_bits_per_dim"] == pytest.approx(bits_per_dim(again, 784))
    with torch.no_grad():
        z = torch.randn(3, 4)
        rebuilt_by_part = rebuild(ckpt, "vae", build_vae)
        assert torch.equal(rebuilt_by_part.decode(z)[0], rebuilt.eval().decode(z)[0])
    art = tmp_path / "art"
    for name in ("samples_epoch001.png", "recon_epoch001.png"):
        assert (art / "grids" / name).read_bytes()[:4] == b"\x89PNG"
        assert (art / "grids" / name, "grids") in tracker.artifacts
    history = _read_csv(art / "history.csv")
    assert [int(r["step"]) for r in history] == [1, 2, 3, 4]
    assert list(history[0]) == ["step", "epoch", "loss", "elbo_nats", "recon_nats", "kl_nats",
                                "bits_per_dim"]
    epochs = _read_csv(art / "epochs.csv")
    assert len(epochs) == 1 and float(epochs[0]["val_elbo_nats"]) == result["val_elbo_nats"]
    keys = {f"train/{k}" for k in ("loss", "elbo_nats", "recon_nats", "kl_nats", "bits_per_dim")}
    assert keys | {"val_elbo_nats", "val_bits_per_dim", "epochs"} <= set(tracker.metrics)
    assert tracker.metrics["val_elbo_nats"] == [(4, result["val_elbo_nats"])]  # the JSON's name
    assert [s for s, _ in tracker.metrics["train/loss"]] == [1, 2, 3, 4]


def test_kl_weight_ramps_linearly_to_beta_over_the_warmup_epochs():
    from genduel.config import VAEConfig
    from genduel.train.vae import kl_weight

    cfg = VAEConfig(beta=2.0, kl_warmup_epochs=1.5)
    assert [kl_weight(cfg, s, 10) for s in (1, 5, 15, 100)] == [2 / 15, 10 / 15, 2.0, 2.0]
    assert kl_weight(VAEConfig(beta=0.5), 1, 10) == 0.5  # no warm-up
