"""SOFTMAX with TFLite Micro's fixed-point exp (gemmlowp), no float at run time."""

import math

import numpy as np
from edgeship.convert.codegen.lowering.base import LoweredOp, TensorArg, io_tensors, lowers
from edgeship.convert.codegen.quant import softmax_parameters

from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator


@lowers("SOFTMAX")
def lower_softmax(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = io_tensors(graph, op)
    if output.zero_point != -128 or not math.isclose(output.scale, 1 / 256, rel_tol=1e-6):
        raise UserInputError(f"op {op.index} (SOFTMAX): int8 output must have scale 1/256 and "
                             "zero point -128 (the TFLite spec)")
    multiplier, left_shift, diff_min = softmax_parameters(float(np.float32(op.options.beta)),
                                                          input_tensor.scale)
    depth = input_tensor.shape[-1]
    rows = input_tensor.size // depth
    arguments = (rows, depth, multiplier, left_shift, diff_min, TensorArg(op.inputs[0]),
                 TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "softmax", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],), summary=f"{rows}x{depth}",
                     overlap=((op.inputs[0], 0),))  # each value is read before it is overwritten
