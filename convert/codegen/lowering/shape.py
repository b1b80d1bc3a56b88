"""Ops that reshape or pad values: RESHAPE, SQUEEZE, EXPAND_DIMS (no code), PAD, PADV2
(MEAN: lowering.reduce)."""

import numpy as np

from edgeship.convert.codegen.lowering.base import (
    ACTIVATION_BYTES,
    ConstantArray,
    LoweredOp,
    SymbolArg,
    TensorArg,
    check_dtype,
    lowers,
)
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator, Tensor


@lowers("RESHAPE", "SQUEEZE", "EXPAND_DIMS", types=(("int8", "int8"), ("int16", "int16")))
def lower_reshape(graph: Graph, op: Operator) -> LoweredOp:
    """No code: the output aliases the input's bytes (a new shape input, once constant folding
    has evaluated it, is only the output's shape)."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if input_tensor.dtype != output.dtype:
        raise UserInputError(f"op {op.index} ({op.name}) changes {input_tensor.dtype} to "
                             f"{output.dtype}")
    if input_tensor.size != output.size:
        raise UserInputError(f"op {op.index} ({op.name}) turns {list(input_tensor.shape)} into "
                             f"{list(output.shape)}: the .tflite leaves the output's shape to "
                             "run time (a -1 in a Keras Reshape?); codegen needs static shapes")
    if input_tensor.data is not None:
        raise UserInputError(f"op {op.index} ({op.name}) reshapes a constant")
    return LoweredOp(op.index, op.name, None, (), inputs=(op.inputs[0],), outputs=(op.outputs[0],),
                     summary=f"{list(input_tensor.shape)} -> {list(output.shape)} "
                     "(same bytes, no code)")


def _constant_input(graph: Graph, op: Operator, what: str) -> Tensor:
    """The op's constant second input (axes, paddings)."""
    constant = graph.tensors[op.inputs[1]]
    if constant.data is None:
        raise UserInputError(f"op {op.index} ({op.name}) has computed {what}; codegen needs "
                             "them constant")
    return constant


def _pad_value(graph: Graph, op: Operator, output: Tensor) -> int:
    """PAD pads int8 with the output zero point and int16 with 0; PADV2 with its constant
    value, which for int8 TFLite Micro needs quantized like the output (pad_common.cc)."""
    if op.name == "PAD" or len(op.inputs) < 3 or op.inputs[2] < 0:
        return output.zero_point if output.dtype == "int8" else 0
    value = graph.tensors[op.inputs[2]]
    if value.data is None or value.size != 1 or value.dtype != output.dtype:
        raise UserInputError(f"op {op.index} (PADV2) pads with a {value.dtype} "
                             f"{'constant' if value.data is not None else 'computed'} of "
                             f"{value.size} value(s); TFLite Micro and codegen need one "
                             f"constant {output.dtype} value, the input's type")
    if output.dtype == "int8" and (np.float32(value.scale) != np.float32(output.scale)
                                   or value.zero_point != output.zero_point):
        raise UserInputError(f"op {op.index} (PADV2): the pad value is quantized unlike the "
                             "output; TFLite Micro needs the same scale and zero point")
    return int(np.asarray(value.data).reshape(-1)[0])


@lowers("PAD", "PADV2", types=(("int8", "int8"), ("int16", "int16")))
def lower_pad(graph: Graph, op: Operator) -> LoweredOp:
    """Up to 5-D (reference_ops::PadKernelMaxDimensionCount): es_pad fills the output, then
    copies each input row to its place."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    check_dtype(input_tensor, "input", op, ("int8", "int16"))
    check_dtype(output, "output", op, (input_tensor.dtype,))
    rank = len(input_tensor.shape)
    if rank > 5:
        raise UserInputError(f"op {op.index} ({op.name}) pads a rank {rank} tensor; TFLite "
                             "Micro pads up to rank 5")
    pads = np.asarray(_constant_input(graph, op, "paddings").data, np.int64).reshape(-1, 2)
    if len(pads) != rank or np.any(pads < 0) or tuple(output.shape) != tuple(
            int(size) for size in np.asarray(input_tensor.shape, np.int64) + pads.sum(axis=1)):
        raise UserInputError(f"op {op.index} ({op.name}): paddings {pads.tolist()} do not take "
                             f"{list(input_tensor.shape)} to {list(output.shape)}")
    element = ACTIVATION_BYTES[output.dtype]
    in_dims = (1,) * (5 - rank) + tuple(input_tensor.shape)
    out_dims = (1,) * (5 - rank) + tuple(output.shape)
    before = np.concatenate([np.zeros(5 - rank, np.int64), pads[:, 0]])
    strides = [int(np.prod(out_dims[axis + 1:])) * element for axis in range(5)]
    start = int(sum(before[axis] * strides[axis] for axis in range(5)))
    value = _pad_value(graph, op, output)
    prefix = f"op{op.index}"
    constants = (ConstantArray("int32_t", f"{prefix}_dims", np.asarray(in_dims)),
                 ConstantArray("int32_t", f"{prefix}_strides", np.asarray(strides[:4])))
    arguments = (SymbolArg(f"{prefix}_dims"), SymbolArg(f"{prefix}_strides"), start,
                 output.size, element, value, TensorArg(op.inputs[0]), TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "pad", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],),
                     summary=f"{output.dtype} {list(input_tensor.shape)} -> "
                     f"{list(output.shape)} with {value}",
                     constants=constants)
