"""Op types and multiply-accumulate counts of an int8 .tflite, for cycles per MAC.

Read with the LiteRT flatbuffer bindings (no TensorFlow import). To be replaced by the per-op
list CodegenResult will carry once codegen reports it.
"""

from dataclasses import dataclass

import numpy as np

from edgeship.deps import require
from edgeship.errors import UserInputError


@dataclass(frozen=True)
class OpInfo:
    """One op of subgraph 0: its index (execution order), builtin name and MACs."""

    index: int
    op: str
    macs: int


def _shape(tensor) -> tuple[int, ...]:
    shape = tensor.ShapeAsNumpy()
    return tuple(int(side) for side in shape) if isinstance(shape, np.ndarray) else ()


def op_macs(op: str, input_shapes: list[tuple[int, ...]],
            output_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one op (0 for ops without products).

    Args:
        op: builtin name.
        input_shapes: shapes of its inputs (data, weights, bias ...).
        output_shape: shape of its first output.
    """
    outputs = int(np.prod(output_shape)) if output_shape else 0
    if op == "CONV_2D" and len(input_shapes) > 1 and len(input_shapes[1]) == 4:
        _, k_h, k_w, in_c = input_shapes[1]
        return outputs * k_h * k_w * in_c
    if op == "DEPTHWISE_CONV_2D" and len(input_shapes) > 1 and len(input_shapes[1]) == 4:
        _, k_h, k_w, _ = input_shapes[1]
        return outputs * k_h * k_w
    if op == "FULLY_CONNECTED" and len(input_shapes) > 1 and len(input_shapes[1]) == 2:
        return outputs * input_shapes[1][1]
    return 0


def model_ops(tflite_bytes: bytes) -> list[OpInfo]:
    """Every op of subgraph 0 with its MACs.

    Raises:
        UserInputError: not a readable .tflite flatbuffer.
    """
    schema = require("ai_edge_litert.schema_py_generated")
    names = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    try:
        model = schema.Model.GetRootAsModel(tflite_bytes, 0)
        graph = model.Subgraphs(0)
        ops = []
        for index in range(graph.OperatorsLength()):
            operator = graph.Operators(index)
            code = model.OperatorCodes(operator.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            inputs = [_shape(graph.Tensors(int(i))) if i >= 0 else ()
                      for i in operator.InputsAsNumpy()]
            output = _shape(graph.Tensors(int(operator.OutputsAsNumpy()[0])))
            ops.append(OpInfo(index, name, op_macs(name, inputs, output)))
    except Exception as error:  # flatbuffers raises struct.error, IndexError, ...
        raise UserInputError(f"not a readable .tflite flatbuffer: {error}") from error
    return ops
