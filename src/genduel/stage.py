"""The stage runner: what every ``pipeline/*.py`` script shares.

:func:`run_stage` gives a stage its logging, its wall-time record and its one-line errors;
:func:`run_training` is the common body of the three training stages (judge, train_vae,
train_gan): validate params, seed, pick the device, open the MLflow run (params under their
section's names and under the shared names of :data:`SHARED_PARAMS`, the data splits as inputs),
log the final model with an example of its call, and write the metrics JSON with the run id.
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
from tqdm.contrib.logging import logging_redirect_tqdm

from genduel import config, runtime, timings
from genduel.checkpoint import load_checkpoint, rebuild
from genduel.data.pixels import to_model_range
from genduel.data.splits import load_split
from genduel.errors import GenDuelError
from genduel.io import write_json
from genduel.tracking.base import ModelExample, Tracker, dataset_refs
from genduel.tracking.mlflow_store import stage_run

log = logging.getLogger("genduel")

#: Params the model sections share, logged also under one name (``model.*``, ``train.*``) so that
#: MLflow's compare view puts the judge, the VAE and the GAN on one row: shared name -> field of
#: each section. The GAN's ``train.lr`` is the generator's (``lr_g``), the model it logs.
SHARED_PARAMS = {
    "model.latent_dim": {"vae": "latent_dim", "gan": "latent_dim"},
    "model.width": {"judge": "width", "vae": "width", "gan": "width"},
    "model.conditional": {"vae": "conditional", "gan": "conditional"},
    "train.epochs": {s: "epochs" for s in ("judge", "vae", "gan")},
    "train.batch_size": {s: "batch_size" for s in ("judge", "vae", "gan")},
    "train.lr": {"judge": "lr", "vae": "lr", "gan": "lr_g"},
    "train.seed": {s: "seed" for s in ("judge", "vae", "gan")},
    "train.log_every": {s: "log_every" for s in ("judge", "vae", "gan")},
}
#: Examples in a logged model's input example.
EXAMPLE_BATCH = 4


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
        # Log lines print above the progress bars instead of through them.
        with logging_redirect_tqdm():
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


def shared_params(section: str, cfg: Any) -> dict[str, Any]:
    """The :data:`SHARED_PARAMS` of one model section's config."""
    return {name: getattr(cfg, fields[section]) for name, fields in SHARED_PARAMS.items()
            if section in fields}


def model_example(model: torch.nn.Module, part: str, data: Path) -> ModelExample:
    """How ``part`` is called, on :data:`EXAMPLE_BATCH` inputs: the judge on validation images,
    the VAE and the generator on latents ``z ~ N(0, I)`` (seed 0), with labels 0, 1, ... when
    conditional."""
    n, gen = EXAMPLE_BATCH, torch.Generator().manual_seed(0)
    with runtime.eval_mode(model):
        if part == "judge":
            x = to_model_range(load_split(data, "val").images[:n])  # (n, C, H, W)
            return ModelExample("model(images).logits", {"images": x},
                                {"logits": model(x).logits})
        inputs = {"z": torch.randn(n, model.latent_dim, generator=gen)}  # (n, latent_dim)
        if model.conditional:
            inputs["y"] = torch.arange(n) % model.num_classes  # (n,)
        args = ", ".join(inputs)
        if part == "vae":
            return ModelExample(f"model.image({args})", inputs,
                                {"images": model.image(*inputs.values())})
        return ModelExample(f"model({args})", inputs, {"images": model(*inputs.values())})


def run_training(stage: str, section: str, *, data: Path, splits: tuple[str, ...],
                 checkpoint: Path, metrics: Path, kind: str, part: str,
                 build: Callable[[dict[str, Any]], torch.nn.Module],
                 train: Callable[[StageContext], dict[str, float]]) -> dict[str, float]:
    """Train one model under a tracked MLflow run and write ``metrics`` (JSON, with run id).

    Args:
        stage: DVC stage name (also the MLflow run name).
        section: the params.yaml section of the model (``judge``, ``vae``, ``gan``).
        data: the prepared splits; ``splits``: those the training reads (the run's inputs).
        checkpoint: where ``train`` writes its checkpoint; the final model is rebuilt from it
            and logged to MLflow as ``part``, which proves the file alone rebuilds the model.
        kind: the checkpoint's ``kind``.
        part: the network of the checkpoint to log (``judge``, ``vae``, ``generator``).
        build: that model's builder (``model_config`` -> untrained network).
        train: the library training function, given a :class:`StageContext`.
    """
    params = config.load_all()
    cfg, rt = params[section], params["runtime"]
    runtime.seed_everything(cfg.seed)
    device = runtime.resolve_device(rt)
    logged = {**config.flat_params(params, "runtime", "data", section),
              **shared_params(section, cfg)}
    with stage_run(stage, params["tracking"], logged) as tracker:
        tracker.log_inputs(dataset_refs(data, splits))
        summary = train(StageContext(params, device, rt.amp, tracker))
        steps = int(summary.get("steps", 0))
        tracker.log_metrics(summary, step=steps)  # the last epoch's point, where it has history
        model = rebuild(load_checkpoint(checkpoint, kind), part, build)
        tracker.log_model(model, part, model_example(model, part, data), step=steps)
        write_json(metrics, {**summary, "mlflow_run_id": tracker.run_id})
    return summary
