"""Does the emulated firmware compute what TFLite Micro computes? The profile is only worth
its counts if the program it counted is the right one: the generated C is bit-exact with
TFLite Micro, so the emulated output must equal TFLite Micro's on the same int8 input."""

from pathlib import Path

import numpy as np


def tflite_micro_output(model_path: str | Path, input_bytes: bytes) -> np.ndarray:
    """TFLite Micro's integer output (flattened) for one input in the model's input type."""
    from edgeship.runtime.backends import open_backend

    backend = open_backend("tflm", model_path)
    info = backend.inputs()[0]
    shape = tuple(info.shape[1:])
    batch = np.frombuffer(input_bytes, np.dtype(info.dtype)).reshape((1, *shape))
    try:
        return np.asarray(backend.infer_raw(batch)).reshape(-1)
    finally:
        backend.close()


def matches_tflite_micro(model_path: str | Path, input_bytes: bytes, output: list[int]) -> bool:
    """True when the emulated output equals TFLite Micro's bit for bit."""
    expected = tflite_micro_output(model_path, input_bytes)
    return np.array_equal(expected.astype(np.int64), np.asarray(output, np.int64))
