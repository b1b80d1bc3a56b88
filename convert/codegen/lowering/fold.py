"""Constant folding: shape arithmetic evaluated at generation time, never emitted as code.

A Keras Reshape or Flatten with a dynamic batch leaves SHAPE -> STRIDED_SLICE -> PACK ->
RESHAPE behind: int32 arithmetic on the input's shape, which is static in a TFLite Micro
model (TFLite Micro's SHAPE reads the tensor's dims, batch 1 included). fold_constants
evaluates every op whose inputs are all constant (and SHAPE of any tensor) with numpy, makes
its outputs constants and drops it, so RESHAPE is left with a constant shape and lowers as
no code.

Only exact evaluations are folded: ops that move values (any dtype, bytes unchanged) and
integer arithmetic on unquantized tensors. Anything else stays in the graph, to be lowered
or refused by name.
"""

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from edgeship.convert.codegen.lowering.movement import (
    slice_indices,
    strided_slice_indices,
    take,
)
from edgeship.tflite_graph import Graph, Operator, Tensor

Evaluate = Callable[[Operator, list[Tensor], list[Tensor]], list[np.ndarray]]
_FOLDERS: dict[str, Evaluate] = {}


def _folds(*names: str) -> Callable[[Evaluate], Evaluate]:
    def register(function: Evaluate) -> Evaluate:
        for name in names:
            _FOLDERS[name] = function
        return function
    return register


def fold_constants(graph: Graph) -> Graph:
    """The graph with every op it can evaluate at generation time replaced by constants.

    The ops left keep their order and are renumbered 0, 1, ... in it: the index of an op is
    its place in the generated NAME_run (EDGESHIP_OP_HOOK's argument, NAME_ops.json), so the
    numbers name the ops of the generated code, not of the .tflite, once something folds.

    Args:
        graph: the model's graph.

    Returns:
        The same graph when nothing folds, else a copy with folded outputs as constant
        tensors and the folded ops dropped.
    """
    tensors = list(graph.tensors)
    kept: list[Operator] = []
    for op in graph.operators:
        values = _evaluate(op, tensors, set(graph.outputs))
        if values is None:
            kept.append(op)
            continue
        for index, value in zip(op.outputs, values):
            tensor = tensors[index]
            tensors[index] = replace(tensor, data=np.asarray(value).astype(tensor.dtype)
                                     .reshape(tensor.shape))
    if len(kept) == len(graph.operators):
        return graph
    operators = [replace(op, index=position) for position, op in enumerate(kept)]
    return replace(graph, tensors=tensors, operators=operators)


def _evaluate(op: Operator, tensors: list[Tensor], graph_outputs: set[int]
              ) -> list[np.ndarray] | None:
    """The op's output values, or None when it is not folded."""
    folder = _FOLDERS.get(op.name)
    if folder is None or any(index in graph_outputs for index in op.outputs):
        return None
    inputs = [tensors[index] for index in op.inputs if index >= 0]
    outputs = [tensors[index] for index in op.outputs]
    if op.name != "SHAPE" and any(tensor.data is None for tensor in inputs):
        return None
    if any(tensor.dtype not in _EXACT_DTYPES for tensor in outputs):
        return None
    values = folder(op, inputs, outputs)
    if values is None or any(np.asarray(value).size != tensor.size
                             for value, tensor in zip(values, outputs)):
        return None
    return values


_EXACT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "bool")


def _unquantized(tensors: list[Tensor]) -> bool:
    """True when no tensor carries a scale: integer arithmetic on them is exact."""
    return all(tensor.scales.size == 0 for tensor in tensors)


@_folds("SHAPE")
def _shape(op, inputs, outputs):
    return [np.asarray(inputs[0].shape)]


@_folds("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def _reshape(op, inputs, outputs):
    return [inputs[0].data]


@_folds("STRIDED_SLICE")
def _strided_slice(op, inputs, outputs):
    data = inputs[0].data
    indices, _ = strided_slice_indices(op, data.shape, *(tensor.data for tensor in inputs[1:4]))
    return [take(data, indices)]


@_folds("SLICE")
def _slice(op, inputs, outputs):
    return [take(inputs[0].data, slice_indices(op, inputs[0].data.shape, inputs[1].data,
                                               inputs[2].data))]


@_folds("PACK")
def _pack(op, inputs, outputs):
    return [np.stack([tensor.data for tensor in inputs], axis=op.options.axis)]


@_folds("CONCATENATION")
def _concatenation(op, inputs, outputs):
    if op.options.fusedActivationFunction != 0 or not _same_quantization(inputs + outputs):
        return None
    return [np.concatenate([tensor.data for tensor in inputs], axis=op.options.axis)]


@_folds("GATHER")
def _gather(op, inputs, outputs):
    axis = op.options.axis % inputs[0].data.ndim
    indices = inputs[1].data
    if op.options.batchDims != 0 or np.any(indices < 0) or np.any(
            indices >= inputs[0].data.shape[axis]):
        return None
    return [np.take(inputs[0].data, indices, axis=axis)]


@_folds("TRANSPOSE")
def _transpose(op, inputs, outputs):
    return [np.transpose(inputs[0].data, inputs[1].data.reshape(-1))]


@_folds("CAST")
def _cast(op, inputs, outputs):
    return [inputs[0].data] if _unquantized(inputs + outputs) else None


_ARITHMETIC = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply,
               "FLOOR_DIV": np.floor_divide, "MAXIMUM": np.maximum, "MINIMUM": np.minimum}


@_folds(*_ARITHMETIC)
def _arithmetic(op, inputs, outputs):
    """Unquantized integer arithmetic (shape computations); no fused activation."""
    if not _unquantized(inputs + outputs) or getattr(op.options, "fusedActivationFunction", 0):
        return None
    return [_ARITHMETIC[op.name](inputs[0].data.astype(np.int64), inputs[1].data.astype(np.int64))]


@_folds("REDUCE_PROD", "SUM")
def _reduce(op, inputs, outputs):
    if not _unquantized(inputs + outputs):
        return None
    axes = tuple(int(axis) for axis in np.asarray(inputs[1].data).reshape(-1))
    function = np.prod if op.name == "REDUCE_PROD" else np.sum
    return [function(inputs[0].data.astype(np.int64), axis=axes,
                     keepdims=bool(getattr(op.options, "keepDims", False)))]


def _same_quantization(tensors: list[Tensor]) -> bool:
    first = tensors[0]
    return all(np.array_equal(tensor.scales, first.scales)
               and np.array_equal(tensor.zero_points, first.zero_points) for tensor in tensors)
