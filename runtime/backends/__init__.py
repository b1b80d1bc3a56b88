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
`BackendEntry` to `REGISTRY`. Options every backend accepts: `threads` (int, default 1) and
`device` ("cpu" or "gpu"; a backend that cannot honour "gpu" raises UserInputError, never
falls back silently). Unknown options raise UserInputError.
"""

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Self

import numpy as np

from edgeship.errors import UserInputError
from edgeship.model_check import check_model_file

DEVICES = ("cpu", "gpu")


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend lives and what it opens, known without importing it.

    Attributes:
        module: the module defining `open_backend(artifact_path, **options)`.
        suffixes: artifact file suffixes this backend opens (".keras", ".tflite", ".onnx").
        options: options passed to the module's open_backend before the caller's
            ("litert-ref" is the litert module with reference kernels).
        default: part of `edgeship validate`'s default backend list.
        reference_kernels: computes int8 with TFLite's reference kernels, so two such
            backends must agree bit for bit (others are allowed one quantum).
        int8_only: opens only full-integer models (validate skips it on float artifacts).
        exact_with: a backend this one must match bit for bit (generated code vs the runtime
            it reproduces), checked by validate in addition to the usual comparisons.
        description: one line for help texts and reports.
    """

    module: str
    suffixes: tuple[str, ...]
    options: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    default: bool = True
    reference_kernels: bool = False
    int8_only: bool = False
    exact_with: str | None = None
    description: str = ""


REGISTRY: dict[str, BackendEntry] = {
    "keras": BackendEntry("edgeship.runtime.backends.keras", (".keras", ".h5"),
                          description="tf_keras model (CPU, or GPU when TensorFlow sees one)"),
    "litert": BackendEntry("edgeship.runtime.backends.litert", (".tflite",),
                           description="ai_edge_litert Interpreter, default kernels (XNNPACK)"),
    "litert-ref": BackendEntry("edgeship.runtime.backends.litert", (".tflite",),
                               options=MappingProxyType({"reference_kernels": True}),
                               reference_kernels=True,
                               description="ai_edge_litert Interpreter, reference kernels"),
    "tflm": BackendEntry("edgeship.runtime.backends.tflm", (".tflite",), reference_kernels=True,
                         description="TFLite Micro Python interpreter (microcontroller kernels)"),
    "onnxruntime": BackendEntry("edgeship.runtime.backends.onnxruntime", (".onnx",),
                                description="ONNX Runtime, CPU or CUDA execution provider"),
    "c": BackendEntry("edgeship.c_backend", (".tflite",), default=False,
                      reference_kernels=True, int8_only=True, exact_with="tflm",
                      description="generated C inference code, compiled and run on the host"),
}


def backend_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def default_backend_names() -> tuple[str, ...]:
    return tuple(name for name, entry in REGISTRY.items() if entry.default)


def backends_for(artifact_path: str | os.PathLike, names: tuple[str, ...] | None = None
                 ) -> tuple[str, ...]:
    """The backends (from names, default all registered) that open this artifact's format."""
    suffix = Path(artifact_path).suffix.lower()
    names = backend_names() if names is None else names
    return tuple(name for name in names if suffix in REGISTRY[name].suffixes)


def check_backend_name(name: str) -> BackendEntry:
    if name not in REGISTRY:
        raise UserInputError(f"unknown backend {name!r}; valid backends: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def open_backend(name: str, artifact_path: str | os.PathLike, *, verify: bool = True,
                 **options) -> "Backend":
    """Open an artifact with a named backend.

    Args:
        name: a REGISTRY key ("keras", "litert", "litert-ref", "tflm", "onnxruntime", "c").
        artifact_path: the model file; its suffix must be one the backend opens.
        verify: check a .tflite/.onnx file's structure first (edgeship.model_check);
            False only where the caller has just checked it (bench keeps it out of the
            timed load).
        **options: backend options; every backend takes threads= and device=.

    Returns:
        An open Backend; close it (or use it as a context manager).

    Raises:
        UserInputError: unknown backend, wrong file type, missing file, bad option, a
            model file that fails its structural check.
        MissingDependencyError: the runtime's package is not installed.
    """
    entry = check_backend_name(name)
    path = Path(artifact_path)
    if not path.is_file():
        raise UserInputError(f"artifact {path} does not exist")
    if path.suffix.lower() not in entry.suffixes:
        raise UserInputError(f"backend {name} opens {', '.join(entry.suffixes)} files, "
                             f"not {path.name}")
    device = options.get("device", "cpu")
    if device not in DEVICES:
        raise UserInputError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    threads = options.get("threads", 1)
    if not isinstance(threads, int) or threads < 1:
        raise UserInputError(f"threads must be a positive integer, got {threads!r}")
    if verify:
        check_model_file(path)
    try:
        module = importlib.import_module(entry.module)
    except ModuleNotFoundError as error:
        if error.name == entry.module:
            raise UserInputError(f"backend {name} is registered but {entry.module} is not "
                                 "installed in this checkout") from error
        raise
    backend = module.open_backend(path, **{**entry.options, **options})
    backend.name = name
    return backend


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output as the runtime sees it.

    Attributes:
        name: the tensor's name in the artifact.
        shape: dimensions; -1 marks a dimension the runtime resizes (usually the batch).
        dtype: numpy dtype name of the raw tensor ("float32", "int8", "uint8").
        scale: quantization scale; 0.0 for a float tensor.
        zero_point: quantization zero point; 0 for a float tensor.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(np.dtype(self.dtype), np.integer)

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Float values -> this tensor's raw dtype (round half away from zero, as TFLite)."""
        if not self.quantized:
            return np.asarray(values, dtype=self.dtype)
        scaled = np.asarray(values, dtype=np.float32) / np.float32(self.scale)
        rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + self.zero_point
        limits = np.iinfo(np.dtype(self.dtype))
        return np.clip(rounded, limits.min, limits.max).astype(self.dtype)

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        """This tensor's raw values -> float32."""
        if not self.quantized:
            return np.asarray(raw, dtype=np.float32)
        return ((np.asarray(raw, dtype=np.int32) - self.zero_point)
                * np.float32(self.scale)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point}


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
