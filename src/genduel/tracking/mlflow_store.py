"""The MLflow-backed :class:`~genduel.tracking.base.Tracker`, where its store lives, and what the
runs of a pipeline run look like (the store itself is opened by :mod:`genduel.tracking.store`).

Default store: ``sqlite:///<repo root>/mlflow.db`` with artifacts under ``<repo root>/mlartifacts``,
so ``mlflow ui`` started at the repo root shows every run. The repo root is ``$DVC_ROOT`` (set by
DVC for stage commands); a queued ``dvc exp`` runs in ``<repo>/.dvc/tmp/exps/<tmp>``, which is
mapped back to ``<repo>`` so that queued runs land in the same store and outlive the temp copy.
``tracking.uri`` (params) or ``$MLFLOW_TRACKING_URI`` selects a team server instead. Before any
MLflow call, an http(s) server is probed with a short timeout and client retries are turned off,
so an unreachable server is an error within seconds instead of a hang of minutes.

Parallel runs on the sqlite store (``dvc queue start -j 2``): every store call of a stage holds
an inter-process file lock next to the database (``mlflow.db-lock``, waited for at most
``6 * tracking.timeout_s``), so two stages never create the tables at once (sqlite: "table
experiments already exists") nor write at once ("database is locked"); a server's store is safe
on its own and takes no lock.

Faults: a store that cannot be opened (server down, ``mlflow.db`` locked, not a database,
read-only) stops the stage with one line before it does any work; a store that fails once the
run is open never stops it (:class:`MlflowTracker` keeps, retries and finally reports what it
could not send). Ctrl-C and SIGTERM end the run KILLED; a run whose process died without
closing it (SIGKILL) is marked KILLED by the next stage run on the same host
(:func:`~genduel.tracking.pipeline_run.sweep_dead_runs`); a resumed stage reopens its run.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genduel.config import TrackingConfig
from genduel.errors import GenDuelError
from genduel.tracking.base import DatasetRef, ModelExample
from genduel.tracking.outbox import Backoff, Outbox, describe_error
from genduel.tracking.pipeline_run import (
    KIND_TAG,
    SEED_TAG,
    close_parent,
    describe,
    git_commit,
    open_parent,
    process_tags,
    start_stage_run,
    sweep_dead_runs,
)
from genduel.tracking.store import (
    LockedClient,
    _configure_client,
    check_reachable,
    experiment_id,
    lock_timeout_s,
    repo_root,
    resolve_uri,
    set_fluent_uri,
    store_client,
    store_error,
)

log = logging.getLogger(__name__)

#: src/genduel, shipped with every logged model so that its pickle finds the model classes.
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_BATCH = 500  # metrics buffered before one log_batch call (MLflow accepts up to 1000)
_FLUSH_S = 15.0  # ...or seconds since the last send: a killed stage loses at most this much
#: MLflow keeps at most 36 characters of a dataset digest; the full sha256 is in the profile.
DIGEST_CHARS = 16
__all__ = ["MlflowTracker", "git_commit", "stage_run"]


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

    No method raises once the run is open: what the store does not take (stopped, hung or locked)
    waits in an :class:`~genduel.tracking.outbox.Outbox` shared with the runs nested under this
    one, is retried on later calls after a backoff, and gets a last attempt at :meth:`close`,
    which warns once about what is still unsent. Metrics are sent every :data:`_BATCH` points
    or :data:`_FLUSH_S` seconds.
    """

    def __init__(self, client: Any, run_id: str, log_models: bool = True, *,
                 experiment_id: str = "", parent_id: str = "",
                 tags: Mapping[str, str] | None = None, uri: str = "",
                 outbox: Outbox | None = None) -> None:
        self.client, self.run_id, self.log_models = client, run_id, log_models
        self.experiment_id, self.parent_id, self.uri = experiment_id, parent_id, uri
        self.tags = dict(tags or {})  # the pipeline's tags, for nested runs
        self.outbox = outbox or Outbox(Backoff())
        self._last: dict[str, tuple[int, float]] = {}
        self._sent_at = time.monotonic()

    def _call(self, what: str, call: Callable[[], Any]) -> None:
        self.outbox.calls.append((what, call))
        self.outbox.send_calls()

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            chunk = items[i:i + 100]
            self._call("params", lambda c=chunk: self.client.log_batch(self.run_id, params=c))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    model_id: str | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        points = []
        for k, v in metrics.items():
            point = (int(step or 0), float(v))
            if self._last.get(k) == point and model_id is None:
                continue
            self._last[k] = point
            points.append((self.run_id, Metric(k, point[1], ts, point[0], model_id=model_id)))
        self.outbox.add_points(points)
        if (len(self.outbox.points) >= _BATCH
                or time.monotonic() - self._sent_at >= _FLUSH_S):
            self.flush()

    def flush(self) -> None:
        """Send what waits (unless the backoff says wait); never raises."""
        self._sent_at = time.monotonic()
        self._send(force=False)

    def _send(self, force: bool) -> bool:
        return (self.outbox.send_calls(force)
                and self.outbox.send_points(self.client.log_batch, _BATCH, force))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        log_files = self.client.log_artifacts if Path(path).is_dir() else self.client.log_artifact
        self._call("artifacts", lambda: log_files(self.run_id, str(path), artifact_path))

    def log_inputs(self, datasets: Sequence[DatasetRef]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [DatasetInput(Dataset(
            name=d.name, digest=d.digest[:DIGEST_CHARS], source_type="local",
            source=json.dumps({"uri": d.source}), schema=_dataset_schema(d),
            profile=json.dumps(d.profile)), tags=[InputTag("mlflow.data.context", d.context)])
            for d in datasets]
        self._call("inputs", lambda: self.client.log_inputs(self.run_id, datasets=inputs))

    def log_model(self, model: torch.nn.Module, name: str, example: ModelExample | None = None,
                  step: int = 0) -> str | None:
        """Pickle format, so the model loads back as its class (torch.export keeps only forward);
        the run's metrics at ``step`` become the logged model's metrics. None when models are
        not logged or the store did not take it now (it is tried again at :meth:`close`)."""
        if not self.log_models:
            return None
        self.flush()
        extra: dict[str, Any] = {}
        if example is not None:
            extra = {"signature": _signature(example), "metadata": {"call": example.call},
                     "input_example": _input_example(example)}
        logged: dict[str, str] = {}

        def call() -> None:
            # Fluent calls: the store lock of a sqlite store (see store.py) held here.
            hold = getattr(self.client, "hold", contextlib.nullcontext)
            with hold():
                # The logged model goes to the active experiment, not to its run's: make them
                # agree.
                import mlflow

                mlflow.set_experiment(experiment_id=self.experiment_id or
                                      self.client.get_run(self.run_id).info.experiment_id)
                logged["id"] = self._log_model(model, name, step, extra).model_id
        self._call("models", call)
        return logged.get("id")

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
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self._call("tags", lambda: self.client.log_batch(self.run_id, tags=items))

    def nested(self, name: str, tags: Mapping[str, str]) -> MlflowTracker:
        """A new run ``name`` nested under this one (finish it with ``client.set_terminated``);
        it shares this run's outbox. Raises when the store does not create the run."""
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            **self.tags, "mlflow.parentRunId": self.run_id, **tags})
        return self.for_run(run.info.run_id)

    def for_run(self, run_id: str) -> MlflowTracker:
        """A tracker of the existing run ``run_id`` sharing this one's store and outbox."""
        return MlflowTracker(self.client, run_id, self.log_models,
                             experiment_id=self.experiment_id, parent_id=self.run_id,
                             tags=self.tags, uri=self.uri, outbox=self.outbox)

    def close(self, succeeded: bool = True) -> bool:
        """One last attempt at what waits, then one warning line about what is still unsent
        (saying the stage's outputs are complete only when it ``succeeded``); True when
        everything was sent."""
        self._send(force=True)
        unsent = self.outbox.report(self.run_id, self.uri, succeeded)
        if unsent:
            log.warning("%s", unsent)
        return unsent is None


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
def stage_run(stage: str, cfg: TrackingConfig, params: Mapping[str, Any], *,
              resume_run_id: str | None = None,
              seed: int | None = None) -> Iterator[MlflowTracker]:
    """Open the MLflow run of a stage, nested under its pipeline run's parent.

    The run is named after the stage, gets ``params`` flattened and tags: git commit, DVC stage,
    DVC experiment, baseline revision, pipeline key, source script, and the host and pid of this
    process (:func:`~genduel.tracking.pipeline_run.process_tags`). Before that, runs that dead
    processes of this host left RUNNING are marked KILLED
    (:func:`~genduel.tracking.pipeline_run.sweep_dead_runs`).

    ``seed``: the training seed of a per-seed stage (``train_vae@1``, ...): the run is named
    like the DVC stage, ``<stage>@<seed>``, and gets the seed as tag ``genduel.seed`` and param
    ``seed``, so that the compare view lines the seeds of one parent up.

    ``resume_run_id``: the run of an interrupted attempt at this stage. When the store still has
    it (in this experiment, not deleted) it is reopened (RUNNING again, under this pipeline run's
    parent, tag ``genduel.resumed`` counting the resumes) and keeps its metrics; otherwise a new
    run is created with tag ``genduel.resumed_from`` naming it.

    The run ends FINISHED, KILLED when the body is interrupted (``KeyboardInterrupt``, also
    :class:`~genduel.errors.Interrupted`, i.e. SIGTERM), or FAILED when the body raises; the
    parent follows (:func:`~genduel.tracking.pipeline_run.close_parent`). A store that cannot
    be opened is a :class:`~genduel.errors.TrackingError`
    (:func:`~genduel.tracking.store.store_error`); once the run is open, store failures never
    raise (see :class:`MlflowTracker`).
    """
    if seed is not None:
        params = {**params, "seed": seed}
    tracker = _open_run(stage, cfg, params, resume_run_id, seed)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        _close_run(tracker, stage, status, lock_timeout_s(cfg.timeout_s))


def _open_run(stage: str, cfg: TrackingConfig, params: Mapping[str, Any],
              resume_run_id: str | None, seed: int | None = None) -> MlflowTracker:
    root, cwd = repo_root(), Path.cwd()
    uri = resolve_uri(cfg, root=root)
    _configure_client(cfg.timeout_s)
    check_reachable(uri, cfg.timeout_s)
    try:
        set_fluent_uri(uri)
        client = store_client(uri, lock_timeout_s(cfg.timeout_s))
        exp_id = experiment_id(client, cfg.experiment, root, uri.startswith("sqlite"))
        sweep_dead_runs(client, exp_id)
        pipeline = describe(cwd, os.environ.get("DVC_EXP_NAME", ""),
                            os.environ.get("DVC_EXP_BASELINE_REV", ""))
        with _held(client):  # no other stage's end closes the parent before this run exists
            parent = open_parent(client, exp_id, pipeline, cwd)
            name = stage if seed is None else f"{stage}@{seed}"  # as dvc.yaml's foreach
            tags = {**pipeline.tags, KIND_TAG: "stage", "mlflow.parentRunId": parent,
                    "genduel.stage": stage, "dvc.stage": name, **process_tags(),
                    **({} if seed is None else {SEED_TAG: str(seed)}),
                    "mlflow.source.name": f"pipeline/{stage}.py", "mlflow.source.type": "LOCAL"}
            run_id = start_stage_run(client, exp_id, name, tags, resume_run_id)
    except GenDuelError:  # a TrackingError, or params.yaml that does not validate
        raise
    except Exception as exc:
        raise store_error(uri, exc) from exc
    if isinstance(client, LockedClient):  # a run's calls wait less; a failed one is retried
        client.timeout = max(1.0, cfg.timeout_s)
    tracker = MlflowTracker(client, run_id, cfg.log_models, experiment_id=exp_id,
                            parent_id=parent, tags={**tags, KIND_TAG: "record"}, uri=uri)
    tracker.log_params(params)
    return tracker


def _held(client: Any) -> contextlib.AbstractContextManager:
    """The store lock of a sqlite store (:class:`~genduel.tracking.store.LockedClient`, held
    across several calls); nothing for a server's store."""
    return client.hold() if isinstance(client, LockedClient) else contextlib.nullcontext()


def _close_run(tracker: MlflowTracker, stage: str, status: str, lock_timeout: float) -> None:
    """Last attempt at the unsent calls, then the run's and the parent's end status; a store
    that does not take them is one warning, never an exception."""
    client = tracker.client
    if isinstance(client, LockedClient):
        client.timeout = lock_timeout
    tracker.close(succeeded=status == "FINISHED")
    try:
        with _held(client):  # no other stage reopens the parent between the check and the end
            client.set_terminated(tracker.run_id, status)
            close_parent(client, tracker.parent_id, stage, status, tracker.run_id)
    except Exception as exc:
        log.warning("MLflow store %s did not record the end (%s) of run %s (%s); the next "
                    "stage on this host marks it KILLED", tracker.uri, status, tracker.run_id,
                    describe_error(exc))
