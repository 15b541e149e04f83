"""Where evaluate's numbers go in MLflow, so that no pipeline run's record is ever rewritten.

A model's training run may belong to another pipeline run: DVC restores ``train_vae`` from its
run-cache in every GAN sweep, and the restored ``metrics/train_vae.json`` names the run that
trained it. Appending each sweep point's evaluation to that one run gave it ten ``fid`` values at
step 0 and a "latest" from whichever ran last. :func:`log_evaluation` therefore records every row
in a run of its own, nested under the evaluate run and linked to the logged model, and copies it
to the training run only when both belong to the same pipeline run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from genduel.io import numeric
from genduel.tracking.mlflow_store import MlflowTracker
from genduel.tracking.outbox import describe_error

log = logging.getLogger(__name__)


def log_evaluation(tracker: MlflowTracker, rows: Mapping[str, Mapping[str, Any]],
                   training_runs: Mapping[str, str],
                   series: Mapping[str, Sequence[tuple[int, Mapping[str, float]]]]) -> None:
    """Record evaluate's metrics rows without touching another pipeline run's runs.

    Each row's numbers (names as in ``metrics/eval_<row>.json``, step 0) and its ``series``
    ((step, values) histories) go to a run ``evaluate/<row>`` nested under the evaluate run;
    for a model row they are linked to the model its training run logged (``training_runs``:
    row -> run id). They are also added to that training run, with ``log_batch`` only (its
    status and end time stay), but only when the run belongs to this pipeline run: a model that
    DVC restored from its run-cache was trained under another parent, whose run keeps exactly
    the evaluations of its own pipeline run.

    Never raises: a store that fails here (the metrics files are written already) costs the
    MLflow record, with one warning; points that were queued are retried when the stage's run
    closes.
    """
    try:
        _log_rows(tracker, rows, training_runs, series)
    except Exception as exc:  # the store went away mid-stage: the record, not the stage, suffers
        log.warning("evaluation rows not recorded in MLflow store %s (%s)", tracker.uri,
                    describe_error(exc))


def _log_rows(tracker: MlflowTracker, rows: Mapping[str, Mapping[str, Any]],
              training_runs: Mapping[str, str],
              series: Mapping[str, Sequence[tuple[int, Mapping[str, float]]]]) -> None:
    from mlflow.entities import LoggedModelInput

    models = []
    for row, values in rows.items():
        numbers, history = numeric(values), series.get(row, ())
        trained = _training_run(tracker.client, training_runs.get(row))
        model_id = _model_id(trained)
        record = tracker.nested(f"evaluate/{row}", {"genduel.row": row})
        _write(record, numbers, history, model_id)
        if model_id:
            tracker.client.log_inputs(record.run_id, models=[LoggedModelInput(model_id)])
            models.append(LoggedModelInput(model_id))
        tracker.client.set_terminated(record.run_id, "FINISHED")
        if trained is None:
            continue
        if trained.data.tags.get("mlflow.parentRunId") == tracker.parent_id:
            _write(tracker.for_run(trained.info.run_id), numbers, history)
        else:
            log.info("%s was trained in another pipeline run (run %s, restored from DVC's "
                     "cache); its evaluation is in evaluate/%s only", row, trained.info.run_id,
                     row)
    if models:
        tracker.client.log_inputs(tracker.run_id, models=models)


def _write(run: MlflowTracker, numbers: Mapping[str, float],
           history: Sequence[tuple[int, Mapping[str, float]]], model_id: str | None = None
           ) -> None:
    """``numbers`` at step 0 (linked to ``model_id``), then ``history``; log_batch only."""
    run.log_metrics(numbers, step=0, model_id=model_id)
    for step, point in history:
        run.log_metrics(numeric(point), step=step)
    run.flush()


def _training_run(client: Any, run_id: str | None) -> Any:
    """The training run ``run_id`` or None (with a warning when the id is unknown here)."""
    if run_id is None:
        return None
    if not run_id:
        log.warning("no MLflow run id recorded for a trained model; its evaluation is not linked")
        return None
    try:
        return client.get_run(run_id)
    except Exception as exc:  # e.g. the store was reset since training: say so, go on
        log.warning("training run %s is not in this MLflow store (%s); its evaluation is not "
                    "linked to it", run_id, exc.__class__.__name__)
        return None


def _model_id(run: Any) -> str | None:
    outputs = getattr(run, "outputs", None) if run is not None else None
    models = getattr(outputs, "model_outputs", None) or []
    return models[0].model_id if models else None


def log_seed_summary(tracker: MlflowTracker, gathered: Mapping[str, Mapping[str, Any]]) -> None:
    """Put the report's numbers over the training seeds on the pipeline run's parent, as
    ``<row>.<metric>`` (``gan.fid``, ``gan.fid_std`` over seeds, ``gan.fid_draw_std``,
    ``gan.seeds``), so that the compare view shows each pipeline run's gathered figures beside
    its per-seed runs (tag ``genduel.seed``). Never raises (one warning: the files are written)."""
    try:
        parent = tracker.for_run(tracker.parent_id)
        parent.log_metrics({f"{row}.{k}": v for row, values in gathered.items()
                            for k, v in numeric(values).items()}, step=0)
        parent.flush()
    except Exception as exc:  # the store went away mid-stage: the record, not the stage, suffers
        log.warning("figures over the seeds not recorded on the MLflow parent run in %s (%s)",
                    tracker.uri, describe_error(exc))
