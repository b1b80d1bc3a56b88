"""Errors that map to the CLI's exit codes: 2 for bad input, 1 for a failed check, 3 for a
library that failed on a model it was given (a converter crash is not the user's bad input)."""


class EdgeshipError(Exception):
    """Base class: a message meant for a person, printed on one line without a traceback."""

    exit_code = 2


class UserInputError(EdgeshipError, ValueError):
    """Bad input from the user: a wrong name, an unreadable file, data that does not fit.

    The only bad input (exit 2): config validation raises it too. It is also a ValueError,
    so callers of the Python API may catch either; any other ValueError (numpy's,
    TensorFlow's) is an internal failure, exit 3.
    """

    exit_code = 2


class MissingDependencyError(UserInputError):
    """An optional dependency is missing; the message says what to install."""


class CheckFailedError(EdgeshipError):
    """A gate the user asked for failed (accuracy drop, parity, latency regression)."""

    exit_code = 1


class ToolFailureError(EdgeshipError):
    """A converter or runtime failed on a model that passed edgeship's own checks.

    Not the user's input as far as edgeship can tell (an unsupported op, a converter bug):
    the message names the stage and the library; the CLI keeps the traceback in the log.
    """

    exit_code = 3
