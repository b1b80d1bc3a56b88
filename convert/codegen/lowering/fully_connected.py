"""FULLY_CONNECTED: per-tensor or per-channel requantization, input offset folded into the bias."""

import numpy as np

from edgeship.convert.codegen.lowering.base import (
    ConstantArray,
    LinearParams,
    LoweredOp,
    SymbolArg,
    TensorArg,
    bias_values,
    check_int8,
    check_symmetric_weights,
    fully_connected_dims,
    lowers,
)
from edgeship.convert.codegen.lowering.linear16 import lower_fully_connected_16x8
from edgeship.convert.codegen.quant import activation_range, per_channel_multipliers
from edgeship.tflite_graph import Graph, Operator


@lowers("FULLY_CONNECTED", types=(("int8", "int8"), ("int16", "int16")))
def lower_fully_connected(graph: Graph, op: Operator) -> LoweredOp:
    """Weights [units][depth]; MACs: batches * depth * units. 16x8 ops: lowering.linear16."""
    if graph.tensors[op.inputs[0]].dtype == "int16":
        return lower_fully_connected_16x8(graph, op)
    input_tensor, weights = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    for tensor, role in ((input_tensor, "input"), (weights, "weight"), (output, "output")):
        check_int8(tensor, role, op)
    check_symmetric_weights(weights, op)
    batches, depth, units = fully_connected_dims(op, input_tensor, weights)
    per_channel = weights.scales.size > 1
    multipliers, shifts = per_channel_multipliers(input_tensor, weights, output,
                                                  units if per_channel else 1)
    bias = bias_values(graph, op, units)
    weight_values = np.asarray(weights.data, np.int8)
    sums = weight_values.astype(np.int64).sum(axis=1)
    folded = (bias if bias is not None else 0) - input_tensor.zero_point * sums
    activation = op.options.fusedActivationFunction if op.options is not None else 0
    act_min, act_max = activation_range(activation, output, op.name)
    prefix = f"op{op.index}"
    constants = (ConstantArray("int8_t", f"{prefix}_weights", weight_values.reshape(-1)),
                 ConstantArray("int32_t", f"{prefix}_folded_bias", folded),
                 ConstantArray("int32_t", f"{prefix}_multiplier", multipliers),
                 ConstantArray("int8_t", f"{prefix}_shift", shifts))
    arguments = (batches, depth, units, TensorArg(op.inputs[0]), SymbolArg(f"{prefix}_weights"),
                 SymbolArg(f"{prefix}_folded_bias"), SymbolArg(f"{prefix}_multiplier"),
                 SymbolArg(f"{prefix}_shift"), int(per_channel), output.zero_point, act_min,
                 act_max, TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "fully_connected", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],), summary=f"{batches}x{depth} -> {batches}x{units}",
                     constants=constants, macs=batches * depth * units,
                     linear=LinearParams(
                         weights=weight_values.reshape(units, depth), bias=bias,
                         folded_bias=np.asarray(folded, np.int64) * np.ones(units, np.int64),
                         multipliers=multipliers, shifts=shifts, window=None,
                         output_offset=output.zero_point, act_min=act_min, act_max=act_max,
                         batches=batches, per_channel=per_channel))
