"""Experiment tracking behind a small interface, so the library never imports MLflow itself.

Training and evaluation code receives a :class:`Tracker`; stages pass an MLflow-backed one
(:mod:`genduel.tracking.mlflow_store`), tests pass :class:`RecordingTracker`. What a tracker
records is described in plain types here: a dataset split (:class:`DatasetRef`, read from the
prepared data's manifest by :func:`dataset_refs`) and how a model is called
(:class:`ModelExample`, which becomes the MLflow signature and input example).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from genduel.errors import DataError

#: MLflow's ``mlflow.data.context`` of each split: what the run used it for.
SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


@dataclass(frozen=True)
class DatasetRef:
    """One prepared split as a run input.

    ``digest`` is the split file's sha256 from ``manifest.json``, so a run's input names the
    exact bytes it read; ``source`` is the file as the stage's ``dvc.yaml`` path spells it.
    """

    name: str  # "<dataset>/<split>", e.g. "fashion_mnist/train"
    digest: str  # sha256 hex of the split file (manifest.json)
    source: str  # e.g. "data/prepared/train.pt"
    context: str  # "training", "validation" or "testing"
    profile: dict[str, Any] = field(default_factory=dict)  # count, class histogram, shape


@dataclass(frozen=True)
class ModelExample:
    """How a logged model is called, shown by a small batch.

    ``call`` spells the call (``"model.image(z)"``, ``"model(images).logits"``); ``inputs`` are
    the named tensors it takes, ``outputs`` what it returned on them. MLflow turns these into
    the model's signature (batch dimension free) and input example.
    """

    call: str
    inputs: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]


class Tracker(Protocol):
    """What training and evaluation may record. Every method must be cheap to call often."""

    run_id: str

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_inputs(self, datasets: Sequence[DatasetRef]) -> None: ...

    def log_model(self, model: torch.nn.Module, name: str, example: ModelExample | None = None,
                  step: int = 0) -> str | None:
        """Log ``model`` under ``name``; return its model id (None when models are not logged).
        ``step`` is the training step it was saved at: the run's metrics at that step are
        linked to it."""
        ...


class RecordingTracker:
    """Keeps everything in memory; for tests.

    Attributes:
        params: merged params.
        metrics: ``{key: [(step, value), ...]}`` in logging order.
        artifacts: ``[(path, artifact_path)]``.
        inputs: every :class:`DatasetRef` logged, in order.
        models: ``{name: model}``; ``examples``: ``{name: ModelExample | None}``.
    """

    run_id = "recording"

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: dict[str, list[tuple[int | None, float]]] = {}
        self.artifacts: list[tuple[Path, str | None]] = []
        self.inputs: list[DatasetRef] = []
        self.models: dict[str, torch.nn.Module] = {}
        self.examples: dict[str, ModelExample | None] = {}

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((step, float(v)))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((Path(path), artifact_path))

    def log_inputs(self, datasets: Sequence[DatasetRef]) -> None:
        self.inputs.extend(datasets)

    def log_model(self, model: torch.nn.Module, name: str, example: ModelExample | None = None,
                  step: int = 0) -> str | None:
        self.models[name], self.examples[name] = model, example
        return f"recording-{name}"


def dataset_refs(data_dir: Path, splits: Sequence[str] = ("train", "val", "test")
                 ) -> list[DatasetRef]:
    """The prepared ``splits`` of ``data_dir`` as run inputs, from its ``manifest.json``."""
    path = Path(data_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        entries = {s: manifest["splits"][s] for s in splits}
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path} is missing or lacks the splits {list(splits)} "
                        f"({exc.__class__.__name__}); re-run the prepare stage") from exc
    name = manifest.get("dataset", "dataset")
    return [DatasetRef(name=f"{name}/{s}", digest=e["sha256"], source=f"{data_dir}/{s}.pt",
                       context=SPLIT_CONTEXTS.get(s, s),
                       profile={"images": e["count"], "class_histogram": e["class_histogram"],
                                "image_shape": manifest.get("image_shape"),
                                "sha256": e["sha256"]})
            for s, e in entries.items()]


class CsvLog:
    """A CSV file of training history: the header written at creation, rows appended one by one
    (so an interrupted run keeps every row logged so far). DVC plots read these files."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path, self.columns = Path(path), tuple(columns)
        with self.path.open("w", newline="") as f:
            csv.writer(f).writerow(self.columns)

    def append(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)
