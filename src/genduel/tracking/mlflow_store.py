"""The MLflow-backed :class:`~genduel.tracking.base.Tracker` and where its store lives.

Default store: ``sqlite:///<repo root>/mlflow.db`` with artifacts under ``<repo root>/mlartifacts``,
so ``mlflow ui`` started at the repo root shows every run. The repo root is ``$DVC_ROOT`` (set by
DVC for stage commands); a queued ``dvc exp`` runs in ``<repo>/.dvc/tmp/exps/<tmp>``, which is
mapped back to ``<repo>`` so that queued runs land in the same store and outlive the temp copy.

``tracking.uri`` (params) or ``$MLFLOW_TRACKING_URI`` selects a team server instead. Before any
MLflow call, an http(s) server is probed with a short timeout and client retries are turned off,
so an unreachable server is an error within seconds instead of a hang of minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genduel.config import TrackingConfig
from genduel.errors import TrackingError
from genduel.io import numeric

log = logging.getLogger(__name__)

_EXPS_TMP = os.path.join(".dvc", "tmp", "exps")
#: src/genduel, shipped with every logged model so that its pickle finds the model classes.
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_BATCH = 500  # metrics buffered before one log_batch call (MLflow accepts up to 1000)


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


def git_commit(root: Path) -> str:
    """HEAD's commit (with ``-dirty`` when tracked files changed), or ``unknown``."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""
    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


def _configure_client(timeout_s: float) -> None:
    # Read by MLflow's REST client at request time: no retry storm against a dead server.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, timeout_s))))


def _experiment_id(client: Any, name: str, root: Path, local: bool) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = (root / "mlartifacts").as_uri() if local else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another queued run created it first: use theirs
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


class MlflowTracker:
    """A :class:`~genduel.tracking.base.Tracker` writing to one MLflow run, metrics batched."""

    def __init__(self, client: Any, run_id: str, log_models: bool = True) -> None:
        self.client = client
        self.run_id = run_id
        self.log_models = log_models
        self._pending: list[Any] = []

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        for k, v in metrics.items():
            self._pending.append(Metric(k, float(v), ts, int(step or 0)))
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

    def log_model(self, model: torch.nn.Module, name: str) -> None:
        """Pickle format, so the model loads back as its class (torch.export keeps only forward)."""
        if not self.log_models:
            return
        import mlflow.pytorch

        with _active_run(self.run_id):
            mlflow.pytorch.log_model(
                model.cpu().eval(), name=name, serialization_format="pickle",
                code_paths=[str(_PACKAGE_DIR)],
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)


@contextlib.contextmanager
def _active_run(run_id: str) -> Iterator[None]:
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    with mlflow.start_run(run_id=run_id):
        yield


@contextlib.contextmanager
def stage_run(stage: str, cfg: TrackingConfig, params: Mapping[str, Any],
              run_id: str | None = None) -> Iterator[MlflowTracker]:
    """Open (or, with ``run_id``, reopen) the MLflow run of a stage.

    A new run is named after the stage (plus the DVC experiment name in a ``dvc exp``), gets
    ``params`` flattened, and tags: git commit, DVC stage, DVC experiment, baseline revision. The
    run ends FINISHED, or FAILED when the body raises.
    """
    root = repo_root()
    uri = resolve_uri(cfg, root=root)
    _configure_client(cfg.timeout_s)
    check_reachable(uri, cfg.timeout_s)
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp_name = os.environ.get("DVC_EXP_NAME", "")
    try:
        if run_id is None:
            exp_id = _experiment_id(client, cfg.experiment, root, uri.startswith("sqlite"))
            tags = {
                "mlflow.source.git.commit": git_commit(Path.cwd()),
                "genduel.stage": stage,
                "dvc.stage": stage,
                "dvc.exp_name": exp_name or "workspace",
                "dvc.baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
            }
            name = f"{stage}:{exp_name}" if exp_name else stage
            run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
            tracker = MlflowTracker(client, run_id, cfg.log_models)
            tracker.log_params(params)
        else:
            tracker = MlflowTracker(client, run_id, cfg.log_models)
    except TrackingError:
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


def log_to_run(cfg: TrackingConfig, run_id: str, values: Mapping[str, Any],
               series: Sequence[tuple[int, Mapping[str, Any]]] = ()) -> None:
    """Add numeric ``values`` (same names as the metrics JSON) to an existing run, e.g. a model's
    training run, so the MLflow UI compares the VAE and GAN runs on the same metrics.

    ``series`` adds (step, values) pairs as metric histories, e.g. per-epoch diagnostics.
    """
    if not run_id:
        log.warning("no MLflow run id recorded; evaluation metrics not added to a training run")
        return
    try:
        with stage_run("evaluate", cfg, {}, run_id=run_id) as tracker:
            tracker.log_metrics(numeric(values))
            for step, row in series:
                tracker.log_metrics(numeric(row), step=step)
    except TrackingError as exc:  # e.g. the store was reset since training: say so, go on
        log.warning("could not add evaluation metrics to training run %s: %s", run_id, exc)
