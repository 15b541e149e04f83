"""The one epoch skeleton every trainer shares.

A trainer (``judge``, ``vae``, ``gan``) supplies only what is its own: a step function that
takes a :data:`Batch` and returns named floats, what it logs every ``log_every`` steps, and what
it does at the end of an epoch (validation, grids, the checkpoint's ``extra``). This module owns
the rest, once:

- iteration over a preloaded split: a seeded permutation per epoch, batches of ``batch_size``
  grouped ``group`` at a time (the GAN's k discriminator batches per generator step), and the
  drop_last rule (:func:`steps_per_epoch`);
- the progress bar and the window means logged every ``log_every`` steps;
- the NaN guard (:func:`require_finite`) that every step function calls before its optimizer
  step;
- the checkpoint layout (:func:`save_state`: weights, optimizers, :class:`Progress`, RNG states,
  model config), written atomically after every epoch;
- building a model from a seed without disturbing the global RNG (:func:`build_seeded`).

Data-parallel runs (torchrun, :class:`~genduel.runtime.World`): every rank draws the same
seeded permutation and :func:`epoch_batches` gives it its contiguous shard of each global batch
(``batch_size`` stays the global batch, so the data of a step does not depend on the number of
processes); :func:`run_epoch` averages the step statistics over ranks, so what is logged is the
global batch mean; :func:`rank_tracker` gives ranks other than 0 a tracker that records nothing,
and the trainers write files on rank 0 alone.

Seams for later work: :class:`Progress` holds the loop's whole state and round-trips through
``state_dict``/``load_state_dict`` (resume); ``on_step`` hooks run after every optimizer step
(EMA of weights).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from genduel import interrupts
from genduel.checkpoint import save_checkpoint
from genduel.data.splits import batches
from genduel.errors import TrainingError
from genduel.runtime import ONE_PROCESS, NullTracker, World, all_mean, rng_state
from genduel.runtime import progress as progress_bar
from genduel.tracking.base import Tracker
from genduel.train.resume import Resume

if TYPE_CHECKING:
    from genduel.data.splits import Split

M = TypeVar("M")

#: ``group`` real batches ``(x (B, C, H, W) in [-1, 1], y (B,))``; group = 1 but for a GAN's k.
Batch = list[tuple[torch.Tensor, torch.Tensor]]
#: A trainer's step: (batch, global step number) -> named floats (means over the batch).
StepFn = Callable[[Batch, int], dict[str, float]]


def steps_per_epoch(n: int, batch_size: int, group: int = 1) -> int:
    """Steps in one pass over ``n`` images.

    Full batches only (a last batch of 1 would break BatchNorm's batch statistics), except that
    a split smaller than one batch is one batch; groups of ``group`` batches, incomplete ones
    dropped.
    """
    n_batches = n // batch_size if n >= batch_size else 1
    return n_batches // group


def epoch_batches(split: Split, batch_size: int, *, generator: torch.Generator,
                  device: torch.device, group: int = 1,
                  world: World = ONE_PROCESS) -> Iterator[Batch]:
    """The batches of one epoch in the order of a fresh permutation drawn from ``generator``.

    In a distributed ``world`` every rank draws the same permutation (same seed) and keeps its
    contiguous part of each global batch of ``batch_size``.
    """
    drop_last = len(split) >= batch_size  # see steps_per_epoch
    it = batches(split, batch_size, shuffle=True, generator=generator, device=device,
                 drop_last=drop_last, shard=world.rank, num_shards=world.size)
    for _ in range(steps_per_epoch(len(split), batch_size, group)):
        yield [next(it) for _ in range(group)]


def require_finite(value: torch.Tensor, what: str, step: int, fix: str) -> None:
    """Raise :class:`TrainingError` ``"<what> became NaN at step <step>; <fix>"`` unless finite."""
    if not torch.isfinite(value):
        state = "NaN" if torch.isnan(value) else "infinite"
        raise TrainingError(f"{what} became {state} at step {step}; {fix}")


@dataclasses.dataclass
class Progress:
    """The loop's own state: everything besides weights, optimizers and RNGs that a resumed
    run needs to continue where the last save left off, mid-epoch included."""

    step: int = 0  # optimizer steps (G steps for a GAN) taken so far
    epoch: int = 0  # epochs completed
    images: int = 0  # training images consumed by optimizer steps
    fit_seconds: float = 0.0  # wall time inside the epoch loops (no validation, no grids)
    # The epoch in flight: steps done, the shuffle generator's state at its start (its data
    # order), the per-step values so far and the open logging window.
    epoch_step: int = 0
    shuffle_state: torch.Tensor | None = None
    values: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    window: dict[str, float] = dataclasses.field(default_factory=dict)
    window_count: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, state[f.name])

    def start_epoch(self, keys: Sequence[str]) -> None:
        """Empty per-epoch accumulators (a new epoch, not a resumed one)."""
        self.epoch_step, self.window_count = 0, 0
        self.values = {k: [] for k in keys}
        self.window = dict.fromkeys(keys, 0.0)

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.fit_seconds, 1e-9)


@dataclasses.dataclass(frozen=True)
class EpochSpec:
    """How a trainer's epoch is shown and logged."""

    name: str  # "judge", "vae", "gan": the progress bar reads "<name> epoch <e>"
    keys: tuple[str, ...]  # what the step function returns; window means of these are logged
    log_every: int  # steps per logged window
    postfix: Mapping[str, str]  # key -> format spec shown on the progress bar
    # Divergence: |value| of these keys above the bound stops the run (TrainingError).
    bounds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    fix: str = ""  # what the divergence error tells the user to do


def check_bounds(spec: EpochSpec, stats: Mapping[str, float], step: int) -> None:
    """Raise :class:`TrainingError` when a value is not finite or beyond its bound in
    ``spec.bounds``: the run diverged."""
    for key, bound in spec.bounds.items():
        value = stats[key]
        if not math.isfinite(value) or abs(value) > bound:
            raise TrainingError(f"{spec.name} diverged: {key} = {value:.4g} at step {step} is "
                                f"beyond the sane bound {bound:g} ({spec.name}.max_loss); "
                                f"{spec.fix}")


def run_epoch(spec: EpochSpec, epoch: int, steps: Iterator[Batch], total: int, step_fn: StepFn,
              progress: Progress, *, on_log: Callable[[int, int, dict[str, float]], None],
              on_step: Sequence[Callable[[int], None]] = (), world: World = ONE_PROCESS,
              device: torch.device | str = "cpu", resume: Resume | None = None
              ) -> dict[str, list[float]]:
    """One pass (or the rest of one, after ``progress.epoch_step`` steps done before a resume):
    ``step_fn`` on every batch, then the ``on_step`` hooks; every ``spec.log_every`` global
    steps ``on_log(epoch, step, means)`` with the means over the window of steps since the last
    call; after every step the divergence bounds and ``resume.after_step``.

    In a distributed ``world`` each step's statistics are averaged over the ranks (one
    all-reduce of a few float64 scalars on ``device``): with equal shards, the global batch
    means. ``progress.images`` counts the images of all ranks.

    Returns:
        The per-step values of every key in ``spec.keys``, in step order, the whole epoch's.
    """
    p = progress
    if set(p.values) != set(spec.keys):  # a fresh Progress, not one fit() set up or restored
        p.start_epoch(spec.keys)
    bar = progress_bar(desc=f"{spec.name} epoch {epoch}", total=total, unit="step",
                       initial=p.epoch_step)
    for batch in steps:
        p.step += 1
        p.images += sum(x.shape[0] for x, _ in batch) * world.size
        stats = all_mean(step_fn(batch, p.step), world, device)
        check_bounds(spec, stats, p.step)
        for hook in on_step:
            hook(p.step)
        for k in spec.keys:
            p.values[k].append(stats[k])
            p.window[k] += stats[k]
        p.window_count += 1
        p.epoch_step += 1
        bar.update(1)
        if p.step % spec.log_every == 0:
            means = {k: v / p.window_count for k, v in p.window.items()}  # the window's mean
            on_log(epoch, p.step, means)
            bar.set_postfix({k: format(means[k], f) for k, f in spec.postfix.items()})
            p.window, p.window_count = dict.fromkeys(spec.keys, 0.0), 0
        if resume is not None:
            resume.after_step(p.step)
    bar.close()
    return p.values


def fit(spec: EpochSpec, epochs: int, progress: Progress, *,
        make_steps: Callable[[], Iterator[Batch]], total: int, step_fn: StepFn,
        on_log: Callable[[int, int, dict[str, float]], None],
        on_epoch: Callable[[int, dict[str, list[float]], float], None],
        on_step: Sequence[Callable[[int], None]] = (), world: World = ONE_PROCESS,
        device: torch.device | str = "cpu", shuffle: torch.Generator | None = None,
        resume: Resume | None = None) -> None:
    """Epochs ``progress.epoch + 1 .. epochs``: :func:`run_epoch` over ``make_steps()``, then
    ``on_epoch(epoch, per-step values, epoch start time)`` (validation, grids, checkpoint), then
    a save of the resume state. ``progress.fit_seconds`` counts the step loops alone.

    Resuming (``resume`` restored ``progress`` mid-epoch): ``shuffle`` (the generator
    ``make_steps`` draws its permutation from) is set back to its state at the epoch's start
    and the steps already done are skipped, so the data order is the uninterrupted run's. Within
    the block, a first SIGINT/SIGTERM waits for the step in flight (one process).
    """
    guard = interrupts.deferred() if resume is not None and resume.enabled \
        and not world.distributed else contextlib.nullcontext()
    with guard:
        for epoch in range(progress.epoch + 1, epochs + 1):
            if progress.epoch_step and progress.shuffle_state is not None and shuffle is not None:
                shuffle.set_state(progress.shuffle_state)  # the resumed epoch's data order
            else:
                progress.start_epoch(spec.keys)
                progress.shuffle_state = None if shuffle is None else shuffle.get_state()
            start = time.perf_counter()
            steps = itertools.islice(make_steps(), progress.epoch_step, None)
            values = run_epoch(spec, epoch, steps, total, step_fn, progress, on_log=on_log,
                               on_step=on_step, world=world, device=device, resume=resume)
            progress.fit_seconds += time.perf_counter() - start
            progress.epoch = epoch
            on_epoch(epoch, values, start)
            progress.start_epoch(spec.keys)
            if resume is not None:
                resume.save(progress.step)
                interrupts.raise_pending()  # a signal during on_epoch: saved just now


def epoch_means(values: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Mean of each key's per-step values in float64 (NaN for an epoch with no step)."""
    return {k: float(torch.tensor(v, dtype=torch.float64).mean()) if len(v) else float("nan")
            for k, v in values.items()}


def epoch_std(values: Sequence[float]) -> float:
    """Population std (float64) of per-step values, NaN for none: how much a loss oscillates."""
    return float(torch.tensor(values, dtype=torch.float64).std(correction=0)) if len(values) \
        else float("nan")


def build_seeded(seed: int, factory: Callable[[], M]) -> M:
    """``factory()`` with the global torch RNG forked and seeded with ``seed``: the weights
    depend on the seed alone, and the caller's RNG stream is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def save_state(path: Path, *, kind: str, model_config: Mapping[str, Any],
               nets: Mapping[str, torch.nn.Module], optimizers: Mapping[str, Any],
               progress: Progress, epoch: int, extra: Mapping[str, Any]) -> None:
    """Write the checkpoint layout of :mod:`genduel.checkpoint` atomically (weights, optimizer
    states under the same keys, step, epoch, the RNG states now, model config, ``extra``)."""
    save_checkpoint(path, {
        "kind": kind, "model_config": model_config,
        "state_dicts": {k: m.state_dict() for k, m in nets.items()},
        "optimizers": {k: _sorted(o.state_dict()) for k, o in optimizers.items()},
        "step": progress.step, "epoch": epoch, "rng": rng_state(), "extra": dict(extra),
    })


def _sorted(value: Any) -> Any:
    """``value`` with every dict's keys sorted and interned: an optimizer's state dict lists its
    keys in the order they were set, and after a resume they are new string objects that pickle
    does not share; either would change the checkpoint's bytes, not its content."""
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _sorted(value[k])
                for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def rank_tracker(tracker: Tracker, world: World) -> Tracker:
    """``tracker`` on rank 0, a :class:`NullTracker` on every other rank."""
    return tracker if world.is_main else NullTracker()
