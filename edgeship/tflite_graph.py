"""The one reader of .tflite flatbuffers, shared by every stage.

Two views of the same file:
- `read_model` / `write_model`: the schema's mutable object (subgraphs, tensors, buffers),
  for code that edits a model (granularity splices weights, op parity cuts one-op models).
- `read_graph`: a typed, read-only view of subgraph 0 (tensors with their quantization and
  constant data, operators with their builtin names and options), for code that reads one
  (codegen, embed, inspect).

The schema bindings come from ai_edge_litert (imported on first use; no TensorFlow).
"""

from dataclasses import dataclass

import numpy as np

from edgeship.deps import require
from edgeship.errors import UserInputError
from edgeship.quantization import TensorInfo

# Ops that only move data between float and int8 at the edges of a graph.
CONVERSION_OPS = ("QUANTIZE", "DEQUANTIZE")
_TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
                 6: "bool", 7: "int16", 9: "int8", 10: "float64"}
_DATA_TYPES = ("int8", "int32", "int64", "uint8", "int16", "float32")
_FILE_IDENTIFIER = b"TFL3"


def flatbuffer_schema():
    """The LiteRT flatbuffer schema bindings (ModelT, TensorT, BuiltinOperator, ...)."""
    return require("ai_edge_litert.schema_py_generated")


def read_model(tflite_bytes: bytes):
    """The mutable flatbuffer object (schema ModelT) of a .tflite file."""
    schema = flatbuffer_schema()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(tflite_bytes), 0))


def write_model(model) -> bytes:
    """A (possibly edited) model object back to .tflite bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())


def tensor_dtype(tensor) -> str:
    """The numpy dtype name of a schema tensor's type ("int8"; "typeN" for one numpy lacks)."""
    return _TENSOR_TYPES.get(tensor.type, f"type{tensor.type}")


def is_constant(model, tensor) -> bool:
    """The tensor's values are in the file: a non-empty buffer, inline or at an offset."""
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and ((buffer.data is not None and len(buffer.data) > 0)
                                   or (getattr(buffer, "offset", 0) or 0) > 1)


def builtin_code(model, op) -> int:
    """The builtin operator code of an op (new files use builtinCode, old ones the deprecated)."""
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def builtin_codes() -> dict[str, int]:
    """Builtin op name -> code ("CONV_2D" -> 3)."""
    return {name: value for name, value in vars(flatbuffer_schema().BuiltinOperator).items()
            if not name.startswith("_")}


def op_names(model, custom_names: bool = False) -> list[str]:
    """Builtin op name of every op of subgraph 0 of a model object.

    Custom ops are "CUSTOM", or "CUSTOM(their code)" with custom_names.
    """
    names_by_code = {value: name for name, value in builtin_codes().items()}
    names = []
    for op in model.subgraphs[0].operators or []:
        builtin = builtin_code(model, op)
        name = names_by_code.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM" and custom_names:
            custom = model.operatorCodes[op.opcodeIndex].customCode
            name = f"CUSTOM({custom.decode() if isinstance(custom, bytes) else custom})"
        names.append(name)
    return names


@dataclass(frozen=True)
class Tensor:
    """One tensor of the graph, with its constant data when it has any."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: np.ndarray
    zero_points: np.ndarray
    data: np.ndarray | None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def scale(self) -> float:
        """The per-tensor scale as the float32 TFLite stores (0.0 for a float tensor)."""
        return float(self.scales[0]) if self.scales.size else 0.0

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if self.zero_points.size else 0

    def info(self) -> TensorInfo:
        """Its name, shape, dtype and per-tensor quantization (a model input or output)."""
        return TensorInfo(self.name, self.shape, self.dtype, self.scale, self.zero_point)


@dataclass(frozen=True)
class Operator:
    """One op: builtin name ("CONV_2D"), tensor indices (-1: optional input absent), options."""

    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: object


@dataclass(frozen=True)
class Graph:
    """Subgraph 0 of a single-subgraph model."""

    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]

    def op_names(self) -> list[str]:
        return [op.name for op in self.operators]


def read_user_model(tflite_bytes: bytes):
    """`read_model` on a file a user gave: unreadable or without a subgraph is bad input."""
    try:
        model = read_model(tflite_bytes)
    except Exception as error:  # flatbuffers raises struct.error, IndexError, ...
        raise UserInputError(f"not a readable .tflite flatbuffer: {error}") from error
    if not model.subgraphs:
        raise UserInputError("the .tflite holds no subgraph")
    return model


def read_graph(tflite_bytes: bytes) -> Graph:
    """Parse a .tflite flatbuffer's only subgraph into a Graph.

    The structure check runs first: codegen and embed (and TFLite Micro after them) are
    pointed at files edgeship did not make.

    Raises:
        UserInputError: a malformed file, no subgraph, or more than one.
    """
    from edgeship.model_check import check_tflite_bytes

    check_tflite_bytes(tflite_bytes)
    model = read_user_model(tflite_bytes)
    if len(model.subgraphs) > 1:
        raise UserInputError(f"the .tflite holds {len(model.subgraphs)} subgraphs; edgeship "
                             "reads single-graph classifiers")
    subgraph = model.subgraphs[0]
    tensors = []
    for index, tensor in enumerate(subgraph.tensors):
        quantization = tensor.quantization
        scales = np.asarray(quantization.scale if quantization is not None
                            and quantization.scale is not None else [], np.float32)
        zero_points = np.asarray(quantization.zeroPoint if quantization is not None
                                 and quantization.zeroPoint is not None else [], np.int64)
        dtype = tensor_dtype(tensor)
        shape = tuple(int(side) for side in (tensor.shape if tensor.shape is not None else []))
        data = buffer_data(model.buffers[tensor.buffer], tflite_bytes, dtype, shape)
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        tensors.append(Tensor(index, name, shape, dtype, scales, zero_points, data))
    operators = [Operator(index, name, [int(i) for i in op.inputs], [int(i) for i in op.outputs],
                          op.builtinOptions)
                 for index, (op, name) in enumerate(zip(subgraph.operators or [],
                                                        op_names(model, custom_names=True)))]
    return Graph(tensors, operators, [int(i) for i in subgraph.inputs],
                 [int(i) for i in subgraph.outputs])


def buffer_data(buffer, tflite_bytes: bytes, dtype: str, shape) -> np.ndarray | None:
    """A constant's values: the buffer's data, or its bytes at an offset in the file (large
    models); None for an empty buffer or an unknown dtype."""
    raw = None
    if buffer is not None and buffer.data is not None and len(buffer.data):
        raw = np.asarray(buffer.data, np.uint8).tobytes()
    elif buffer is not None and getattr(buffer, "offset", 0) > 1:
        raw = tflite_bytes[buffer.offset:buffer.offset + buffer.size]
    if raw is None or dtype not in _DATA_TYPES:
        return None
    return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape if shape else ())


@dataclass(frozen=True)
class GraphOp:
    """One op of subgraph 0.

    Attributes:
        index: position in the graph.
        op: builtin op name (e.g. "CONV_2D"; "CUSTOM" for custom ops).
        output_tensor: index of its first output tensor.
        output: that tensor's name (the Keras layer names live in it).
    """

    index: int
    op: str
    output_tensor: int
    output: str


def graph_ops(tflite_bytes: bytes, skip_conversions: bool = True) -> list[GraphOp]:
    """The ops of subgraph 0 in order, QUANTIZE/DEQUANTIZE left out unless asked for."""
    model = read_model(tflite_bytes)
    graph = model.subgraphs[0]
    return [GraphOp(index=index, op=name, output_tensor=int(op.outputs[0]),
                    output=graph.tensors[op.outputs[0]].name.decode())
            for index, (op, name) in enumerate(zip(graph.operators, op_names(model)))
            if not (skip_conversions and name in CONVERSION_OPS)]


def align_ops(first: list[GraphOp], second: list[GraphOp]) -> dict[int, GraphOp] | None:
    """first's op index -> second's op at the same position, when the op sequences match."""
    if [op.op for op in first] != [op.op for op in second]:
        return None
    return {mine.index: theirs for mine, theirs in zip(first, second)}
