"""Wall times: of each stage run since a given moment (printed by ``make repro``), and of the
phases within a stage (:func:`phase`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: Per-stage wall times are appended here (JSON lines); ``python -m genduel.timings`` prints them.
TIMINGS_FILE = Path(".dvc/tmp/genduel-timings.jsonl")


def record(name: str, seconds: float) -> None:
    """Append one stage's wall time to :data:`TIMINGS_FILE`; a failure only logs a warning."""
    try:
        TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
        with TIMINGS_FILE.open("a") as fh:
            fh.write(json.dumps({"stage": name, "seconds": round(seconds, 2),
                                 "time": time.time()}) + "\n")
    except OSError as exc:  # timing is a convenience; never fail a finished stage over it
        log.warning("could not record stage time in %s: %s", TIMINGS_FILE, exc)


@contextlib.contextmanager
def phase(name: str, seconds: dict[str, float], *,
          sync: Callable[[], None] | None = None) -> Iterator[None]:
    """Time the block as phase ``name``: one log line (``phase <name>: 12.3 s``) and
    ``seconds[name]`` (added to, when a phase runs more than once). ``sync`` runs before each
    clock reading (``torch.cuda.synchronize`` on a GPU, whose kernels run ahead of the host)."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    try:
        yield
    finally:
        if sync is not None:
            sync()
        took = time.perf_counter() - start
        seconds[name] = round(seconds.get(name, 0.0) + took, 2)
        log.info("phase %s: %.1f s", name, took)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--since", type=float, default=0.0, help="unix time; older runs ignored")
    args = parser.parse_args(argv)
    rows = []
    if TIMINGS_FILE.exists():
        for line in TIMINGS_FILE.read_text().splitlines():
            entry = json.loads(line)
            if entry["time"] >= args.since:
                rows.append(entry)
    if not rows:
        sys.stdout.write("no stage ran (the pipeline was up to date)\n")
        return 0
    width = max(len(r["stage"]) for r in rows)
    lines = [f"{'stage':<{width}}  wall time"]
    lines += [f"{r['stage']:<{width}}  {r['seconds']:8.1f} s" for r in rows]
    lines.append(f"{'total':<{width}}  {sum(r['seconds'] for r in rows):8.1f} s")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
