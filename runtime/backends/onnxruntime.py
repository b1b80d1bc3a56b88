"""ONNX Runtime: the CPU execution provider, or CUDA where onnxruntime-gpu and a GPU exist.

Asking for the GPU where there is none is an error (exit 2), never a silent fallback to the
CPU: a latency or parity figure must come from the device it claims.
"""

from pathlib import Path

import numpy as np

from edgeship.deps import require
from edgeship.errors import UserInputError
from edgeship.runtime.backends import Backend, TensorInfo, check_options, check_single_io

_OPTIONS = ("threads", "device", "optimization_level", "session_options")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
_ONNX_TYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
               "tensor(float16)": "float16", "tensor(int32)": "int32", "tensor(int64)": "int64"}


def open_backend(artifact_path: Path, **options) -> "OnnxRuntimeBackend":
    check_options("onnxruntime", options, _OPTIONS)
    return OnnxRuntimeBackend(Path(artifact_path), threads=options.get("threads", 1),
                              device=options.get("device", "cpu"),
                              optimization_level=options.get("optimization_level", "all"),
                              session_options=options.get("session_options", {}))


def providers_for(device: str) -> list[str]:
    """Execution providers for a device; raises when the GPU is asked for but absent."""
    ort = require("onnxruntime")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UserInputError("--device gpu needs onnxruntime-gpu and a CUDA GPU; this "
                             f"onnxruntime offers {', '.join(ort.get_available_providers())}")
    return ["CUDAExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    def __init__(self, artifact_path: Path, threads: int = 1, device: str = "cpu",
                 optimization_level: str = "all", session_options: dict | None = None):
        ort = require("onnxruntime")
        if optimization_level not in OPTIMIZATION_LEVELS:
            raise UserInputError(f"optimization_level must be one of "
                                 f"{', '.join(OPTIMIZATION_LEVELS)}, got {optimization_level!r}")
        providers = providers_for(device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimization_level]
        for key, value in (session_options or {}).items():
            options.add_session_config_entry(key, str(value))
        self.artifact_path = artifact_path
        self.threads = threads
        self.optimization_level = optimization_level
        self._session_options = options
        try:
            self._session = ort.InferenceSession(str(artifact_path), sess_options=options,
                                                 providers=providers)
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph classes
            raise UserInputError(f"ONNX Runtime cannot load {artifact_path}: {error}") from error
        if device == "gpu" and "CUDAExecutionProvider" not in self._session.get_providers():
            raise UserInputError("ONNX Runtime could not start the CUDA execution provider")
        session_inputs = self._session.get_inputs()
        session_outputs = self._session.get_outputs()
        check_single_io("onnxruntime", session_inputs, session_outputs, artifact_path)
        self._inputs = [_tensor_info(session_inputs[0])]
        self._outputs = [_tensor_info(session_outputs[0])]
        self._input_name = session_inputs[0].name
        self._output_names = [session_outputs[0].name]
        self.providers = self._session.get_providers()

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(self._output_names, {self._input_name: batch})[0]

    def details(self) -> dict:
        return {"providers": list(self.providers), "threads": self.threads,
                "optimization_level": self.optimization_level,
                "kernels": self.kernel_summary()}

    def kernel_summary(self) -> dict:
        """Which nodes of the graph ONNX Runtime runs (after its optimizations) in int8 kernels.

        ORT fuses DequantizeLinear -> op -> QuantizeLinear into QLinear*/QGemm kernels where it
        has one; a QDQ pair it cannot fuse leaves the op in float between a dequantize and a
        quantize. This reads the session's optimized graph (saved by a second session with
        the same options, outside any timing).
        """
        import tempfile

        ort = require("onnxruntime")
        onnx = require("onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3  # ORT warns that an ORT_ENABLE_ALL graph is CPU-specific
        options.graph_optimization_level = self._session_options.graph_optimization_level
        with tempfile.TemporaryDirectory() as folder:
            options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
            ort.InferenceSession(str(self.artifact_path), sess_options=options,
                                 providers=self.providers)
            # Node types and tensor types suffice: a model with external data keeps it where
            # it is (the optimized copy's references would point into this folder).
            optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
        return summarize_kernels(optimized.graph)

    def close(self) -> None:
        self._session = None


def _tensor_info(node) -> TensorInfo:
    """ONNX graph I/O carries no quantization: int8 ONNX models here take and give floats
    (QDQ inside), so scale stays 0 and infer == infer_raw."""
    shape = tuple(side if isinstance(side, int) else -1 for side in node.shape)
    return TensorInfo(name=node.name, shape=shape, dtype=_ONNX_TYPES.get(node.type, node.type))


INT8_KERNEL_OPS = ("QGemm", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul")
CONVERSION_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
_INTEGER_TYPES = (2, 3)  # onnx.TensorProto.UINT8, INT8
_TENSOR_TYPE_INT64 = 7


def summarize_kernels(graph) -> dict:
    """Count an ONNX graph's nodes by kernel precision: int8, float, or a (de)quantization.

    A QLinear*/QGemm/*Integer node runs an int8 kernel; any other node runs on the precision of
    its first input, followed through the graph from the inputs and initializers (a Reshape or
    MaxPool of uint8 data stays int8; a Conv of float data is a float kernel).

    Returns:
        nodes, int8 (op type -> count), float (op type -> count) and conversions
        (QuantizeLinear/DequantizeLinear counts).
    """
    integer = {value.name for value in graph.input
               if value.type.tensor_type.elem_type in _INTEGER_TYPES}
    integer.update(tensor.name for tensor in graph.initializer if tensor.data_type in _INTEGER_TYPES)
    shapes = {tensor.name for tensor in graph.initializer if tensor.data_type == _TENSOR_TYPE_INT64}
    int8, floating, conversions = {}, {}, {}
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type in CONVERSION_OPS:
            bucket = conversions
            output_integer = node.op_type != "DequantizeLinear"
        elif node.op_type.startswith("QLinear") or node.op_type in INT8_KERNEL_OPS:
            bucket = int8
            # QGemm without y_scale and the *Integer ops give float or int32, not int8
            output_integer = node.op_type.startswith("QLinear") or (
                node.op_type == "QGemm" and len(inputs) >= 8)
        else:
            data = [name for name in inputs if name not in shapes]
            output_integer = bool(data) and data[0] in integer
            bucket = int8 if output_integer else floating
        bucket[node.op_type] = bucket.get(node.op_type, 0) + 1
        if output_integer:
            integer.update(node.output)
    return {"nodes": len(graph.node), "int8": dict(sorted(int8.items())),
            "float": dict(sorted(floating.items())), "conversions": dict(sorted(conversions.items()))}
