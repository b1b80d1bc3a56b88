"""One interface for every runtime, and a registry that imports each one lazily.

A backend opens one artifact and runs classifier batches through it:

    with open_backend("litert", "run/model_int8.tflite", threads=1) as backend:
        probabilities = backend.infer(images)          # float in, float out
        raw = backend.infer_raw(backend.quantize_input(images))  # int8 in, int8 out

`infer` takes float32 NHWC images and returns float32 outputs: an int8 backend quantizes the
inputs and dequantizes the outputs itself with the scale and zero point its TensorInfo
reports. `infer_raw` takes inputs already in the model's own input dtype and returns the
model's own output dtype (the integer values, for int8 comparisons in quanta); for a float
model it is the same as `infer`. Parity code compares backends through this interface alone,
and the benchmark times `infer_raw` from outside, so no backend times itself.

Adding a backend: write runtime/backends/<module>.py with a function
`open_backend(artifact_path, **options) -> Backend` (a subclass of `Backend` below) and add a
`BackendEntry` to `REGISTRY` (edgeship/backend_registry.py). Options every backend accepts:
`threads` (int, default 1) and `device` ("cpu" or "gpu"; a backend that cannot honour "gpu"
raises UserInputError, never falls back silently). Unknown options raise UserInputError.
"""

from pathlib import Path
from typing import Self

import numpy as np

# The registry lives in edgeship's core so convert can open a runtime without importing this
# package; everything in it is re-exported here.
from edgeship.backend_registry import (  # noqa: F401
    DEVICES,
    REGISTRY,
    BackendEntry,
    backend_names,
    backends_for,
    check_backend_name,
    default_backend_names,
    gpu_backend_names,
    int8_reference_backend,
    open_backend,
    preload_modules,
    primary_backend,
)
from edgeship.errors import UserInputError

# The one input/output description every stage shares (edgeship's core), re-exported here as
# part of the backend interface.
from edgeship.quantization import TensorInfo


class Backend:
    """Base of every backend: one artifact, one input, one output, batches in and out.

    Subclasses set `self._inputs` / `self._outputs` (lists of TensorInfo) when they open and
    implement `infer_raw` and `close`; `infer` quantizes and dequantizes around `infer_raw`.
    The batch dimension may be any size: a runtime with a fixed batch of one (TFLite Micro)
    loops over the batch inside `infer_raw`.
    """

    name: str = ""
    artifact_path: Path
    _inputs: list[TensorInfo]
    _outputs: list[TensorInfo]

    def inputs(self) -> list[TensorInfo]:
        return list(self._inputs)

    def outputs(self) -> list[TensorInfo]:
        return list(self._outputs)

    def quantize_input(self, batch: np.ndarray) -> np.ndarray:
        """Float batch -> the raw input batch infer_raw expects."""
        return self._inputs[0].quantize(batch)

    def dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        return self._outputs[0].dequantize(raw)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Float32 NHWC batch -> float32 outputs (dequantized for an int8 model)."""
        return self.dequantize_output(self.infer_raw(self.quantize_input(batch)))

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        """Raw input batch in the model's input dtype -> raw outputs in its output dtype."""
        raise NotImplementedError

    def infer_raw_inputs(self, inputs: list[np.ndarray]) -> np.ndarray:
        """One raw value per model input (batch of one each) -> the raw output.

        For models with several inputs (one-op models cut for per-op parity); a backend
        that cannot take more than one raises NotImplementedError.
        """
        if len(inputs) != 1:
            raise NotImplementedError(f"{self.name or type(self).__name__} takes one input")
        return self.infer_raw(inputs[0])

    def details(self) -> dict:
        """Plain-JSON facts for reports (kernels, providers, arena bytes...)."""
        return {}

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def check_options(backend_name: str, options: dict, known: tuple[str, ...]) -> None:
    """Reject options a backend does not understand (a typo must not pass silently)."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UserInputError(f"backend {backend_name} does not take option(s) "
                             f"{', '.join(unknown)}; it takes {', '.join(known)}")


def check_single_io(backend_name: str, inputs: list, outputs: list, path: Path) -> None:
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserInputError(f"{path.name} has {len(inputs)} input(s) and {len(outputs)} "
                             f"output(s); {backend_name} supports classifiers with one of each")
