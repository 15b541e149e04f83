"""Experiment tracking behind a small interface, so the library never imports MLflow itself.

Training and evaluation code receives a :class:`Tracker`; stages pass an MLflow-backed one
(:mod:`genduel.tracking.mlflow_store`), tests pass :class:`RecordingTracker`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch


class Tracker(Protocol):
    """What training and evaluation may record. Every method must be cheap to call often."""

    run_id: str

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_model(self, model: torch.nn.Module, name: str) -> None: ...


class RecordingTracker:
    """Keeps everything in memory; for tests.

    Attributes:
        params: merged params.
        metrics: ``{key: [(step, value), ...]}`` in logging order.
        artifacts: ``[(path, artifact_path)]``.
        models: ``{name: model}``.
    """

    run_id = "recording"

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: dict[str, list[tuple[int | None, float]]] = {}
        self.artifacts: list[tuple[Path, str | None]] = []
        self.models: dict[str, torch.nn.Module] = {}

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((step, float(v)))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((Path(path), artifact_path))

    def log_model(self, model: torch.nn.Module, name: str) -> None:
        self.models[name] = model


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
