"""Training loop of the VAE: Adam on the negative (beta-)ELBO of 8-bit images, in nats per image.

Per step the loss is ``-(mean_B log p(x | z) - beta * mean_B KL)`` (sums over pixels and latent
dimensions, mean over the batch; see :func:`genduel.models.vae.vae_loss`). Per epoch: the
validation ELBO (nats per image and bits/dim), sample and reconstruction grids, a row of
``epochs.csv`` and an atomic checkpoint, so a crash loses at most one epoch.

Randomness comes from explicit generators seeded from ``vae.seed``: ``seed`` shuffles the
training set (CPU), ``seed + 1`` draws the training eps, ``seed + 2`` the fixed latents of the
sample grids (CPU, so grids match across devices), ``seed + 3`` the validation eps (re-seeded
every epoch, so validation curves do not carry sampling noise from epoch to epoch).

Data-parallel (``world``): the ELBO runs through :class:`ELBOModule` in DistributedDataParallel,
each rank draws its eps from its own stream (:meth:`~genduel.runtime.World.seed`; rank 0's is
the one-process stream), every rank validates (same weights, same value) and rank 0 alone writes
the grids, CSVs and checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from pathlib import Path

import torch

from genduel.config import VAEConfig
from genduel.data.pixels import save_grid, to_model_range
from genduel.data.splits import Split
from genduel.errors import DataError
from genduel.models.likelihood import bits_per_dim
from genduel.models.vae import VAE, ELBOTerms, elbo_terms, num_dims, vae_loss
from genduel.runtime import (
    ONE_PROCESS,
    World,
    autocast,
    data_parallel,
    eval_batches,
    eval_mode,
    make_generator,
)
from genduel.tracking.base import CsvLog, Tracker
from genduel.train import loop
from genduel.train.resume import Resume

log = logging.getLogger(__name__)

#: Keys returned by :func:`vae_train_step`, logged as ``train/<key>``.
STEP_KEYS = ("loss", "elbo_nats", "recon_nats", "kl_nats", "bits_per_dim")
HISTORY_COLUMNS = ("step", "epoch", *STEP_KEYS)
EPOCH_COLUMNS = ("epoch", "step", "val_elbo_nats", "val_bits_per_dim")
_FIX = ("lower vae.lr (or vae.beta) in params.yaml, set runtime.amp: false, and check that the "
        "images are finite and in [-1, 1]; the last good state is kept")


class ELBOModule(torch.nn.Module):
    """:func:`~genduel.models.vae.elbo_terms` of a VAE as a ``forward``: the call that
    DistributedDataParallel must see (it syncs gradients of what runs through ``forward``, and
    the ELBO calls ``encode``/``decode``)."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, y: torch.Tensor | None, mc_samples: int,
                generator: torch.Generator | None) -> ELBOTerms:
        return elbo_terms(self.vae, x, mc_samples, generator, y)


def vae_train_step(model: VAE, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                   cfg: VAEConfig, *, amp_ctx: contextlib.AbstractContextManager,
                   step: int = 0, generator: torch.Generator | None = None,
                   y: torch.Tensor | None = None, beta: float | None = None,
                   parallel: torch.nn.Module | None = None) -> dict[str, float]:
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
        beta: the KL weight of this step (:func:`kl_weight`); None = ``cfg.beta``.
        parallel: ``model``'s :class:`ELBOModule` in DistributedDataParallel (gradients
            averaged over ranks); None = one process.

    Returns:
        Batch means in nats per image: ``loss``, ``elbo_nats``, ``recon_nats`` (= -log p(x | z)),
        ``kl_nats``; and ``bits_per_dim`` = -elbo / (D ln 2).

    Raises:
        TrainingError: the loss or the gradient norm is NaN or infinite.
    """
    model.train()
    y = y if model.conditional else None
    with amp_ctx:
        terms = (elbo_terms(model, x, cfg.mc_samples, generator, y) if parallel is None
                 else parallel(x, y, cfg.mc_samples, generator))
        loss = vae_loss(terms, cfg.beta if beta is None else beta)
    loop.require_finite(loss, "vae loss", step, _FIX)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.get_total_norm(grads)
    loop.require_finite(grad_norm, "vae gradient norm", step, _FIX)
    optimizer.step()
    stats = torch.stack([loss.detach(), terms.elbo_nats.detach().mean(),
                         -terms.log_px_z_nats.detach().mean(), terms.kl_nats.detach().mean()])
    loss_v, elbo, recon, kl = stats.double().tolist()  # one device sync
    bpd = bits_per_dim(elbo, num_dims(model.image_shape))
    return {"loss": loss_v, "elbo_nats": elbo, "recon_nats": recon, "kl_nats": kl,
            "bits_per_dim": bpd}


def kl_weight(cfg: VAEConfig, step: int, steps_per_epoch: int) -> float:
    """The KL weight of training step ``step`` (1-based): ``beta * min(1, step / W)`` over
    ``W = vae.kl_warmup_epochs * steps_per_epoch`` steps, ``beta`` throughout without warm-up.

    A linear warm-up from 0 (Bowman et al. 2016; Sonderby et al. 2016) lets the decoder learn to
    use z before the KL term pulls q(z | x) to the prior; the objective is the ELBO again (with
    ``beta = 1``) once it ends, and the reported ELBO is always the true one.
    """
    warmup = cfg.kl_warmup_epochs * steps_per_epoch
    return cfg.beta if warmup <= 0 else cfg.beta * min(1.0, step / warmup)


def validation_elbo_nats(model: VAE, val: Split, cfg: VAEConfig, *, device: torch.device,
                         amp: bool) -> float:
    """Mean ELBO in nats per image over the whole split (eval mode, L = ``cfg.mc_samples``).

    Summed in float64 over images, divided by N; eps from a generator seeded ``cfg.seed + 3``.
    For a CVAE this is the ELBO of log p(x | y) with the true labels (the quantity trained).
    """
    gen = make_generator(cfg.seed + 3, device)

    def elbo_sum(sl: slice) -> torch.Tensor:
        x = to_model_range(val.images[sl]).to(device)  # (b, C, H, W)
        y = val.labels[sl].to(device) if model.conditional else None
        with autocast(device, amp):
            terms = elbo_terms(model, x, cfg.mc_samples, gen, y)
        return terms.elbo_nats.double().sum()

    total = torch.zeros((), dtype=torch.float64, device=device)
    for part in eval_batches(elbo_sum, len(val), cfg.batch_size, model,
                             desc="validation ELBO"):
        total += part  # batch by batch, in order
    return float(total) / len(val)


def _write_grids(model: VAE, val: Split, z_grid: torch.Tensor, out_dir: Path, epoch: int,
                 grid_images: int) -> tuple[Path, Path]:
    """grids/samples_epochEEE.png (decoder means at fixed z) and grids/recon_epochEEE.png
    (x, recon pairs): one folder of images, which dvc.yaml lists as DVC image plots."""
    device = z_grid.device
    pairs = min(len(val), max(1, grid_images // 2))
    grid_y = (torch.arange(len(z_grid), device=device) % model.num_classes
              if model.conditional else None)  # one column per class
    with eval_mode(model):
        samples = model.decode(z_grid, grid_y)[0]  # (G, C, H, W)
        x = to_model_range(val.images[:pairs]).to(device)  # (P, C, H, W)
        recon = model.reconstruct(x, val.labels[:pairs].to(device))
    interleaved = torch.stack([x, recon], dim=1).flatten(0, 1)  # (2P, C, H, W): x0, r0, x1, ...
    grid_dir = out_dir / "grids"
    grid_dir.mkdir(parents=True, exist_ok=True)
    paths = (grid_dir / f"samples_epoch{epoch:03d}.png", grid_dir / f"recon_epoch{epoch:03d}.png")
    save_grid(samples.float().cpu(), paths[0], nrow=model.num_classes if grid_y is not None
              else None)
    save_grid(interleaved.float().cpu(), paths[1], nrow=2 * math.ceil(math.sqrt(pairs / 2)))
    return paths


def train_vae(cfg: VAEConfig, train: Split, val: Split, *, device: torch.device, amp: bool,
              tracker: Tracker, checkpoint_path: Path, artifacts_dir: Path,
              world: World = ONE_PROCESS, resume: Resume | None = None) -> dict[str, float]:
    """Train a :class:`VAE` for ``cfg.epochs`` epochs; checkpoint and grids after every epoch.

    Writes ``checkpoint_path`` and, under ``artifacts_dir``: ``history.csv`` (one row per logged
    step: window means since the previous row), ``epochs.csv`` and the per-epoch grids. Logs
    those window means as ``train/<key>`` every ``cfg.log_every`` steps and ``val_elbo_nats``,
    ``val_bits_per_dim`` and ``epochs`` (completed) per epoch at the global step.

    The weights are drawn from the global RNG as the stage seeded it (``vae.seed``), not from a
    forked one as the judge's and the GAN's are: a fork would leave a different global state
    in the checkpoint and change ``models/vae.pt``.

    In a distributed ``world`` (one call per rank, process group joined) rank 0 writes every
    file and is the only one to use ``tracker``. ``resume`` (:class:`~genduel.train.resume.
    Resume`): the run continues from its saved state when there is one, and saves its own.

    Returns:
        ``val_elbo_nats`` and ``val_bits_per_dim`` after the last epoch, ``train_seconds`` (wall
        time of the whole loop: training, validation, grids, checkpoints), ``steps``, ``epochs``.
    """
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"vae needs non-empty splits, got {len(train)} train and {len(val)} "
                        "validation images; check data.train_limit and data.val_size")
    if tuple(val.image_shape) != tuple(train.image_shape):
        raise DataError(f"train images are {train.image_shape} but val images {val.image_shape}")
    artifacts_dir, main = Path(artifacts_dir), world.is_main
    tracker = loop.rank_tracker(tracker, world)
    if main:
        artifacts_dir.mkdir(parents=True, exist_ok=True)
    model = VAE(cfg, tuple(train.image_shape), train.num_classes).to(device)
    parallel = data_parallel(ELBOModule(model), world, device) if world.distributed else None
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # Cosine decay to 0 over the run: the last epochs settle instead of bouncing at full lr.
    total = loop.steps_per_epoch(len(train), cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                           T_max=cfg.epochs * max(1, total))
    shuffle_gen = make_generator(cfg.seed)
    noise_gen = make_generator(world.seed(cfg.seed + 1), device)
    history = CsvLog(artifacts_dir / "history.csv", HISTORY_COLUMNS) if main else None
    epochs_csv = CsvLog(artifacts_dir / "epochs.csv", EPOCH_COLUMNS) if main else None
    z_grid = torch.randn(cfg.grid_images, cfg.latent_dim,
                         generator=make_generator(cfg.seed + 2)).to(device)  # (G, latent)
    dims, progress, start = num_dims(model.image_shape), loop.Progress(), time.perf_counter()
    last = {"val_elbo_nats": math.nan, "val_bits_per_dim": math.nan}

    def step(batch: loop.Batch, step: int) -> dict[str, float]:
        (x, y), = batch
        return vae_train_step(model, optimizer, x, cfg, step=step,
                              amp_ctx=autocast(device, amp), generator=noise_gen, y=y,
                              beta=kl_weight(cfg, step, total), parallel=parallel)

    def on_log(epoch: int, step: int, means: dict[str, float]) -> None:
        tracker.log_metrics({f"train/{k}": v for k, v in means.items()}, step=step)
        if history is not None:
            history.append({"step": step, "epoch": epoch, **means})

    def on_epoch(epoch: int, _: dict[str, list[float]], epoch_start: float) -> None:
        val_elbo = validation_elbo_nats(model, val, cfg, device=device, amp=amp)
        last.update(val_elbo_nats=val_elbo, val_bits_per_dim=bits_per_dim(val_elbo, dims))
        seconds = time.perf_counter() - epoch_start
        tracker.log_metrics({**last, "epochs": epoch, "epoch_seconds": seconds},
                            step=progress.step)
        if epochs_csv is None:  # not rank 0: nothing to write
            return
        epochs_csv.append({"epoch": epoch, "step": progress.step, **last})
        for path in _write_grids(model, val, z_grid, artifacts_dir, epoch, cfg.grid_images):
            tracker.log_artifact(path, "grids")
        generators = {"shuffle": shuffle_gen.get_state(), "noise": noise_gen.get_state()}
        loop.save_state(Path(checkpoint_path), kind="vae", model_config=model.model_config(),
                        nets={"vae": model}, optimizers={"vae": optimizer}, progress=progress,
                        epoch=epoch, extra={**last, "generators": generators,
                                            "config": dataclasses.asdict(cfg)})
        log.info("vae epoch %d/%d: step %d, val ELBO %.2f nats (%.4f bits/dim), %.1f s",
                 epoch, cfg.epochs, progress.step, val_elbo, last["val_bits_per_dim"], seconds)

    resume = resume or Resume(None)
    resume.register(vae=model, optimizer=optimizer, scheduler=scheduler, shuffle=shuffle_gen,
                    noise=noise_gen, progress=progress, last=last)
    resume.track_files(*(t.path for t in (history, epochs_csv) if t is not None))
    resume.restore()
    spec = loop.EpochSpec("vae", STEP_KEYS, cfg.log_every, {"elbo_nats": ".1f"},
                          bounds={"loss": cfg.max_loss}, fix=_FIX)
    loop.fit(spec, cfg.epochs, progress, total=total, step_fn=step, on_log=on_log,
             on_epoch=on_epoch, on_step=[lambda _: scheduler.step()], world=world,
             device=device, shuffle=shuffle_gen, resume=resume,
             make_steps=lambda: loop.epoch_batches(train, cfg.batch_size, generator=shuffle_gen,
                                                   device=device, world=world))
    for table in (history, epochs_csv):
        if table is not None:
            tracker.log_artifact(table.path, "history")
    return {**last, "train_seconds": time.perf_counter() - start, "steps": progress.step,
            "epochs": cfg.epochs}
