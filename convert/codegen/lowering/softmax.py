"""SOFTMAX with TFLite Micro's fixed-point exp (gemmlowp), no float at run time."""

import math

import numpy as np

from edgeship.convert.codegen.lowering.base import (
    ConstantArray,
    LoweredOp,
    SymbolArg,
    TensorArg,
    check_dtype,
    lowers,
)
from edgeship.convert.codegen.quant import (
    quantize_multiplier,
    softmax_int16_tables,
    softmax_parameters,
)
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator


@lowers("SOFTMAX", types=(("int8", "int8"), ("int16", "int16"), ("int8", "int16")))
def lower_softmax(graph: Graph, op: Operator) -> LoweredOp:
    if graph.tensors[op.inputs[0]].dtype == "int16":
        return lower_softmax_int16(graph, op)
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    wide = output.dtype == "int16"  # int8 in, int16 out: the same arithmetic to 16 bits
    expected_scale, expected_zero = (1 / 65536, -32768) if wide else (1 / 256, -128)
    # TFLite Micro's check: the int16 scale within 0.1 %, the int8 one exact (1e-6 here).
    if output.zero_point != expected_zero or not math.isclose(
            output.scale, expected_scale, rel_tol=1e-3 if wide else 1e-6):
        raise UserInputError(f"op {op.index} (SOFTMAX): {output.dtype} output must have scale "
                             f"1/{round(1 / expected_scale)} and zero point {expected_zero} "
                             "(the TFLite spec)")
    multiplier, left_shift, diff_min = softmax_parameters(float(np.float32(op.options.beta)),
                                                          input_tensor.scale)
    depth = input_tensor.shape[-1]
    rows = input_tensor.size // depth
    arguments = (rows, depth, multiplier, left_shift, diff_min, TensorArg(op.inputs[0]),
                 TensorArg(op.outputs[0]))
    if wide:  # no overlap declared: each int16 output takes the bytes of two int8 inputs
        return LoweredOp(op.index, op.name, "softmax_s8_s16", arguments,
                         inputs=(op.inputs[0],), outputs=(op.outputs[0],),
                         summary=f"{rows}x{depth} to int16")
    return LoweredOp(op.index, op.name, "softmax", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],), summary=f"{rows}x{depth}",
                     overlap=((op.inputs[0], 0),))  # each value is read before it is overwritten


def lower_softmax_int16(graph: Graph, op: Operator) -> LoweredOp:
    """int16 SOFTMAX: TFLite Micro's tables (quant.softmax_int16_tables) and its input
    rescaling, input_scale * beta / (10 / 65535) (a difference of -65535 is exp(-10))."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    check_dtype(output, "output", op, ("int16",))
    if input_tensor.zero_point or output.zero_point or not math.isclose(
            output.scale, 1 / 32768, rel_tol=1e-3):
        raise UserInputError(f"op {op.index} (SOFTMAX): int16 softmax needs zero points 0 and "
                             "an output scale of 1/32768 (the TFLite spec)")
    beta = float(np.float32(op.options.beta))
    multiplier, shift = quantize_multiplier(input_tensor.scale * beta / (10.0 / 65535.0))
    exp_lut, reciprocal_lut = softmax_int16_tables()
    prefix = f"op{op.index}"
    constants = (ConstantArray("int16_t", f"{prefix}_exp_lut", exp_lut),
                 ConstantArray("int16_t", f"{prefix}_one_over_one_plus_x_lut", reciprocal_lut))
    depth = input_tensor.shape[-1]
    rows = input_tensor.size // depth
    arguments = (rows, depth, multiplier, shift, SymbolArg(constants[0].name),
                 SymbolArg(constants[1].name), TensorArg(op.inputs[0]), TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "softmax_s16", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],), summary=f"int16 {rows}x{depth}",
                     constants=constants, overlap=((op.inputs[0], 0),))  # row read, then written
