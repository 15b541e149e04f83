"""Training loop of the judge: AdamW and a one-cycle learning rate on the cross-entropy.

Per step the loss is the mean over the batch of ``-log softmax(logits)[y]`` (nats). Per epoch:
validation accuracy and NLL, and an atomic checkpoint; after the last epoch the test accuracy and
NLL, which the evaluate stage reports next to every judge-based metric.

Randomness: the global RNG forked and seeded with ``judge.seed`` initialises the weights (and
drives dropout); ``seed`` also seeds the CPU generator that shuffles the training set.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from genduel.checkpoint import save_checkpoint
from genduel.config import JudgeConfig
from genduel.errors import DataError, TrainingError
from genduel.models.judge import Judge
from genduel.runtime import autocast, eval_mode, make_generator, rng_state
from genduel.tracking import Tracker

if TYPE_CHECKING:
    from genduel.data import Split

log = logging.getLogger(__name__)

#: Training steps per logged ``train/loss`` and ``train/acc`` point (window means).
LOG_EVERY = 20
#: Batch size of :func:`evaluate_accuracy` in :func:`train_judge` (<= 250 is fastest on CPU).
EVAL_BATCH = 250


def judge_train_step(model: Judge, opt: torch.optim.Optimizer, x: torch.Tensor,
                     y: torch.Tensor, *, amp_ctx: contextlib.AbstractContextManager,
                     step: int = 0) -> dict[str, float]:
    """One optimizer step on the mean cross-entropy of a batch.

    Args:
        model: the judge (put in train mode here).
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
    if not torch.isfinite(loss):
        state = "NaN" if torch.isnan(loss) else "infinite"
        raise TrainingError(f"judge loss became {state} at step {step}; lower judge.lr in "
                            "params.yaml (or set runtime.amp: false) and check the images")
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
    from genduel.data import batches

    if len(split) == 0:
        raise DataError("cannot evaluate the judge on an empty split")
    correct = torch.zeros((), dtype=torch.float64, device=device)
    nll = torch.zeros((), dtype=torch.float64, device=device)
    with eval_mode(model):
        for x, y in batches(split, batch_size, shuffle=False, device=device):
            logits = model(x).logits.float()  # (b, K)
            nll += F.cross_entropy(logits, y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
    return float(correct) / len(split), float(nll) / len(split)


def _train_epoch(model: Judge, opt: torch.optim.Optimizer,
                 sched: torch.optim.lr_scheduler.LRScheduler, train: Split, cfg: JudgeConfig,
                 *, epoch: int, step: int, shuffle_gen: torch.Generator, device: torch.device,
                 amp: bool, tracker: Tracker) -> int:
    """One pass over the shuffled training set; returns the global step after it."""
    from tqdm import tqdm

    from genduel.data import batches

    drop_last = len(train) >= cfg.batch_size  # a batch of 1 would break BatchNorm
    window, count = {"loss": 0.0, "acc": 0.0}, 0
    bar = tqdm(total=_steps_per_epoch(len(train), cfg.batch_size), desc=f"judge epoch {epoch}",
               leave=False, disable=not sys.stderr.isatty())
    for x, y in batches(train, cfg.batch_size, shuffle=True, generator=shuffle_gen,
                        device=device, drop_last=drop_last):
        step += 1
        stats = judge_train_step(model, opt, x, y, amp_ctx=autocast(device, amp), step=step)
        sched.step()
        window = {k: window[k] + stats[k] for k in window}
        count += 1
        bar.update(1)
        if step % LOG_EVERY == 0:
            means = {f"train/{k}": v / count for k, v in window.items()}
            tracker.log_metrics({**means, "train/lr": sched.get_last_lr()[0]}, step=step)
            bar.set_postfix(loss=f"{means['train/loss']:.3f}", acc=f"{means['train/acc']:.3f}")
            window, count = {"loss": 0.0, "acc": 0.0}, 0
    bar.close()
    return step


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return n // batch_size if n >= batch_size else 1


def _save(path: Path, model: Judge, opt: torch.optim.Optimizer, step: int, epoch: int,
          extra: dict[str, float]) -> None:
    save_checkpoint(path, {
        "kind": "judge", "model_config": model.model_config(),
        "state_dicts": {"judge": model.state_dict()}, "optimizers": {"judge": opt.state_dict()},
        "step": step, "epoch": epoch, "rng": rng_state(), "extra": extra,
    })


def _build(cfg: JudgeConfig, train: Split, device: torch.device) -> Judge:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = Judge(cfg, tuple(train.image_shape), train.num_classes)
    return model.to(device)


def train_judge(cfg: JudgeConfig, train: Split, val: Split, test: Split, *,
                device: torch.device, amp: bool, tracker: Tracker,
                checkpoint_path: Path) -> dict[str, float]:
    """Train a :class:`Judge` for ``cfg.epochs`` epochs; checkpoint after every epoch.

    AdamW(lr, weight_decay) with a one-cycle schedule: the learning rate rises from lr/25 to
    ``cfg.lr`` over the first 30 % of steps, then anneals (cosine) to lr/25e4. Logs
    ``train/loss``, ``train/acc`` and ``train/lr`` every :data:`LOG_EVERY` steps, ``val/acc``
    and ``val/nll`` per epoch, ``test/acc`` and ``test/nll`` at the end.

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
    model = _build(cfg, train, device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * _steps_per_epoch(len(train), cfg.batch_size))
    shuffle_gen, step, start, fit_time = make_generator(cfg.seed), 0, time.perf_counter(), 0.0
    val_acc = val_nll = float("nan")
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        step = _train_epoch(model, opt, sched, train, cfg, epoch=epoch, step=step,
                            shuffle_gen=shuffle_gen, device=device, amp=amp, tracker=tracker)
        fit_time += time.perf_counter() - t0
        val_acc, val_nll = evaluate_accuracy(model, val, EVAL_BATCH, device)
        tracker.log_metrics({"val/acc": val_acc, "val/nll": val_nll, "epoch": epoch}, step=step)
        _save(Path(checkpoint_path), model, opt, step, epoch,
              {"val_accuracy": val_acc, "val_nll": val_nll})
        log.info("judge epoch %d/%d: step %d, val acc %.4f, val nll %.4f, %.1f s", epoch,
                 cfg.epochs, step, val_acc, val_nll, time.perf_counter() - t0)
    test_acc, test_nll = evaluate_accuracy(model, test, EVAL_BATCH, device)
    tracker.log_metrics({"test/acc": test_acc, "test/nll": test_nll}, step=step)
    _save(Path(checkpoint_path), model, opt, step, cfg.epochs,
          {"test_accuracy": test_acc, "test_nll": test_nll, "val_accuracy": val_acc,
           "val_nll": val_nll})
    log.info("judge test accuracy %.4f (nll %.4f)", test_acc, test_nll)
    images = step * cfg.batch_size if len(train) >= cfg.batch_size else step * len(train)
    return {"test_accuracy": test_acc, "test_nll": test_nll, "val_accuracy": val_acc,
            "val_nll": val_nll, "train_seconds": time.perf_counter() - start, "steps": step,
            "epochs": cfg.epochs, "train_images_per_s": images / max(fit_time, 1e-9)}
