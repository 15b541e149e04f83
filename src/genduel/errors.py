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


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached a stage (:func:`genduel.stage.run_stage` installs the handlers).

    A ``KeyboardInterrupt``, so code that cleans up on Ctrl-C cleans up on SIGTERM too; the
    stage exits with ``128 + signum`` (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
