"""Reductions over constant axes: MEAN, SUM, REDUCE_MAX, REDUCE_MIN, and ARG_MAX, ARG_MIN to
int32 indices.

TFLite Micro (reduce_common.cc, arg_min_max.cc): int8 and int16 MEAN and SUM are one
QuantizedMeanOrSum (int32 sums; the multiplier of input / output scale, in double, from
Prepare; MEAN folds 1 / count into it at Eval), so both run kernels/portable/mean_loop.c;
REDUCE_MAX and REDUCE_MIN compare raw int8 values (TFLite Micro has no int16 ones) and need
input and output quantized alike; ARG_MAX and ARG_MIN write int32 only (TFLite Micro refuses
int64 indices).
"""

import numpy as np

from edgeship.convert.codegen.lowering.base import (
    ACTIVATION_BYTES,
    ConstantArray,
    LoweredOp,
    SymbolArg,
    TensorArg,
    check_dtype,
    io_tensors,
    lowers,
    shape4,
)
from edgeship.convert.codegen.lowering.overlap import mean_overlap
from edgeship.convert.codegen.quant import mean_parameters, quantize_multiplier
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator, Tensor


def _axes(graph: Graph, op: Operator, input_tensor: Tensor) -> list[int]:
    """The op's constant int32 axes, made non-negative and sorted."""
    axis = graph.tensors[op.inputs[1]]
    if axis.data is None:
        raise UserInputError(f"op {op.index} ({op.name}) has computed axes; codegen needs "
                             "them constant")
    if axis.dtype != "int32":
        raise UserInputError(f"op {op.index} ({op.name}) has {axis.dtype} axes; TFLite Micro "
                             "takes int32 only")
    rank = len(input_tensor.shape)
    return sorted({int(a) % rank for a in np.asarray(axis.data).reshape(-1)})


def _reduction(graph: Graph, op: Operator, input_tensor: Tensor
               ) -> tuple[tuple[ConstantArray, ConstantArray], list[int], int, int]:
    """(dims and reduce-flag arrays for the kernel, axes, reduced count, mean_overlap shift)."""
    axes = _axes(graph, op, input_tensor)
    dims = shape4(input_tensor)
    offset = 4 - len(input_tensor.shape)
    reduce = [0] * 4
    for a in axes:
        reduce[a + offset] = 1
    count = int(np.prod([input_tensor.shape[a] for a in axes]))
    prefix = f"op{op.index}"
    constants = (ConstantArray("int32_t", f"{prefix}_dims", np.asarray(dims)),
                 ConstantArray("int8_t", f"{prefix}_reduce", np.asarray(reduce)))
    return constants, axes, count, mean_overlap(dims, reduce)


@lowers("REDUCE_MAX", "REDUCE_MIN")
def lower_reduce_max_min(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = io_tensors(graph, op)
    if (not np.float32(input_tensor.scale) == np.float32(output.scale)
            or input_tensor.zero_point != output.zero_point):
        raise UserInputError(f"op {op.index} ({op.name}): input and output quantization differ; "
                             "TFLite Micro needs them equal")
    constants, axes, _, overlap = _reduction(graph, op, input_tensor)
    arguments = (SymbolArg(constants[0].name), SymbolArg(constants[1].name),
                 int(op.name == "REDUCE_MAX"), TensorArg(op.inputs[0]), TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "reduce_max_min", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],),
                     summary=f"{list(input_tensor.shape)} over axes {axes}", constants=constants,
                     overlap=((op.inputs[0], overlap),))


@lowers("MEAN", "SUM", types=(("int8", "int8"), ("int16", "int16")))
def lower_mean_sum(graph: Graph, op: Operator) -> LoweredOp:
    """SUM's multiplier is input / output scale; MEAN's folds in 1 / count (mean_parameters)."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    check_dtype(input_tensor, "input", op, ("int8", "int16"))
    check_dtype(output, "output", op, (input_tensor.dtype,))
    constants, axes, count, overlap = _reduction(graph, op, input_tensor)
    if op.name == "MEAN":
        multiplier, shift = mean_parameters(input_tensor.scale, output.scale, count)
    else:
        multiplier, shift = quantize_multiplier(input_tensor.scale / output.scale)
    arguments = (SymbolArg(constants[0].name), SymbolArg(constants[1].name),
                 TensorArg(op.inputs[0]), input_tensor.zero_point * count, multiplier, shift,
                 output.zero_point, TensorArg(op.outputs[0]))
    # mean_overlap counts values; the plan counts bytes.
    limit = overlap * ACTIVATION_BYTES[input_tensor.dtype]
    return LoweredOp(op.index, op.name, "mean_s16" if input_tensor.dtype == "int16" else "mean",
                     arguments, inputs=(op.inputs[0],), outputs=(op.outputs[0],),
                     summary=f"{input_tensor.dtype} {list(input_tensor.shape)} "
                     f"{'averaged' if op.name == 'MEAN' else 'summed'} over axes {axes}",
                     constants=constants, overlap=((op.inputs[0], limit),))


@lowers("ARG_MAX", "ARG_MIN", types=(("int8", "int32"),))
def lower_arg_max_min(graph: Graph, op: Operator) -> LoweredOp:
    """The input as [outer][axis][inner]; the int32 output never shares the int8 input's bytes."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    check_dtype(input_tensor, "input", op, ("int8",))
    check_dtype(output, "output", op, ("int32",))
    axes = _axes(graph, op, input_tensor)
    if len(axes) != 1:
        raise UserInputError(f"op {op.index} ({op.name}) has {len(axes)} axes; it takes one")
    axis = axes[0]
    shape = input_tensor.shape
    outer, inner = int(np.prod(shape[:axis])), int(np.prod(shape[axis + 1:]))
    arguments = (outer, shape[axis], inner, int(op.name == "ARG_MAX"), TensorArg(op.inputs[0]),
                 TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "arg_max_min", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],),
                     summary=f"{list(shape)} along axis {axis} to int32")
