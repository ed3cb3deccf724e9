"""Exception types the library raises for bad input and run-time faults.

Every error a user can cause derives from :class:`UnlearnError`, so the CLI
and the app can show one clear line instead of a traceback.
"""


class UnlearnError(Exception):
    """Base class for every error a user can cause or should see."""


class DatasetError(UnlearnError):
    """A data set is unknown, unreachable (offline) or malformed."""


class ModelError(UnlearnError):
    """A model name is unknown or a model does not fit the data."""


class ForgetSpecError(UnlearnError):
    """A forget-set specification cannot be parsed or resolved."""


class ParameterError(UnlearnError):
    """A method hyperparameter is unknown, of the wrong type or out of range."""


class CheckpointError(UnlearnError):
    """A checkpoint is missing, corrupt, unsafe, or does not fit the model."""


class MethodError(UnlearnError):
    """An unlearning method is unknown or cannot run on this request."""


class DivergenceError(UnlearnError):
    """Training produced a NaN or infinite loss."""


class Cancelled(UnlearnError):
    """The caller asked a long-running job to stop."""


class StorageError(UnlearnError):
    """The data directory, an output file or the disk cannot be used (read-only, a file, full)."""


class OutputPathError(StorageError):
    """An output path is unusable or names a file the library manages (the run store, the checkpoint cache)."""


class UnlearnWarning(UserWarning):
    """Something a user should know that does not stop the work (an unreadable run skipped, a pruned checkpoint).

    The CLI prints these as one ``warning:`` line on stderr.
    """
