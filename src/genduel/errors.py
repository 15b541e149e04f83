"""Errors a user can act on. Each message is one line naming the problem and the fix."""


class GenDuelError(Exception):
    """Base class: stage entry points turn these into one line on stderr and exit code 2."""


class ConfigError(GenDuelError):
    """An unknown key, wrong type or out-of-range value in ``params.yaml``."""


class DataError(GenDuelError):
    """Missing, corrupt or inconsistent data files."""


class TrainingError(GenDuelError):
    """Training diverged (a NaN or infinite loss)."""


class TrackingError(GenDuelError):
    """The MLflow tracking store cannot be reached or written."""
