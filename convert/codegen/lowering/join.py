"""Ops that join tensors, split them or pick rows: CONCATENATION, PACK, SPLIT, SPLIT_V, UNPACK
and GATHER.

TFLite Micro copies bytes for all of them (concatenation.cc, pack.cc, split.cc, split_v.cc,
unpack.cc, gather.cc): blocks of `outer` rows, each row the next bytes of every input (or
for every output) in turn. CONCATENATION of int8 needs every input quantized like the output,
as TFLite Micro does; int16 inputs need zero point 0 and are copied whatever their scales.
"""

import numpy as np

from edgeship.convert.c_source import ACTIVATION_CTYPES
from edgeship.convert.codegen.lowering.base import (
    ACTIVATION_BYTES,
    ConstantArray,
    LoweredOp,
    SymbolArg,
    TensorArg,
    check_dtype,
    lowers,
)
from edgeship.convert.codegen.lowering.movement import SAME_TYPES, constant_values
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator, Tensor

_MAX_CONCATENATED = 10  # TFLite Micro's kMaxInputNum
_MAX_CONCATENATED_RANK = 6  # RuntimeShape::kMaxSmallSize


def _product(values) -> int:
    return int(np.prod(values, dtype=np.int64))


def _axis(op: Operator, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise UserInputError(f"op {op.index} ({op.name}): axis {axis} is outside rank {rank}")
    return axis % rank


def _row_table(op: Operator, rows: list[int]) -> ConstantArray:
    return ConstantArray("int32_t", f"op{op.index}_rows", np.asarray(rows, np.int64))


def _joined(graph: Graph, op: Operator, output: Tensor, outer: int, rows: list[int],
            summary: str) -> LoweredOp:
    """es_concatenation: `outer` blocks of rows[i] bytes from input i in turn."""
    constants, arguments, activations = [_row_table(op, rows)], [], []
    for position, index in enumerate(op.inputs):
        tensor = graph.tensors[index]
        if tensor.data is None:
            arguments.append(TensorArg(index))
            activations.append(index)
        else:
            name = f"op{op.index}_input{position + 1}"
            constants.append(ConstantArray(ACTIVATION_CTYPES[tensor.dtype], name,
                                           np.asarray(tensor.data).reshape(-1)))
            arguments.append(SymbolArg(name))
    if not activations:
        raise UserInputError(f"op {op.index} ({op.name}) has only constant inputs")
    return LoweredOp(op.index, op.name, "concatenation",
                     (outer, len(rows), SymbolArg(constants[0].name), TensorArg(op.outputs[0]),
                      *arguments),
                     inputs=tuple(dict.fromkeys(activations)), outputs=(op.outputs[0],),
                     summary=summary, constants=tuple(constants))


def _split(op: Operator, input_index: int, input_tensor: Tensor, outer: int, rows: list[int],
           summary: str) -> LoweredOp:
    """es_split: `outer` blocks of the input, rows[i] bytes to output i in turn."""
    if len(set(op.outputs)) != len(op.outputs):
        raise UserInputError(f"op {op.index} ({op.name}) writes one tensor twice")
    table = _row_table(op, rows)
    return LoweredOp(op.index, op.name, "split",
                     (outer, len(rows), SymbolArg(table.name), TensorArg(input_index),
                      *(TensorArg(index) for index in op.outputs)),
                     inputs=(input_index,), outputs=tuple(op.outputs),
                     summary=f"{input_tensor.dtype} {list(input_tensor.shape)} -> "
                     f"{len(rows)} outputs, {summary}", constants=(table,))


def _same_dtypes(graph: Graph, op: Operator, indices, dtype: str, role: str) -> None:
    for position, index in enumerate(indices):
        check_dtype(graph.tensors[index], f"{role} {position + 1}", op, (dtype,))


@lowers("CONCATENATION", types=SAME_TYPES)
def lower_concatenation(graph: Graph, op: Operator) -> LoweredOp:
    output = graph.tensors[op.outputs[0]]
    check_dtype(output, "output", op, ("int8", "int16"))
    _same_dtypes(graph, op, op.inputs, output.dtype, "input")
    if len(op.inputs) > _MAX_CONCATENATED:
        raise UserInputError(f"op {op.index} (CONCATENATION) joins {len(op.inputs)} tensors; "
                             f"TFLite Micro joins up to {_MAX_CONCATENATED}")
    if op.options.fusedActivationFunction != 0:
        raise UserInputError(f"op {op.index} (CONCATENATION) has a fused activation; TFLite "
                             "Micro refuses it")
    rank = len(output.shape)
    if rank > _MAX_CONCATENATED_RANK:
        raise UserInputError(f"op {op.index} (CONCATENATION) has rank {rank}; TFLite Micro "
                             f"handles up to {_MAX_CONCATENATED_RANK}")
    for position, index in enumerate(op.inputs):
        tensor = graph.tensors[index]
        if output.dtype == "int8" and (np.float32(tensor.scale) != np.float32(output.scale)
                                       or tensor.zero_point != output.zero_point):
            raise UserInputError(
                f"op {op.index} (CONCATENATION): input {position + 1} ({tensor.name}) is "
                f"quantized with scale {tensor.scale} and zero point {tensor.zero_point}, the "
                f"output with {output.scale} and {output.zero_point}; TFLite Micro needs them "
                "equal for int8")
        if output.dtype == "int16" and tensor.zero_point != 0:
            raise UserInputError(f"op {op.index} (CONCATENATION): int16 input {position + 1} "
                                 "has a zero point; TFLite Micro needs 0")
    axis = _axis(op, op.options.axis, rank)
    element = ACTIVATION_BYTES[output.dtype]
    rows = [_product(graph.tensors[index].shape[axis:]) * element for index in op.inputs]
    if sum(rows) != _product(output.shape[axis:]) * element:
        raise UserInputError(f"op {op.index} (CONCATENATION): the inputs do not add up to the "
                             f"output {list(output.shape)} along axis {axis}")
    shapes = " + ".join(str(list(graph.tensors[index].shape)) for index in op.inputs)
    return _joined(graph, op, output, _product(output.shape[:axis]), rows,
                   f"{output.dtype} {shapes} -> {list(output.shape)} on axis {axis}")


@lowers("PACK", types=SAME_TYPES)
def lower_pack(graph: Graph, op: Operator) -> LoweredOp:
    output = graph.tensors[op.outputs[0]]
    check_dtype(output, "output", op, ("int8", "int16"))
    _same_dtypes(graph, op, op.inputs, output.dtype, "input")
    axis = _axis(op, op.options.axis, len(output.shape))
    copy = _product(output.shape[axis + 1:])
    if any(graph.tensors[index].size != copy * _product(output.shape[:axis])
           for index in op.inputs) or output.shape[axis] != len(op.inputs):
        raise UserInputError(f"op {op.index} (PACK): {len(op.inputs)} inputs do not stack "
                             f"into {list(output.shape)} on axis {axis}")
    rows = [copy * ACTIVATION_BYTES[output.dtype]] * len(op.inputs)
    return _joined(graph, op, output, _product(output.shape[:axis]), rows,
                   f"{output.dtype} {len(op.inputs)} x "
                   f"{list(graph.tensors[op.inputs[0]].shape)} -> {list(output.shape)}")


def _split_rows(graph: Graph, op: Operator, input_tensor: Tensor, axis: int) -> list[int]:
    """Bytes per block of each output of a SPLIT or SPLIT_V, checked against the input."""
    _same_dtypes(graph, op, op.outputs, input_tensor.dtype, "output")
    inner = _product(input_tensor.shape[axis + 1:]) * ACTIVATION_BYTES[input_tensor.dtype]
    sizes = []
    for index in op.outputs:
        shape = graph.tensors[index].shape
        if len(shape) != len(input_tensor.shape):
            raise UserInputError(f"op {op.index} ({op.name}): output {list(shape)} and input "
                                 f"{list(input_tensor.shape)} differ in rank")
        sizes.append(shape[axis])
    if sum(sizes) != input_tensor.shape[axis]:
        raise UserInputError(f"op {op.index} ({op.name}): outputs of {sizes} along axis "
                             f"{axis} do not add up to {input_tensor.shape[axis]}")
    return [size * inner for size in sizes]


def _split_input(graph: Graph, op: Operator, position: int) -> Tensor:
    tensor = graph.tensors[op.inputs[position]]
    check_dtype(tensor, "input", op, ("int8", "int16"))
    if tensor.data is not None:
        raise UserInputError(f"op {op.index} ({op.name}) splits a constant")
    return tensor


@lowers("SPLIT", types=(("int32", "int8"), ("int32", "int16")))
def lower_split(graph: Graph, op: Operator) -> LoweredOp:
    """Input 0 is the axis, input 1 the tensor (split.cc)."""
    input_tensor = _split_input(graph, op, 1)
    axis = _axis(op, int(constant_values(graph, op, 0, "axis").reshape(-1)[0]),
                 len(input_tensor.shape))
    rows = _split_rows(graph, op, input_tensor, axis)
    return _split(op, op.inputs[1], input_tensor, _product(input_tensor.shape[:axis]), rows,
                  f"axis {axis}")


@lowers("SPLIT_V", types=SAME_TYPES)
def lower_split_v(graph: Graph, op: Operator) -> LoweredOp:
    """Input 0 is the tensor, 1 the sizes, 2 the axis (split_v.cc, which reads the outputs'
    shapes rather than the sizes)."""
    input_tensor = _split_input(graph, op, 0)
    axis = _axis(op, int(constant_values(graph, op, 2, "axis").reshape(-1)[0]),
                 len(input_tensor.shape))
    rows = _split_rows(graph, op, input_tensor, axis)
    return _split(op, op.inputs[0], input_tensor, _product(input_tensor.shape[:axis]), rows,
                  f"axis {axis}")


@lowers("UNPACK", types=SAME_TYPES)
def lower_unpack(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor = _split_input(graph, op, 0)
    _same_dtypes(graph, op, op.outputs, input_tensor.dtype, "output")
    axis = _axis(op, op.options.axis, len(input_tensor.shape))
    if input_tensor.shape[axis] != len(op.outputs):
        raise UserInputError(f"op {op.index} (UNPACK): {len(op.outputs)} outputs for axis "
                             f"{axis} of {list(input_tensor.shape)}")
    row = _product(input_tensor.shape[axis + 1:]) * ACTIVATION_BYTES[input_tensor.dtype]
    return _split(op, op.inputs[0], input_tensor, _product(input_tensor.shape[:axis]),
                  [row] * len(op.outputs), f"axis {axis}")


@lowers("GATHER")
def lower_gather(graph: Graph, op: Operator) -> LoweredOp:
    """gather.cc: int8 values, int32 indices (constant, or computed at run time)."""
    input_tensor, positions = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    check_dtype(input_tensor, "input", op, ("int8",))
    check_dtype(output, "output", op, ("int8",))
    check_dtype(positions, "indices", op, ("int32",))
    if input_tensor.data is not None:
        raise UserInputError(f"op {op.index} (GATHER) gathers from a constant; codegen needs "
                             "an activation")
    rank, coords_rank = len(input_tensor.shape), len(positions.shape)
    axis = _axis(op, op.options.axis, rank)
    batch_dims = op.options.batchDims
    batch_dims = batch_dims + coords_rank if batch_dims < 0 else batch_dims
    if not 0 <= batch_dims <= min(axis, coords_rank) or batch_dims >= rank \
            or input_tensor.shape[:batch_dims] != positions.shape[:batch_dims]:
        raise UserInputError(f"op {op.index} (GATHER): batch_dims {op.options.batchDims} does "
                             f"not fit input {list(input_tensor.shape)} and indices "
                             f"{list(positions.shape)}")
    expected = (input_tensor.shape[:axis] + positions.shape[batch_dims:]
                + input_tensor.shape[axis + 1:])
    if tuple(output.shape) != tuple(expected):
        raise UserInputError(f"op {op.index} (GATHER): output {list(output.shape)} is not "
                             f"{list(expected)}")
    axis_size = input_tensor.shape[axis]
    constants = ()
    if positions.data is None:
        indices = TensorArg(op.inputs[1])
        inputs = (op.inputs[0], op.inputs[1])
    else:
        values = np.asarray(positions.data, np.int64).reshape(-1)
        if values.size and (values.min() < 0 or values.max() >= axis_size):
            raise UserInputError(f"op {op.index} (GATHER): indices outside [0, {axis_size})")
        constants = (ConstantArray("int32_t", f"op{op.index}_indices", values),)
        indices = SymbolArg(constants[0].name)
        inputs = (op.inputs[0],)
    arguments = (_product(input_tensor.shape[:batch_dims]),
                 _product(input_tensor.shape[batch_dims:axis]), axis_size,
                 _product(positions.shape[batch_dims:]), _product(input_tensor.shape[axis + 1:]),
                 TensorArg(op.inputs[0]), indices, TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "gather", arguments, inputs=inputs,
                     outputs=(op.outputs[0],),
                     summary=f"{list(input_tensor.shape)} at {list(positions.shape)} "
                     f"{'constant ' if constants else ''}indices on axis {axis}",
                     constants=constants)
