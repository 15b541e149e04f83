"""Experiment tracking: the :class:`~genduel.tracking.base.Tracker` interface (base.py) and its
MLflow implementation (mlflow_store.py: the tracker and a stage's run; store.py: opening the
store; outbox.py: what waits for a store that fails; pipeline_run.py: parents, resumes, dead
runs; evaluation.py: evaluate's rows)."""
