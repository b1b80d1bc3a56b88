"""The op sequence of a .tflite file: names and output tensors, shared by every stage.

Imports TensorFlow's flatbuffer helpers lazily (they are heavy).
"""

from dataclasses import dataclass

# Ops that only move data between float and int8 at the edges of a graph.
CONVERSION_OPS = ("QUANTIZE", "DEQUANTIZE")


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


def read_model(tflite_bytes: bytes):
    """The mutable flatbuffer object of a .tflite file."""
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))


def op_names(model) -> list[str]:
    """Builtin op name of every op of subgraph 0 of a model object."""
    from tensorflow.lite.python import schema_py_generated as schema

    codes = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    names = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        names.append(codes.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM"))
    return names


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
