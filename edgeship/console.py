"""What a person reads on the console, and where the frameworks' logs go instead.

TensorFlow, LiteRT, TFLite Micro and the converters write hundreds of lines to file
descriptor 2 (C++ logs, CUDA probing, converter chatter, retracing warnings). Run as the
`edgeship` command, the CLI points descriptor 2 at a log file for the whole command and keeps
the real terminal for edgeship's own lines (`error_stream`), so the console shows stage lines,
results and one-line errors; `--verbose` leaves everything on the terminal. The log ends up as
edgeship.log in the command's output folder when there is one.
"""

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOG_NAME = "edgeship.log"

_error_stream = None  # the terminal's stderr while the console is quiet


def error_stream():
    """Where edgeship's own warnings and errors go: the terminal, even while quiet."""
    return _error_stream or sys.stderr


def say(message: str) -> None:
    """One line for the person at the terminal (warnings, decisions), never into the log."""
    print(message, file=error_stream(), flush=True)


@contextlib.contextmanager
def quiet_console() -> Iterator[Path]:
    """Send descriptor 2 (and Python's warnings and logging) to a log file while it runs.

    Yields:
        The log file's path (a temporary file; see keep_log).
    """
    global _error_stream
    import logging
    import warnings

    sys.stderr.flush()
    handle, name = tempfile.mkstemp(prefix="edgeship-", suffix=".log")
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1)
    os.dup2(handle, 2)
    os.close(handle)
    previous_showwarning = warnings.showwarning
    log_stream = open(name, "a", buffering=1)

    def to_log(message, category, filename, lineno, file=None, line=None):
        log_stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = to_log
    handler = logging.StreamHandler(log_stream)
    logging.getLogger().addHandler(handler)
    _error_stream = terminal
    try:
        yield Path(name)
    finally:
        _error_stream = None
        logging.getLogger().removeHandler(handler)
        warnings.showwarning = previous_showwarning
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        log_stream.close()
        terminal.close()


def keep_log(log_path: Path, folder: Path | None, command: str = "") -> Path:
    """Append the temporary log to the output folder's edgeship.log (earlier commands' logs
    stay) and delete it; without an output folder the temporary log stays where it is."""
    if folder is None or not folder.is_dir():
        return log_path
    target = folder / LOG_NAME
    with open(target, "ab") as log, open(log_path, "rb") as piece:
        log.write(f"==== edgeship {command}\n".encode())
        shutil.copyfileobj(piece, log)
    log_path.unlink()
    return target
