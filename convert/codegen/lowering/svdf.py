"""SVDF, int8 with int16 time weights and state (TFLite Micro's integer SVDF).

TFLite Micro's PrepareSvdf computes two requantization scales in float32 and takes
QuantizeMultiplier of each: input scale x feature-weight scale / state scale (the feature dot
products into the state) and state scale x time-weight scale / output scale (the time sums
into the int8 output). Its integer kernel applies no fused activation, whatever the op's
options say; the generated C does the same, so both agree bit for bit.

The activation state is the op's variable tensor: a static array of the generated C kept
from one invoke to the next, zeroed by NAME_reset() (TFLite Micro's ResetVariableTensors).
"""

import numpy as np

from edgeship.convert.codegen.lowering.base import (
    ConstantArray,
    ConstantStruct,
    LoweredOp,
    ScratchArg,
    StateArray,
    SymbolArg,
    TensorArg,
    check_dtype,
    lowers,
)
from edgeship.convert.codegen.quant import quantize_multiplier
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator

INPUT, FEATURE_WEIGHTS, TIME_WEIGHTS, BIAS, STATE = range(5)


def _float32_ratio(first: float, second: float, third: float) -> float:
    """first * second / third in float32, as TFLite Micro's Prepare computes it."""
    return float((np.float32(first) * np.float32(second)) / np.float32(third))


@lowers("SVDF")
def lower_svdf(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor = graph.tensors[op.inputs[INPUT]]
    feature = graph.tensors[op.inputs[FEATURE_WEIGHTS]]
    time = graph.tensors[op.inputs[TIME_WEIGHTS]]
    state = graph.tensors[op.inputs[STATE]]
    output = graph.tensors[op.outputs[0]]
    has_bias = len(op.inputs) > BIAS and op.inputs[BIAS] >= 0
    check_dtype(feature, "feature weights", op, ("int8",))
    for tensor, role in ((time, "time weights"), (state, "state")):
        if tensor.dtype != "int16":
            raise UserInputError(f"op {op.index} (SVDF): {role} are {tensor.dtype}; codegen "
                                 "generates the SVDF with int16 time weights and state")
    for tensor, role in ((feature, "feature weights"), (time, "time weights")):
        if tensor.data is None or tensor.scales.size != 1:
            raise UserInputError(f"op {op.index} (SVDF): {role} must be constant and "
                                 "quantized per tensor")
    rank = int(op.options.rank)
    filters, input_size = (int(dim) for dim in feature.shape)
    memory_size = int(time.shape[1])
    batches = int(input_tensor.shape[0])
    if rank < 1 or filters % rank or tuple(time.shape) != (filters, memory_size) \
            or input_tensor.size != batches * input_size:
        raise UserInputError(f"op {op.index} (SVDF): shapes do not match (rank {rank}, "
                             f"feature weights {feature.shape}, time weights {time.shape})")
    if state.size != batches * filters * memory_size:
        raise UserInputError(f"op {op.index} (SVDF): state of {state.size} values, not "
                             f"batches x filters x memory ({batches * filters * memory_size})")
    units = filters // rank
    feature_scale = quantize_multiplier(_float32_ratio(input_tensor.scale, feature.scale,
                                                       state.scale))
    output_scale = quantize_multiplier(_float32_ratio(state.scale, time.scale, output.scale))
    prefix = f"op{op.index}"
    constants = [ConstantArray("int8_t", f"{prefix}_feature_weights",
                               np.asarray(feature.data, np.int8).reshape(-1)),
                 ConstantArray("int16_t", f"{prefix}_time_weights",
                               np.asarray(time.data, np.int16).reshape(-1))]
    if has_bias:
        bias = graph.tensors[op.inputs[BIAS]]
        check_dtype(bias, "bias", op, ("int32",))
        if bias.data is None:
            raise UserInputError(f"op {op.index} (SVDF): the bias must be constant")
        constants.append(ConstantArray("int32_t", f"{prefix}_bias",
                                       np.asarray(bias.data, np.int64).reshape(-1)))
    params = ConstantStruct("es_svdf_params", f"{prefix}_params", (
        batches, input_size, filters, rank, memory_size, input_tensor.zero_point,
        state.zero_point, output.zero_point, *feature_scale, *output_scale))
    states = (StateArray("int16_t", f"{prefix}_state", state.size, 0),)
    arguments = (SymbolArg(params.name, address=True), SymbolArg(constants[0].name),
                 SymbolArg(constants[1].name),
                 SymbolArg(constants[2].name) if has_bias else SymbolArg("0"),
                 SymbolArg(states[0].name), ScratchArg(op.index), TensorArg(op.inputs[INPUT]),
                 TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "svdf", arguments, inputs=(op.inputs[INPUT],),
                     outputs=(op.outputs[0],),
                     summary=(f"{batches}x{input_size} -> {units} units, {filters} filters "
                              f"x {memory_size} memory, rank {rank}"),
                     constants=tuple(constants), structs=(params,), states=states,
                     macs=batches * filters * (input_size + memory_size),
                     scratch_bytes=4 * batches * (filters + units))
