"""A training run's resume state: saved often, restored exactly.

A :class:`Resume` holds references to everything a trainer's future depends on (networks,
optimizers, schedulers, EMA, explicit generators, the loop's :class:`~genduel.train.loop.Progress`,
small dicts of running results) and the append-only files it writes (CSV logs). :meth:`save`
writes one file with all their states, the global RNG states and the files' content (atomically);
:meth:`restore` loads it back, rewrites the files as they were, and the loop continues from the
saved step: same data order (the epoch's shuffle generator state and the number of steps done),
same noise, same weights, so the run ends bit-identical to an uninterrupted one on the same
machine (CPU; on a GPU as far as its kernels are deterministic).

When it is saved: after every epoch, every ``runtime.checkpoint_every_s`` seconds within an epoch
(one process), and when SIGINT or SIGTERM arrives (one process: the step in flight finishes
first, :mod:`genduel.interrupts`). A data-parallel run saves one file per rank at epoch ends only
(ranks may not stop at the same step), and resumes only if every rank's file holds the same step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from genduel import interrupts
from genduel.io import atomic_write
from genduel.runtime import ONE_PROCESS, World, rng_state, set_rng_state

log = logging.getLogger(__name__)


class Resume:
    """What to save, where, how often.

    Args:
        path: the state file (None: nothing is saved, nothing restored; tests and library use).
        every_s: seconds between saves within an epoch (one process only).
        world: the data-parallel world; each rank saves ``<path stem>-rank<r>.pt``.
    """

    def __init__(self, path: Path | None, every_s: float = float("inf"),
                 world: World = ONE_PROCESS) -> None:
        if path is not None and world.distributed:
            path = path.with_name(f"{path.stem}-rank{world.rank}{path.suffix}")
        self.path, self.every_s, self.world = path, every_s, world
        self.parts: dict[str, Any] = {}
        self.files: list[Path] = []
        self.saved_at = time.monotonic()
        self.resumed_step = -1  # the step restored from, -1 when the run started fresh

    def register(self, **parts: Any) -> None:
        """Objects with ``state_dict``/``load_state_dict``, ``torch.Generator`` s (their
        ``get_state``/``set_state``) or plain dicts (updated in place on restore)."""
        self.parts.update(parts)

    def track_files(self, *paths: Path) -> None:
        """Small files the trainer appends to (CSV logs): their content at the save is part of
        the state and is written back on restore (the trainer recreated them meanwhile)."""
        self.files.extend(Path(p) for p in paths)

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def state(self, step: int) -> dict[str, Any]:
        parts = {}
        for name, obj in self.parts.items():
            if isinstance(obj, torch.Generator):
                parts[name] = obj.get_state()
            elif isinstance(obj, dict):
                parts[name] = dict(obj)
            else:
                parts[name] = obj.state_dict()
        files = {str(p): p.read_bytes() if p.exists() else b"" for p in self.files}
        return {"step": step, "parts": parts, "rng": rng_state(), "files": files}

    def save(self, step: int) -> None:
        """Write the state now (atomically: an interrupted save leaves the previous one)."""
        if self.path is None:
            return
        state = self.state(step)
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))
        self.saved_at = time.monotonic()
        log.debug("resume state saved at step %d in %s", step, self.path)

    def after_step(self, step: int) -> None:
        """Called by the loop after each optimizer step: save on a pending signal (then raise
        it) or when ``every_s`` has passed (one process)."""
        if self.path is None or self.world.distributed:
            return
        if interrupts.pending():
            self.save(step)
            log.warning("training state saved at step %d; run the stage again to continue",
                        step)
            interrupts.raise_pending()
        if time.monotonic() - self.saved_at >= self.every_s:
            self.save(step)

    def restore(self) -> bool:
        """Load the saved state into the registered parts; False (and nothing changed) when there
        is none, or when the ranks of a data-parallel run hold different steps."""
        state = self._load()
        if not self._agreed(-1 if state is None else int(state["step"])):
            if state is not None:
                log.warning("the ranks' resume states differ; starting over")
            return False
        if state is None:
            return False
        for name, obj in self.parts.items():
            value = state["parts"][name]
            if isinstance(obj, torch.Generator):
                obj.set_state(value)
            elif isinstance(obj, dict):
                obj.clear()
                obj.update(value)
            else:
                obj.load_state_dict(value)
        for path in self.files:
            atomic_write(path, bytes(state["files"].get(str(path), b"")))
        set_rng_state(state["rng"])
        self.resumed_step = int(state["step"])
        log.info("resuming from the state saved at step %d (%s)", self.resumed_step, self.path)
        return True

    def _load(self) -> Mapping[str, Any] | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a state file the save never finished: start over
            log.warning("%s is unreadable (%s); starting over", self.path,
                        exc.__class__.__name__)
            return None
        if not isinstance(state, dict) or set(state.get("parts", {})) != set(self.parts):
            log.warning("%s does not match this trainer; starting over", self.path)
            return None
        return state

    def _agreed(self, step: int) -> bool:
        """Whether every rank holds ``step`` (always for one process)."""
        if not self.world.distributed:
            return True
        import torch.distributed as dist

        t = torch.tensor([step, -step], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t[0]) == -int(t[1])

    def remove(self) -> None:
        """Delete the state file (the run finished)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
