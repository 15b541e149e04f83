"""The shared body of the three training stages (judge, train_vae, train_gan).

Each stage script parses its paths and calls :func:`run_training` with the one library function
that trains its model; this module does what they have in common: validate params, seed, pick
the device, open the MLflow run, log the final model, write the metrics JSON with the run id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genduel import config, runtime
from genduel.checkpoint import load_checkpoint
from genduel.cli import write_json
from genduel.tracking import Tracker


@dataclass(frozen=True)
class StageContext:
    """What a training function gets from its stage."""

    params: dict[str, Any]  # every params.yaml section, validated
    device: torch.device
    amp: bool
    tracker: Tracker


def run_training(stage: str, section: str, *, checkpoint: Path, metrics: Path, kind: str,
                 train: Callable[[StageContext], dict[str, float]],
                 rebuild: Callable[[dict[str, Any]], torch.nn.Module]) -> dict[str, float]:
    """Train one model under a tracked MLflow run and write ``metrics`` (JSON, with run id).

    Args:
        stage: DVC stage name (also the MLflow run name).
        section: the params.yaml section of the model (``judge``, ``vae``, ``gan``).
        checkpoint: where ``train`` writes its checkpoint; the final model is rebuilt from it
            and logged to MLflow, which proves the file alone rebuilds the model.
        kind: the checkpoint's ``kind``.
        train: the library training function, given a :class:`StageContext`.
        rebuild: checkpoint dict -> model to log.
    """
    from genduel.mlflow_tracking import stage_run

    params = config.load_all()
    cfg, rt = params[section], params["runtime"]
    runtime.seed_everything(cfg.seed)
    device = runtime.resolve_device(rt)
    logged = config.flat_params(params, "runtime", "data", section)
    with stage_run(stage, params["tracking"], logged) as tracker:
        summary = train(StageContext(params, device, rt.amp, tracker))
        tracker.log_metrics(summary)
        tracker.log_model(rebuild(load_checkpoint(checkpoint, kind)), "model")
        write_json(metrics, {**summary, "mlflow_run_id": tracker.run_id})
    return summary
