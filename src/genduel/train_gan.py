"""Training loop of the GAN: Algorithm 1 of Goodfellow et al. (2014) with Adam.

One *step* is one generator update: k = ``gan.d_steps`` discriminator updates, each on a fresh
real batch and fresh noise, then one generator update on fresh noise (see :func:`gan_train_step`).
An epoch is one pass over the shuffled training set in real batches, i.e.
``floor(N / batch_size) // k`` steps. Per epoch: a sample grid from a fixed noise batch, a row of
``epochs.csv`` and an atomic checkpoint, so a crash loses at most one epoch.

Randomness comes from explicit generators seeded from ``gan.seed``: the global RNG forked and
seeded with ``seed`` initialises the weights, ``seed`` shuffles the training set (CPU),
``seed + 1`` draws the training noise (on the device), ``seed + 2`` the fixed grid noise (CPU, so
grids match across devices).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genduel.checkpoint import save_checkpoint
from genduel.config import GANConfig
from genduel.errors import DataError, TrainingError
from genduel.models.gan import Discriminator, Generator, d_loss, g_loss
from genduel.runtime import autocast, eval_mode, make_generator, rng_state
from genduel.tracking import CsvLog, Tracker

if TYPE_CHECKING:
    from genduel.data import Split

log = logging.getLogger(__name__)

#: Keys returned by :func:`gan_train_step`, logged as ``train/<key>``.
STEP_KEYS = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc")
HISTORY_COLUMNS = ("step", "epoch", *STEP_KEYS)
EPOCH_COLUMNS = ("epoch", "step", *STEP_KEYS, "seconds")


def _check_finite(name: str, loss: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        state = "NaN" if torch.isnan(loss) else "infinite"
        raise TrainingError(
            f"gan {name} became {state} at step {step}; training diverged: lower gan.lr_d and "
            "gan.lr_g in params.yaml (or set runtime.amp: false)")


def _d_update(G: Generator, D: Discriminator, opt_d: torch.optim.Optimizer, x: torch.Tensor,
              *, generator: torch.Generator | None, amp_ctx: contextlib.AbstractContextManager,
              step: int) -> torch.Tensor:
    """One ascent step of D on V(D, G); returns [loss, sum D(x), sum D(G(z)), correct] (4,)."""
    z = G.sample_latent(x.shape[0], generator)  # (B, latent)
    with amp_ctx:
        with torch.no_grad():
            fake = G(z)  # (B, C, H, W); G gets no gradient from D's update
        # Separate real and fake passes, as in DCGAN: BatchNorm sees one kind per batch.
        real_logits, fake_logits = D(x), D(fake)  # (B,), (B,)
        loss = d_loss(real_logits.float(), fake_logits.float())
    _check_finite("d_loss", loss, step)
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    with torch.no_grad():
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        correct = (real_logits > 0).sum() + (fake_logits < 0).sum()  # threshold D = 0.5
        return torch.stack([loss.detach(), torch.sigmoid(real_logits).sum(),
                            torch.sigmoid(fake_logits).sum(), correct.float()])


def gan_train_step(G: Generator, D: Discriminator, opt_g: torch.optim.Optimizer,
                   opt_d: torch.optim.Optimizer, real_batches: Sequence[torch.Tensor],
                   cfg: GANConfig, *, generator: torch.Generator | None,
                   amp_ctx: contextlib.AbstractContextManager, step: int = 0) -> dict[str, float]:
    """One iteration of Algorithm 1 (Goodfellow et al., 2014): k D updates, then one G update.

    For each real batch x_j (j = 1..k): draw z ~ N(0, I) of the same size, and descend
    ``d_loss = -mean log D(x) - mean log(1 - D(G(z)))``. Then draw fresh z (batch size of the
    first real batch) and descend ``g_loss(l(G(z)), cfg.loss)``; D's weights get no gradient
    there (only its input does).

    Args:
        G, D: the networks (put in train mode here).
        opt_g, opt_d: optimizers over G's and D's parameters.
        real_batches: exactly ``cfg.d_steps`` batches (B, C, H, W) in [-1, 1] on G's device.
        cfg: uses ``d_steps`` and ``loss``.
        generator: draws the noise z (on G's device); None = global RNG.
        amp_ctx: a re-enterable context from :func:`genduel.runtime.autocast`.
        step: the global step number, for error messages only.

    Returns:
        ``d_loss`` (mean over the k updates), ``d_real`` = mean D(x), ``d_fake`` = mean D(G(z))
        and ``d_acc`` = accuracy of D at threshold 0.5 over the k updates' real and fake
        images (all measured before each D update), and ``g_loss`` of the G update (nats).

    Raises:
        TrainingError: a loss is NaN or infinite; raised before that optimizer step, so the
            weights are those of the last finite update.
        ValueError: ``len(real_batches) != cfg.d_steps``.
    """
    if len(real_batches) != cfg.d_steps:
        raise ValueError(f"gan_train_step needs gan.d_steps = {cfg.d_steps} real batches, "
                         f"got {len(real_batches)}")
    G.train()
    D.train()
    d_sums = torch.zeros(4, device=real_batches[0].device)
    for x in real_batches:
        d_sums += _d_update(G, D, opt_d, x, generator=generator, amp_ctx=amp_ctx, step=step)
    z = G.sample_latent(real_batches[0].shape[0], generator)  # (B, latent)
    D.requires_grad_(False)  # skip D's weight gradients: only dL/dx flows back into G
    try:
        with amp_ctx:
            loss_g = g_loss(D(G(z)).float(), cfg.loss)
        _check_finite("g_loss", loss_g, step)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
    finally:
        D.requires_grad_(True)
    opt_g.step()
    n_real = sum(x.shape[0] for x in real_batches)
    loss_d, s_real, s_fake, correct = d_sums.double().tolist()  # one device sync
    return {"d_loss": loss_d / len(real_batches), "g_loss": float(loss_g.detach()),
            "d_real": s_real / n_real, "d_fake": s_fake / n_real,
            "d_acc": correct / (2 * n_real)}


@dataclasses.dataclass
class _Run:
    """Everything the epoch loop shares; private to this module."""

    cfg: GANConfig
    G: Generator
    D: Discriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    device: torch.device
    amp: bool
    tracker: Tracker
    shuffle_gen: torch.Generator
    noise_gen: torch.Generator
    history: CsvLog
    step: int = 0
    images: int = 0  # real images consumed by D updates


def _groups(run: _Run, train: Split) -> tuple[int, Iterator[list[torch.Tensor]]]:
    """(steps per epoch, iterator over lists of k real batches); incomplete groups dropped."""
    from genduel.data import batches

    cfg = run.cfg
    drop_last = len(train) >= cfg.batch_size  # a batch of 1 would break BatchNorm
    n_batches = len(train) // cfg.batch_size if drop_last else 1
    it = (x for x, _ in batches(train, cfg.batch_size, shuffle=True, generator=run.shuffle_gen,
                                device=run.device, drop_last=drop_last))

    def grouped() -> Iterator[list[torch.Tensor]]:
        for _ in range(n_batches // cfg.d_steps):
            yield [next(it) for _ in range(cfg.d_steps)]

    return n_batches // cfg.d_steps, grouped()


def _train_epoch(run: _Run, train: Split, epoch: int) -> dict[str, float]:
    """One pass over the training set; logs window means every ``log_every`` G steps.

    Returns the epoch means of :data:`STEP_KEYS`.
    """
    from tqdm import tqdm

    total, groups = _groups(run, train)
    epoch_sum = dict.fromkeys(STEP_KEYS, 0.0)
    window, count = dict.fromkeys(STEP_KEYS, 0.0), 0
    bar = tqdm(total=total, desc=f"gan epoch {epoch}", leave=False,
               disable=not sys.stderr.isatty())
    for real in groups:
        run.step += 1
        run.images += sum(x.shape[0] for x in real)
        stats = gan_train_step(run.G, run.D, run.opt_g, run.opt_d, real, run.cfg,
                               generator=run.noise_gen, amp_ctx=autocast(run.device, run.amp),
                               step=run.step)
        window = {k: window[k] + stats[k] for k in STEP_KEYS}
        epoch_sum = {k: epoch_sum[k] + stats[k] for k in STEP_KEYS}
        count += 1
        bar.update(1)
        if run.step % run.cfg.log_every == 0:
            means = {k: v / count for k, v in window.items()}  # mean over the logging window
            run.tracker.log_metrics({f"train/{k}": v for k, v in means.items()}, step=run.step)
            run.history.append({"step": run.step, "epoch": epoch, **means})
            bar.set_postfix(d_loss=f"{means['d_loss']:.3f}", g_loss=f"{means['g_loss']:.3f}")
            window, count = dict.fromkeys(STEP_KEYS, 0.0), 0
    bar.close()
    return {k: v / max(total, 1) for k, v in epoch_sum.items()}


def _save(run: _Run, path: Path, epoch: int, extra: dict[str, Any]) -> None:
    """Atomic checkpoint of both nets, both optimizers, step, RNG states and model config."""
    generators = {"shuffle": run.shuffle_gen.get_state(), "noise": run.noise_gen.get_state()}
    save_checkpoint(path, {
        "kind": "gan", "model_config": run.G.model_config(),
        "state_dicts": {"generator": run.G.state_dict(), "discriminator": run.D.state_dict()},
        "optimizers": {"generator": run.opt_g.state_dict(),
                       "discriminator": run.opt_d.state_dict()},
        "step": run.step, "epoch": epoch, "rng": rng_state(),
        "extra": {**extra, "generators": generators},
    })


def _write_grid(run: _Run, z_grid: torch.Tensor, path: Path) -> None:
    """G(z_grid) in eval mode (BatchNorm running statistics, as evaluation samples)."""
    from genduel.data import save_grid

    with eval_mode(run.G):
        images = run.G(z_grid)  # (G, C, H, W) in [-1, 1]
    save_grid(images.float().cpu(), path)
    run.tracker.log_artifact(path, "grids")


def _build(cfg: GANConfig, image_shape: tuple[int, int, int],
           device: torch.device) -> tuple[Generator, Discriminator]:
    """Both nets, initialised from the global RNG forked and seeded with ``cfg.seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return Generator(cfg, image_shape).to(device), Discriminator(cfg, image_shape).to(device)


def train_gan(cfg: GANConfig, train: Split, *, device: torch.device, amp: bool,
              tracker: Tracker, checkpoint_path: Path, artifacts_dir: Path) -> dict[str, float]:
    """Train a :class:`Generator`/:class:`Discriminator` pair for ``cfg.epochs`` epochs.

    Both optimizers are Adam(lr_g | lr_d, betas=(beta1, beta2)). Writes ``checkpoint_path``
    after every epoch and, under ``artifacts_dir``: ``history.csv`` (one row per logged step:
    window means since the previous row), ``epochs.csv`` (epoch means and seconds) and
    ``samples_epochEEE.png`` (fixed noise, so epochs are comparable).

    Returns:
        The last epoch's means of :data:`STEP_KEYS`, ``train_seconds`` (wall time of the whole
        loop: training, grids, checkpoints), ``steps`` (G updates), ``epochs`` and
        ``train_images_per_s`` (real images consumed per second of training).
    """
    n_batches = len(train) // cfg.batch_size if len(train) >= cfg.batch_size else 1
    if len(train) < 2 or n_batches < cfg.d_steps:
        raise DataError(f"gan needs at least gan.d_steps = {cfg.d_steps} batches of "
                        f"gan.batch_size = {cfg.batch_size} training images, got {len(train)} "
                        "images; lower those or raise data.train_limit")
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    G, D = _build(cfg, tuple(train.image_shape), device)
    betas = (cfg.beta1, cfg.beta2)
    run = _Run(cfg, G, D, torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=betas),
               torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas), device, amp, tracker,
               make_generator(cfg.seed), make_generator(cfg.seed + 1, device),
               CsvLog(artifacts_dir / "history.csv", HISTORY_COLUMNS))
    epochs_csv = CsvLog(artifacts_dir / "epochs.csv", EPOCH_COLUMNS)
    z_grid = torch.randn(cfg.grid_images, cfg.latent_dim,
                         generator=make_generator(cfg.seed + 2)).to(device)  # (G, latent)
    start, train_time, means = time.perf_counter(), 0.0, dict.fromkeys(STEP_KEYS, float("nan"))
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        means = _train_epoch(run, train, epoch)
        train_time += time.perf_counter() - epoch_start
        _write_grid(run, z_grid, artifacts_dir / f"samples_epoch{epoch:03d}.png")
        seconds = time.perf_counter() - epoch_start
        tracker.log_metrics({**{f"epoch/{k}": v for k, v in means.items()}, "epoch": epoch},
                            step=run.step)
        epochs_csv.append({"epoch": epoch, "step": run.step, **means, "seconds": seconds})
        _save(run, Path(checkpoint_path), epoch, {"epoch_means": means, "loss": cfg.loss,
                                                  "d_steps": cfg.d_steps})
        log.info("gan epoch %d/%d: step %d, d_loss %.3f, g_loss %.3f, D(x) %.2f, D(G(z)) %.2f, "
                 "%.1f s", epoch, cfg.epochs, run.step, means["d_loss"], means["g_loss"],
                 means["d_real"], means["d_fake"], seconds)
    for table in (run.history.path, epochs_csv.path):
        tracker.log_artifact(table, "history")
    return {**means, "train_seconds": time.perf_counter() - start, "steps": run.step,
            "epochs": cfg.epochs, "train_images_per_s": run.images / max(train_time, 1e-9)}
