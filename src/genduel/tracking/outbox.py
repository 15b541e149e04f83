"""What a tracker could not send yet: kept in order, retried with a backoff, reported once.

Training must not die because a metric could not be sent (issue 10): a server stopped or hung
after the run opened, or a store locked for a while, turns every call of the run into an entry
here instead of an exception. While the store fails, attempts are skipped for a growing interval
(:class:`Backoff`: 5 s doubling to 60 s), so a dead server costs at most one client timeout per
interval, not one per call. A call the store refuses (a 4xx answer: a conflicting param, a
deleted run) is dropped and counted instead, so it cannot block the calls behind it. What is
still unsent when the run closes gets one last attempt, then one warning line
(:meth:`Outbox.report`) with what was not sent or refused. Errors are described by their
cause (:func:`describe_error`): a full disk says so, not the SQLAlchemy autoflush note that
heads its text.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from genduel.io import disk_full

log = logging.getLogger(__name__)

#: Metric points kept while the store fails; beyond that the oldest are dropped (and counted).
MAX_POINTS = 100_000
#: How :func:`describe_error` names a store whose disk is full.
DISK_FULL = "disk full (No space left on device)"
#: What a store's error text says when its disk is full (sqlite's SQLITE_FULL, the OS's ENOSPC;
#: MLflow raises either wrapped in an MlflowException whose first line is SQLAlchemy's note).
_FULL_TEXTS = ("database or disk is full", "No space left on device")


class Backoff:
    """After a failure no attempt for ``first`` seconds, doubling up to ``most``; a success
    resets it. Shared by the runs of one stage: one store, one state."""

    def __init__(self, first: float = 5.0, most: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first, self.most, self.clock = first, most, clock
        self.delay, self.next_try, self.reason = 0.0, 0.0, ""

    def ready(self) -> bool:
        return self.clock() >= self.next_try

    def failed(self, exc: BaseException) -> None:
        self.delay = min(self.most, self.delay * 2 if self.delay else self.first)
        self.next_try = self.clock() + self.delay
        self.reason = describe_error(exc)
        log.info("MLflow call failed (%s); next attempt in %.0f s", self.reason, self.delay)

    def succeeded(self) -> None:
        self.delay, self.next_try = 0.0, 0.0


def _of_run(run_id: str, point: tuple[str, Any]) -> bool:
    return point[0] == run_id


class Outbox:
    """Metric points (in logging order, at most :data:`MAX_POINTS`) and other calls (params,
    tags, inputs, artifacts by path: the files stay where they are) waiting for the store."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.points: deque[Any] = deque()
        self.calls: list[tuple[str, Callable[[], Any]]] = []  # (what, call), in order
        self.dropped = 0  # points beyond MAX_POINTS
        self.refused: dict[str, int] = {}  # what -> count the store answered with a 4xx
        self.refused_reason = ""

    def add_points(self, points: list[Any]) -> None:
        for p in points:
            if len(self.points) >= MAX_POINTS:
                self.points.popleft()
                self.dropped += 1
            self.points.append(p)

    def attempt(self, call: Callable[[], Any], force: bool = False) -> bool | None:
        """Run ``call`` unless the backoff says wait (``force``: try anyway). True: it ran;
        False: not now (retry later); None: the store refused it (a 4xx: invalid, conflicting,
        or the run is gone), so retrying cannot help and it is dropped. Any other ``Exception``
        is a failed attempt; Ctrl-C (``KeyboardInterrupt``) passes."""
        if not (force or self.backoff.ready()):
            return False
        try:
            call()
        except Exception as exc:  # the store is down, hung, locked: keep it for later
            if _refused(exc):
                self.backoff.succeeded()  # the store answered
                self.refused_reason = self.refused_reason or describe_error(exc)
                log.info("MLflow refused a call (%s); it is dropped", describe_error(exc))
                return None
            self.backoff.failed(exc)
            return False
        self.backoff.succeeded()
        return True

    def send_calls(self, force: bool = False) -> bool:
        """The waiting calls, in order, until one fails; True when none is left."""
        while self.calls:
            what, call = self.calls[0]
            done = self.attempt(call, force)
            if done is False:
                return False
            if done is None:
                self.refused[what] = self.refused.get(what, 0) + 1
            self.calls.pop(0)
        return True

    def send_points(self, log_batch: Callable[..., Any], batch: int, force: bool = False
                    ) -> bool:
        """The waiting ``(run_id, Metric)`` points, oldest first, each call at most ``batch``
        points of one run (``log_batch(run_id, metrics=[...])``); True when none is left."""
        while self.points:
            run_id = self.points[0][0]
            chunk = list(itertools.takewhile(functools.partial(_of_run, run_id),
                                             itertools.islice(self.points, batch)))
            send = functools.partial(log_batch, run_id, metrics=[m for _, m in chunk])
            done = self.attempt(send, force)
            if done is False:
                return False
            if done is None:
                self.refused["metric points"] = self.refused.get("metric points", 0) + len(chunk)
            for _ in chunk:
                self.points.popleft()
        return True

    def report(self, run_id: str, uri: str, succeeded: bool = True) -> str | None:
        """The one warning line for what was not sent (None when everything was); it says the
        stage's outputs are complete only when the stage ``succeeded``."""
        unsent = [f"{len(self.points) + self.dropped} metric points"] if (
            self.points or self.dropped) else []
        kinds = sorted({what for what, _ in self.calls})
        unsent += [f"{sum(w == k for w, _ in self.calls)} {k}" for k in kinds]
        refused = [f"{n} {what}" for what, n in sorted(self.refused.items())]
        if not (unsent or refused):
            return None
        full = bool(unsent) and self.backoff.reason == DISK_FULL
        parts = []
        if unsent:
            why = "" if full else f" ({self.backoff.reason or 'unknown reason'})"
            parts.append(f"did not take {', '.join(unsent)}{why}")
        if refused:
            parts.append(f"refused {', '.join(refused)} ({self.refused_reason})")
        head = f"{DISK_FULL} writing the MLflow store at {uri}: it" if full else \
            f"MLflow store {uri}"
        outcome = ("the stage's outputs are complete, its MLflow record is not" if succeeded
                   else "its MLflow record is incomplete (the stage did not finish: see its "
                        "own error or signal line)")
        fix = "; free space on that disk" if full else ""
        return f"{head} {' and '.join(parts)} of run {run_id}{fix}; {outcome}"


def _refused(exc: Exception) -> bool:
    """A 4xx answer (but for a timeout or rate limit): the request itself is wrong."""
    status = getattr(exc, "get_http_status_code", None)
    code = status() if callable(status) else 0
    return 400 <= code < 500 and code not in (408, 429)


def describe_error(exc: BaseException) -> str:
    """A store error in a few words: :data:`DISK_FULL` when its cause is a full disk (anywhere
    in its chain of causes), else its class and the first line of its text."""
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen:
        if disk_full(cause) or any(t in str(cause) for t in _FULL_TEXTS):
            return DISK_FULL
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__
