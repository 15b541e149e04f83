"""One MLflow parent run per pipeline run, found again by every stage.

DVC starts each stage as its own process and skips the stages whose outputs are cached, so no
process sees the whole pipeline run. Each stage therefore computes the same **pipeline key**
(:func:`pipeline_key`) from what defines the run: the DVC experiment name (``workspace`` for
``dvc repro``), HEAD's commit, the diff against HEAD of the code the stages run
(:data:`PIPELINE_CODE`: ``src/``, ``pipeline/``, ``dvc.yaml``, the package's requirements) and
the bytes of ``params.yaml``. Neither the files the pipeline writes itself (``dvc.lock``,
``metrics/``) nor an edit of the README or the tests while a run goes on change the key, so every
stage of one run finds the same parent. :func:`git_commit` leaves the pipeline's own outputs
(:data:`PIPELINE_WRITTEN`, with ``params.yaml``, which ``dvc exp run`` rewrites) out of its
``-dirty`` check.

:func:`open_parent` finds the parent run with that key (tag ``genduel.pipeline_key``) that is
not FINISHED, or creates it. **Race rule**: two stages that start at once (``dvc queue start -j
2`` with one key, or a retry) may both create a parent; after creating, a stage searches again
and every one keeps the oldest candidate (start time, then run id) and deletes its own if that
is not it, so all stages nest under one parent.

The parent's status tells the truth about the pipeline run: RUNNING exactly while one of its
stages runs; otherwise the status of the stage that ended last (FINISHED, FAILED, or KILLED when
it was interrupted), named by its tag :data:`LAST_STAGE_TAG` (:func:`close_parent`). A later
stage of the same key reopens it (RUNNING again) until the last stage (:data:`LAST_STAGE`, the
report) has FINISHED: that pipeline run is complete, and the next stage of the same key (``dvc
repro -f``) starts a new one. So ``dvc repro -s train_vae``, or a run whose report is cached,
leaves a FINISHED parent, not one RUNNING forever. A stage that ends while another stage of the
same parent still runs (``dvc queue start -j 2`` with one key) leaves it RUNNING; on the sqlite
store the store lock is held from that check to the new status, and from a parent's reopening
to its stage's run, so two stages cannot interleave there (a server's store has no such lock:
a stage starting in the instant another ends may find its parent closed; the next stage end
sets it right).

**Resume**: a stage that continues an interrupted attempt reopens that attempt's run
(:func:`start_stage_run`), so one run holds the metrics of both halves.

**Dead runs**: a stage killed with SIGKILL (or a lost machine) cannot close its run. Every stage
run carries the host and pid of its process (:data:`HOST_TAG`, :data:`PID_TAG`), and every stage
that opens a run first sweeps the experiment (:func:`sweep_dead_runs`): a RUNNING run of this
host whose process is gone becomes KILLED (tag :data:`KILLED_REASON_TAG`), and so does its
parent when no other stage of it still runs. So no run stays RUNNING once any stage runs again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genduel import config
from genduel.tracking.outbox import describe_error

log = logging.getLogger(__name__)

#: Tracked paths the pipeline itself rewrites: never a sign of changed code.
PIPELINE_WRITTEN = ("dvc.lock", "params.yaml", "metrics")
#: Tracked paths whose edits change what the stages run (params.yaml enters the key by its bytes).
#: Edits elsewhere (README, tests, bench) during a run must not split it into two parents.
PIPELINE_CODE = ("src", "pipeline", "dvc.yaml", "pyproject.toml", "constraints.txt")
#: The stage whose end finishes the pipeline run (the last one in dvc.yaml).
LAST_STAGE = "report"
#: On a parent: the stage that ended last (its status is the parent's while no stage runs).
LAST_STAGE_TAG = "genduel.last_stage"
KEY_TAG = "genduel.pipeline_key"
KIND_TAG = "genduel.kind"  # "pipeline" (parents), "stage", "record" (evaluate's rows)
#: The training seed of a per-seed stage's run (``runtime.seeds``; also its param ``seed``).
SEED_TAG = "genduel.seed"
HOST_TAG, PID_TAG = "genduel.host", "genduel.pid"  # the process that holds a stage run open
PID_START_TAG = "genduel.pid_start"  # and when it started: a reused pid is another process
RESUMED_TAG, RESUMED_FROM_TAG = "genduel.resumed", "genduel.resumed_from"
KILLED_REASON_TAG = "genduel.killed_reason"


def _git(root: Path, *args: str) -> bytes | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _code_pathspec() -> list[str]:
    """Every tracked path but :data:`PIPELINE_WRITTEN`, from the top of the work tree."""
    return ["--", ":(top)", *(f":(top,exclude){p}" for p in PIPELINE_WRITTEN)]


def git_commit(root: Path) -> str:
    """HEAD's commit, with ``-dirty`` when tracked files other than the pipeline's own outputs
    (:data:`PIPELINE_WRITTEN`) differ from it; ``unknown`` outside a git work tree."""
    sha = _git(root, "rev-parse", "HEAD")
    if not sha:
        return "unknown"
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no", *_code_pathspec())
    return sha.decode().strip() + ("-dirty" if dirty else "")


def pipeline_key(root: Path, exp_name: str) -> str:
    """sha256 of (experiment name, HEAD, diff of :data:`PIPELINE_CODE` against HEAD,
    params.yaml)."""
    h = hashlib.sha256()
    params = root / "params.yaml"
    for part in (exp_name.encode(), _git(root, "rev-parse", "HEAD") or b"",
                 _git(root, "diff", "HEAD", "--binary", "--",
                      *(f":(top){p}" for p in PIPELINE_CODE)) or b"",
                 params.read_bytes() if params.is_file() else b""):
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


@dataclass(frozen=True)
class Pipeline:
    """Who a stage run belongs to: the key and the name of its pipeline run."""

    key: str
    name: str  # the DVC experiment's name, or "workspace@<short commit>"
    tags: dict[str, str]  # tags of the parent (and, but for the kind, of each stage run)


def describe(root: Path, exp_name: str, baseline_rev: str) -> Pipeline:
    commit = git_commit(root)
    short = "nogit" if commit == "unknown" else commit[:7] + commit[40:]  # keeps "-dirty"
    name = exp_name or f"workspace@{short}"
    tags = {KEY_TAG: pipeline_key(root, exp_name or "workspace"),
            "mlflow.source.git.commit": commit, "dvc.exp_name": exp_name or "workspace",
            "dvc.baseline_rev": baseline_rev}
    return Pipeline(tags[KEY_TAG], name, tags)


def _candidates(client: Any, exp_id: str, key: str) -> list[Any]:
    runs = client.search_runs(
        [exp_id], filter_string=f"tags.`{KEY_TAG}` = '{key}' and tags.`{KIND_TAG}` = 'pipeline'",
        max_results=100)
    return sorted((r for r in runs if not complete(r)),
                  key=lambda r: (r.info.start_time, r.info.run_id))


def complete(parent: Any) -> bool:
    """Whether a parent's pipeline run is over: FINISHED by its :data:`LAST_STAGE` (or FINISHED
    without :data:`LAST_STAGE_TAG`: a parent from before the tag, which only the report
    finished). Any other parent is reopened by the next stage of its key."""
    return (parent.info.status == "FINISHED"
            and parent.data.tags.get(LAST_STAGE_TAG, LAST_STAGE) == LAST_STAGE)


def open_parent(client: Any, exp_id: str, pipeline: Pipeline, root: Path) -> str:
    """The id of the pipeline run's parent, found or created, with status RUNNING."""
    found = _candidates(client, exp_id, pipeline.key)
    if found:
        return _reopen(client, found[0])
    tags = {**pipeline.tags, KIND_TAG: "pipeline", "mlflow.source.name": "dvc.yaml",
            "mlflow.source.type": "LOCAL",
            "mlflow.note.content": f"Pipeline run `{pipeline.name}`: its stage runs are nested "
                                   "below; the params are those of params.yaml."}
    mine = client.create_run(exp_id, run_name=pipeline.name, tags=tags).info.run_id
    winner = _candidates(client, exp_id, pipeline.key)[0]  # the race rule: the oldest
    if winner.info.run_id != mine:
        log.info("another stage created pipeline run %s at the same time; using it",
                 winner.info.run_id)
        client.delete_run(mine)
        return _reopen(client, winner)
    _log_pipeline_params(client, mine, root)
    return mine


def _reopen(client: Any, run: Any) -> str:
    if run.info.status != "RUNNING":  # a stage failed before; this one retries
        client.update_run(run.info.run_id, "RUNNING")
    if KILLED_REASON_TAG in run.data.tags:
        client.delete_tag(run.info.run_id, KILLED_REASON_TAG)
    return run.info.run_id


def _log_pipeline_params(client: Any, run_id: str, root: Path) -> None:
    """Every params.yaml section, validated and flattened (``section.key``), once per run."""
    from mlflow.entities import Param

    if not (root / "params.yaml").is_file():  # not a pipeline checkout (a library caller)
        return
    params = config.load_all(root / "params.yaml")
    flat = config.flat_params(params, *params)
    items = [Param(k, str(v)[:6000]) for k, v in flat.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i:i + 100])


def close_parent(client: Any, parent: str, stage: str, status: str, run_id: str = "") -> None:
    """After ``stage`` (its run ``run_id``) ended with ``status``: the parent takes that status
    and names the stage (:data:`LAST_STAGE_TAG`), unless another stage of it still runs (then
    it stays RUNNING, and that stage's end decides)."""
    client.set_tag(parent, LAST_STAGE_TAG, stage)
    if running_stages(client, parent, exclude=run_id):
        log.info("pipeline run %s stays RUNNING: another of its stages still runs", parent)
        return
    client.set_terminated(parent, status)


def running_stages(client: Any, parent: str, exclude: str = "") -> list[str]:
    """The stage runs of ``parent`` (but ``exclude``) that are RUNNING and whose process is
    alive (a run of another host counts as alive: its process cannot be checked from here)."""
    runs = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`mlflow.parentRunId` = "
                      f"'{parent}' and tags.`{KIND_TAG}` = 'stage'", max_results=1000)
    host = socket.gethostname()
    return [r.info.run_id for r in runs if r.info.run_id != exclude and not (
        r.data.tags.get(HOST_TAG) == host and r.data.tags.get(PID_TAG, "").isdigit()
        and not pid_alive(int(r.data.tags[PID_TAG]), r.data.tags.get(PID_START_TAG, "")))]


def start_stage_run(client: Any, exp_id: str, stage: str, tags: dict[str, str],
                    resume_run_id: str | None) -> str:
    """The id of the stage's run, with ``tags``: ``resume_run_id`` reopened when the store has
    it (RUNNING again, :data:`RESUMED_TAG` counting the resumes, its metrics kept), else a new
    run (with :data:`RESUMED_FROM_TAG` naming ``resume_run_id`` when one was given)."""
    if resume_run_id:
        run = existing_run(client, resume_run_id, exp_id)
        if run is not None:
            from mlflow.entities import RunTag

            resumes = int(run.data.tags.get(RESUMED_TAG, "0") or 0) + 1
            client.update_run(resume_run_id, "RUNNING")
            if KILLED_REASON_TAG in run.data.tags:  # it lives again: the reason is history
                client.delete_tag(resume_run_id, KILLED_REASON_TAG)
            client.log_batch(resume_run_id, tags=[
                RunTag(k, v) for k, v in {**tags, RESUMED_TAG: str(resumes)}.items()])
            log.info("MLflow run %s of %s reopened (resume %d)", resume_run_id, stage, resumes)
            return resume_run_id
        log.info("MLflow run %s of %s is not in the store; a new run continues it",
                 resume_run_id, stage)
        tags = {**tags, RESUMED_FROM_TAG: resume_run_id}
    return client.create_run(exp_id, run_name=stage, tags=tags).info.run_id


def existing_run(client: Any, run_id: str, exp_id: str) -> Any:
    """Run ``run_id`` if the store has it, active, in experiment ``exp_id``; else None."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    if run.info.lifecycle_stage != "active" or run.info.experiment_id != exp_id:
        return None
    return run


def process_tags() -> dict[str, str]:
    """The host, pid and pid start time of this process, as a stage run's tags."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            PID_START_TAG: _started(os.getpid())}


def _started(pid: int) -> str:
    """When ``pid`` started (clock ticks after boot, ``/proc/<pid>/stat`` field 22); '' where
    that is unknown. With the pid it names one process: a reused pid has another start."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def pid_alive(pid: int, started: str = "") -> bool:
    """Whether process ``pid`` runs and, when ``started`` is given and ``/proc`` tells, is the
    process that started then (not a later one that got the same pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    now = _started(pid) if started else ""
    return not now or now == started


def sweep_dead_runs(client: Any, exp_id: str, host: str | None = None) -> list[str]:
    """Mark KILLED every RUNNING run of ``exp_id`` opened on ``host`` (this one) by a process
    that is gone, and its parent when none of its stages still runs; the ids marked. One
    search; never raises (a warning instead)."""
    host = host or socket.gethostname()
    try:
        runs = client.search_runs(
            [exp_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = "
                                    f"'{host}'", max_results=1000)
        dead = [r for r in runs if r.data.tags.get(PID_TAG, "").isdigit()
                and not pid_alive(int(r.data.tags[PID_TAG]), r.data.tags.get(PID_START_TAG, ""))]
        for run in dead:
            client.set_tag(run.info.run_id, KILLED_REASON_TAG,
                           f"process {run.data.tags[PID_TAG]} on {host} ended without closing "
                           f"the run (SIGKILL or a crash); found by pid {os.getpid()}")
            client.set_terminated(run.info.run_id, "KILLED")
        killed = [r.info.run_id for r in dead]
        parents = {r.data.tags.get("mlflow.parentRunId") for r in dead} - {None, ""}
        alive = {r.data.tags.get("mlflow.parentRunId") for r in runs if r not in dead}
        for parent in parents - alive:
            if client.get_run(parent).info.status == "RUNNING":
                client.set_tag(parent, KILLED_REASON_TAG, "a stage's process ended without "
                                                          "closing its run")
                client.set_terminated(parent, "KILLED")
                killed.append(parent)
    except Exception as exc:  # a sweep is housekeeping: never the reason a stage fails
        log.warning("could not check for MLflow runs left RUNNING by dead processes (%s)",
                    describe_error(exc))
        return []
    if killed:
        log.info("marked %d MLflow run(s) KILLED whose process on %s is gone: %s",
                 len(killed), host, ", ".join(killed))
    return killed
