"""The MLflow-backed :class:`~genduel.tracking.base.Tracker`, where its store lives, and what the
runs of a pipeline run look like.

Default store: ``sqlite:///<repo root>/mlflow.db`` with artifacts under ``<repo root>/mlartifacts``,
so ``mlflow ui`` started at the repo root shows every run. The repo root is ``$DVC_ROOT`` (set by
DVC for stage commands); a queued ``dvc exp`` runs in ``<repo>/.dvc/tmp/exps/<tmp>``, which is
mapped back to ``<repo>`` so that queued runs land in the same store and outlive the temp copy.
``tracking.uri`` (params) or ``$MLFLOW_TRACKING_URI`` selects a team server instead. Before any
MLflow call, an http(s) server is probed with a short timeout and client retries are turned off,
so an unreachable server is an error within seconds instead of a hang of minutes.

Parallel runs on the sqlite store (``dvc queue start -j 2``): every store call of a stage holds
an inter-process file lock next to the database (``mlflow.db-lock``, :class:`_LockedClient`), so
two stages never create the tables at once (sqlite: "table experiments already exists") nor
write at once ("database is locked"); a server's store is safe on its own and takes no lock.

Runs: one parent per pipeline run (:mod:`genduel.tracking.pipeline_run`), one nested run per
stage that ran (:func:`stage_run`, named after the stage), and under ``evaluate`` one run per
metrics row (``evaluate/<row>``, :mod:`genduel.tracking.evaluation`).

Metric names, one per quantity: ``train/<k>`` at global optimizer steps (window means, as in
``history.csv``); every number of a ``metrics/*.json`` under its JSON key, per epoch at the
global step where the epoch ended when it has a history (its latest value is the file's);
``diag/<k>`` the GAN's per-epoch class coverage (evaluate).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genduel.config import TrackingConfig
from genduel.errors import GenDuelError, TrackingError
from genduel.tracking.base import DatasetRef, ModelExample
from genduel.tracking.pipeline_run import (
    KIND_TAG,
    close_parent,
    describe,
    git_commit,
    open_parent,
)

log = logging.getLogger(__name__)

_EXPS_TMP = os.path.join(".dvc", "tmp", "exps")
#: src/genduel, shipped with every logged model so that its pickle finds the model classes.
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_BATCH = 500  # metrics buffered before one log_batch call (MLflow accepts up to 1000)
#: MLflow keeps at most 36 characters of a dataset digest; the full sha256 is in the profile.
DIGEST_CHARS = 16
#: The experiment's description (its ``mlflow.note.content`` tag).
EXPERIMENT_NOTE = (
    "GenDuel: a VAE and a GAN trained on the same images and scored by the same judge "
    "(FID, KID, IS, precision/recall on the judge's features; likelihood bounds for the VAE). "
    "One parent run per pipeline run (`dvc repro` or `dvc exp run`), named after the DVC "
    "experiment or `workspace@<commit>`, with one nested run per stage that ran; cached stages "
    "have no run there. The models are logged as `judge`, `vae` and `generator`; evaluate "
    "records each metrics row in a nested `evaluate/<row>` run linked to the logged model. "
    "Metric names: `train/<k>` at training steps, the keys of metrics/*.json for everything "
    "else. Source of truth for the numbers: metrics/*.json and reports/report.html.")
__all__ = ["MlflowTracker", "git_commit", "stage_run"]


def repo_root(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """The repository whose ``mlflow.db`` to use, also from inside a queued experiment."""
    env = os.environ if env is None else env
    root = Path(env.get("DVC_ROOT") or (cwd or Path.cwd())).resolve()
    parts = str(root).split(os.sep + _EXPS_TMP + os.sep)
    return Path(parts[0]) if len(parts) > 1 else root


def resolve_uri(cfg: TrackingConfig, env: Mapping[str, str] | None = None,
                root: Path | None = None) -> str:
    """``tracking.uri`` if set, else ``$MLFLOW_TRACKING_URI``, else the embedded sqlite store."""
    env = os.environ if env is None else env
    if cfg.uri:
        return cfg.uri
    if env.get("MLFLOW_TRACKING_URI"):
        return env["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(root or repo_root(env)) / 'mlflow.db'}"


def check_reachable(uri: str, timeout_s: float) -> None:
    """Fail fast on an http(s) server that does not answer its health endpoint."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    url = uri.rstrip("/") + "/health"
    try:
        requests.get(url, timeout=timeout_s).raise_for_status()
    except requests.RequestException as exc:
        raise TrackingError(
            f"MLflow server {uri} is unreachable ({exc.__class__.__name__}); start it, fix "
            "tracking.uri / MLFLOW_TRACKING_URI, or set tracking.uri: '' for the local store"
        ) from exc


def _configure_client(timeout_s: float) -> None:
    # Read by MLflow's REST client at request time: no retry storm against a dead server.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, timeout_s))))


class _LockedClient:
    """An ``MlflowClient`` whose every method call holds ``lock`` (a reentrant
    :class:`filelock.FileLock`); ``lock`` is also held around the fluent calls of
    :meth:`MlflowTracker.log_model`."""

    def __init__(self, client: Any, lock: Any) -> None:
        self._client, self.lock = client, lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                return attr(*args, **kwargs)
        return call


def store_client(uri: str) -> Any:
    """``MlflowClient(uri)``, serialized across processes by a file lock on a sqlite store."""
    from mlflow import MlflowClient

    if not uri.startswith("sqlite:///"):
        return MlflowClient(uri)
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    db.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{db}-lock")
    with lock:  # the client creates the tables of a new store
        return _LockedClient(MlflowClient(uri), lock)


def experiment_id(client: Any, name: str, root: Path, local: bool) -> str:
    """The experiment ``name``, created (with :data:`EXPERIMENT_NOTE`) if missing; an existing
    one without a description gets it."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = (root / "mlartifacts").as_uri() if local else None
        try:
            return client.create_experiment(name, artifact_location=location,
                                            tags={"mlflow.note.content": EXPERIMENT_NOTE})
        except Exception:  # another queued run created it first: use theirs
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if not exp.tags.get("mlflow.note.content"):
        client.set_experiment_tag(exp.experiment_id, "mlflow.note.content", EXPERIMENT_NOTE)
    return exp.experiment_id


class _NoServingCheckWarning(logging.Filter):
    """MLflow tries the input example on the pyfunc flavour, which calls ``forward``; GenDuel's
    models are called by the method their ``call`` metadata names, so that check cannot pass
    and its warning says nothing about them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to validate serving input example")


class MlflowTracker:
    """A :class:`~genduel.tracking.base.Tracker` writing to one MLflow run, metrics batched.

    A point equal to the last one logged for its key (same step, same value) is dropped: the
    final summary repeats the last epoch's values at the same step.
    """

    def __init__(self, client: Any, run_id: str, log_models: bool = True, *,
                 experiment_id: str = "", parent_id: str = "",
                 tags: Mapping[str, str] | None = None) -> None:
        self.client, self.run_id, self.log_models = client, run_id, log_models
        self.experiment_id, self.parent_id = experiment_id, parent_id
        self.tags = dict(tags or {})  # the pipeline's tags, for nested runs
        self._pending: list[Any] = []
        self._last: dict[str, tuple[int, float]] = {}

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    model_id: str | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        for k, v in metrics.items():
            point = (int(step or 0), float(v))
            if self._last.get(k) == point and model_id is None:
                continue
            self._last[k] = point
            self._pending.append(Metric(k, point[1], ts, point[0], model_id=model_id))
        if len(self._pending) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_inputs(self, datasets: Sequence[DatasetRef]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(Dataset(
            name=d.name, digest=d.digest[:DIGEST_CHARS], source_type="local",
            source=json.dumps({"uri": d.source}), schema=_dataset_schema(d),
            profile=json.dumps(d.profile)), tags=[InputTag("mlflow.data.context", d.context)])
            for d in datasets]
        self.client.log_inputs(self.run_id, datasets=inputs)

    def log_model(self, model: torch.nn.Module, name: str, example: ModelExample | None = None,
                  step: int = 0) -> str | None:
        """Pickle format, so the model loads back as its class (torch.export keeps only forward);
        the run's metrics at ``step`` become the logged model's metrics."""
        if not self.log_models:
            return None
        import mlflow.pytorch

        self.flush()
        extra: dict[str, Any] = {}
        if example is not None:
            extra = {"signature": _signature(example), "metadata": {"call": example.call},
                     "input_example": _input_example(example)}
        # Fluent calls: the store lock of a sqlite store (see the module's docstring) held here.
        with getattr(self.client, "lock", contextlib.nullcontext()):
            # The logged model goes to the active experiment, not to its run's: make them agree.
            mlflow.set_experiment(experiment_id=self.experiment_id or
                                  self.client.get_run(self.run_id).info.experiment_id)
            info = self._log_model(model, name, step, extra)
        return info.model_id

    def _log_model(self, model: torch.nn.Module, name: str, step: int,
                   extra: dict[str, Any]) -> Any:
        import mlflow.pytorch

        quiet = _NoServingCheckWarning()
        logging.getLogger("mlflow.models.model").addFilter(quiet)
        try:
            return mlflow.pytorch.log_model(
                model.cpu().eval(), name=name, serialization_format="pickle",
                code_paths=[str(_PACKAGE_DIR)], run_id=self.run_id, step=step,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"], **extra)
        finally:
            logging.getLogger("mlflow.models.model").removeFilter(quiet)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def nested(self, name: str, tags: Mapping[str, str]) -> MlflowTracker:
        """A new run ``name`` nested under this one (finish it with ``client.set_terminated``)."""
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            **self.tags, "mlflow.parentRunId": self.run_id, **tags})
        return MlflowTracker(self.client, run.info.run_id, self.log_models,
                             experiment_id=self.experiment_id, parent_id=self.run_id,
                             tags=self.tags)


def _dataset_schema(d: DatasetRef) -> str | None:
    shape = d.profile.get("image_shape")
    if not shape:
        return None
    return json.dumps({"mlflow_colspec": [
        {"name": "images", "type": "tensor",
         "tensor-spec": {"dtype": "uint8", "shape": [-1, *shape]}},
        {"name": "labels", "type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]})


def _signature(example: ModelExample) -> Any:
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    def schema(tensors: Mapping[str, torch.Tensor]) -> Schema:
        return Schema([TensorSpec(t.detach().cpu().numpy().dtype, (-1, *t.shape[1:]), name)
                       for name, t in tensors.items()])

    return ModelSignature(inputs=schema(example.inputs), outputs=schema(example.outputs))


def _input_example(example: ModelExample) -> Any:
    arrays = {k: t.detach().cpu().numpy() for k, t in example.inputs.items()}
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


@contextlib.contextmanager
def stage_run(stage: str, cfg: TrackingConfig, params: Mapping[str, Any]
              ) -> Iterator[MlflowTracker]:
    """Open the MLflow run of a stage, nested under its pipeline run's parent.

    The run is named after the stage, gets ``params`` flattened and tags: git commit, DVC stage,
    DVC experiment, baseline revision, pipeline key, source script. It ends FINISHED, or FAILED
    when the body raises; the parent follows (:func:`~genduel.tracking.pipeline_run.close_parent`).
    """
    root, cwd = repo_root(), Path.cwd()
    uri = resolve_uri(cfg, root=root)
    _configure_client(cfg.timeout_s)
    check_reachable(uri, cfg.timeout_s)
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = store_client(uri)
    try:
        exp_id = experiment_id(client, cfg.experiment, root, uri.startswith("sqlite"))
        pipeline = describe(cwd, os.environ.get("DVC_EXP_NAME", ""),
                            os.environ.get("DVC_EXP_BASELINE_REV", ""))
        parent = open_parent(client, exp_id, pipeline, cwd)
        tags = {**pipeline.tags, KIND_TAG: "stage", "mlflow.parentRunId": parent,
                "genduel.stage": stage, "dvc.stage": stage,
                "mlflow.source.name": f"pipeline/{stage}.py", "mlflow.source.type": "LOCAL"}
        run_id = client.create_run(exp_id, run_name=stage, tags=tags).info.run_id
        tracker = MlflowTracker(client, run_id, cfg.log_models, experiment_id=exp_id,
                                parent_id=parent, tags={**tags, KIND_TAG: "record"})
        tracker.log_params(params)
    except GenDuelError:  # a TrackingError, or params.yaml that does not validate
        raise
    except Exception as exc:
        raise TrackingError(f"MLflow store {uri} failed ({exc.__class__.__name__}: {exc}); "
                            "check tracking.uri and that the store is writable") from exc
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    finally:
        try:
            tracker.flush()
        finally:
            client.set_terminated(run_id, status)
            close_parent(client, parent, stage, status)
