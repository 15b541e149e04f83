"""GAN losses, nets and training loop against known answers (Goodfellow et al., 2014)."""

from __future__ import annotations

import contextlib
import csv
import math

import pytest
import torch

from genduel.checkpoint import load_checkpoint
from genduel.config import GANConfig
from genduel.data.pixels import save_grid
from genduel.data.splits import Split
from genduel.errors import TrainingError
from genduel.models.gan import (
    Discriminator,
    Generator,
    build_generator,
)
from genduel.runtime import eval_mode, make_generator
from genduel.tracking.base import RecordingTracker
from genduel.train.gan import STEP_KEYS, gan_train_step, train_gan

TINY = GANConfig(latent_dim=8, width=4, batch_size=8, log_every=2, grid_images=4, epochs=2)


def _counting(opt: torch.optim.Optimizer) -> list[int]:
    calls, step = [0], opt.step

    def counted(*args, **kwargs):
        calls[0] += 1
        return step(*args, **kwargs)

    opt.step = counted
    return calls


def _nets(cfg: GANConfig, shape=(1, 28, 28)):
    torch.manual_seed(0)
    G, D = Generator(cfg, shape), Discriminator(cfg, shape)
    return G, D, torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)


def test_train_step_performs_k_discriminator_updates_per_generator_update():
    cfg = GANConfig(latent_dim=8, width=4, d_steps=3)
    G, D, opt_g, opt_d = _nets(cfg)
    n_g, n_d = _counting(opt_g), _counting(opt_d)
    real = [torch.rand(8, 1, 28, 28) * 2 - 1 for _ in range(3)]
    for i in range(2):
        stats = gan_train_step(G, D, opt_g, opt_d, real, cfg, generator=make_generator(i),
                               amp_ctx=contextlib.nullcontext())
    assert (n_d[0], n_g[0]) == (6, 2)
    assert set(stats) == set(STEP_KEYS)
    assert 0 <= stats["d_real"] <= 1 and 0 <= stats["d_fake"] <= 1 and 0 <= stats["d_acc"] <= 1
    with pytest.raises(ValueError, match="d_steps"):
        gan_train_step(G, D, opt_g, opt_d, real[:2], cfg, generator=None,
                       amp_ctx=contextlib.nullcontext())


def test_non_finite_loss_raises_before_the_optimizer_step():
    G, D, opt_g, opt_d = _nets(TINY)
    before = [p.detach().clone() for p in D.parameters()]
    real = torch.zeros(8, 1, 28, 28)
    real[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingError, match=r"d_loss.*step 7.*gan\.lr_d"):
        gan_train_step(G, D, opt_g, opt_d, [real], TINY, generator=None,
                       amp_ctx=contextlib.nullcontext(), step=7)
    assert all(torch.equal(a, b) for a, b in zip(before, D.parameters()))


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_train_gan_writes_checkpoint_grids_tables_and_rebuilds_the_generator(tmp_path):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    split = Split(images, torch.zeros(40, dtype=torch.int64), ["a"])
    tracker, ckpt_path, art = RecordingTracker(), tmp_path / "gan.pt", tmp_path / "art"
    summary = train_gan(TINY, split, device=torch.device("cpu"), amp=False, tracker=tracker,
                        checkpoint_path=ckpt_path, artifacts_dir=art)
    assert summary["steps"] == 2 * (40 // 8) and summary["epochs"] == 2
    assert all(math.isfinite(summary[k]) for k in STEP_KEYS)
    assert len(_rows(art / "history.csv")) == summary["steps"] // TINY.log_every
    assert [r["epoch"] for r in _rows(art / "epochs.csv")] == ["1", "2"]
    assert [s for s, _ in tracker.metrics["train/d_loss"]] == [2, 4, 6, 8, 10]
    assert tracker.metrics["d_acc"][-1] == (summary["steps"], summary["d_acc"])  # JSON's name
    assert sum(a == "grids" for _, a in tracker.artifacts) == 2

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ckpt["kind"] == "gan" and ckpt["epoch"] == 2 and ckpt["step"] == summary["steps"]
    assert set(ckpt["optimizers"]) == set(ckpt["state_dicts"]) == {"generator", "discriminator"}
    assert load_checkpoint(ckpt_path, "gan")["rng"]["torch"].dtype == torch.uint8
    G = build_generator(ckpt["model_config"])
    G.load_state_dict(ckpt["state_dicts"]["generator"])
    z = torch.randn(TINY.grid_images, TINY.latent_dim, generator=make_generator(TINY.seed + 2))
    with eval_mode(G):
        save_grid(G(z), tmp_path / "again.png")
    # The rebuilt generator redraws the last epoch's grid byte for byte.
    saved = art / "grids" / "samples_epoch002.png"
    assert (tmp_path / "again.png").read_bytes() == saved.read_bytes()


@pytest.mark.parametrize("loss", ["hinge", "non_saturating"])
def test_ema_generator_is_saved_as_the_sampler_beside_the_raw_weights(tmp_path, loss):
    import dataclasses

    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    split = Split(images, torch.zeros(40, dtype=torch.int64), ["a"])
    cfg = dataclasses.replace(TINY, ema_decay=0.9, loss=loss, spectral_norm=loss == "hinge")
    train_gan(cfg, split, device=torch.device("cpu"), amp=False, tracker=RecordingTracker(),
              checkpoint_path=tmp_path / "gan.pt", artifacts_dir=tmp_path / "art")
    ckpt = load_checkpoint(tmp_path / "gan.pt", "gan")
    assert set(ckpt["state_dicts"]) == {"generator", "generator_raw", "discriminator"}
    ema, raw = ckpt["state_dicts"]["generator"], ckpt["state_dicts"]["generator_raw"]
    assert ema.keys() == raw.keys()
    assert not torch.equal(ema["net.fc.0.weight"], raw["net.fc.0.weight"])
    G = build_generator(ckpt["model_config"])
    G.load_state_dict(ema)
    z = torch.randn(cfg.grid_images, cfg.latent_dim, generator=make_generator(cfg.seed + 2))
    with eval_mode(G):
        save_grid(G(z), tmp_path / "again.png")
    # the epoch grids are drawn by the EMA generator that evaluate will sample
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "art" / "grids" /
                                                    "samples_epoch002.png").read_bytes()


def test_recomputed_bn_statistics_are_the_mean_and_mean_batch_variance_of_the_noise():
    from genduel.train.gan import recompute_bn_stats

    G = Generator(TINY, (1, 28, 28))
    G.net.fc[1].running_mean.fill_(5.0)  # stale statistics of other weights
    noise = [torch.randn(16, TINY.latent_dim, generator=make_generator(s)) for s in range(3)]
    recompute_bn_stats(G, noise)
    assert not G.training
    bn = G.net.fc[1]
    with torch.no_grad():
        pre = [G.net.fc[0](z) for z in noise]  # the first BatchNorm's inputs, per batch
    # momentum None: a cumulative average of the batch statistics (equal batch sizes)
    torch.testing.assert_close(bn.running_mean, torch.cat(pre).mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bn.running_var, torch.stack([p.var(0) for p in pre]).mean(0),
                               atol=1e-5, rtol=1e-4)
