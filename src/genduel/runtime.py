"""Device selection, seeding, RNG state capture, progress bars and the process group of a
data-parallel run (no global state is read elsewhere)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from genduel.config import RuntimeConfig
from genduel.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")


def resolve_device(cfg: RuntimeConfig) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU; ``cuda`` without a GPU is an error."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "params.yaml: runtime.device = 'cuda' but no CUDA device is visible; "
            "use 'auto' or 'cpu'"
        )
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``enabled``; a no-op on the CPU (fp32 there)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """An explicit generator, so sampling never depends on how much global RNG was consumed."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def rng_state() -> dict[str, Any]:
    """Every RNG state needed to resume a run bit-for-bit on the same device."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    # Plain tensors and ints only, so checkpoints load with torch.load(weights_only=True).
    state = {
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": version,
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": int(pos),
        "numpy_gauss": [int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the RNG states :func:`rng_state` captured (CUDA ones where a GPU is visible)."""
    keys = state["numpy"].numpy().astype(np.uint32)
    gauss_flag, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", keys, int(state["numpy_pos"]), int(gauss_flag), gauss))
    random.setstate((int(state["python_version"]), tuple(state["python"].tolist()), None))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Put modules in eval mode under ``torch.no_grad`` and restore their previous mode."""
    was = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, w in zip(modules, was):
            m.train(w)


def progress(iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None,
             leave: bool = False, unit: str = "it", initial: int = 0) -> tqdm:
    """A tqdm progress bar on stderr, shown only when stderr is a terminal.

    The one place that rule lives: a person running ``dvc repro`` (or a stage, or ``genduel``)
    in a terminal sees the bars; CI logs and redirected output stay free of carriage-return
    noise. Inner bars of a nested loop use ``leave=False`` (the default) so they vanish when
    done; an outer bar that sums up a stage may pass ``leave=True``.
    """
    return tqdm(iterable, desc=desc, total=total, leave=leave, unit=unit, initial=initial,
                dynamic_ncols=True,
                disable=not sys.stderr.isatty())


def eval_batches(fn: Callable[[slice], T], n: int, batch_size: int,
                 *modules: torch.nn.Module, desc: str = "evaluating") -> list[T]:
    """``[fn(s) for s in consecutive slices of range(n)]``, ``batch_size`` long (the last may be
    shorter), with ``modules`` in eval mode under ``torch.no_grad``.

    The one batched inference loop: embedding images, drawing samples, encoding posteriors and
    Inception features all call it with the work of one batch as ``fn``. A transient progress
    bar (:func:`progress`) named ``desc`` counts the images done.
    """
    if batch_size < 1:
        raise ValueError(f"eval_batches: batch_size must be >= 1, got {batch_size}")
    out = []
    with eval_mode(*modules), progress(desc=desc, total=n, unit="img") as bar:
        for start in range(0, n, batch_size):
            s = slice(start, min(start + batch_size, n))
            out.append(fn(s))
            bar.update(s.stop - s.start)
    return out


# ----------------------------------------------------------------- data-parallel runs (torchrun)
@dataclasses.dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run: ``rank`` of ``size`` processes in all,
    ``local_rank`` on its machine (its GPU index). One process is ``World()``."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, artifacts, metrics and MLflow."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def seed(self, seed: int) -> int:
        """A per-rank seed for noise that must differ between ranks (dropout masks, latents, the
        VAE's eps); ``seed`` itself on rank 0, so one process draws what it always drew."""
        return seed + (self.rank << 32)


#: The world of a process started plainly: rank 0 of 1.
ONE_PROCESS = World()


def world_from_env(env: Mapping[str, str]) -> World | None:
    """The :class:`World` that torchrun describes in ``env`` (``RANK``, ``LOCAL_RANK``,
    ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``); None for a process started plainly."""
    if "WORLD_SIZE" not in env or "LOCAL_RANK" not in env:
        return None
    local = int(env["LOCAL_RANK"])
    return World(rank=int(env.get("RANK", local)), local_rank=local, size=int(env["WORLD_SIZE"]),
                 local_size=int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])))


def init_world(world: World, cfg: RuntimeConfig) -> torch.device:
    """Join the process group of a distributed ``world`` and return this rank's device.

    NCCL with one GPU per rank (``cuda:LOCAL_RANK``) on CUDA, gloo on the CPU. On the CPU with
    ``runtime.num_threads: 0`` each rank takes an equal share of the machine's cores, so the
    ranks of one machine do not oversubscribe it. One process: :func:`resolve_device`.
    """
    device = resolve_device(cfg)
    if not world.distributed:
        return device
    import torch.distributed as dist

    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"params.yaml: runtime.nproc_per_node = {world.local_size} but "
                              f"this machine has {torch.cuda.device_count()} visible GPUs; "
                              "use one process per GPU")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    elif not cfg.num_threads:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world.local_size))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                rank=world.rank, world_size=world.size)
    log.info("rank %d of %d (local %d) on %s", world.rank, world.size, world.local_rank, device)
    return device


def close_world(world: World) -> None:
    """Leave the process group (a no-op for one process)."""
    import torch.distributed as dist

    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_mean(values: Mapping[str, float], world: World,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """The mean over ranks of each value (float64, one all-reduce); ``values`` for one process.

    With equal shards the mean of per-rank batch means is the mean over the global batch.
    """
    if not world.distributed:
        return dict(values)
    import torch.distributed as dist

    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / world.size).tolist()))


def data_parallel(module: torch.nn.Module, world: World,
                  device: torch.device) -> torch.nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` (gradients averaged
    over ranks in backward, rank 0's weights and buffers broadcast at construction and its
    buffers, e.g. BatchNorm running statistics, before every forward); ``module`` itself for
    one process. BatchNorm keeps per-rank batch statistics (no SyncBatchNorm)."""
    if not world.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    # A weight with one input or output channel is both channels_last and contiguous; DDP's
    # bucket view and the gradient then differ in the stride of that size-1 dim only, which
    # describes the same memory: its warning about it is noise.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, output_device=ids and ids[0])


class NullTracker:
    """A tracker (:class:`genduel.tracking.base.Tracker`) that records nothing: what the ranks
    other than 0 of a data-parallel run log to. It lives here, below the tracking layer, so that
    the stage runner and the trainers can both hand it out."""

    run_id = ""

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: Any, artifact_path: str | None = None) -> None:
        pass

    def log_inputs(self, datasets: Any) -> None:
        pass

    def log_model(self, model: torch.nn.Module, name: str, example: Any = None,
                  step: int = 0) -> str | None:
        return None
