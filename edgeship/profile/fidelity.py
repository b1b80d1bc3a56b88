"""Does the emulated firmware compute what TFLite Micro computes? The profile is only worth
its counts if the program it counted is the right one: the generated C is bit-exact with
TFLite Micro, so the emulated output must equal TFLite Micro's on the same input."""

from pathlib import Path

import numpy as np


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
