"""Training loop of the VAE: Adam on the negative (beta-)ELBO of 8-bit images, in nats per image.

Per step the loss is ``-(mean_B log p(x | z) - beta * mean_B KL)`` (sums over pixels and latent
dimensions, mean over the batch; see :func:`genduel.models.vae.vae_loss`). Per epoch: the
validation ELBO (nats per image and bits/dim), sample and reconstruction grids, a row of
``epochs.csv`` and an atomic checkpoint, so a crash loses at most one epoch.

Randomness comes from explicit generators seeded from ``vae.seed``: ``seed`` shuffles the
training set (CPU), ``seed + 1`` draws the training eps, ``seed + 2`` the fixed latents of the
sample grids (CPU, so grids match across devices), ``seed + 3`` the validation eps (re-seeded
every epoch, so validation curves do not carry sampling noise from epoch to epoch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from genduel.checkpoint import save_checkpoint
from genduel.config import VAEConfig
from genduel.errors import DataError, TrainingError
from genduel.likelihood import bits_per_dim
from genduel.models.vae import VAE, elbo_terms, num_dims, vae_loss
from genduel.runtime import autocast, eval_mode, make_generator, rng_state
from genduel.tracking import CsvLog, Tracker

if TYPE_CHECKING:
    from genduel.data import Split

log = logging.getLogger(__name__)

#: Keys returned by :func:`vae_train_step`, logged as ``train/<key>``.
STEP_KEYS = ("loss", "elbo_nats", "recon_nats", "kl_nats", "bits_per_dim")
HISTORY_COLUMNS = ("step", "epoch", *STEP_KEYS)
EPOCH_COLUMNS = ("epoch", "step", "val_elbo_nats", "val_bits_per_dim", "seconds")


def vae_train_step(model: VAE, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                   cfg: VAEConfig, *, amp_ctx: contextlib.AbstractContextManager,
                   step: int = 0, generator: torch.Generator | None = None,
                   y: torch.Tensor | None = None) -> dict[str, float]:
    """One optimizer step on a batch; the weights are left untouched if anything is not finite.

    The checks run before ``optimizer.step``, so on error the parameters and optimizer state are
    those of the previous step (BatchNorm running statistics have already seen the batch).

    Args:
        model: the VAE (put in train mode here).
        optimizer: over ``model.parameters()``.
        x: (B, C, H, W) images in [-1, 1] on the 8-bit grid, on the model's device.
        cfg: uses ``mc_samples`` (L) and ``beta``.
        amp_ctx: a fresh context from :func:`genduel.runtime.autocast`, around the forward pass.
        step: the global step number, for the error message only.
        generator: draws eps (on the model's device); None = global RNG.
        y: labels (B,) of the batch; used by a CVAE (the terms then bound log p(x | y)).

    Returns:
        Batch means in nats per image: ``loss``, ``elbo_nats``, ``recon_nats`` (= -log p(x | z)),
        ``kl_nats``; and ``bits_per_dim`` = -elbo / (D ln 2).

    Raises:
        TrainingError: the loss or the gradient norm is NaN or infinite.
    """
    model.train()
    with amp_ctx:
        terms = elbo_terms(model, x, cfg.mc_samples, generator, y if model.conditional else None)
        loss = vae_loss(terms, cfg.beta)
    if not torch.isfinite(loss):
        _diverged("loss", loss, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.get_total_norm(grads)
    if not torch.isfinite(grad_norm):
        _diverged("gradient norm", grad_norm, step)
    optimizer.step()
    stats = torch.stack([loss.detach(), terms.elbo_nats.detach().mean(),
                         -terms.log_px_z_nats.detach().mean(), terms.kl_nats.detach().mean()])
    loss_v, elbo, recon, kl = stats.double().tolist()  # one device sync
    bpd = bits_per_dim(elbo, num_dims(model.image_shape))
    return {"loss": loss_v, "elbo_nats": elbo, "recon_nats": recon, "kl_nats": kl,
            "bits_per_dim": bpd}


def _diverged(what: str, value: torch.Tensor, step: int) -> None:
    state = "NaN" if torch.isnan(value) else "infinite"
    raise TrainingError(
        f"vae {what} became {state} at step {step}; lower vae.lr (or vae.beta) in params.yaml, "
        "set runtime.amp: false, and check that the images are finite and in [-1, 1]"
    )


@dataclasses.dataclass
class _Run:
    """Everything the epoch loop shares; private to this module."""

    cfg: VAEConfig
    model: VAE
    optimizer: torch.optim.Optimizer
    device: torch.device
    amp: bool
    tracker: Tracker
    out_dir: Path
    shuffle_gen: torch.Generator
    noise_gen: torch.Generator
    history: CsvLog
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    step: int = 0


def _train_epoch(run: _Run, train: Split, epoch: int) -> None:
    """One pass over the shuffled training set; logs window means every ``log_every`` steps."""
    from tqdm import tqdm

    from genduel.data import batches

    cfg = run.cfg
    drop_last = len(train) >= cfg.batch_size  # a batch of 1 would break BatchNorm
    total = len(train) // cfg.batch_size if drop_last else 1
    window: dict[str, float] = dict.fromkeys(STEP_KEYS, 0.0)
    count = 0
    bar = tqdm(total=total, desc=f"vae epoch {epoch}", leave=False,
               disable=not sys.stderr.isatty())
    for x, y in batches(train, cfg.batch_size, shuffle=True, generator=run.shuffle_gen,
                        device=run.device, drop_last=drop_last):
        run.step += 1
        stats = vae_train_step(run.model, run.optimizer, x, cfg, step=run.step,
                               amp_ctx=autocast(run.device, run.amp), generator=run.noise_gen,
                               y=y)
        if run.scheduler is not None:
            run.scheduler.step()
        window = {k: window[k] + stats[k] for k in STEP_KEYS}
        count += 1
        bar.update(1)
        if run.step % cfg.log_every == 0:
            means = {k: v / count for k, v in window.items()}  # mean over the logging window
            run.tracker.log_metrics({f"train/{k}": v for k, v in means.items()}, step=run.step)
            run.history.append({"step": run.step, "epoch": epoch, **means})
            bar.set_postfix(elbo_nats=f"{means['elbo_nats']:.1f}")
            window, count = dict.fromkeys(STEP_KEYS, 0.0), 0
    bar.close()


def validation_elbo_nats(model: VAE, val: Split, cfg: VAEConfig, *, device: torch.device,
                         amp: bool) -> float:
    """Mean ELBO in nats per image over the whole split (eval mode, L = ``cfg.mc_samples``).

    Summed in float64 over images, divided by N; eps from a generator seeded ``cfg.seed + 3``.
    For a CVAE this is the ELBO of log p(x | y) with the true labels (the quantity trained).
    """
    from genduel.data import batches

    gen = make_generator(cfg.seed + 3, device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    with eval_mode(model):
        for x, y in batches(val, cfg.batch_size, shuffle=False, generator=None, device=device):
            with autocast(device, amp):
                terms = elbo_terms(model, x, cfg.mc_samples, gen,
                                   y if model.conditional else None)
            total += terms.elbo_nats.double().sum()
    return float(total) / len(val)


def _write_grids(run: _Run, val: Split, z_grid: torch.Tensor, epoch: int) -> None:
    """samples_epochEEE.png (decoder means at fixed z) and recon_epochEEE.png (x, recon pairs)."""
    from genduel.data import save_grid, to_model_range

    pairs = min(len(val), max(1, run.cfg.grid_images // 2))
    model = run.model
    grid_y = (torch.arange(len(z_grid), device=run.device) % model.num_classes
              if model.conditional else None)  # one column per class
    with eval_mode(model):
        samples = model.decode(z_grid, grid_y)[0]  # (G, C, H, W)
        x = to_model_range(val.images[:pairs]).to(run.device)  # (P, C, H, W)
        recon = model.reconstruct(x, val.labels[:pairs].to(run.device))
    interleaved = torch.stack([x, recon], dim=1).flatten(0, 1)  # (2P, C, H, W): x0, r0, x1, ...
    paths = (run.out_dir / f"samples_epoch{epoch:03d}.png",
             run.out_dir / f"recon_epoch{epoch:03d}.png")
    save_grid(samples.float().cpu(), paths[0], nrow=model.num_classes if grid_y is not None
              else None)
    save_grid(interleaved.float().cpu(), paths[1], nrow=2 * math.ceil(math.sqrt(pairs / 2)))
    for path in paths:
        run.tracker.log_artifact(path, "grids")


def _save(run: _Run, path: Path, epoch: int, extra: dict[str, float]) -> None:
    """Atomic checkpoint of weights, optimizer, step, RNG states and model config."""
    generators = {"shuffle": run.shuffle_gen.get_state(), "noise": run.noise_gen.get_state()}
    save_checkpoint(path, {
        "kind": "vae", "model_config": run.model.model_config(),
        "state_dicts": {"vae": run.model.state_dict()},
        "optimizers": {"vae": run.optimizer.state_dict()},
        "step": run.step, "epoch": epoch, "rng": rng_state(),
        "extra": {**extra, "generators": generators, "config": dataclasses.asdict(run.cfg)},
    })


def train_vae(cfg: VAEConfig, train: Split, val: Split, *, device: torch.device, amp: bool,
              tracker: Tracker, checkpoint_path: Path, artifacts_dir: Path) -> dict[str, float]:
    """Train a :class:`VAE` for ``cfg.epochs`` epochs; checkpoint and grids after every epoch.

    Writes ``checkpoint_path`` and, under ``artifacts_dir``: ``history.csv`` (one row per logged
    step: window means since the previous row), ``epochs.csv`` and the per-epoch grids.

    Returns:
        ``val_elbo_nats`` and ``val_bits_per_dim`` after the last epoch, ``train_seconds`` (wall
        time of the whole loop: training, validation, grids, checkpoints), ``steps``, ``epochs``.
    """
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"vae needs non-empty splits, got {len(train)} train and {len(val)} "
                        "validation images; check data.train_limit and data.val_size")
    if tuple(val.image_shape) != tuple(train.image_shape):
        raise DataError(f"train images are {train.image_shape} but val images {val.image_shape}")
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    model = VAE(cfg, tuple(train.image_shape), train.num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # Cosine decay to 0 over the run: the last epochs settle instead of bouncing at full lr.
    steps = cfg.epochs * max(1, len(train) // cfg.batch_size)
    run = _Run(cfg, model, optimizer, device, amp, tracker, artifacts_dir,
               make_generator(cfg.seed), make_generator(cfg.seed + 1, device),
               CsvLog(artifacts_dir / "history.csv", HISTORY_COLUMNS),
               torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps))
    epochs_csv = CsvLog(artifacts_dir / "epochs.csv", EPOCH_COLUMNS)
    z_grid = torch.randn(cfg.grid_images, cfg.latent_dim,
                         generator=make_generator(cfg.seed + 2)).to(device)  # (G, latent)
    dims, start = num_dims(model.image_shape), time.perf_counter()
    val_elbo = val_bpd = math.nan
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        _train_epoch(run, train, epoch)
        val_elbo = validation_elbo_nats(model, val, cfg, device=device, amp=amp)
        val_bpd = bits_per_dim(val_elbo, dims)
        seconds = time.perf_counter() - epoch_start
        tracker.log_metrics({"val/elbo_nats": val_elbo, "val/bits_per_dim": val_bpd,
                             "epoch": epoch}, step=run.step)
        epochs_csv.append({"epoch": epoch, "step": run.step, "val_elbo_nats": val_elbo,
                           "val_bits_per_dim": val_bpd, "seconds": seconds})
        _write_grids(run, val, z_grid, epoch)
        _save(run, Path(checkpoint_path), epoch,
              {"val_elbo_nats": val_elbo, "val_bits_per_dim": val_bpd})
        log.info("vae epoch %d/%d: step %d, val ELBO %.2f nats (%.4f bits/dim), %.1f s",
                 epoch, cfg.epochs, run.step, val_elbo, val_bpd, seconds)
    for table in (run.history.path, epochs_csv.path):
        tracker.log_artifact(table, "history")
    return {"val_elbo_nats": val_elbo, "val_bits_per_dim": val_bpd,
            "train_seconds": time.perf_counter() - start, "steps": run.step,
            "epochs": cfg.epochs}
