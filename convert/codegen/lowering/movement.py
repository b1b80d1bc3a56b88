"""Ops that move values without arithmetic, as one table-driven copy (kernels/portable/copy_rows.c),
and the resizes: TRANSPOSE, SLICE, STRIDED_SLICE, DEPTH_TO_SPACE, SPACE_TO_DEPTH, MIRROR_PAD,
RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR.

Each op here reads input element `sum_k table_k[i_k]` for output index (i_0, i_1, ...): a sum
of one offset per output axis. The lowering computes those per-axis tables at generation time
from TFLite Micro's index rules (transpose_common.cc, slice.cc, strided_slice_common.cc and
reference_ops::StridedSlice, depth_to_space.h, space_to_depth.h, mirror_pad.cc,
resize_nearest_neighbor.h), so the kernel only adds offsets and copies bytes, the same code
for int8 and int16. RESIZE_BILINEAR is reference_ops::ResizeBilinearInteger: positions in
1/1024ths, also computed here, and the interpolation in 64-bit integers in the kernel.
"""

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

SAME_TYPES = (("int8", "int8"), ("int16", "int16"))
_TABLE_AXES = 5  # es_copy_rows walks 5 offset tables


# --- index rules shared with constant folding (lowering.fold) ---------------------------------

def element_strides(shape: tuple[int, ...]) -> np.ndarray:
    """Row-major strides, in elements."""
    strides = np.ones(len(shape), np.int64)
    for axis in range(len(shape) - 2, -1, -1):
        strides[axis] = strides[axis + 1] * shape[axis + 1]
    return strides


def slice_indices(op: Operator, shape: tuple[int, ...], begin, size) -> list[np.ndarray]:
    """SLICE's input indices per axis (reference_ops::Slice: a size of -1 runs to the end)."""
    indices = []
    for axis, (start, count) in enumerate(zip(np.asarray(begin).reshape(-1).tolist(),
                                              np.asarray(size).reshape(-1).tolist())):
        stop = shape[axis] if count == -1 else start + count
        if not 0 <= start <= stop <= shape[axis]:
            raise UserInputError(f"op {op.index} (SLICE): begin {start} size {count} is outside "
                                 f"axis {axis} of {list(shape)}")
        indices.append(np.arange(start, stop))
    return indices


def strided_slice_indices(op: Operator, shape: tuple[int, ...], begin, end, strides
                          ) -> tuple[list[np.ndarray], list[bool]]:
    """STRIDED_SLICE's input indices per axis and which axes shrink, as TFLite Micro computes
    them (strided_slice_logic.h StridedSliceStartForAxis/EndForAxis). TFLite Micro ignores
    ellipsis_mask, new_axis_mask and offset, and so does this."""
    options = op.options
    begin, end, strides = (np.asarray(values).reshape(-1).tolist()
                           for values in (begin, end, strides))
    if not len(begin) == len(end) == len(strides) == len(shape):
        raise UserInputError(f"op {op.index} (STRIDED_SLICE): begin/end/strides of "
                             f"{len(begin)}/{len(end)}/{len(strides)} values for a rank "
                             f"{len(shape)} input")
    indices, shrinks = [], []
    for axis, size in enumerate(shape):
        stride, bit = strides[axis], 1 << axis
        if stride == 0:
            raise UserInputError(f"op {op.index} (STRIDED_SLICE) has stride 0 on axis {axis}")
        low, high = (0, size) if stride > 0 else (-1, size - 1)
        start = begin[axis] + size if begin[axis] < 0 else begin[axis]
        start = min(max(start, low), high)
        if options.beginMask & bit:
            start = 0 if stride > 0 else size - 1
        shrink = bool(options.shrinkAxisMask & bit)
        if shrink:
            stop = start if start >= size else start + 1
        else:
            stop = end[axis] + size if end[axis] < 0 else end[axis]
            stop = min(max(stop, low), high)
            if options.endMask & bit:
                stop = size if stride > 0 else -1
        indices.append(np.arange(start, stop, stride))
        shrinks.append(shrink)
    return indices, shrinks


def take(data: np.ndarray, indices: list[np.ndarray]) -> np.ndarray:
    """data at the outer product of per-axis indices."""
    return data[np.ix_(*indices)] if indices else data


# --- the copy kernel --------------------------------------------------------------------------

def _is_arithmetic(table: np.ndarray, step: int) -> bool:
    return bool(np.array_equal(table - table[0], np.arange(table.size) * step))


def copy_rows(op: Operator, input_tensor: Tensor, output: Tensor, tables: list[np.ndarray],
              summary: str) -> LoweredOp:
    """The op as es_copy_rows: output element (i_0, i_1, ...) from input element
    sum_k tables[k][i_k]. Axes of one index are folded away, a trailing contiguous run becomes
    the row memcpy copies, and neighbouring axes that step evenly merge, to fit 5 tables."""
    element = ACTIVATION_BYTES[input_tensor.dtype]
    tables = [np.asarray(table, np.int64).reshape(-1) for table in tables]
    if int(np.prod([table.size for table in tables])) != output.size:
        raise UserInputError(f"op {op.index} ({op.name}) computes "
                             f"{int(np.prod([table.size for table in tables]))} values for an "
                             f"output of {output.size} ({list(output.shape)})")
    base = sum(int(table[0]) for table in tables if table.size == 1)
    tables = [table for table in tables if table.size > 1]
    row = 1
    while tables and _is_arithmetic(tables[-1], row):
        last = tables.pop()
        base, row = base + int(last[0]), row * last.size
    merged: list[np.ndarray] = []
    for table in tables:
        if merged and table.size > 1 and _is_arithmetic(table, int(table[1] - table[0])) \
                and _is_arithmetic(merged[-1], int(table[1] - table[0]) * table.size):
            merged.append((merged.pop()[:, None] + table[None, :]).reshape(-1))
        else:
            merged.append(table)
    while len(merged) > _TABLE_AXES:  # the smallest outer sum of two neighbours
        pair = min(range(len(merged) - 1), key=lambda k: merged[k].size * merged[k + 1].size)
        merged[pair:pair + 2] = [(merged[pair][:, None] + merged[pair + 1][None, :]).reshape(-1)]
    merged = [np.zeros(1, np.int64)] * (_TABLE_AXES - len(merged)) + merged
    merged[0] = merged[0] + base
    dims = np.asarray([table.size for table in merged])
    offsets = np.concatenate(merged) * element
    prefix = f"op{op.index}"
    constants = (ConstantArray("int32_t", f"{prefix}_dims", dims),
                 ConstantArray("int32_t", f"{prefix}_offsets", offsets))
    arguments = (SymbolArg(f"{prefix}_dims"), SymbolArg(f"{prefix}_offsets"), row * element,
                 TensorArg(op.inputs[0]), TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "copy_rows", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],),
                     summary=f"{input_tensor.dtype} {list(input_tensor.shape)} -> "
                     f"{list(output.shape)}, {summary}",
                     constants=constants)


def moved_tensors(graph: Graph, op: Operator, allowed: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    """The op's activation input and output: the same dtype, one of `allowed`."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    check_dtype(input_tensor, "input", op, allowed)
    check_dtype(output, "output", op, (input_tensor.dtype,))
    if input_tensor.data is not None:
        raise UserInputError(f"op {op.index} ({op.name}) has a constant input; codegen "
                             "needs an activation")
    return input_tensor, output


def constant_values(graph: Graph, op: Operator, position: int, what: str) -> np.ndarray:
    """The op's constant integer input at `position` (axes, sizes, permutations)."""
    tensor = graph.tensors[op.inputs[position]]
    if tensor.data is None:
        raise UserInputError(f"op {op.index} ({op.name}) has computed {what}; TFLite Micro "
                             "and codegen need them constant")
    return np.asarray(tensor.data).astype(np.int64)


def _check_rank(op: Operator, tensor: Tensor, limit: int) -> None:
    if len(tensor.shape) > limit:
        raise UserInputError(f"op {op.index} ({op.name}) has a rank {len(tensor.shape)} input; "
                             f"TFLite Micro computes it up to rank {limit}")


# --- the ops ----------------------------------------------------------------------------------

@lowers("TRANSPOSE", types=SAME_TYPES)
def lower_transpose(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = moved_tensors(graph, op, ("int8", "int16"))
    _check_rank(op, input_tensor, 5)
    perm = constant_values(graph, op, 1, "permutations").reshape(-1).tolist()
    if sorted(perm) != list(range(len(input_tensor.shape))):
        raise UserInputError(f"op {op.index} (TRANSPOSE): {perm} is not a permutation of "
                             f"{len(input_tensor.shape)} axes")
    strides = element_strides(input_tensor.shape)
    tables = [np.arange(input_tensor.shape[axis]) * strides[axis] for axis in perm]
    return copy_rows(op, input_tensor, output, tables, f"perm {perm}")


@lowers("SLICE", types=SAME_TYPES)
def lower_slice(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = moved_tensors(graph, op, ("int8", "int16"))
    _check_rank(op, input_tensor, 5)
    begin = constant_values(graph, op, 1, "begins")
    size = constant_values(graph, op, 2, "sizes")
    indices = slice_indices(op, input_tensor.shape, begin, size)
    strides = element_strides(input_tensor.shape)
    return copy_rows(op, input_tensor, output,
                     [index * stride for index, stride in zip(indices, strides)],
                     f"begin {begin.tolist()}")


@lowers("STRIDED_SLICE", types=SAME_TYPES)
def lower_strided_slice(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = moved_tensors(graph, op, ("int8", "int16"))
    _check_rank(op, input_tensor, 4)
    indices, shrinks = strided_slice_indices(
        op, input_tensor.shape, *(constant_values(graph, op, position, what) for position, what
                                  in ((1, "begins"), (2, "ends"), (3, "strides"))))
    kept = [index.size for index, shrink in zip(indices, shrinks) if not shrink]
    if tuple(kept) != tuple(output.shape) or sum(index.size for index in indices) == 0:
        raise UserInputError(f"op {op.index} (STRIDED_SLICE): TFLite Micro's slice of "
                             f"{list(input_tensor.shape)} has shape {kept}, not the output's "
                             f"{list(output.shape)}")
    strides = element_strides(input_tensor.shape)
    starts = [int(index[0]) for index in indices]
    return copy_rows(op, input_tensor, output,
                     [index * stride for index, stride in zip(indices, strides)],
                     f"from {starts}")


def _nhwc(op: Operator, tensor: Tensor) -> tuple[int, int, int, int]:
    if len(tensor.shape) != 4:
        raise UserInputError(f"op {op.index} ({op.name}) needs a 4-D NHWC input, got "
                             f"{list(tensor.shape)}")
    return tensor.shape


@lowers("DEPTH_TO_SPACE")
def lower_depth_to_space(graph: Graph, op: Operator) -> LoweredOp:
    """Output (b, h, w, d) reads input (b, h / bs, w / bs, ((h % bs) * bs + w % bs) * D + d)."""
    input_tensor, output = moved_tensors(graph, op, ("int8",))
    batches, height, width, depth = _nhwc(op, input_tensor)
    block = op.options.blockSize
    if block < 1 or depth % (block * block):
        raise UserInputError(f"op {op.index} (DEPTH_TO_SPACE): depth {depth} is not a "
                             f"multiple of block {block} squared")
    out_depth = depth // (block * block)
    if tuple(output.shape) != (batches, height * block, width * block, out_depth):
        raise UserInputError(f"op {op.index} (DEPTH_TO_SPACE): output {list(output.shape)} "
                             f"does not match block size {block}")
    strides = element_strides(input_tensor.shape)
    rows, cols = np.arange(height * block), np.arange(width * block)
    tables = [np.arange(batches) * strides[0],
              rows // block * strides[1] + rows % block * block * out_depth,
              cols // block * strides[2] + cols % block * out_depth, np.arange(out_depth)]
    return copy_rows(op, input_tensor, output, tables, f"block {block}")


@lowers("SPACE_TO_DEPTH")
def lower_space_to_depth(graph: Graph, op: Operator) -> LoweredOp:
    """Output (b, h, w, d) reads input (b, h * bs + d / D / bs, w * bs + d / D % bs, d % D)."""
    input_tensor, output = moved_tensors(graph, op, ("int8",))
    batches, height, width, depth = _nhwc(op, input_tensor)
    block = op.options.blockSize
    if block < 1 or height % block or width % block:
        raise UserInputError(f"op {op.index} (SPACE_TO_DEPTH): {height}x{width} is not a "
                             f"multiple of block {block}")
    if tuple(output.shape) != (batches, height // block, width // block, depth * block * block):
        raise UserInputError(f"op {op.index} (SPACE_TO_DEPTH): output {list(output.shape)} "
                             f"does not match block size {block}")
    strides = element_strides(input_tensor.shape)
    channels = np.arange(depth * block * block)
    tables = [np.arange(batches) * strides[0], np.arange(height // block) * block * strides[1],
              np.arange(width // block) * block * strides[2],
              channels // depth // block * strides[1] + channels // depth % block * strides[2]
              + channels % depth]
    return copy_rows(op, input_tensor, output, tables, f"block {block}")


@lowers("MIRROR_PAD")
def lower_mirror_pad(graph: Graph, op: Operator) -> LoweredOp:
    """mirror_pad.cc: REFLECT repeats no edge value (offset 1), SYMMETRIC repeats it (0)."""
    input_tensor, output = moved_tensors(graph, op, ("int8",))
    pads = constant_values(graph, op, 1, "paddings").reshape(-1, 2)
    if len(pads) != len(input_tensor.shape):
        raise UserInputError(f"op {op.index} (MIRROR_PAD): {len(pads)} paddings for a rank "
                             f"{len(input_tensor.shape)} input")
    offset = 1 if op.options.mode == 0 else 0  # MirrorPadMode REFLECT = 0, SYMMETRIC = 1
    strides = element_strides(input_tensor.shape)
    tables = []
    for axis, (size, (before, after)) in enumerate(zip(input_tensor.shape, pads.tolist())):
        if min(before, after) < 0 or max(before, after) > size - offset:
            raise UserInputError(f"op {op.index} (MIRROR_PAD): padding {before}, {after} of "
                                 f"axis {axis} (size {size}) is out of range")
        positions = np.arange(size + before + after)
        source = np.where(positions < before, before + offset - 1 - positions,
                          positions - before)
        beyond = positions - before - size
        source = np.where(beyond >= 0, size - 1 - offset - beyond, source)
        tables.append(source * strides[axis])
    mode = "reflect" if offset else "symmetric"
    return copy_rows(op, input_tensor, output, tables, f"{mode} {pads.tolist()}")


def _output_size(graph: Graph, op: Operator, input_tensor: Tensor, output: Tensor
                 ) -> tuple[int, int, int, int]:
    """(batches, height, width, depth) of a resize's input, its constant size checked."""
    batches, _, _, depth = _nhwc(op, input_tensor)
    size = constant_values(graph, op, 1, "sizes").reshape(-1).tolist()
    if len(size) != 2 or tuple(output.shape) != (batches, size[0], size[1], depth):
        raise UserInputError(f"op {op.index} ({op.name}): size {size} does not give the output "
                             f"{list(output.shape)}")
    return input_tensor.shape


def _nearest(out_size: int, in_size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """reference_ops GetNearestNeighbor, in float32 as TFLite computes it."""
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    positions = (np.arange(out_size).astype(f32) + f32(0.5 if half_pixel else 0.0)) * scale
    if align_corners:  # TfLiteRound: half away from zero
        source = np.sign(positions) * np.floor(np.abs(positions) + f32(0.5))
    else:
        source = np.floor(positions)
    source = np.minimum(source.astype(np.int64), in_size - 1)
    return np.maximum(source, 0) if half_pixel else source


@lowers("RESIZE_NEAREST_NEIGHBOR", types=SAME_TYPES)
def lower_resize_nearest(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = moved_tensors(graph, op, ("int8", "int16"))
    batches, height, width, depth = _output_size(graph, op, input_tensor, output)
    _, out_h, out_w, _ = output.shape
    align, half = bool(op.options.alignCorners), bool(op.options.halfPixelCenters)
    strides = element_strides(input_tensor.shape)
    tables = [np.arange(batches) * strides[0],
              _nearest(out_h, height, align, half) * strides[1],
              _nearest(out_w, width, align, half) * strides[2], np.arange(depth)]
    return copy_rows(op, input_tensor, output, tables,
                     f"nearest{' align_corners' * align}{' half_pixel_centers' * half}")


def _c_divide(numerator: np.ndarray, denominator: int) -> np.ndarray:
    """C's integer division, truncating toward zero."""
    quotient = np.abs(numerator) // denominator
    return np.where(numerator < 0, -quotient, quotient)


def _bilinear_axis(out_size: int, in_size: int, align_corners: bool, half_pixel: bool,
                   stride: int) -> np.ndarray:
    """(lower offset, upper offset, 10-bit fraction) per output position: reference_ops
    ComputeInterpolationValuesInteger."""
    if align_corners and out_size > 1:
        scale = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale = ((1 << 10) * in_size + out_size // 2) // out_size
    scaled = np.arange(out_size, dtype=np.int64) * scale
    if half_pixel:
        scaled = scaled + scale // 2 - (1 << 9)
    lower = np.maximum(_c_divide(scaled, 1 << 10), 0)
    upper = np.minimum(_c_divide(scaled + (1 << 10) - 1, 1 << 10), in_size - 1)
    return np.stack([lower * stride, upper * stride, scaled - (1 << 10) * lower], axis=1)


@lowers("RESIZE_BILINEAR")
def lower_resize_bilinear(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = moved_tensors(graph, op, ("int8",))
    batches, height, width, depth = _output_size(graph, op, input_tensor, output)
    _, out_h, out_w, _ = output.shape
    align, half = bool(op.options.alignCorners), bool(op.options.halfPixelCenters)
    if align and half:
        raise UserInputError(f"op {op.index} (RESIZE_BILINEAR) sets both align_corners and "
                             "half_pixel_centers; TFLite Micro refuses that")
    prefix = f"op{op.index}"
    constants = (ConstantArray("int32_t", f"{prefix}_rows",
                               _bilinear_axis(out_h, height, align, half, width * depth)),
                 ConstantArray("int32_t", f"{prefix}_cols",
                               _bilinear_axis(out_w, width, align, half, depth)))
    arguments = (batches, out_h, out_w, depth, height * width * depth, SymbolArg(f"{prefix}_rows"),
                 SymbolArg(f"{prefix}_cols"), TensorArg(op.inputs[0]), TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "resize_bilinear", arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],),
                     summary=f"{height}x{width}x{depth} -> {out_h}x{out_w}"
                     f"{' align_corners' * align}{' half_pixel_centers' * half}",
                     constants=constants)
