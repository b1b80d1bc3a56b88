"""16x8 FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D: int16 activations, int8 weights, an
int64 or int32 bias.

TFLite Micro (fully_connected.cc, kTfLiteInt16 input) accumulates in the bias type: with an
int64 bias (or none, unless the op's quantized_bias_type asks for int32) the int64 sum is
requantized by TFLite's int64 MultiplyByQuantizedMultiplier (the multiplier rounded to 16
bits); with an int32 bias the int32 sum takes the usual int32 requantization. The per-channel
multipliers are computed as for int8 (quant.per_channel_multipliers).
"""

import numpy as np

from edgeship.convert.codegen.lowering.base import (
    ConstantArray,
    LoweredOp,
    SymbolArg,
    TensorArg,
    check_dtype,
    check_symmetric_weights,
    convolution_window,
    fully_connected_dims,
    window_struct,
)
from edgeship.convert.codegen.quant import activation_range, per_channel_multipliers
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator

TENSOR_TYPE_INT32 = 2  # TFLite's TensorType enum: quantized_bias_type INT32


def _tensors_16x8(graph: Graph, op: Operator):
    """The op's int16 input, int8 symmetric weights and int16 output, checked."""
    input_tensor, weights = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    check_dtype(input_tensor, "input", op, ("int16",))
    check_dtype(weights, "weight", op, ("int8",))
    check_dtype(output, "output", op, ("int16",))
    check_symmetric_weights(weights, op)
    return input_tensor, weights, output


def lower_fully_connected_16x8(graph: Graph, op: Operator) -> LoweredOp:
    """Weights [units][depth]; MACs: batches * depth * units (the lowering.fully_connected
    registration sends int16 inputs here)."""
    input_tensor, weights, output = _tensors_16x8(graph, op)
    batches, depth, units = fully_connected_dims(op, input_tensor, weights)
    per_channel = weights.scales.size > 1
    multipliers, shifts = per_channel_multipliers(input_tensor, weights, output,
                                                  units if per_channel else 1)
    prefix = f"op{op.index}"
    constants = [ConstantArray("int8_t", f"{prefix}_weights",
                               np.asarray(weights.data, np.int8).reshape(-1))]
    bias_constants, bias_argument, wide = _bias_constants(graph, op, units, op.options)
    constants += [*bias_constants, ConstantArray("int32_t", f"{prefix}_multiplier", multipliers),
                  ConstantArray("int8_t", f"{prefix}_shift", shifts)]
    act_min, act_max = activation_range(op.options.fusedActivationFunction, output, op.name)
    arguments = (batches, depth, units, TensorArg(op.inputs[0]), SymbolArg(f"{prefix}_weights"),
                 bias_argument, -input_tensor.zero_point, SymbolArg(f"{prefix}_multiplier"),
                 SymbolArg(f"{prefix}_shift"), int(per_channel), output.zero_point, act_min,
                 act_max, TensorArg(op.outputs[0]))
    accumulator = "int64" if wide else "int32"
    return LoweredOp(op.index, op.name,
                     "fully_connected_s16" if wide else "fully_connected_s16_acc32", arguments,
                     inputs=(op.inputs[0],), outputs=(op.outputs[0],),
                     summary=(f"16x8 {batches}x{depth} -> {batches}x{units}, {accumulator} "
                              "accumulator"),
                     constants=tuple(constants), macs=batches * depth * units)


def lower_convolution_16x8(graph: Graph, op: Operator) -> LoweredOp:
    """16x8 CONV_2D and DEPTHWISE_CONV_2D (the lowering.conv registration sends int16 inputs
    here): one reference loop over the window, taps outside the image skipped. TFLite Micro's
    int16 depthwise reads an int64 bias only; conv takes int64 or int32."""
    input_tensor, weights, output = _tensors_16x8(graph, op)
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    values, summary, depth_multiplier = convolution_window(op, input_tensor, weights, output)
    out_c, k_h, k_w = values["out_c"], values["k_h"], values["k_w"]
    multipliers, shifts = per_channel_multipliers(input_tensor, weights, output, out_c)
    prefix = f"op{op.index}"
    constants, bias_argument, wide = _bias_constants(graph, op, out_c, op.options)
    if depthwise and not wide:
        raise UserInputError(f"op {op.index} (DEPTHWISE_CONV_2D) is 16x8 with an int32 bias, "
                             "which TFLite Micro's int16 depthwise does not read; codegen "
                             "needs an int64 bias there")
    constants = (ConstantArray("int8_t", f"{prefix}_weights",
                               np.asarray(weights.data, np.int8).reshape(-1)), *constants,
                 ConstantArray("int32_t", f"{prefix}_multiplier", multipliers),
                 ConstantArray("int8_t", f"{prefix}_shift", shifts))
    struct = window_struct(op, values)
    arguments = (SymbolArg(struct.name, address=True), depth_multiplier, TensorArg(op.inputs[0]),
                 SymbolArg(f"{prefix}_weights"), bias_argument,
                 SymbolArg(f"{prefix}_multiplier"), SymbolArg(f"{prefix}_shift"),
                 TensorArg(op.outputs[0]))
    taps = values["out_h"] * values["out_w"] * out_c * k_h * k_w
    return LoweredOp(op.index, op.name, "conv_2d_s16" if wide else "conv_2d_s16_acc32",
                     arguments, inputs=(op.inputs[0],), outputs=(op.outputs[0],),
                     summary=f"16x8 {summary}, {'int64' if wide else 'int32'} accumulator",
                     constants=constants, structs=(struct,),
                     macs=int(taps if depthwise else taps * values["in_c"]))


def _bias_constants(graph: Graph, op: Operator, channels: int, options
                    ) -> tuple[tuple[ConstantArray, ...], object, bool]:
    """(bias constant or nothing, its kernel argument, whether the sum is int64)."""
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return (), 0, getattr(options, "quantizedBiasType", 0) != TENSOR_TYPE_INT32
    bias = graph.tensors[op.inputs[2]]
    if bias.dtype not in ("int32", "int64") or bias.data is None:
        raise UserInputError(f"op {op.index} ({op.name}) has a {bias.dtype} bias; 16x8 "
                             "codegen needs a constant int64 or int32 bias")
    name = f"op{op.index}_bias"
    constant = ConstantArray(f"{bias.dtype}_t", name, np.asarray(bias.data).reshape(channels))
    return (constant,), SymbolArg(name), bias.dtype == "int64"
