"""The backend registry: runtime names mapped to the modules that open them, by import path.

It sits in edgeship's core, below every stage, so a stage that needs a runtime (convert
scores its artifacts, validate compares them) asks for one by name here and never imports
edgeship.runtime: the registry imports the named module only when a backend is opened. The
backends themselves, and the Backend/TensorInfo interface they implement, are in
edgeship.runtime.backends (which re-exports everything here).
"""

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

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
        devices: the devices it runs on (validate's --device gpu applies to those with "gpu";
            the others run on the CPU).
        primary: the backend a stage opens its suffixes with when none is named (convert's
            report, bench); one per suffix.
        int8_reference: the int8 reference every int8 runtime is compared with, op by op and
            end to end (TFLite's reference kernels); exactly one backend.
        multi_input: opens models with several inputs when passed multi_input=True (the
            one-op models of per-op parity); others take one input.
        preload: modules a child process imports ahead (edgeship.runtime.isolation's fork
            server), so each isolated run of this backend starts warm; none may start a
            thread at import.
        rounding_causes: op name -> why this backend's int8 op may differ from the reference
            kernels by one quantum (per-op parity names it beside a "rounding" verdict).
        pair_sum_saturation: its int8 kernels may saturate 16-bit pair sums on x86-64 without
            VNNI (ONNX Runtime's vpmaddubsw), so validate names the ops that can.
    """

    module: str
    suffixes: tuple[str, ...]
    options: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    default: bool = True
    reference_kernels: bool = False
    int8_only: bool = False
    exact_with: str | None = None
    description: str = ""
    devices: tuple[str, ...] = ("cpu",)
    primary: bool = False
    int8_reference: bool = False
    multi_input: bool = False
    preload: tuple[str, ...] = ()
    rounding_causes: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    pair_sum_saturation: bool = False


# Ops whose int8 kernels requantize an int32 accumulator to int8.
_REQUANTIZING_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL",
                     "AVERAGE_POOL_2D", "MEAN")
_XNNPACK_ROUNDING = MappingProxyType(dict.fromkeys(
    (*_REQUANTIZING_OPS, "SOFTMAX", "LOGISTIC", "TANH"),
    "XNNPACK requantizes in float (a float multiplier, not TFLite's fixed-point one)"))
_MICRO_ROUNDING = MappingProxyType(dict.fromkeys(
    _REQUANTIZING_OPS, "single vs double rounding in the fixed-point requantization "
    "(LiteRT's reference kernels vs TFLite Micro; tflite-micro issue 3252)"))
_LITERT_PRELOAD = ("ai_edge_litert.interpreter", "ai_edge_litert.schema_py_generated")


REGISTRY: dict[str, BackendEntry] = {
    "keras": BackendEntry("edgeship.runtime.backends.keras", (".keras", ".h5"),
                          description="tf_keras model (CPU, or GPU when TensorFlow sees one)",
                          devices=DEVICES, primary=True),
    "litert": BackendEntry("edgeship.runtime.backends.litert", (".tflite",),
                           description="ai_edge_litert Interpreter, default kernels (XNNPACK)",
                           primary=True, multi_input=True, preload=_LITERT_PRELOAD,
                           rounding_causes=_XNNPACK_ROUNDING),
    "litert-ref": BackendEntry("edgeship.runtime.backends.litert", (".tflite",),
                               options=MappingProxyType({"reference_kernels": True}),
                               reference_kernels=True,
                               description="ai_edge_litert Interpreter, reference kernels",
                               int8_reference=True, multi_input=True, preload=_LITERT_PRELOAD),
    "tflm": BackendEntry("edgeship.runtime.backends.tflm", (".tflite",), reference_kernels=True,
                         description="TFLite Micro Python interpreter (microcontroller kernels)",
                         preload=("tflite_micro", "edgeship.runtime.backends.tflm"),
                         rounding_causes=_MICRO_ROUNDING),
    "onnxruntime": BackendEntry("edgeship.runtime.backends.onnxruntime", (".onnx",),
                                description="ONNX Runtime, CPU or CUDA execution provider",
                                devices=DEVICES, primary=True, preload=("onnx", "onnxruntime"),
                                pair_sum_saturation=True),
    "c": BackendEntry("edgeship.c_backend", (".tflite",), default=False,
                      reference_kernels=True, int8_only=True, exact_with="tflm",
                      description="generated C inference code, compiled and run on the host",
                      rounding_causes=_MICRO_ROUNDING),
}


def backend_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def default_backend_names() -> tuple[str, ...]:
    return tuple(name for name, entry in REGISTRY.items() if entry.default)


def int8_reference_backend() -> str:
    """The name of the backend every int8 runtime is compared with ("litert-ref")."""
    return next(name for name, entry in REGISTRY.items() if entry.int8_reference)


def primary_backend(artifact_path: str | os.PathLike) -> str | None:
    """The backend that opens this artifact's format when none is named, or None."""
    suffix = Path(artifact_path).suffix.lower()
    return next((name for name, entry in REGISTRY.items()
                 if entry.primary and suffix in entry.suffixes), None)


def gpu_backend_names() -> tuple[str, ...]:
    return tuple(name for name, entry in REGISTRY.items() if "gpu" in entry.devices)


def preload_modules() -> tuple[str, ...]:
    """Every backend's preload modules, once each, in registry order."""
    return tuple(dict.fromkeys(module for entry in REGISTRY.values() for module in entry.preload))


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
                 **options):
    """Open an artifact with a named backend.

    Args:
        name: a REGISTRY key ("keras", "litert", "litert-ref", "tflm", "onnxruntime", "c").
        artifact_path: the model file; its suffix must be one the backend opens.
        verify: check a .tflite/.onnx file's structure first (edgeship.model_check);
            False only where the caller has just checked it (bench keeps it out of the
            timed load).
        **options: backend options; every backend takes threads= and device=.

    Returns:
        An open edgeship.runtime.backends.Backend; close it (or use it as a context manager).

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
