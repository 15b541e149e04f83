"""Experiment tracking: the :class:`~genduel.tracking.base.Tracker` interface (base.py) and its
MLflow implementation (mlflow_store.py)."""
