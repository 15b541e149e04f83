"""SIGINT and SIGTERM in a stage: an exception where it is safe, a flag where work must first be
saved.

:func:`install` (called by :func:`genduel.stage.run_stage`) makes both signals raise
:class:`~genduel.errors.Interrupted` (a ``KeyboardInterrupt``: ``finally`` blocks, staged outputs
and MLflow runs clean up as on Ctrl-C). Inside :func:`deferred` (a training loop) the first
signal only sets a flag: the loop finishes its optimizer step, saves its resume state and raises
(:func:`raise_pending`); a second signal raises at once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from genduel.errors import Interrupted

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"defer": 0, "pending": 0}


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state["defer"] and not _state["pending"]:
        _state["pending"] = signum
        log.warning("%s received: saving the training state after this step (send it again "
                    "to stop at once)", signal.Signals(signum).name)
        return
    raise Interrupted(signum)


def install() -> None:
    """Route SIGINT and SIGTERM to :class:`Interrupted` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state["pending"] = 0
    for sig in SIGNALS:
        signal.signal(sig, _handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block, a first SIGINT/SIGTERM is recorded instead of raised."""
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1


def pending() -> int:
    """The signal number recorded inside :func:`deferred`, 0 if none."""
    return _state["pending"]


def raise_pending() -> None:
    """Raise :class:`Interrupted` for a recorded signal (and forget it)."""
    signum, _state["pending"] = _state["pending"], 0
    if signum:
        raise Interrupted(signum)
