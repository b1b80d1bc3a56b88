"""16x8 FULLY_CONNECTED: int16 activations, int8 weights, an int64 or int32 bias.

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
    fully_connected_dims,
)
from edgeship.convert.codegen.quant import activation_range, per_channel_multipliers

from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator

TENSOR_TYPE_INT32 = 2  # TFLite's TensorType enum: quantized_bias_type INT32


def lower_fully_connected_16x8(graph: Graph, op: Operator) -> LoweredOp:
    """Weights [units][depth]; MACs: batches * depth * units (the lowering.fully_connected
    registration sends int16 inputs here)."""
    input_tensor, weights = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    check_dtype(input_tensor, "input", op, ("int16",))
    check_dtype(weights, "weight", op, ("int8",))
    check_dtype(output, "output", op, ("int16",))
    check_symmetric_weights(weights, op)
    batches, depth, units = fully_connected_dims(op, input_tensor, weights)
    per_channel = weights.scales.size > 1
    multipliers, shifts = per_channel_multipliers(input_tensor, weights, output,
                                                  units if per_channel else 1)
    prefix = f"op{op.index}"
    constants = [ConstantArray("int8_t", f"{prefix}_weights",
                               np.asarray(weights.data, np.int8).reshape(-1))]
    has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
    if has_bias:
        bias = graph.tensors[op.inputs[2]]
        if bias.dtype not in ("int32", "int64") or bias.data is None:
            raise UserInputError(f"op {op.index} (FULLY_CONNECTED) has a {bias.dtype} bias; "
                                 "16x8 codegen needs a constant int64 or int32 bias")
        wide = bias.dtype == "int64"
        constants.append(ConstantArray(f"{bias.dtype}_t", f"{prefix}_bias",
                                       np.asarray(bias.data).reshape(units)))
    else:
        wide = getattr(op.options, "quantizedBiasType", 0) != TENSOR_TYPE_INT32
    constants += [ConstantArray("int32_t", f"{prefix}_multiplier", multipliers),
                  ConstantArray("int8_t", f"{prefix}_shift", shifts)]
    act_min, act_max = activation_range(op.options.fusedActivationFunction, output, op.name)
    arguments = (batches, depth, units, TensorArg(op.inputs[0]), SymbolArg(f"{prefix}_weights"),
                 SymbolArg(f"{prefix}_bias") if has_bias else 0,
                 -input_tensor.zero_point, SymbolArg(f"{prefix}_multiplier"),
                 SymbolArg(f"{prefix}_shift"), int(per_channel), output.zero_point, act_min,
                 act_max, TensorArg(op.outputs[0]))
    accumulator = "int64" if wide else "int32"
    return LoweredOp(op.index, op.name,
                     "fully_connected_s16" if wide else "fully_connected_s16_acc32", arguments,
                     inputs=(op.inputs[0],), outputs=(op.outputs[0],),
                     summary=(f"16x8 {batches}x{depth} -> {batches}x{units}, {accumulator} "
                              "accumulator"),
                     constants=tuple(constants), macs=batches * depth * units)
