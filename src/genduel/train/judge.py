"""Training of the judge: AdamW and a one-cycle learning rate on the cross-entropy.

Per step the loss is the mean over the batch of ``-log softmax(logits)[y]`` (nats). Per epoch:
validation accuracy and NLL, and an atomic checkpoint; after the last epoch the test accuracy and
NLL, which the evaluate stage reports next to every judge-based metric.

Randomness: the global RNG forked and seeded with ``judge.seed`` initialises the weights (and
drives dropout); ``seed`` also seeds the CPU generator that shuffles the training set.

Data-parallel (``world``): the judge runs in DistributedDataParallel on each rank's shard of the
global batch; every rank evaluates (same weights up to BatchNorm running statistics, which are
rank 0's at every forward) and rank 0 alone logs and writes the checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genduel.config import JudgeConfig
from genduel.data.pixels import to_model_range
from genduel.data.splits import Split
from genduel.errors import DataError
from genduel.models.judge import Judge
from genduel.runtime import (
    ONE_PROCESS,
    World,
    autocast,
    data_parallel,
    eval_batches,
    make_generator,
)
from genduel.tracking.base import Tracker
from genduel.train import loop
from genduel.train.resume import Resume

log = logging.getLogger(__name__)

#: Keys returned by :func:`judge_train_step`, logged as ``train/<key>``.
STEP_KEYS = ("loss", "acc")
#: Batch size of :func:`evaluate_accuracy` in :func:`train_judge` (<= 250 is fastest on CPU).
EVAL_BATCH = 250

_FIX = ("lower judge.lr in params.yaml (or set runtime.amp: false) and check the images; the "
        "last good state is kept")


def judge_train_step(model: Judge | torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                     y: torch.Tensor, *, amp_ctx: contextlib.AbstractContextManager,
                     step: int = 0) -> dict[str, float]:
    """One optimizer step on the mean cross-entropy of a batch.

    Args:
        model: the judge (put in train mode here), or the judge in DistributedDataParallel.
        opt: optimizer over ``model.parameters()``.
        x: (B, C, H, W) images in [-1, 1]; y: (B,) int64 labels in [0, K).
        amp_ctx: a context from :func:`genduel.runtime.autocast`, around the forward pass.
        step: the global step number, for the error message only.

    Returns:
        ``loss`` = mean_B -log p(y | x) (nats) and ``acc`` = mean_B [argmax logits = y].

    Raises:
        TrainingError: the loss is NaN or infinite (raised before ``opt.step``).
    """
    model.train()
    with amp_ctx:
        logits = model(x).logits.float()  # (B, K)
    loss = F.cross_entropy(logits, y)  # log_softmax inside: stable
    loop.require_finite(loss, "judge loss", step, _FIX)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    acc = (logits.detach().argmax(1) == y).float().mean()
    loss_v, acc_v = torch.stack([loss.detach(), acc]).double().tolist()  # one device sync
    return {"loss": loss_v, "acc": acc_v}


def evaluate_accuracy(model: Judge, split: Split, batch_size: int,
                      device: torch.device) -> tuple[float, float]:
    """(accuracy, mean NLL in nats) of ``model`` on a whole split, in eval mode.

    NLL = (1/N) sum_i -log softmax(logits_i)[y_i], summed in float64.
    """
    if len(split) == 0:
        raise DataError("cannot evaluate the judge on an empty split")

    def score(sl: slice) -> torch.Tensor:
        x, y = to_model_range(split.images[sl]).to(device), split.labels[sl].to(device)
        logits = model(x).logits.float()  # (b, K)
        return torch.stack([F.cross_entropy(logits, y, reduction="sum").double(),
                            (logits.argmax(1) == y).sum().double()])

    total = torch.zeros(2, dtype=torch.float64, device=device)
    for part in eval_batches(score, len(split), batch_size, model,
                             desc="judge accuracy"):
        total += part  # batch by batch, in order: the same float64 sums on every run
    nll, correct = total.tolist()
    return float(correct) / len(split), float(nll) / len(split)


def train_judge(cfg: JudgeConfig, train: Split, val: Split, test: Split, *,
                device: torch.device, amp: bool, tracker: Tracker,
                checkpoint_path: Path, world: World = ONE_PROCESS,
                resume: Resume | None = None) -> dict[str, float]:
    """Train a :class:`Judge` for ``cfg.epochs`` epochs; checkpoint after every epoch.

    AdamW(lr, weight_decay) with a one-cycle schedule: the learning rate rises from lr/25 to
    ``cfg.lr`` over the first 30 % of steps, then anneals (cosine) to lr/25e4. Logs
    ``train/loss``, ``train/acc`` and ``train/lr`` every ``cfg.log_every`` steps, ``val_accuracy``,
    ``val_nll`` and ``epochs`` (completed) per epoch, ``test_accuracy`` and ``test_nll`` at the
    end, each at the global step (the names of the returned summary). In a distributed
    ``world`` (one call per rank) only rank 0 uses ``tracker`` and writes the checkpoint.

    Returns:
        ``test_accuracy``, ``test_nll``, ``val_accuracy``, ``val_nll`` (nats per image),
        ``train_seconds`` (the whole loop, evaluation included), ``steps``, ``epochs`` and
        ``train_images_per_s`` (optimizer steps only).
    """
    for name, split in (("train", train), ("val", val), ("test", test)):
        if len(split) == 0:
            raise DataError(f"judge needs a non-empty {name} split; check data.train_limit "
                            "and data.val_size")
        if tuple(split.image_shape) != tuple(train.image_shape):
            raise DataError(f"{name} images are {split.image_shape}, train {train.image_shape}")
    model = loop.build_seeded(cfg.seed, lambda: Judge(cfg, tuple(train.image_shape),
                                                      train.num_classes)).to(device)
    parallel, tracker = data_parallel(model, world, device), loop.rank_tracker(tracker, world)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = loop.steps_per_epoch(len(train), cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr,
                                                total_steps=cfg.epochs * total)
    shuffle_gen, progress, start = make_generator(cfg.seed), loop.Progress(), time.perf_counter()
    val_scores = {"val_accuracy": float("nan"), "val_nll": float("nan")}

    def step(batch: loop.Batch, step: int) -> dict[str, float]:
        (x, y), = batch
        return judge_train_step(parallel, opt, x, y, amp_ctx=autocast(device, amp), step=step)

    def on_log(epoch: int, step: int, means: dict[str, float]) -> None:
        tracker.log_metrics({**{f"train/{k}": v for k, v in means.items()},
                             "train/lr": sched.get_last_lr()[0]}, step=step)

    def save(epoch: int, extra: dict[str, float]) -> None:
        if not world.is_main:
            return
        loop.save_state(Path(checkpoint_path), kind="judge", model_config=model.model_config(),
                        nets={"judge": model}, optimizers={"judge": opt}, progress=progress,
                        epoch=epoch, extra=extra)

    def on_epoch(epoch: int, _: dict[str, list[float]], epoch_start: float) -> None:
        acc, nll = evaluate_accuracy(model, val, EVAL_BATCH, device)
        val_scores.update(val_accuracy=acc, val_nll=nll)
        tracker.log_metrics({**val_scores, "epochs": epoch}, step=progress.step)
        save(epoch, dict(val_scores))
        log.info("judge epoch %d/%d: step %d, val acc %.4f, val nll %.4f, %.1f s", epoch,
                 cfg.epochs, progress.step, acc, nll, time.perf_counter() - epoch_start)

    resume = resume or Resume(None)
    resume.register(judge=model, optimizer=opt, scheduler=sched, shuffle=shuffle_gen,
                    progress=progress, val_scores=val_scores)
    resume.restore()
    spec = loop.EpochSpec("judge", STEP_KEYS, cfg.log_every, {"loss": ".3f", "acc": ".3f"},
                          bounds={"loss": cfg.max_loss}, fix=_FIX)
    loop.fit(spec, cfg.epochs, progress, total=total, step_fn=step, on_log=on_log,
             on_epoch=on_epoch, on_step=[lambda _: sched.step()], world=world, device=device,
             shuffle=shuffle_gen, resume=resume,
             make_steps=lambda: loop.epoch_batches(train, cfg.batch_size, generator=shuffle_gen,
                                                   device=device, world=world))
    test_acc, test_nll = evaluate_accuracy(model, test, EVAL_BATCH, device)
    tracker.log_metrics({"test_accuracy": test_acc, "test_nll": test_nll}, step=progress.step)
    save(cfg.epochs, {"test_accuracy": test_acc, "test_nll": test_nll, **val_scores})
    log.info("judge test accuracy %.4f (nll %.4f)", test_acc, test_nll)
    return {"test_accuracy": test_acc, "test_nll": test_nll, **val_scores,
            "train_seconds": time.perf_counter() - start, "steps": progress.step,
            "epochs": cfg.epochs, "train_images_per_s": progress.images_per_s}
