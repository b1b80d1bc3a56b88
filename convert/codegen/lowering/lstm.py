"""UNIDIRECTIONAL_SEQUENCE_LSTM, int8 x int8 -> int16 cell (TFLite Micro's integer LSTM).

TFLite Micro's Prepare (lstm_eval_common.cc, PrepareGateParametersInteger) fixes the gates'
arithmetic from the tensors' scales alone: each gate's two fully connected layers requantize
to int16 at 2^-12 (the sigmoid and tanh input, Q3.12), the activations give Q0.15 (2^-15),
and three element-wise products go to the cell scale and to the hidden state's int8. The
cell state's scale must be a power of two (its tanh takes a shift). Here those multipliers
are computed once; the kernel (kernels/portable/lstm.c) only loops.

The hidden and cell state are the op's variable tensors: static arrays of the generated C
that persist across invokes, as in TFLite Micro, set back to zero (the hidden state to its
zero point, as TFLite Micro's ResetVariableTensors) by NAME_reset().
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
from edgeship.convert.codegen.quant import (
    checked_log2,
    quantize_multiplier,
    sigmoid_table_uint16,
)
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator

# Input positions of the op (TFLite's lstm_shared.h): weights and biases in gate order
# input, forget, cell, output.
INPUT_WEIGHTS = (1, 2, 3, 4)
RECURRENT_WEIGHTS = (5, 6, 7, 8)
PEEPHOLES = (9, 10, 11)
BIASES = (12, 13, 14, 15)
PROJECTION = (16, 17)
HIDDEN_STATE, CELL_STATE = 18, 19
LAYER_NORMS = (20, 21, 22, 23)
GATE_INPUT_SCALE = 2.0 ** -12  # the fully connected layers' int16 output: Q3.12
GATE_OUTPUT_SCALE = 2.0 ** -15  # sigmoid and tanh outputs: Q0.15
TANH, SIGMOID = 4, 6  # TFLite's ActivationFunctionType values the cell gate may use


def _refuse(op: Operator, reason: str) -> UserInputError:
    return UserInputError(f"op {op.index} ({op.name}): {reason}; codegen generates the int8 "
                          "LSTM TFLite Micro runs (int8 activations and weights, int16 cell "
                          "state, no peephole, projection or layer normalisation)")


def _optional(op: Operator, position: int) -> int:
    return op.inputs[position] if position < len(op.inputs) else -1


@lowers("UNIDIRECTIONAL_SEQUENCE_LSTM")
def lower_lstm(graph: Graph, op: Operator) -> LoweredOp:
    options = op.options
    for position in (*PEEPHOLES, *PROJECTION, *LAYER_NORMS):
        if _optional(op, position) >= 0:
            raise _refuse(op, f"input {position} (peephole, projection or layer norm) is set")
    if getattr(options, "diagonalRecurrentTensors", False):
        raise _refuse(op, "diagonal recurrent weights")
    input_tensor = graph.tensors[op.inputs[0]]
    output = graph.tensors[op.outputs[0]]
    hidden = graph.tensors[op.inputs[HIDDEN_STATE]]
    cell = graph.tensors[op.inputs[CELL_STATE]]
    for tensor, role in ((input_tensor, "input"), (output, "output"), (hidden, "hidden state")):
        check_dtype(tensor, role, op, ("int8",))
    check_dtype(cell, "cell state", op, ("int16",))
    weights = [graph.tensors[op.inputs[position]] for position in
               (*INPUT_WEIGHTS, *RECURRENT_WEIGHTS)]
    biases = [graph.tensors[op.inputs[position]] for position in BIASES]
    for tensor in weights:
        check_dtype(tensor, "weight", op, ("int8",))
        if tensor.data is None or tensor.scales.size != 1 or tensor.zero_point != 0:
            raise _refuse(op, f"weight {tensor.name} is not constant, per-tensor and symmetric")
    for tensor in biases:
        check_dtype(tensor, "bias", op, ("int32",))
        if tensor.data is None:
            raise _refuse(op, f"bias {tensor.name} is not constant")
    if len(input_tensor.shape) != 3:
        raise _refuse(op, f"input shape {input_tensor.shape} is not 3-D")
    time_major = bool(getattr(options, "timeMajor", False))
    if time_major:
        time_steps, batches, input_dim = input_tensor.shape
    else:
        batches, time_steps, input_dim = input_tensor.shape
    state_dim = int(weights[0].shape[0])
    expected = [(state_dim, input_dim)] * 4 + [(state_dim, state_dim)] * 4
    if [tuple(tensor.shape) for tensor in weights] != expected:
        raise _refuse(op, "weight shapes do not match the input and state sizes")
    if hidden.size != batches * state_dim or cell.size != batches * state_dim:
        raise _refuse(op, "state sizes do not match batch x units")
    power, exact = checked_log2(cell.scale)
    if not exact:
        raise _refuse(op, f"cell state scale {cell.scale} is not a power of two")
    activation = int(getattr(options, "fusedActivationFunction", TANH))
    if activation not in (TANH, SIGMOID):
        raise _refuse(op, "the cell gate's activation is neither tanh nor sigmoid")

    # Each gate's fully connected layers, as TFLite Micro's CreateGateParams: input scale x
    # weight scale / 2^-12; the recurrent side has no bias. Input offsets folded into biases.
    multipliers, shifts, input_bias, recurrent_bias = [], [], [], []
    for side, source in ((weights[:4], input_tensor), (weights[4:], hidden)):
        for tensor in side:
            multiplier, shift = quantize_multiplier(float(source.scale) * float(tensor.scale)
                                            / GATE_INPUT_SCALE)
            multipliers.append(multiplier)
            shifts.append(shift)
    for tensor, bias in zip(weights[:4], biases, strict=True):
        sums = np.asarray(tensor.data, np.int64).reshape(state_dim, input_dim).sum(axis=1)
        input_bias.append(np.asarray(bias.data, np.int64).reshape(-1)
                          - input_tensor.zero_point * sums)
    for tensor in weights[4:]:
        sums = np.asarray(tensor.data, np.int64).reshape(state_dim, state_dim).sum(axis=1)
        recurrent_bias.append(-hidden.zero_point * sums)
    # The element-wise products (CreateInterGateMulParams): f x c and i x g to the cell
    # scale, o x tanh(c) to the hidden state's int8.
    forget = quantize_multiplier(GATE_OUTPUT_SCALE * float(cell.scale) / float(cell.scale))
    update = quantize_multiplier(GATE_OUTPUT_SCALE * GATE_OUTPUT_SCALE / float(cell.scale))
    hidden_scale = quantize_multiplier(GATE_OUTPUT_SCALE * GATE_OUTPUT_SCALE / float(hidden.scale))
    # tanh of the cell state (lstm_eval.cc Tanh): a left shift 15 + log2(scale) - 3 taken as
    # TFLite's power-of-two multiplier 3 << shift, or a multiplier 3 and a right shift.
    left_shift = 15 + power - 3
    cell_tanh = (3 << left_shift, 0) if left_shift >= 0 else (3, -left_shift)
    cell_clip = float(getattr(options, "cellClip", 0.0) or 0.0)
    quantized_clip = 0
    if cell_clip > 0:
        quantized_clip = int(min(max(float(np.float32(cell_clip)) / float(cell.scale),
                                     -32768.0), 32767.0))
    prefix = f"op{op.index}"
    x_weights = np.concatenate([np.asarray(t.data, np.int8).reshape(-1) for t in weights[:4]])
    h_weights = np.concatenate([np.asarray(t.data, np.int8).reshape(-1) for t in weights[4:]])
    constants = (
        ConstantArray("int32_t", f"{prefix}_multipliers", np.asarray(multipliers, np.int64)),
        ConstantArray("int32_t", f"{prefix}_shifts", np.asarray(shifts, np.int64)),
        ConstantArray("int8_t", f"{prefix}_input_weights", x_weights),
        ConstantArray("int32_t", f"{prefix}_input_bias", np.concatenate(input_bias)),
        ConstantArray("int8_t", f"{prefix}_recurrent_weights", h_weights),
        ConstantArray("int32_t", f"{prefix}_recurrent_bias", np.concatenate(recurrent_bias)),
        ConstantArray("uint16_t", f"{prefix}_sigmoid_table", sigmoid_table_uint16()))
    for constant in (constants[3], constants[5]):  # biases with input offsets folded in
        if np.abs(constant.values).max(initial=0) >= 2 ** 31:
            raise _refuse(op, f"{constant.name} overflows int32")
    params = ConstantStruct("es_lstm_params", f"{prefix}_params", (
        batches, time_steps, input_dim, state_dim, int(time_major),
        int(activation == TANH), *forget, *update, *hidden_scale, hidden.zero_point,
        *cell_tanh, quantized_clip))
    states = (StateArray("int8_t", f"{prefix}_hidden_state", hidden.size, hidden.zero_point),
              StateArray("int16_t", f"{prefix}_cell_state", cell.size, 0))
    rows = batches if time_major else 1
    arguments = (SymbolArg(params.name, address=True), SymbolArg(constants[0].name),
                 SymbolArg(constants[1].name), SymbolArg(constants[2].name),
                 SymbolArg(constants[3].name), SymbolArg(constants[4].name),
                 SymbolArg(constants[5].name), SymbolArg(constants[6].name),
                 SymbolArg(states[0].name), SymbolArg(states[1].name), ScratchArg(op.index),
                 TensorArg(op.inputs[0]), TensorArg(op.outputs[0]))
    steps = batches * time_steps
    return LoweredOp(op.index, op.name, "lstm", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],),
                     summary=(f"{batches}x{time_steps}x{input_dim} -> {state_dim} units"
                              f"{', time-major' if time_major else ''}"),
                     constants=constants, structs=(params,), states=states,
                     macs=steps * 4 * state_dim * (input_dim + state_dim),
                     scratch_bytes=4 * rows * state_dim * 2)
