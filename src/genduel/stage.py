"""The stage runner: what every ``pipeline/*.py`` script shares.

:func:`run_stage` gives a stage its logging, its wall-time record and its one-line errors;
:func:`run_training` is the common body of the three training stages (judge, train_vae,
train_gan): validate params, seed, pick the device, open the MLflow run, log the final model and
write the metrics JSON with the run id.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genduel import config, runtime, timings
from genduel.checkpoint import load_checkpoint, rebuild
from genduel.errors import GenDuelError
from genduel.io import write_json
from genduel.tracking.base import Tracker
from genduel.tracking.mlflow_store import stage_run

log = logging.getLogger("genduel")


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
    timings.record(name, seconds)
    return 0


@dataclass(frozen=True)
class StageContext:
    """What a training function gets from its stage."""

    params: dict[str, Any]  # every params.yaml section, validated
    device: torch.device
    amp: bool
    tracker: Tracker


def run_training(stage: str, section: str, *, checkpoint: Path, metrics: Path, kind: str,
                 part: str, build: Callable[[dict[str, Any]], torch.nn.Module],
                 train: Callable[[StageContext], dict[str, float]]) -> dict[str, float]:
    """Train one model under a tracked MLflow run and write ``metrics`` (JSON, with run id).

    Args:
        stage: DVC stage name (also the MLflow run name).
        section: the params.yaml section of the model (``judge``, ``vae``, ``gan``).
        checkpoint: where ``train`` writes its checkpoint; the final model is rebuilt from it
            and logged to MLflow, which proves the file alone rebuilds the model.
        kind: the checkpoint's ``kind``.
        part: the network of the checkpoint to log (``judge``, ``vae``, ``generator``).
        build: that model's builder (``model_config`` -> untrained network).
        train: the library training function, given a :class:`StageContext`.
    """
    params = config.load_all()
    cfg, rt = params[section], params["runtime"]
    runtime.seed_everything(cfg.seed)
    device = runtime.resolve_device(rt)
    logged = config.flat_params(params, "runtime", "data", section)
    with stage_run(stage, params["tracking"], logged) as tracker:
        summary = train(StageContext(params, device, rt.amp, tracker))
        tracker.log_metrics(summary)
        tracker.log_model(rebuild(load_checkpoint(checkpoint, kind), part, build), "model")
        write_json(metrics, {**summary, "mlflow_run_id": tracker.run_id})
    return summary
