"""Helpers the tests share (imported from here, never from a conftest.py): the repository
root, the `edgeship` command in a subprocess or in this process, a hand quantizer, and the
tiny pipeline command of tests/edgeship."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# Small enough for the default suite: simple_cnn, one epoch, a few bench runs and images.
TINY_PIPELINE = ["--model", "simple_cnn", "--dataset", "mnist5k", "--epochs", "1", "--seed", "0",
                 "--bench-runs", "5", "--validate-limit", "50", "--calibration-samples", "50",
                 "--embed-samples", "2"]


def run_cli(*args, env=None, timeout=600, cwd=None):
    """Run the real `edgeship` console entry point in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgeship.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)


def run_cli_in_process(*args):
    """Call edgeship.cli.main in this process (no TensorFlow start-up per call).

    Same code path as the console script from argument parsing to the exit code; use
    run_cli where a separate process matters (import cost, signals, locks).
    """
    import contextlib
    import io
    from types import SimpleNamespace

    from edgeship.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit_:  # argparse errors
            code = exit_.code
    return SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


def quantize_by_hand(detail: dict, image):
    """One image as an interpreter input: float, or quantized by hand with the input's
    recorded scale and zero point (independent of edgeship's own quantize code)."""
    import numpy as np

    value = image[np.newaxis]
    if detail["dtype"] != np.float32:
        scale, zero_point = detail["quantization"]
        value = np.clip(np.round(value / scale) + zero_point, -128, 127)
    return value.astype(detail["dtype"])


def pipeline_command(out: Path) -> list[str]:
    """The tiny pipeline into out, as a subprocess's argv."""
    return [sys.executable, "-m", "edgeship.cli", "pipeline", *TINY_PIPELINE, "--out", str(out)]


# --- the emulated firmware against TFLite Micro (the profile counts the right program) ---

def tflite_micro_output(model_path: str | Path, input_bytes: bytes) -> np.ndarray:
    """TFLite Micro's output (flattened, in the model's output type) for one input in the
    model's input type."""
    from edgeship.runtime.backends import open_backend

    backend = open_backend("tflm", model_path)
    info = backend.inputs()[0]
    shape = tuple(info.shape[1:])
    batch = np.frombuffer(input_bytes, np.dtype(info.dtype)).reshape((1, *shape))
    try:
        return np.asarray(backend.infer_raw(batch)).reshape(-1)
    finally:
        backend.close()


def matches_tflite_micro(model_path: str | Path, input_bytes: bytes, output: list) -> bool:
    """True when the emulated output equals TFLite Micro's bit for bit (in the model's output
    type: integers, or float32 values whose bytes must agree)."""
    expected = tflite_micro_output(model_path, input_bytes)
    emulated = np.asarray(output, dtype=expected.dtype)
    return emulated.shape == expected.shape and emulated.tobytes() == expected.tobytes()


# TFLite Micro run in a child process (its Python module beside TensorFlow can crash the
# process): one interpreter, the inputs in a row, optionally reset before each.
_MICRO_IN_A_ROW = """
import sys
import numpy as np
from tflite_micro import runtime
model, inputs, reset, out = sys.argv[1], np.load(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
interpreter = runtime.Interpreter.from_bytes(open(model, "rb").read(), arena_size=1 << 20)
outputs = []
for value in inputs:
    if reset:
        interpreter.reset()
    interpreter.set_input(value, 0)
    interpreter.invoke()
    outputs.append(np.array(interpreter.get_output(0)).reshape(-1))
np.save(out, np.stack(outputs))
"""


def micro_outputs_in_a_row(model_path, inputs: np.ndarray, reset: bool, folder) -> np.ndarray:
    """TFLite Micro's output for each input in turn, on one interpreter: a recurrent model's
    state carries over unless reset (TFLite Micro's reset() before each invoke)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "inputs.npy", inputs)
    subprocess.run([sys.executable, "-c", _MICRO_IN_A_ROW, str(model_path),
                    str(folder / "inputs.npy"), "1" if reset else "0",
                    str(folder / "outputs.npy")], check=True, timeout=300)
    return np.load(folder / "outputs.npy")


def generated_outputs_in_a_row(model_path, inputs: np.ndarray, reset: bool, folder,
                               kernels: str = "portable", dtype=np.int8):
    """`edgeship codegen` into folder, compiled for the host (-Wall -Wextra -Werror), run on
    each input in turn (model_reset() before each when reset); (outputs, codegen's result)."""
    import ctypes

    from edgeship.convert.codegen import CodegenConfig, generate_c

    folder = Path(folder)
    result = generate_c(CodegenConfig(model=str(model_path), out=str(folder), kernels=kernels))
    library = folder / "model.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
                    "-o", str(library), str(folder / "model.c")], check=True)
    compiled = ctypes.CDLL(str(library))
    outputs = []
    for value in inputs:
        if reset:
            compiled.model_reset()
        raw = np.ascontiguousarray(value)
        out = np.zeros(result.output.size, dtype)
        status = compiled.model_run(raw.ctypes.data_as(ctypes.c_void_p),
                                    out.ctypes.data_as(ctypes.c_void_p))
        assert status == 0, status
        outputs.append(out)
    return np.stack(outputs), result
