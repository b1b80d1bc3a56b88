"""LiteRT (ai_edge_litert) Interpreter: default kernels (XNNPACK) or the reference kernels.

The reference kernels (OpResolverType.BUILTIN_REF) compute int8 models the same way TFLite
Micro does, which makes `litert-ref` the bit-exact int8 reference on the host; the default
kernels are what a phone runs.
"""

from pathlib import Path

import numpy as np

from edgeship.deps import require
from edgeship.errors import UserInputError
from edgeship.runtime.backends import Backend, TensorInfo, check_options, check_single_io

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
        return {"kernels": kernels, "threads": self.threads,
                "delegation": delegation_summary(self._interpreter._get_ops_details(),
                                                 self._interpreter.get_output_details(),
                                                 "XNNPACK" if self.xnnpack else None)}

    def close(self) -> None:
        self._interpreter = None


def delegation_summary(ops: list[dict], output_details: list[dict], delegate: str | None) -> dict:
    """Which ops a delegate took, from the interpreter's node list after delegation.

    LiteRT keeps the model's nodes and appends one DELEGATE node per partition, whose inputs
    and outputs are the partition's boundary tensors. Walking the model's nodes from the last
    (consumers before producers), a node belongs to partition P when one of its outputs is
    P's output, or is consumed inside P without being P's input; else it runs outside.

    Args:
        ops: `Interpreter._get_ops_details()` (model nodes, then DELEGATE nodes).
        output_details: `Interpreter.get_output_details()` (graph outputs).
        delegate: the delegate's name, or None when the interpreter applies none.

    Returns:
        delegate, partitions, ops (model nodes), delegated_ops, and outside: op type ->
        count of the nodes that run on the interpreter's own kernels.
    """
    partitions = [op for op in ops if op["op_name"] == "DELEGATE"]
    model_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    partition_inputs = [set(op["inputs"].tolist()) for op in partitions]
    partition_outputs = [set(op["outputs"].tolist()) for op in partitions]
    graph_outputs = {int(detail["index"]) for detail in output_details}
    consumers: dict[int, list[int]] = {}
    for position, op in enumerate(model_ops):
        for tensor in op["inputs"].tolist():
            consumers.setdefault(tensor, []).append(position)
    owner: dict[int, int | None] = {}
    for position in range(len(model_ops) - 1, -1, -1):
        owner[position] = _partition_of(model_ops[position]["outputs"].tolist(), consumers, owner,
                                        partition_inputs, partition_outputs, graph_outputs)
    outside: dict[str, int] = {}
    for position, op in enumerate(model_ops):
        if owner[position] is None:
            outside[op["op_name"]] = outside.get(op["op_name"], 0) + 1
    return {"delegate": delegate if partitions else None, "partitions": len(partitions),
            "ops": len(model_ops), "delegated_ops": len(model_ops) - sum(outside.values()),
            "outside": dict(sorted(outside.items()))}


def _partition_of(outputs, consumers, owner, partition_inputs, partition_outputs, graph_outputs):
    for partition, produced in enumerate(partition_outputs):
        if produced.intersection(outputs):
            return partition
    for tensor in outputs:
        if tensor in graph_outputs:
            continue
        for consumer in consumers.get(tensor, []):
            partition = owner.get(consumer)
            if partition is not None and tensor not in partition_inputs[partition]:
                return partition
    return None
