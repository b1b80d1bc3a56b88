"""LiteRT (ai_edge_litert) Interpreter: default kernels (XNNPACK) or the reference kernels.

The reference kernels (OpResolverType.BUILTIN_REF) compute int8 models the same way TFLite
Micro does, which makes `litert-ref` the bit-exact int8 reference on the host; the default
kernels are what a phone runs.
"""

from pathlib import Path

import numpy as np
from edgeship.runtime.backends import Backend, TensorInfo, check_options, check_single_io

from edgeship.deps import require
from edgeship.errors import UserInputError

_OPTIONS = ("threads", "device", "reference_kernels", "xnnpack", "multi_input")


def open_backend(artifact_path: Path, **options) -> "LiteRTBackend":
    check_options("litert", options, _OPTIONS)
    return LiteRTBackend(Path(artifact_path), threads=options.get("threads", 1),
                         device=options.get("device", "cpu"),
                         reference_kernels=options.get("reference_kernels", False),
                         xnnpack=options.get("xnnpack", True),
                         multi_input=options.get("multi_input", False))


def tensor_info(detail: dict) -> TensorInfo:
    """A TensorInfo from an interpreter's input/output detail dict (LiteRT and TFLM share it)."""
    quantization = detail.get("quantization_parameters", {})
    scales = np.asarray(quantization.get("scales", []), dtype=np.float32)
    zero_points = np.asarray(quantization.get("zero_points", []))
    scale, zero_point = 0.0, 0
    if scales.size == 1:  # per-tensor; graph inputs and outputs are never per-channel
        scale, zero_point = float(scales[0]), int(zero_points[0])
    shape = tuple(int(side) for side in detail.get("shape_signature", detail["shape"]))
    return TensorInfo(name=str(detail.get("name", "")), shape=shape,
                      dtype=np.dtype(detail["dtype"]).name, scale=float(scale),
                      zero_point=int(zero_point))


class LiteRTBackend(Backend):
    """One .tflite model in an ai_edge_litert Interpreter, resized to each batch size."""

    def __init__(self, artifact_path: Path, threads: int = 1, device: str = "cpu",
                 reference_kernels: bool = False, xnnpack: bool = True,
                 multi_input: bool = False):
        if device != "cpu":
            raise UserInputError("litert runs on the CPU here; use --device cpu "
                                 "(GPU delegates are for phones)")
        interpreter_module = require("ai_edge_litert.interpreter")
        resolvers = interpreter_module.OpResolverType
        # xnnpack=False keeps TFLite's own optimized kernels (ruy/gemmlowp) without the
        # default XNNPACK delegate: a baseline to show what the delegate buys.
        resolver = (resolvers.BUILTIN_REF if reference_kernels else
                    resolvers.AUTO if xnnpack else resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.artifact_path = artifact_path
        self.threads = threads
        self.reference_kernels = reference_kernels
        self.xnnpack = xnnpack and not reference_kernels
        try:
            self._interpreter = interpreter_module.Interpreter(
                model_path=str(artifact_path), num_threads=threads,
                experimental_op_resolver_type=resolver)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise UserInputError(f"LiteRT cannot load {artifact_path}: {error}") from error
        input_details = self._interpreter.get_input_details()
        output_details = self._interpreter.get_output_details()
        if not multi_input:
            check_single_io("litert", input_details, output_details, artifact_path)
        self._all_input_indices = [detail["index"] for detail in input_details]
        self._inputs = [tensor_info(input_details[0])]
        self._outputs = [tensor_info(output_details[0])]
        self._input_index = input_details[0]["index"]
        self._output_index = output_details[0]["index"]
        shape = input_details[0]["shape"]
        self._batch = int(shape[0]) if len(shape) else 1

    def resize(self, batch_size: int) -> None:
        """Resize the input to a batch size and reallocate (done once per new size)."""
        if batch_size == self._batch:
            return
        shape = list(self._interpreter.get_input_details()[0]["shape"])
        shape[0] = batch_size
        self._interpreter.resize_tensor_input(self._input_index, shape, strict=False)
        self._interpreter.allocate_tensors()
        self._batch = batch_size

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self._batch:
            self.resize(len(batch))
        self._interpreter.set_tensor(self._input_index, batch)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output_index)

    def infer_raw_inputs(self, inputs: list[np.ndarray]) -> np.ndarray:
        if len(inputs) != len(self._all_input_indices):
            raise ValueError(f"{self.artifact_path.name} takes {len(self._all_input_indices)} "
                             f"inputs, got {len(inputs)}")
        for index, value in zip(self._all_input_indices, inputs):
            self._interpreter.set_tensor(index, value)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output_index)

    def details(self) -> dict:
        kernels = ("reference (BUILTIN_REF)" if self.reference_kernels else
                   "default (XNNPACK)" if self.xnnpack else "builtin, no XNNPACK delegate")
        return {"kernels": kernels, "threads": self.threads}

    def close(self) -> None:
        self._interpreter = None
