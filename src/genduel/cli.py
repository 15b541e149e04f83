"""What every stage script shares: logging, timing and turning errors into one line."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from genduel.errors import GenDuelError

log = logging.getLogger("genduel")

#: Per-stage wall times are appended here (JSON lines); `python -m genduel.timings` prints them.
TIMINGS_FILE = Path(".dvc/tmp/genduel-timings.jsonl")


def setup_logging() -> None:
    level = os.environ.get("GENDUEL_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in ("alembic", "mlflow", "urllib3", "matplotlib", "PIL", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(name: str, body: Callable[[], None]) -> int:
    """Run a stage body; return the process exit code.

    ``GenDuelError`` becomes one line on stderr (``genduel <stage>: error: ...``) and exit code 2;
    Ctrl-C becomes exit code 130. Files the body wrote atomically before the failure stay.
    """
    setup_logging()
    start = time.perf_counter()
    try:
        body()
    except GenDuelError as exc:
        sys.stderr.write(f"genduel {name}: error: {exc}\n")  # the one line a user reads
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"genduel {name}: interrupted; checkpoints written so far are kept\n")
        return 130
    seconds = time.perf_counter() - start
    log.info("stage %s finished in %.1f s", name, seconds)
    _record_timing(name, seconds)
    return 0


def _record_timing(name: str, seconds: float) -> None:
    try:
        TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
        with TIMINGS_FILE.open("a") as fh:
            fh.write(json.dumps({"stage": name, "seconds": round(seconds, 2),
                                 "time": time.time()}) + "\n")
    except OSError as exc:  # timing is a convenience; never fail a finished stage over it
        log.warning("could not record stage time in %s: %s", TIMINGS_FILE, exc)


def write_json(path: str | Path, payload: dict) -> None:
    """Write JSON atomically (tmp + rename), creating the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
