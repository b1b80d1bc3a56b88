"""Run native model code in child processes, so a crash or hang is an error, not a dead CLI.

TFLite's and ONNX Runtime's loaders are native code; a crafted file can crash them or spin
forever, and TensorFlow's security policy says to sandbox untrusted models. Two tools:

- `call_isolated` runs one function in a fresh child with a time limit: bench and validate
  use it for model files edgeship did not make. A file is trusted when a manifest.json
  beside it records its SHA-256 (edgeship wrote it); anything else runs there, so a crash
  (signal) or a hang becomes one UserInputError line and exit 2. Trusted files stay
  in-process for those two: no start-up cost, and bench's timed loop is the runtime's alone.
- `IsolatedObject` builds one object in a child of its own and calls its methods over a
  pipe until closed: the tflm backend lives in one, for every file, because TFLite Micro
  aborts the process (SIGABRT, no message) on some models TensorFlow's converter makes.
  One child per opened model: load once, infer many; numpy arrays travel pickled. A death,
  a time-out or a native exception comes back as `ChildFailure` with what the child printed
  on its stderr during the call (a runtime's own diagnostics), which the backend turns into
  its one-line error. Code already running in such a child (`running_isolated()`) opens
  runtimes in-process: the isolation is already there.

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
import weakref
from collections.abc import Callable

from edgeship.backend_registry import preload_modules
from edgeship.errors import EdgeshipError, UserInputError
from edgeship.run_dir import find_run_dir_for

DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_HELP = ("time limit per model run in a child process: model files no manifest.json beside "
                "them vouches for are loaded there, so a crash or hang is an error (exit 2)")
# Imported once by the fork server, so children start warm: edgeship's own modules and each
# backend's BackendEntry.preload. None of these starts a thread at import
# (tests/edgeship/test_hostile_models.py checks), so forking after them is safe.
_PRELOAD = ["numpy", "edgeship.runtime.isolation", "edgeship.runtime.parity",
            "edgeship.runtime.bench", "edgeship.model_check", *preload_modules()]
_context = None
_isolated = False  # True in a child process started here


def running_isolated() -> bool:
    """True in a child process this module started: a runtime opened here needs no child."""
    return _isolated


def is_trusted(path: str | os.PathLike) -> bool:
    """True when a manifest.json beside the file records its SHA-256 (edgeship made it)."""
    return find_run_dir_for(path) is not None


def check_timeout(timeout_s: float) -> float:
    if not timeout_s > 0:
        raise UserInputError(f"timeout must be > 0 seconds, got {timeout_s}")
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
    _enter_child(stderr_path)
    try:
        outcome = ("ok", function(*args))
    except EdgeshipError as error:
        outcome = ("error", (type(error), str(error)))
    except Exception as error:  # a runtime's own exception classes on a malformed model
        outcome = ("error", (UserInputError, f"{type(error).__name__}: {error}"))
    sender.send(outcome)
    sender.close()


def _enter_child(stderr_path: str) -> None:
    """Mark this process isolated and send descriptors 1 and 2 to the parent's file (opened
    for reading too, so code here can read back what a native library printed)."""
    global _isolated
    _isolated = True
    stderr_fd = os.open(stderr_path, os.O_RDWR | os.O_APPEND)
    os.dup2(stderr_fd, 2)
    os.dup2(stderr_fd, 1)  # a native library's prints must not reach the parent's stdout
    os.close(stderr_fd)


class ChildFailure(Exception):
    """An IsolatedObject's child died, ran past its time limit, or raised a non-edgeship
    exception (a runtime's own, e.g. RuntimeError from native code).

    Attributes:
        signal_name: the signal that killed it ("SIGABRT"), else "".
        exitcode: its exit status when it exited without an answer, else None.
        timed_out: the seconds it was given when it ran past them (it was killed), else None.
        raised: "RuntimeError: ..." when it raised instead of dying, else "".
        printed: what it wrote on descriptors 1 and 2 during the call.
    """

    def __init__(self, signal_name: str = "", exitcode: int | None = None,
                 timed_out: float | None = None, raised: str = "", printed: str = ""):
        super().__init__(signal_name or raised or f"exit status {exitcode}")
        self.signal_name, self.exitcode, self.timed_out = signal_name, exitcode, timed_out
        self.raised, self.printed = raised, printed

    @property
    def last_message(self) -> str:
        """The last non-empty line the child printed during the call ("" if none)."""
        lines = [line.strip() for line in self.printed.splitlines() if line.strip()]
        return lines[-1][:300] if lines else ""


class IsolatedObject:
    """factory(*args) built in a child process of its own; its methods called over a pipe.

    The child starts once (forked from the fork server: milliseconds) and serves calls until
    `close`; each call's arguments and result travel pickled. What the child prints goes to
    this process's descriptor 2 after each call (the log, or the terminal with --verbose).

    Raises (from the constructor and `call`):
        ChildFailure: the child died, timed out or raised a non-edgeship exception.
        EdgeshipError: the factory or method raised one (its class and message kept).
    """

    def __init__(self, factory: Callable, args: tuple, timeout_s: float | None):
        context = _mp_context()
        self._connection, child_end = context.Pipe()
        self._stderr = tempfile.NamedTemporaryFile(
            prefix="edgeship-child-", suffix=".log")
        self._process = context.Process(target=_object_main, daemon=True,
                                        args=(child_end, self._stderr.name, factory, args))
        _start_without_main(self._process)
        child_end.close()
        self._finalizer = weakref.finalize(self, _stop_child, self._process, self._connection,
                                           self._stderr)
        try:
            self._answer(0, timeout_s)
        except BaseException:
            self.close()
            raise

    def call(self, method: str, *args, timeout_s: float | None = None):
        """The child object's method(*args); timeout_s None waits as long as it lives."""
        if not self._finalizer.alive:
            raise ChildFailure(raised="RuntimeError: the child process was closed")
        offset = os.fstat(self._stderr.fileno()).st_size
        try:
            self._connection.send((method, args))
        except (BrokenPipeError, OSError):
            pass  # it died: the answer below says how
        return self._answer(offset, timeout_s)

    def close(self) -> None:
        self._finalizer()

    def _answer(self, offset: int, timeout_s: float | None):
        outcome = None
        try:
            if timeout_s is not None and not self._connection.poll(timeout_s):
                self._process.kill()
                printed = self._printed_since(offset)
                self.close()
                raise ChildFailure(timed_out=timeout_s, printed=printed)
            outcome = self._connection.recv()
        except (EOFError, OSError):
            outcome = None  # it died before or while answering
        printed = self._printed_since(offset)
        if outcome is None:
            self._process.join(timeout=10)
            code = self._process.exitcode
            self.close()
            raise ChildFailure(signal_name=_signal_name(-code) if code and code < 0 else "",
                               exitcode=code, printed=printed)
        status, payload = outcome
        if status == "ok":
            return payload
        if status == "raised":
            raise ChildFailure(raised=payload, printed=printed)
        error_class, message = payload
        raise error_class(message)

    def _printed_since(self, offset: int) -> str:
        """What the child printed since offset, passed on to this process's descriptor 2."""
        data = os.pread(self._stderr.fileno(), 1 << 20, offset)
        if data:
            sys.stderr.flush()
            try:
                os.write(2, data)
            except OSError:
                pass
        return data.decode("utf-8", "replace")


def _stop_child(process, connection, stderr_file) -> None:
    """Closing the pipe ends the child's loop; kill it if it does not exit at once."""
    connection.close()
    process.join(timeout=2)
    if process.is_alive():
        process.kill()
        process.join()
    stderr_file.close()


def _object_main(connection, stderr_path: str, factory: Callable, args: tuple) -> None:
    """The child of an IsolatedObject: build the object, then answer calls until EOF."""
    _enter_child(stderr_path)
    target = None
    try:
        target = factory(*args)
        outcome = ("ok", None)
    except EdgeshipError as error:
        outcome = ("error", (type(error), str(error)))
    except Exception as error:
        outcome = ("raised", f"{type(error).__name__}: {error}")
    connection.send(outcome)
    while target is not None:
        try:
            method, call_args = connection.recv()
        except (EOFError, OSError):
            break
        try:
            outcome = ("ok", getattr(target, method)(*call_args))
        except EdgeshipError as error:
            outcome = ("error", (type(error), str(error)))
        except Exception as error:
            outcome = ("raised", f"{type(error).__name__}: {error}")
        connection.send(outcome)


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

