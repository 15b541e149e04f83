"""Opening an MLflow store, and what a user reads when it cannot be opened.

The embedded store is a sqlite file (``mlflow.db``). Every store call of a stage holds an
inter-process file lock next to it (``mlflow.db-lock``, :class:`LockedClient`), so that two
queued stages never create the tables at once nor write at once; the lock is waited for at most
``lock_timeout_s`` (:func:`lock_timeout_s`), never forever. A server's store is safe on its own
and takes no lock.

A store that cannot be opened is one :class:`~genduel.errors.TrackingError` line naming the file
and the fix (:func:`store_error`), never a sqlalchemy traceback nor the SQL it ran: a file locked
by another process, a file that is not an MLflow database, a read-only file, or (for anything
else) the error's class and its first line. MLflow logs the traceback of every sqlite error
itself before raising; :func:`store_client` silences that log line (the error still raises).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genduel.config import TRACKING_URI_FORMS, TrackingConfig, tracking_uri_problem
from genduel.errors import TrackingError

log = logging.getLogger(__name__)

#: Seconds a stage waits for another process's hold of the store lock, per ``timeout_s``.
LOCK_WAIT_PER_TIMEOUT = 6
_MLFLOW_DB_LOG = "mlflow.store.db.utils"
_EXPS_TMP = os.path.join(".dvc", "tmp", "exps")
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

#: MLflow 3's experiment kind tag: with ``custom_model_development`` its UI opens the
#: experiment on the runs table, not on the GenAI overview of traces (empty here).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def repo_root(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """The repository whose ``mlflow.db`` to use, also from inside a queued experiment."""
    env = os.environ if env is None else env
    root = Path(env.get("DVC_ROOT") or (cwd or Path.cwd())).resolve()
    parts = str(root).split(os.sep + _EXPS_TMP + os.sep)
    return Path(parts[0]) if len(parts) > 1 else root


def resolve_uri(cfg: TrackingConfig, env: Mapping[str, str] | None = None,
                root: Path | None = None) -> str:
    """``tracking.uri`` if set, else ``$MLFLOW_TRACKING_URI``, else the embedded sqlite store.

    Raises:
        TrackingError: ``$MLFLOW_TRACKING_URI`` is of no form MLflow opens (``tracking.uri``
            was checked with the params: :func:`~genduel.config.tracking_uri_problem`).
    """
    env = os.environ if env is None else env
    if cfg.uri:
        return cfg.uri
    if env.get("MLFLOW_TRACKING_URI"):
        uri = env["MLFLOW_TRACKING_URI"]
        if problem := tracking_uri_problem(uri):
            raise TrackingError(f"MLFLOW_TRACKING_URI = {uri!r} is not a tracking URI "
                                f"({problem}); unset it or use {TRACKING_URI_FORMS}")
        return uri
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
    # Read by MLflow's REST client at request time: no retry storm against a dead server, and a
    # hung one costs one timeout per attempt (the tracker's backoff spaces the attempts).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, timeout_s))))


def set_fluent_uri(uri: str) -> None:
    """Point MLflow's fluent API (used by ``log_model``) at ``uri``, leaving
    ``$MLFLOW_TRACKING_URI`` as the user set it (MLflow 3 sets it too, which would otherwise
    override ``tracking.uri`` for every later stage run of this process)."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def experiment_id(client: Any, name: str, root: Path, local: bool) -> str:
    """The experiment ``name``, created (with :data:`EXPERIMENT_NOTE` and
    :data:`EXPERIMENT_KIND`) if missing; an existing one gets whichever of the two it lacks (a
    kind set by hand is kept)."""
    exp = client.get_experiment_by_name(name)
    tags = {"mlflow.note.content": EXPERIMENT_NOTE, EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1]}
    if exp is None:
        location = (root / "mlartifacts").as_uri() if local else None
        try:
            return client.create_experiment(name, artifact_location=location, tags=tags)
        except Exception:  # another queued run created it first: use theirs
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    for key, value in tags.items():
        if not exp.tags.get(key):
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def lock_timeout_s(timeout_s: float) -> float:
    """How long to wait for the store lock: :data:`LOCK_WAIT_PER_TIMEOUT` times ``timeout_s``
    (60 s at the default 10 s), so that a stage logging a model may hold it a while."""
    return LOCK_WAIT_PER_TIMEOUT * timeout_s


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other store)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


class LockedClient:
    """An ``MlflowClient`` whose every method call holds ``lock`` (a reentrant
    :class:`filelock.FileLock`), waiting at most ``timeout`` seconds for it; ``lock`` is also
    held around the fluent calls of :meth:`~genduel.tracking.mlflow_store.MlflowTracker.log_model`
    (:meth:`hold`)."""

    def __init__(self, client: Any, lock: Any, timeout: float) -> None:
        self._client, self.lock, self.timeout = client, lock, timeout

    def hold(self) -> Any:
        """The lock as a context manager, waiting at most :attr:`timeout` seconds
        (``filelock.Timeout`` after that)."""
        return self.lock.acquire(timeout=self.timeout)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.hold():
                return attr(*args, **kwargs)
        return call


class _QuietSqlErrors(logging.Filter):
    """Drops MLflow's own log of a sqlite error (a traceback with the SQL): the error raises
    anyway and becomes one line here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SQLAlchemy database error")


_QUIET = _QuietSqlErrors()


def store_client(uri: str, lock_timeout: float = 60.0) -> Any:
    """``MlflowClient(uri)``; on a sqlite store serialized across processes by a file lock
    (waited for at most ``lock_timeout`` seconds). Raises what MLflow raises: pass it to
    :func:`store_error`."""
    from mlflow import MlflowClient

    db_log = logging.getLogger(_MLFLOW_DB_LOG)
    if _QUIET not in db_log.filters:
        db_log.addFilter(_QUIET)
    db = sqlite_file(uri)
    if db is None:
        return MlflowClient(uri)
    from filelock import FileLock

    db.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{db}-lock")
    with lock.acquire(timeout=lock_timeout):  # the client creates the tables of a new store
        client = LockedClient(MlflowClient(uri), lock, lock_timeout)
        client.search_experiments(max_results=1)
    return client


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _writable(path: Path) -> bool:
    if not path.exists():
        return os.access(path.parent, os.W_OK)
    try:
        with path.open("r+b"):
            return True
    except OSError:
        return False


def store_error(uri: str, exc: BaseException) -> TrackingError:
    """One line for a store that failed to open or write: what is wrong with it and the fix."""
    from filelock import Timeout

    db = sqlite_file(uri)
    chain = _chain(exc)
    name = db.name if db else uri
    where = f"{db}" if db else uri
    fix = "or set tracking.uri / MLFLOW_TRACKING_URI to another store"
    for e in chain:
        if isinstance(e, Timeout):
            return TrackingError(
                f"{name} is locked by another process (its lock {e.lock_file} was not released "
                f"in time); wait for that process to finish and re-run, {fix}")
        if db and isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return TrackingError(f"{name} is read-only ({where}: {e.strerror}); make it and its "
                                 f"folder writable, {fix}")
        if db and isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return TrackingError(f"the disk holding {where} is full; free space, {fix}")
    sql = next((e for e in chain if isinstance(e, sqlite3.Error)), None)
    text = str(sql) if sql is not None else ""
    if "locked" in text:
        return TrackingError(f"{name} is locked by another process ({where}: {text}); wait for "
                             f"it to finish and re-run, {fix}")
    if "not a database" in text or "malformed" in text:
        return TrackingError(f"{name} is not an MLflow database ({where}: {text}); move it "
                             f"aside and re-run (a new store is created), {fix}")
    if db is not None and ("readonly" in text or not _writable(db)):
        return TrackingError(f"{name} is read-only ({where}: {text or 'not writable'}); make "
                             f"it and its folder writable, {fix}")
    if "disk is full" in text:
        return TrackingError(f"the disk holding {where} is full; free space, {fix}")
    first = (text or str(exc)).strip().splitlines()[0][:200] if (text or str(exc)) else ""
    return TrackingError(f"MLflow store {where} failed ({exc.__class__.__name__}: {first}); "
                         "check tracking.uri and that the store is writable")
