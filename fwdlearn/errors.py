"""The one exception type a user sees: a one-line message naming what is wrong and where."""


class FwdlearnError(Exception):
    """A problem with the user's input (data, preset, checkpoint, path).

    The command line prints ``fwdlearn: error: <message>`` and exits with status 2;
    library users catch it like any other exception.
    """


class DataError(FwdlearnError):
    """A data set is missing, malformed, empty or contains non-finite values."""


class ConfigError(FwdlearnError):
    """A preset or command-line value is invalid."""


class CheckpointError(FwdlearnError):
    """A checkpoint is missing, corrupt, or does not match the requested run."""


class DivergenceError(FwdlearnError):
    """Training produced a non-finite loss or parameter (the learning rate is usually too large)."""


class ExportError(FwdlearnError):
    """A model could not be exported, or its export did not agree with PyTorch."""


def check(condition: bool, message: str) -> None:
    """Raise a one-line ``ConfigError`` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
