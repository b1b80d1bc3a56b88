"""Ops that move, pad or reduce values: RESHAPE, PAD, MEAN."""

import numpy as np
from edgeship.convert.codegen.lowering.base import (
    ConstantArray,
    LoweredOp,
    SymbolArg,
    TensorArg,
    io_tensors,
    lowers,
    shape4,
)
from edgeship.convert.codegen.lowering.overlap import mean_overlap
from edgeship.convert.codegen.quant import mean_parameters

from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator, Tensor


@lowers("RESHAPE", types=(("int8", "int8"), ("int16", "int16")))
def lower_reshape(graph: Graph, op: Operator) -> LoweredOp:
    """No code: the output aliases the input's bytes."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if input_tensor.size != output.size:
        raise UserInputError(f"op {op.index} (RESHAPE) changes the element count")
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


@lowers("MEAN")
def lower_mean(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = io_tensors(graph, op)
    axis = _constant_input(graph, op, "axes")
    rank = len(input_tensor.shape)
    axes = sorted({int(a) % rank for a in np.asarray(axis.data).reshape(-1)})
    dims = shape4(input_tensor)
    reduce = [0] * 4
    for a in axes:
        reduce[a + 4 - rank] = 1
    count = int(np.prod([input_tensor.shape[a] for a in axes]))
    multiplier, shift = mean_parameters(input_tensor.scale, output.scale, count)
    prefix = f"op{op.index}"
    constants = (ConstantArray("int32_t", f"{prefix}_dims", np.asarray(dims)),
                 ConstantArray("int8_t", f"{prefix}_reduce", np.asarray(reduce)))
    arguments = (SymbolArg(f"{prefix}_dims"), SymbolArg(f"{prefix}_reduce"),
                 TensorArg(op.inputs[0]), input_tensor.zero_point * count, multiplier, shift,
                 output.zero_point, TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "mean", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],),
                     summary=f"{list(input_tensor.shape)} over axes {axes}", constants=constants,
                     overlap=((op.inputs[0], mean_overlap(dims, reduce)),))


@lowers("PAD")
def lower_pad(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = io_tensors(graph, op)
    paddings = _constant_input(graph, op, "paddings")
    pads = np.asarray(paddings.data, np.int64).reshape(-1, 2)
    pads = np.concatenate([np.zeros((4 - len(pads), 2), np.int64), pads])
    prefix = f"op{op.index}"
    constants = (ConstantArray("int32_t", f"{prefix}_dims", np.asarray(shape4(input_tensor))),
                 ConstantArray("int32_t", f"{prefix}_before", pads[:, 0]),
                 ConstantArray("int32_t", f"{prefix}_after", pads[:, 1]))
    arguments = (SymbolArg(f"{prefix}_dims"), SymbolArg(f"{prefix}_before"),
                 SymbolArg(f"{prefix}_after"), output.zero_point, TensorArg(op.inputs[0]),
                 TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "pad", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],),
                     summary=f"{list(input_tensor.shape)} -> {list(output.shape)}",
                     constants=constants)
