"""Load and run model files edgeship did not make in a child process with a time limit.

TFLite's and ONNX Runtime's loaders are native code; a crafted file can crash them or spin
forever, and TensorFlow's security policy says to sandbox untrusted models. A file is
trusted when a manifest.json beside it records its SHA-256 (edgeship wrote it); anything
else runs through `call_isolated`, so a crash (signal) or a hang becomes one UserInputError
line and exit 2, never a dead CLI. Trusted files stay in-process: no start-up cost, and
bench's timed loop is the runtime's alone.

Children come from multiprocessing's fork server: a clean process started once per
edgeship process with numpy and the runtimes imported, forked for each call, so a child
costs milliseconds and inherits none of the parent's threads, TensorFlow state or locks
(spawn where the platform has no fork server). The call
and its answer travel pickled over a pipe between edgeship's own code on both sides; the
model file is never unpickled.
"""

import multiprocessing
import os
import signal
import sys
import tempfile
import types
from collections.abc import Callable

from edgeship.run_dir import find_run_dir_for
from edgeship.errors import EdgeshipError, UserInputError

DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_HELP = ("time limit per model run in a child process: model files no manifest.json beside "
                "them vouches for are loaded there, so a crash or hang is an error (exit 2)")
# Imported once by the fork server, so children start warm; none of these starts a thread
# at import (tests/edgeship/test_hostile_models.py checks), so forking after them is safe.
_PRELOAD = ["numpy", "edgeship.runtime.isolation", "edgeship.runtime.parity",
            "edgeship.runtime.bench", "edgeship.model_check", "ai_edge_litert.interpreter",
            "ai_edge_litert.schema_py_generated", "onnx", "onnxruntime", "tflite_micro"]
_context = None


def is_trusted(path: str | os.PathLike) -> bool:
    """True when a manifest.json beside the file records its SHA-256 (edgeship made it)."""
    return find_run_dir_for(path) is not None


def check_timeout(timeout_s: float) -> float:
    if not timeout_s > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout_s}")
    return float(timeout_s)


def call_isolated(function: Callable, args: tuple, timeout_s: float, what: str):
    """Run function(*args) in a child process and return its result.

    Args:
        function: a module-level function (the child imports it by name).
        args: picklable arguments; the result must be picklable too.
        timeout_s: wall-clock limit for the child, start-up included.
        what: the subject of the error message, e.g. "model_int8.tflite on litert".

    Returns:
        What function returned.

    Raises:
        UserInputError: the child died by a signal ("... crashed the model loader (signal
            SIGSEGV)"), ran past timeout_s ("... did not finish within N s"), exited without
            an answer, or raised (an EdgeshipError keeps its class and message).
    """
    context = _mp_context()
    receiver, sender = context.Pipe(duplex=False)
    with tempfile.NamedTemporaryFile(prefix="edgeship-child-", suffix=".log") as child_stderr:
        # A path, not a descriptor: fork-server children do not inherit this process's files.
        process = context.Process(target=_child_main, daemon=True,
                                  args=(sender, child_stderr.name, function, args))
        _start_without_main(process)
        sender.close()
        outcome = None
        try:
            if not receiver.poll(timeout_s):
                process.kill()
                raise UserInputError(f"{what} did not finish within {timeout_s:g} s (the child "
                                     "process was killed; raise --timeout if the model is just "
                                     "slow)")
            try:
                outcome = receiver.recv()
            except (EOFError, OSError):
                outcome = None  # it died before or while answering
        finally:
            receiver.close()
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        last_line = _last_line(child_stderr)
    said = f"; it last said: {last_line}" if last_line else ""
    if process.exitcode is not None and process.exitcode < 0 and outcome is None:
        raise UserInputError(f"{what} crashed the model loader (signal "
                             f"{_signal_name(-process.exitcode)}){said}")
    if outcome is None:
        raise UserInputError(f"{what}: the model loader exited with status "
                             f"{process.exitcode} without an answer{said}")
    status, payload = outcome
    if status == "ok":
        return payload
    error_class, message = payload
    if not (isinstance(error_class, type) and issubclass(error_class, EdgeshipError)):
        error_class = UserInputError
    raise error_class(message)


def _child_main(sender, stderr_path: str, function: Callable, args: tuple) -> None:
    """The child: native messages go to a file the parent reads, the answer to the pipe."""
    stderr_fd = os.open(stderr_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(stderr_fd, 2)
    os.dup2(stderr_fd, 1)  # a native library's prints must not reach the parent's stdout
    os.close(stderr_fd)
    try:
        outcome = ("ok", function(*args))
    except EdgeshipError as error:
        outcome = ("error", (type(error), str(error)))
    except Exception as error:  # a runtime's own exception classes on a malformed model
        outcome = ("error", (UserInputError, f"{type(error).__name__}: {error}"))
    sender.send(outcome)
    sender.close()


def _start_without_main(process) -> None:
    """Start a child that does not re-run the caller's script.

    multiprocessing re-imports the parent's __main__ in every spawned or fork-server child;
    for a script without an `if __name__ == "__main__":` guard that re-runs the script. The
    child needs only edgeship's function, so the parent's __main__ is hidden while the child's
    preparation data is taken.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        process.start()
    finally:
        sys.modules["__main__"] = main


def _mp_context():
    """The fork server context (spawn where the platform has none), created once."""
    global _context
    if _context is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(_PRELOAD)
        else:
            _context = multiprocessing.get_context("spawn")
    return _context


def _last_line(stream) -> str:
    stream.seek(0)
    lines = [line.strip() for line in stream.read()[-4000:].decode("utf-8", "replace").splitlines()
             if line.strip()]
    return lines[-1][:200] if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)

