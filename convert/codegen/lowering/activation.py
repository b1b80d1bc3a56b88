"""Activation functions as ops of their own: LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, PRELU,
RELU and RELU6, each with TFLite Micro's integer arithmetic.

LOGISTIC and TANH (logistic_common.cc, tanh.cc): int8 runs gemmlowp's fixed-point functions
on the input rescaled to Q4.27 (kernels/portable/fixed_point.c), int16 interpolates TFLite's
sigmoid table (quant.sigmoid_table_uint16, emitted as a const array). HARD_SWISH
(hard_swish_common.cc) works in 16-bit fixed point. LEAKY_RELU and PRELU requantize the
positive and negative sides by their own multipliers. RELU (activations_common.cc
ReluQuantized) requantizes to the output scale and clamps at its zero; RELU6
(Relu6Quantized) only clamps to the input's quantized 0 and 6. RELU_N1_TO_1 has no TFLite
Micro kernel, so codegen has none either.
"""

import numpy as np

from edgeship.convert.codegen.lowering.arithmetic import broadcast_strides, dims4
from edgeship.convert.codegen.lowering.base import (
    ConstantArray,
    ConstantStruct,
    LoweredOp,
    SymbolArg,
    TensorArg,
    check_dtype,
    io_tensors,
    lowers,
)
from edgeship.convert.codegen.quant import (
    checked_log2,
    hard_swish_parameters,
    logistic_tanh_int16_parameters,
    logistic_tanh_parameters,
    quantize_multiplier,
    round_half_away,
    sigmoid_table_uint16,
)
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator

INT8_AND_INT16 = (("int8", "int8"), ("int16", "int16"))
# Power-of-two input shifts (12 + log2 scale) TFLite takes exactly in int16 LOGISTIC and TANH.
_POWER_OF_TWO_SHIFTS = {"LOGISTIC": (0,), "TANH": (0, 1)}


def _elementwise(op: Operator, kernel: str, arguments: tuple, summary: str,
                 constants: tuple[ConstantArray, ...] = ()) -> LoweredOp:
    """A one-input op computing output element i from input element i alone: it may run in
    place (element i is read, then written)."""
    return LoweredOp(op.index, op.name, kernel,
                     (*arguments, TensorArg(op.inputs[0]), TensorArg(op.outputs[0])),
                     inputs=(op.inputs[0],), outputs=(op.outputs[0],), summary=summary,
                     constants=constants, overlap=((op.inputs[0], 0),))


@lowers("LOGISTIC", "TANH", types=INT8_AND_INT16)
def lower_logistic_tanh(graph: Graph, op: Operator) -> LoweredOp:
    kernel = op.name.lower()
    if graph.tensors[op.inputs[0]].dtype == "int16":
        return _logistic_tanh_int16(graph, op, kernel)
    input_tensor, output = io_tensors(graph, op)
    if op.name == "LOGISTIC" and output.zero_point != -128:
        raise UserInputError(f"op {op.index} (LOGISTIC): int8 output zero point is "
                             f"{output.zero_point}; TFLite needs -128")
    multiplier, shift, radius = logistic_tanh_parameters(input_tensor.scale)
    return _elementwise(op, kernel, (input_tensor.size, input_tensor.zero_point, radius,
                                     multiplier, shift), f"{input_tensor.size} values")


def _logistic_tanh_int16(graph: Graph, op: Operator, kernel: str) -> LoweredOp:
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    check_dtype(output, "output", op, ("int16",))
    output_log2, power_of_two = checked_log2(output.scale)
    if input_tensor.zero_point or output.zero_point or not power_of_two or output_log2 != -15:
        raise UserInputError(f"op {op.index} ({op.name}): int16 needs zero points 0 and an "
                             "output scale of 1/32768 (TFLite Micro's kernel)")
    multiplier, shift = logistic_tanh_int16_parameters(input_tensor.scale,
                                                       _POWER_OF_TWO_SHIFTS[op.name])
    table = ConstantArray("uint16_t", f"op{op.index}_sigmoid_table", sigmoid_table_uint16())
    return _elementwise(op, f"{kernel}_s16",
                        (input_tensor.size, multiplier, shift, SymbolArg(table.name)),
                        f"int16 {input_tensor.size} values", constants=(table,))


@lowers("HARD_SWISH")
def lower_hard_swish(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = io_tensors(graph, op)
    params = hard_swish_parameters(input_tensor.scale, output.scale)
    if params["output_exponent"] > 0:
        raise UserInputError(f"op {op.index} (HARD_SWISH): input scale / output scale "
                             f"{input_tensor.scale / output.scale:.4g} is too large; TFLite "
                             "needs at most 128")
    return _elementwise(op, "hard_swish", (
        input_tensor.size, input_tensor.zero_point, output.zero_point,
        params["output_multiplier"], params["output_exponent"], params["reluish_multiplier"],
        params["reluish_exponent"]), f"{input_tensor.size} values")


@lowers("LEAKY_RELU", types=INT8_AND_INT16)
def lower_leaky_relu(graph: Graph, op: Operator) -> LoweredOp:
    """As leaky_relu_common.cc, int8 and int16 alike: the alpha multiplier from float32
    arithmetic (input scale * alpha / output scale), the identity one from the scales divided
    in double (float32 division is off by one quantum on some large int16 values)."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    check_dtype(output, "output", op, (input_tensor.dtype,))
    f32 = np.float32
    alpha = f32(op.options.alpha)
    alpha_multiplier, alpha_shift = quantize_multiplier(
        float(f32(input_tensor.scale) * alpha / f32(output.scale)))
    identity_multiplier, identity_shift = quantize_multiplier(
        float(f32(input_tensor.scale)) / float(f32(output.scale)))
    kernel = "leaky_relu_s16" if input_tensor.dtype == "int16" else "leaky_relu"
    return _elementwise(op, kernel, (
        input_tensor.size, input_tensor.zero_point, output.zero_point, identity_multiplier,
        identity_shift, abs(alpha_multiplier), alpha_shift, int(alpha_multiplier < 0)),
        f"{input_tensor.size} values, alpha {float(alpha):g}")


@lowers("RELU")
def lower_relu(graph: Graph, op: Operator) -> LoweredOp:
    """The scales divided in float32, the output's zero as the lower bound (ReluQuantized)."""
    input_tensor, output = io_tensors(graph, op)
    multiplier, shift = quantize_multiplier(
        float(np.float32(input_tensor.scale) / np.float32(output.scale)))
    return _elementwise(op, "relu", (input_tensor.size, input_tensor.zero_point, multiplier,
                                     shift, output.zero_point, max(-128, output.zero_point),
                                     127), f"{input_tensor.size} values")


@lowers("RELU6")
def lower_relu6(graph: Graph, op: Operator) -> LoweredOp:
    """TFLite Micro clamps in the input's quantization and ignores the output's."""
    input_tensor, _ = io_tensors(graph, op)
    six = round_half_away(float(np.float32(6.0) / np.float32(input_tensor.scale)))
    high = min(max(six + input_tensor.zero_point, -128), 127)
    return _elementwise(op, "relu6", (input_tensor.size, input_tensor.zero_point, high),
                        f"{input_tensor.size} values in [{input_tensor.zero_point}, {high}]")


@lowers("PRELU")
def lower_prelu(graph: Graph, op: Operator) -> LoweredOp:
    """alpha (usually a constant per channel) broadcast over the input as binary.c does."""
    input_tensor, output = io_tensors(graph, op)
    alpha = graph.tensors[op.inputs[1]]
    check_dtype(alpha, "alpha", op, ("int8",))
    if input_tensor.shape != output.shape or input_tensor.data is not None:
        raise UserInputError(f"op {op.index} (PRELU) broadcasts its input "
                             f"{list(input_tensor.shape)} to {list(output.shape)}; codegen "
                             "broadcasts alpha only")
    identity_multiplier, identity_shift = quantize_multiplier(input_tensor.scale / output.scale)
    alpha_multiplier, alpha_shift = quantize_multiplier(
        input_tensor.scale * alpha.scale / output.scale)
    prefix = f"op{op.index}"
    # Field orders of es_prelu_params (kernels/portable/prelu.c) and es_broadcast (binary.c).
    params = ConstantStruct("es_prelu_params", f"{prefix}_params", (
        -input_tensor.zero_point, -alpha.zero_point, output.zero_point, identity_multiplier,
        identity_shift, alpha_multiplier, alpha_shift))
    shape = ConstantStruct("es_broadcast", f"{prefix}_shape", (
        *dims4(output.shape), *broadcast_strides(input_tensor, output, op),
        *broadcast_strides(alpha, output, op)))
    constants, inputs = (), (op.inputs[0],)
    if alpha.data is None:
        alpha_argument = TensorArg(op.inputs[1])
        inputs += (op.inputs[1],)
    else:
        constant = ConstantArray("int8_t", f"{prefix}_alpha", np.asarray(alpha.data).reshape(-1))
        alpha_argument, constants = SymbolArg(constant.name), (constant,)
    return LoweredOp(op.index, op.name, "prelu",
                     (SymbolArg(params.name, address=True), SymbolArg(shape.name, address=True),
                      TensorArg(op.inputs[0]), alpha_argument, TensorArg(op.outputs[0])),
                     inputs=inputs, outputs=(op.outputs[0],),
                     summary=f"{list(input_tensor.shape)}, alpha {list(alpha.shape)}",
                     constants=constants, structs=(params, shape),
                     overlap=((op.inputs[0], 0),))  # input element i read, then written
