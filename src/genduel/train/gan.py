"""Training loop of the GAN: Algorithm 1 of Goodfellow et al. (2014), Adam or SGD with momentum.

One *step* is one generator update: k = ``gan.d_steps`` discriminator (critic) updates, each on a
fresh real batch and fresh noise, then one generator update on fresh noise (see
:func:`gan_train_step`). ``gan.loss`` picks the objective: the minimax game with the saturating or
the non-saturating generator loss, the hinge loss, or WGAN-GP (critic loss plus ``gan.gp_weight``
times the gradient penalty); ``gan.r1_weight`` adds the R1 penalty on real images to the first
three. An epoch is one pass over the shuffled training set in real batches, i.e.
``floor(N / batch_size) // k`` steps. Per epoch: a sample grid from a fixed noise batch, a fixed
set of ``gan.diag_samples`` samples for the class-coverage diagnostic (``epoch_samples.pt``), a
row of ``epochs.csv`` (means and within-epoch std of the losses) and an atomic checkpoint, so a
crash loses at most one epoch.

Randomness comes from explicit generators seeded from ``gan.seed``: the global RNG forked and
seeded with ``seed`` initialises the weights, ``seed`` shuffles the training set (CPU),
``seed + 1`` draws the training noise (on the device), ``seed + 2`` the fixed grid noise and
``seed + 3`` the diagnostic noise (CPU, so grids match across devices).

Data-parallel (``world``): G and D each run in DistributedDataParallel on each rank's shard of
the real batches, with the rank's own noise stream (:meth:`~genduel.runtime.World.seed`; rank
0's is the one-process stream), so the fakes of a step are as many and as varied as in one
process. A network that only feeds another's update is called unwrapped (G making D's fakes
under ``no_grad``, D in G's update), so each wrapper's gradients are averaged exactly once per
update. WGAN-GP's penalty (a gradient of D's input gradient) runs through D's wrapper: the
penalty's ``autograd.grad`` touches no weight, and the one ``backward`` of the critic loss
averages D's weight gradients once. The EMA copy is updated on every rank (the same weights
everywhere) and rank 0 alone writes grids, samples, CSVs and the checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from genduel.config import GANConfig
from genduel.data.pixels import save_grid, to_uint8
from genduel.data.splits import Split
from genduel.errors import DataError
from genduel.io import atomic_write
from genduel.models.gan import (
    Discriminator,
    Generator,
    critic_loss,
    d_loss,
    g_loss,
    gradient_penalty,
    hinge_d_loss,
    r1_penalty,
)
from genduel.runtime import ONE_PROCESS, World, autocast, data_parallel, eval_mode, make_generator
from genduel.tracking.base import CsvLog, Tracker
from genduel.train import loop
from genduel.train.ema import EMA
from genduel.train.resume import Resume

log = logging.getLogger(__name__)

#: Noise batches (of ``gan.batch_size``) that recompute the EMA generator's BatchNorm statistics.
BN_BATCHES = 20

#: Keys returned by :func:`gan_train_step`, logged as ``train/<key>``.
STEP_KEYS = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc", "gp")
HISTORY_COLUMNS = ("step", "epoch", *STEP_KEYS)
#: Per epoch: means of STEP_KEYS over all steps, and the std of the step losses (oscillation).
EPOCH_COLUMNS = ("epoch", "step", *STEP_KEYS, "d_loss_std", "g_loss_std")
_FIX = ("training diverged: lower gan.lr_d and gan.lr_g in params.yaml (or set runtime.amp: "
        "false); the last good state is kept")


def _check_finite(name: str, loss: torch.Tensor, step: int) -> None:
    loop.require_finite(loss, f"gan {name}", step, _FIX)


def _d_update(G: Generator, D: Discriminator, opt_d: torch.optim.Optimizer, x: torch.Tensor,
              y: torch.Tensor | None, cfg: GANConfig, *, generator: torch.Generator | None,
              amp_ctx: contextlib.AbstractContextManager, step: int) -> torch.Tensor:
    """One D (critic) update; returns [loss, sum D(x), sum D(G(z)), correct, penalty] (5,).

    ``penalty`` is WGAN-GP's gradient penalty, or with ``gan.r1_weight`` > 0 the R1 penalty
    (:func:`~genduel.models.gan.r1_penalty`, added to the loss times ``r1_weight / 2``), lazily:
    at generator steps divisible by ``gan.r1_every`` only, then weighted ``r1_every`` times
    (StyleGAN2's lazy regularization; its double backward is the costly part of the update).

    For BCE and hinge losses D(.) is sigmoid(score) and "correct" thresholds it at 1/2 (the
    hinge decision boundary, score 0, is the same point). For WGAN-GP the
    sums are of raw critic scores and a score counts as "real" above the midpoint of the batch's
    mean real and mean fake scores (a critic has no absolute threshold). Fakes of a conditional G
    use the real batch's labels y, so D compares like with like.
    """
    z = G.sample_latent(x.shape[0], generator)  # (B, latent)
    r1 = cfg.r1_weight > 0 and cfg.loss != "wgan_gp" and step % cfg.r1_every == 0
    with amp_ctx:
        with torch.no_grad():
            fake = G(z, y)  # (B, C, H, W); G gets no gradient from D's update
        if r1:  # R1 differentiates D's real scores with respect to x
            x = x.detach().requires_grad_(True)
        # Separate real and fake passes, as in DCGAN: BatchNorm sees one kind per batch.
        real_out, fake_out = D(x, y).float(), D(fake, y).float()  # (B,), (B,)
        penalty = torch.zeros((), device=x.device)
        if cfg.loss == "wgan_gp":
            penalty = gradient_penalty(D, x, fake, y, generator).float()
            loss = critic_loss(real_out, fake_out) + cfg.gp_weight * penalty
        else:
            loss = (hinge_d_loss if cfg.loss == "hinge" else d_loss)(real_out, fake_out)
            if r1:
                penalty = r1_penalty(real_out, x)
                loss = loss + cfg.r1_weight * cfg.r1_every / 2 * penalty
    _check_finite("d_loss", loss, step)
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    with torch.no_grad():
        if cfg.loss == "wgan_gp":
            mid = (real_out.mean() + fake_out.mean()) / 2
            correct = (real_out > mid).sum() + (fake_out <= mid).sum()
            real_v, fake_v = real_out, fake_out
        else:
            correct = (real_out > 0).sum() + (fake_out < 0).sum()  # threshold D = 0.5
            real_v, fake_v = torch.sigmoid(real_out), torch.sigmoid(fake_out)
        return torch.stack([loss.detach(), real_v.sum(), fake_v.sum(), correct.float(),
                            penalty.detach()])


def _unwrap(net: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel wrapper (``net`` itself otherwise)."""
    return net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net


def gan_train_step(G: Generator, D: Discriminator, opt_g: torch.optim.Optimizer,
                   opt_d: torch.optim.Optimizer, real_batches: Sequence[torch.Tensor],
                   cfg: GANConfig, *, generator: torch.Generator | None,
                   amp_ctx: contextlib.AbstractContextManager, step: int = 0,
                   real_labels: Sequence[torch.Tensor] | None = None) -> dict[str, float]:
    """One iteration of Algorithm 1 (Goodfellow et al., 2014): k D updates, then one G update.

    For each real batch x_j (j = 1..k): draw z ~ N(0, I) of the same size, and descend
    ``d_loss = -mean log D(x) - mean log(1 - D(G(z)))`` (for WGAN-GP: ``mean f(G(z)) - mean f(x)
    + gp_weight * penalty``). Then draw fresh z (batch size of the first real batch) and descend
    ``g_loss(l(G(z)), cfg.loss)``; D's weights get no gradient there (only its input does).

    Args:
        G, D: the networks (put in train mode here), each possibly in DistributedDataParallel.
        opt_g, opt_d: optimizers over G's and D's parameters.
        real_batches: exactly ``cfg.d_steps`` batches (B, C, H, W) in [-1, 1] on G's device.
        cfg: uses ``d_steps``, ``loss`` and ``gp_weight``.
        generator: draws the noise z (on G's device); None = global RNG.
        amp_ctx: a re-enterable context from :func:`genduel.runtime.autocast`.
        step: the global step number, for error messages only.
        real_labels: the labels (B,) of each real batch; required by conditional nets (the G
            update then uses the first batch's labels).

    Returns:
        ``d_loss`` (mean over the k updates), ``d_real`` = mean D(x), ``d_fake`` = mean D(G(z))
        (critic scores for WGAN-GP), ``d_acc`` = accuracy of D over the k updates' real and fake
        images (all measured before each D update), ``gp`` = mean gradient penalty (WGAN-GP's,
        or R1's when ``cfg.r1_weight`` > 0; else 0), and ``g_loss`` of the G update.

    Raises:
        TrainingError: a loss is NaN or infinite; raised before that optimizer step, so the
            weights are those of the last finite update.
        ValueError: ``len(real_batches) != cfg.d_steps``.
    """
    if len(real_batches) != cfg.d_steps:
        raise ValueError(f"gan_train_step needs gan.d_steps = {cfg.d_steps} real batches, "
                         f"got {len(real_batches)}")
    g, d = _unwrap(G), _unwrap(D)
    labels = list(real_labels) if g.conditional else [None] * len(real_batches)
    if len(labels) != len(real_batches):
        raise ValueError("a conditional GAN needs one label batch per real batch")
    G.train()
    D.train()
    d_sums = torch.zeros(5, device=real_batches[0].device)
    for x, y in zip(real_batches, labels):
        d_sums += _d_update(g, D, opt_d, x, y, cfg, generator=generator, amp_ctx=amp_ctx,
                            step=step)
    z = g.sample_latent(real_batches[0].shape[0], generator)  # (B, latent)
    d.requires_grad_(False)  # skip D's weight gradients: only dL/dx flows back into G
    try:
        with amp_ctx:
            loss_g = g_loss(d(G(z, labels[0]), labels[0]).float(), cfg.loss)
        _check_finite("g_loss", loss_g, step)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
    finally:
        d.requires_grad_(True)
    opt_g.step()
    n_real = sum(x.shape[0] for x in real_batches)
    loss_d, s_real, s_fake, correct, penalty = d_sums.double().tolist()  # one device sync
    return {"d_loss": loss_d / len(real_batches), "g_loss": float(loss_g.detach()),
            "d_real": s_real / n_real, "d_fake": s_fake / n_real,
            "d_acc": correct / (2 * n_real), "gp": penalty / len(real_batches)}


@dataclasses.dataclass(frozen=True)
class _Fixed:
    """Fixed inputs drawn once, so every epoch's grid and diagnostic set are comparable."""

    z: torch.Tensor  # (N, latent) on the device
    y: torch.Tensor | None  # (N,) labels of a conditional G: 0, 1, ..., K-1, 0, 1, ...

    @classmethod
    def draw(cls, G: Generator, n: int, seed: int, device: torch.device) -> _Fixed:
        z = torch.randn(n, G.latent_dim, generator=make_generator(seed)).to(device)
        y = torch.arange(n, device=device) % G.num_classes if G.conditional else None
        return cls(z, y)

    def images(self, G: Generator) -> torch.Tensor:
        """G(z[, y]) in eval mode (BatchNorm running statistics, as evaluation samples), CPU."""
        with eval_mode(G):
            return G(self.z, self.y).float().cpu()  # (N, C, H, W) in [-1, 1]


class _Sampling(torch.nn.Module):
    """G as ``z -> G(z, y)`` with labels 0, 1, ..., K-1, 0, ... for a conditional G, the one-input
    form ``torch.optim.swa_utils.update_bn`` calls."""

    def __init__(self, G: Generator) -> None:
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = (torch.arange(len(z), device=z.device) % self.G.num_classes
             if self.G.conditional else None)
        return self.G(z, y)


def recompute_bn_stats(G: Generator, noise: Sequence[torch.Tensor]) -> None:
    """Replace G's BatchNorm running statistics by the exact mean and variance of its activations
    over the ``noise`` batches (``torch.optim.swa_utils.update_bn``); G is left in eval mode."""
    torch.optim.swa_utils.update_bn(noise, _Sampling(G))
    G.eval()


def _save_epoch_samples(samples: dict[str, list], path: Path) -> None:
    """``epoch_samples.pt``: {"epochs", "steps", "images": uint8 (E, N, C, H, W), "labels"}."""
    buf = io.BytesIO()
    torch.save({"epochs": samples["epochs"], "steps": samples["steps"],
                "images": torch.stack(samples["images"]), "labels": samples["labels"]}, buf)
    atomic_write(path, buf.getvalue())


def _optimizer(params: Iterator[torch.nn.Parameter], lr: float,
               cfg: GANConfig) -> torch.optim.Optimizer:
    """Adam(lr, (beta1, beta2)) as in DCGAN, or SGD with momentum as in the original GAN paper."""
    if cfg.optimizer == "sgd_momentum":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2))


def train_gan(cfg: GANConfig, train: Split, *, device: torch.device, amp: bool,
              tracker: Tracker, checkpoint_path: Path, artifacts_dir: Path,
              init_state: dict[str, torch.Tensor] | None = None,
              world: World = ONE_PROCESS, resume: Resume | None = None) -> dict[str, float]:
    """Train a :class:`Generator`/:class:`Discriminator` pair for ``cfg.epochs`` epochs.

    Both nets are initialised from the global RNG forked and seeded with ``cfg.seed``. The
    optimizers are ``gan.optimizer`` (Adam or SGD with momentum) at lr_g / lr_d. Writes
    ``checkpoint_path`` after every epoch and, under ``artifacts_dir``: ``history.csv`` (one row
    per logged step: window means since the previous row), ``epochs.csv`` (epoch means, loss std
    and seconds), ``grids/samples_epochEEE.png`` (fixed noise, so epochs are comparable; one row per
    class for a conditional G) and ``epoch_samples.pt`` (``gan.diag_samples`` uint8 samples of
    fixed noise after every epoch, for the class-coverage diagnostic of the evaluate stage).
    Logs the window means of ``history.csv`` as ``train/<key>``, and at the global step of each
    epoch's end the epoch means and loss stds of ``epochs.csv`` under their column names (the
    summary's names) and ``epochs`` (completed).

    Args:
        init_state: a generator state dict to start from (``gan.init_from_vae``: the VAE
            decoder's weights, see :mod:`genduel.train.gan_init`); None = random initialisation.
        world: this process's place in a data-parallel run (one call per rank, process group
            joined); rank 0 alone uses ``tracker`` and writes files.
        resume: the run's :class:`~genduel.train.resume.Resume`: it continues from the saved
            state when there is one, and saves its own.

    Returns:
        The last epoch's means of :data:`STEP_KEYS`, ``train_seconds`` (wall time of the whole
        loop: training, grids, checkpoints), ``steps`` (G updates), ``epochs`` and
        ``train_images_per_s`` (real images consumed per second of training).
    """
    total = loop.steps_per_epoch(len(train), cfg.batch_size, cfg.d_steps)
    if len(train) < 2 or total < 1:
        raise DataError(f"gan needs at least gan.d_steps = {cfg.d_steps} batches of "
                        f"gan.batch_size = {cfg.batch_size} training images, got {len(train)} "
                        "images; lower those or raise data.train_limit")
    artifacts_dir, main = Path(artifacts_dir), world.is_main
    tracker = loop.rank_tracker(tracker, world)
    if main:
        artifacts_dir.mkdir(parents=True, exist_ok=True)
    shape, k = tuple(train.image_shape), train.num_classes
    G, D = loop.build_seeded(cfg.seed, lambda: (Generator(cfg, shape, k).to(device),
                                                Discriminator(cfg, shape, k).to(device)))
    if init_state is not None:
        G.load_state_dict(init_state)
    ema = EMA(G, cfg.ema_decay) if cfg.ema_decay > 0 else None
    G_par, D_par = data_parallel(G, world, device), data_parallel(D, world, device)
    sampler = ema.model if ema is not None else G  # what grids, diagnostics and evaluate use
    bn_gen = make_generator(cfg.seed + 4)
    bn_noise = [torch.randn(cfg.batch_size, G.latent_dim, generator=bn_gen).to(device)
                for _ in range(BN_BATCHES if ema is not None else 0)]
    opt_g = _optimizer(G.parameters(), cfg.lr_g, cfg)
    opt_d = _optimizer(D.parameters(), cfg.lr_d, cfg)
    shuffle_gen = make_generator(cfg.seed)
    noise_gen = make_generator(world.seed(cfg.seed + 1), device)
    history = CsvLog(artifacts_dir / "history.csv", HISTORY_COLUMNS) if main else None
    epochs_csv = CsvLog(artifacts_dir / "epochs.csv", EPOCH_COLUMNS) if main else None
    grid, diag = (_Fixed.draw(G, n, cfg.seed + s, device)
                  for n, s in ((cfg.grid_images, 2), (cfg.diag_samples, 3)))
    diag_samples: dict[str, list] = {"epochs": [], "steps": [], "images": [],
                                     "labels": None if diag.y is None else diag.y.cpu()}
    progress, start = loop.Progress(), time.perf_counter()
    means = dict.fromkeys(STEP_KEYS, float("nan"))

    def step(batch: loop.Batch, step: int) -> dict[str, float]:
        out = gan_train_step(G_par, D_par, opt_g, opt_d, [x for x, _ in batch], cfg,
                             generator=noise_gen, amp_ctx=autocast(device, amp), step=step,
                             real_labels=[y for _, y in batch])
        if ema is not None:
            ema.update(G)
        return out

    def on_log(epoch: int, step: int, window: dict[str, float]) -> None:
        tracker.log_metrics({f"train/{k}": v for k, v in window.items()}, step=step)
        if history is not None:
            history.append({"step": step, "epoch": epoch, **window})

    def on_epoch(epoch: int, values: dict[str, list[float]], epoch_start: float) -> None:
        if ema is not None:
            recompute_bn_stats(ema.model, bn_noise)
        means.update(loop.epoch_means(values))
        means.update({f"{k}_std": loop.epoch_std(values[k]) for k in ("d_loss", "g_loss")})
        if epochs_csv is None:  # not rank 0: nothing to write
            return
        grid_path = artifacts_dir / "grids" / f"samples_epoch{epoch:03d}.png"  # a DVC image plot
        grid_path.parent.mkdir(parents=True, exist_ok=True)
        save_grid(grid.images(sampler), grid_path,
                  nrow=G.num_classes if G.conditional else None)
        tracker.log_artifact(grid_path, "grids")
        if cfg.diag_samples:
            for key, value in (("epochs", epoch), ("steps", progress.step),
                               ("images", to_uint8(diag.images(sampler)))):
                diag_samples[key].append(value)
            _save_epoch_samples(diag_samples, artifacts_dir / "epoch_samples.pt")
        seconds = time.perf_counter() - epoch_start
        tracker.log_metrics({**means, "epochs": epoch, "epoch_seconds": seconds},
                            step=progress.step)  # summary names
        epochs_csv.append({"epoch": epoch, "step": progress.step, **means})
        generators = {"shuffle": shuffle_gen.get_state(), "noise": noise_gen.get_state()}
        loop.save_state(Path(checkpoint_path), kind="gan", model_config=G.model_config(),
                        nets={"generator": sampler, "discriminator": D,
                              **({"generator_raw": G} if ema is not None else {})},
                        optimizers={"generator": opt_g, "discriminator": opt_d},
                        progress=progress, epoch=epoch,
                        extra={"epoch_means": dict(means), "loss": cfg.loss,
                               "d_steps": cfg.d_steps, "generators": generators,
                               "config": dataclasses.asdict(cfg)})
        log.info("gan epoch %d/%d: step %d, d_loss %.3f, g_loss %.3f, D(x) %.2f, D(G(z)) %.2f, "
                 "D acc %.2f, %.1f s", epoch, cfg.epochs, progress.step, means["d_loss"],
                 means["g_loss"], means["d_real"], means["d_fake"], means["d_acc"], seconds)

    resume = resume or Resume(None)
    resume.register(generator=G, discriminator=D, opt_g=opt_g, opt_d=opt_d, shuffle=shuffle_gen,
                    noise=noise_gen, progress=progress, means=means, diag=diag_samples,
                    **({"ema": ema} if ema is not None else {}))
    resume.track_files(*(t.path for t in (history, epochs_csv) if t is not None))
    resume.restore()
    spec = loop.EpochSpec("gan", STEP_KEYS, cfg.log_every, {"d_loss": ".3f", "g_loss": ".3f"},
                          bounds={"d_loss": cfg.max_loss, "g_loss": cfg.max_loss}, fix=_FIX)
    loop.fit(spec, cfg.epochs, progress, total=total, step_fn=step, on_log=on_log,
             on_epoch=on_epoch, world=world, device=device, shuffle=shuffle_gen, resume=resume,
             make_steps=lambda: loop.epoch_batches(train, cfg.batch_size, generator=shuffle_gen,
                                                   device=device, group=cfg.d_steps, world=world))
    for table in (history, epochs_csv):
        if table is not None:
            tracker.log_artifact(table.path, "history")
    last = {k: means[k] for k in STEP_KEYS}
    return {**last, "train_seconds": time.perf_counter() - start, "steps": progress.step,
            "epochs": cfg.epochs, "train_images_per_s": progress.images_per_s}
