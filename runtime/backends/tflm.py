"""TFLite Micro's Python interpreter: the kernels a microcontroller runs, on the host.

The interpreter holds one image at a time (batch 1, as on the device), so a batch is looped
over. Its RecordingMicroAllocator reports how many arena bytes the model really used, the
figure to size `tensor_arena` with on the board.

TFLite Micro runs in a child process of its own for every model it opens (load once, infer
many: edgeship.runtime.isolation.IsolatedObject), because it aborts the whole process on
some models (SIGABRT and no message on int8 Keras Applications models from TensorFlow's
converter); every command that loads a model in it (embed, inspect, validate, codegen
--samples, convert's load check) gets that without knowing. Code already in an isolated
child opens it in-process.

Who is to blame when it fails (the exit code):
- Loading a file edgeship did not make (no manifest.json beside it records its SHA-256)
  fails or crashes: the runtime rejects the user's file, UserInputError (exit 2).
- Loading a file edgeship made fails, or TFLite Micro fails or crashes running a model it
  loaded: the runtime broke on a model it and edgeship accepted, TFLMFailureError (exit 3).
The one line carries TFLite Micro's own reason (what it printed: "Didn't find op for builtin
opcode 'TILE'"), not just its exception ("TFLM failed to allocate tensors"); a crash names
the signal and its last message.
"""

import contextlib
import dataclasses
import os
import re
import stat
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeship.deps import require
from edgeship.errors import ToolFailureError, UserInputError
from edgeship.runtime.backends import Backend, check_options
from edgeship.runtime.backends.litert import tensor_info
from edgeship.runtime.isolation import (
    DEFAULT_TIMEOUT_S,
    ChildFailure,
    IsolatedObject,
    is_trusted,
    running_isolated,
)

_OPTIONS = ("threads", "device", "arena_size")
RUNTIME = "TFLite Micro"


class TFLMFailureError(ToolFailureError, RuntimeError):
    """TFLite Micro failed on a model it loaded, or on a file edgeship made (exit 3).

    Also a RuntimeError, as the interpreter's own exceptions are, so code that records a
    runtime's failure on one op and goes on (the per-op comparison) still does.
    """


def open_backend(artifact_path: Path, **options) -> Backend:
    check_options("tflm", options, _OPTIONS)
    if options.get("device", "cpu") != "cpu":
        raise UserInputError("tflm runs on the CPU (it emulates a microcontroller); use --device cpu")
    if options.get("threads", 1) != 1:
        raise UserInputError("tflm is single-threaded, as on a microcontroller; use --threads 1")
    if running_isolated():
        return TFLMBackend(Path(artifact_path), arena_size=options.get("arena_size"))
    return TFLMProcessBackend(Path(artifact_path), arena_size=options.get("arena_size"))


class TFLMBackend(Backend):
    """The interpreter in this process (used inside the child of TFLMProcessBackend)."""

    def __init__(self, artifact_path: Path, arena_size: int | None = None):
        runtime = require("tflite_micro").runtime
        self.artifact_path = artifact_path
        model_data = artifact_path.read_bytes()
        # The arena must hold every activation; 10x the model (TFLM's default) is too
        # little for conv nets whose activations outweigh their weights.
        self.arena_size = arena_size or max(len(model_data) * 10, 4 << 20)
        with printed_on_stderr() as printed:
            try:
                self._interpreter = runtime.Interpreter.from_bytes(
                    model_data, arena_size=self.arena_size)
            except (ValueError, RuntimeError) as error:
                failure = error
            else:
                failure = None
        if failure is not None:
            raise load_error_class(artifact_path)(
                f"{RUNTIME} cannot load {artifact_path}: "
                f"{own_reason(printed.text, str(failure))}") from failure
        # The interpreter holds one image; infer_raw loops, so the batch is free (-1).
        self._inputs = [_any_batch(tensor_info(self._interpreter.get_input_details(0)))]
        self._outputs = [_any_batch(tensor_info(self._interpreter.get_output_details(0)))]
        self._arena_report: dict | None = None
        self._invoked = False

    def describe(self) -> tuple:
        """What the parent's proxy needs once: inputs, outputs and the arena size."""
        return self._inputs, self._outputs, self.arena_size

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        for sample in batch:
            self._interpreter.set_input(sample[np.newaxis], 0)
            self._interpreter.invoke()
            outputs.append(np.array(self._interpreter.get_output(0)).reshape(-1))
        self._invoked = True
        return np.stack(outputs).reshape((len(batch),) + tuple(self._outputs[0].shape[1:]))

    def infer_raw_inputs(self, inputs: list[np.ndarray]) -> np.ndarray:
        for position, value in enumerate(inputs):
            self._interpreter.set_input(value, position)
        self._interpreter.invoke()
        self._invoked = True
        return np.array(self._interpreter.get_output(0))

    def infer_packed(self, batch: np.ndarray, input_shapes: list[tuple[int, ...]],
                     output_count: int) -> np.ndarray:
        """A model with several inputs or outputs: each row of batch holds every input, flat,
        in order (their shapes given); each row returned holds every output, flat, in order
        (the layout of codegen's NAME_run buffers)."""
        rows = []
        for row in batch:
            flat, start = np.asarray(row).reshape(-1), 0
            for position, shape in enumerate(input_shapes):
                size = int(np.prod(shape))
                self._interpreter.set_input(flat[start:start + size].reshape(shape), position)
                start += size
            self._interpreter.invoke()
            rows.append(np.concatenate([np.array(self._interpreter.get_output(position))
                                        .reshape(-1) for position in range(output_count)]))
        self._invoked = True
        return np.stack(rows)

    def arena_usage(self) -> dict:
        """The RecordingMicroAllocator's figures (bytes), read after the first invoke."""
        if self._arena_report is None:
            if not self._invoked:
                self.infer_raw(np.zeros((1,) + tuple(self._inputs[0].shape[1:]),
                                        dtype=self._inputs[0].dtype))
            self._arena_report = parse_allocations(capture_stderr(self._interpreter.print_allocations))
        return self._arena_report

    def details(self) -> dict:
        return {"kernels": "TFLite Micro", "arena_size": self.arena_size,
                "arena": self.arena_usage()}

    def close(self) -> None:
        self._interpreter = None


class TFLMProcessBackend(Backend):
    """TFLMBackend in a child process of its own: the same calls, over a pipe.

    The child loads the model once when this opens and serves every call until `close`, so
    a crash (signal) in TFLite Micro is one error line in this process, never its death.
    """

    def __init__(self, artifact_path: Path, arena_size: int | None = None,
                 load_timeout_s: float = DEFAULT_TIMEOUT_S):
        self.artifact_path = artifact_path
        try:
            self._child = IsolatedObject(TFLMBackend, (artifact_path, arena_size), load_timeout_s)
            self._inputs, self._outputs, self.arena_size = self._child.call(
                "describe", timeout_s=load_timeout_s)
        except ChildFailure as failure:
            raise failure_error(failure, artifact_path, loading=True) from None

    def _call(self, method: str, *args):
        try:
            return self._child.call(method, *args)
        except ChildFailure as failure:
            raise failure_error(failure, self.artifact_path, loading=False) from None

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        return self._call("infer_raw", np.asarray(batch))

    def infer_raw_inputs(self, inputs: list[np.ndarray]) -> np.ndarray:
        return self._call("infer_raw_inputs", [np.asarray(value) for value in inputs])

    def infer_packed(self, batch: np.ndarray, input_shapes: list[tuple[int, ...]],
                     output_count: int) -> np.ndarray:
        return self._call("infer_packed", np.asarray(batch),
                          [tuple(int(dim) for dim in shape) for shape in input_shapes],
                          int(output_count))

    def arena_usage(self) -> dict:
        return self._call("arena_usage")

    def details(self) -> dict:
        return self._call("details")

    def close(self) -> None:
        self._child.close()


def load_error_class(path: Path) -> type:
    """UserInputError for a file the user brought; TFLMFailureError for one edgeship made."""
    return TFLMFailureError if is_trusted(path) else UserInputError


def failure_error(failure: ChildFailure, path: Path, loading: bool) -> Exception:
    """The one-line error for a child that died, hung or raised (see the module docstring)."""
    doing = f"loading {path}" if loading else f"running {path}"
    if failure.timed_out is not None:
        happened = f"did not finish {doing} within {failure.timed_out:g} s (killed)"
    elif failure.signal_name:
        happened = f"crashed {doing} (signal {failure.signal_name})"
    elif failure.raised:
        return (load_error_class(path) if loading else TFLMFailureError)(
            f"{RUNTIME} failed {doing}: {own_reason(failure.printed, failure.raised)}")
    else:
        happened = f"exited with status {failure.exitcode} {doing}, without an answer"
    said = failure.last_message
    message = f"{RUNTIME} {happened}; " + (f"its last message: {said}" if said
                                            else "it printed nothing")
    return (load_error_class(path) if loading else TFLMFailureError)(message)


def own_reason(printed: str, exception_text: str) -> str:
    """TFLite Micro's own words for a failure: the first two lines it printed (MicroPrintf:
    the cause, then what failed because of it), with its exception's text after them."""
    lines = list(dict.fromkeys(line.strip() for line in printed.splitlines() if line.strip()))
    exception_text = " ".join(exception_text.split())
    if not lines:
        return exception_text
    reason = "; ".join(line[:200] for line in lines[:2])
    return f"{reason} ({exception_text})" if exception_text else reason


class _Printed:
    text = ""


@contextlib.contextmanager
def printed_on_stderr():
    """What native code printed on descriptor 2 while the block ran, left where it went.

    When descriptor 2 is a file this process can read (an isolated child's, the quiet
    console's log) the text is read back from it, so it is there for the parent even if the
    native code then aborts; otherwise descriptor 2 is captured and the text passed on.

    Yields:
        An object whose `text` is set when the block ends.
    """
    printed = _Printed()
    sys.stderr.flush()
    start = _readable_end(2)
    if start is not None:
        try:
            yield printed
        finally:
            sys.stderr.flush()
            printed.text = os.pread(2, 1 << 20, start).decode("utf-8", "replace")
        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield printed
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            data = captured.read()
            printed.text = data.decode("utf-8", "replace")
            if data:
                os.write(2, data)


def _readable_end(descriptor: int) -> int | None:
    """The size of the regular file behind descriptor when it is open for reading too."""
    try:
        import fcntl

        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        if fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDWR:
            return None
        return os.fstat(descriptor).st_size
    except (ImportError, OSError):
        return None


def _any_batch(info):
    return dataclasses.replace(info, shape=(-1,) + info.shape[1:])


def capture_stderr(function) -> str:
    """Run function and return what it (C++ included) wrote to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            function()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        return captured.read().decode("utf-8", errors="replace")


def parse_allocations(text: str) -> dict:
    """Turn PrintAllocations' lines into numbers.

    The lines read like "[RecordingMicroAllocator] Arena allocation total 2604 bytes" and
    "[RecordingMicroAllocator] 'TfLiteEvalTensor data' used 240 bytes with alignment overhead
    (requested 240 bytes for 20 allocations)".
    """
    report: dict = {}
    for key, pattern in (("total_bytes", r"Arena allocation total (\d+) bytes"),
                         ("head_bytes", r"Arena allocation head (\d+) bytes"),
                         ("tail_bytes", r"Arena allocation tail (\d+) bytes")):
        match = re.search(pattern, text)
        if match:
            report[key] = int(match.group(1))
    for name, used in re.findall(r"'([^']+)' used (\d+) bytes", text):
        report.setdefault("by_kind", {})[name] = int(used)
    return report
