"""Device selection, seeding, RNG state capture and progress bars (no global state is read
elsewhere)."""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from collections.abc import Callable, Iterable, Iterator
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
             leave: bool = False, unit: str = "it") -> tqdm:
    """A tqdm progress bar on stderr, shown only when stderr is a terminal.

    The one place that rule lives: a person running ``dvc repro`` (or a stage, or ``genduel``)
    in a terminal sees the bars; CI logs and redirected output stay free of carriage-return
    noise. Inner bars of a nested loop use ``leave=False`` (the default) so they vanish when
    done; an outer bar that sums up a stage may pass ``leave=True``.
    """
    return tqdm(iterable, desc=desc, total=total, leave=leave, unit=unit, dynamic_ncols=True,
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
