"""Binary arithmetic of int8 or int16 tensors broadcast up to rank 4, either operand constant:
SUB, MUL, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, int16 ADD and int8 ADD with a broadcast or
constant operand (two same-shape int8 activations: lowering.elementwise's flat loop).

TFLite Micro's arithmetic (sub_common.cc CalculateOpDataSub, mul_common.cc
CalculateOpDataMul, add_common.cc CalculateOpDataAdd; reference_ops::BroadcastQuantSubSlow,
reference_integer_ops::Mul, BroadcastMul6DSlow and BroadcastAdd4DSlow,
reference_ops::AddGeneralParamScale for int16 ADD; maximum_minimum.cc; squared_difference.cc):
ADD and SUB rescale both inputs to twice the larger scale after a left shift of
20 (int8) or 15 (int16) and requantize the sum or difference; MUL requantizes the product of the
offset inputs with input1 * input2 / output scale; SQUARED_DIFFERENCE squares a difference
taken as SUB's (left shift 7 or 0); MAXIMUM and MINIMUM compare raw values, the converter
giving inputs and output one quantization. int16 tensors have zero point 0.
"""

import numpy as np

from edgeship.convert.c_source import ACTIVATION_CTYPES
from edgeship.convert.codegen.lowering.base import (
    ConstantArray,
    ConstantStruct,
    LoweredOp,
    SymbolArg,
    TensorArg,
    check_dtype,
    lowers,
)
from edgeship.convert.codegen.quant import (
    activation_range,
    add_parameters,
    quantize_multiplier,
    squared_difference_parameters,
)
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator, Tensor

SAME_TYPES = (("int8", "int8"), ("int16", "int16"))
# Kernel family of each (op, dtype): kernels/portable/<family>.c.
_FAMILIES = {("SUB", "int8"): "sub", ("SUB", "int16"): "sub_s16",
             ("ADD", "int8"): "add_broadcast", ("ADD", "int16"): "add_s16",
             ("MUL", "int8"): "mul", ("MUL", "int16"): "mul_s16",
             ("MAXIMUM", "int8"): "maximum", ("MAXIMUM", "int16"): "maximum_s16",
             ("MINIMUM", "int8"): "minimum", ("MINIMUM", "int16"): "minimum_s16",
             ("SQUARED_DIFFERENCE", "int8"): "squared_difference",
             ("SQUARED_DIFFERENCE", "int16"): "squared_difference_s16"}
# Ops whose kernels compare raw values: no es_add_params, any zero points.
_COMPARISONS = ("MAXIMUM", "MINIMUM")


def dims4(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * (4 - len(shape)) + tuple(shape)


def broadcast_strides(tensor: Tensor, output: Tensor, op: Operator) -> tuple[int, ...]:
    """The tensor's element strides over the output's 4-d index (0 along broadcast axes)."""
    rank = len(output.shape)
    if len(tensor.shape) > rank or rank > 4:
        raise UserInputError(f"op {op.index} ({op.name}) broadcasts {list(tensor.shape)} to "
                             f"{list(output.shape)}; codegen broadcasts up to rank 4")
    dims, out_dims = dims4(tensor.shape), dims4(output.shape)
    strides, step = [0] * 4, 1
    for axis in range(3, -1, -1):
        if dims[axis] == out_dims[axis]:
            strides[axis] = step if dims[axis] > 1 else 0
        elif dims[axis] != 1:
            raise UserInputError(f"op {op.index} ({op.name}): {list(tensor.shape)} does not "
                                 f"broadcast to {list(output.shape)}")
        step *= dims[axis]
    return tuple(strides)


def _operand(graph: Graph, op: Operator, position: int, output: Tensor):
    """(kernel argument, constant array or None, activation input or None) of one operand."""
    tensor = graph.tensors[op.inputs[position]]
    check_dtype(tensor, f"input {position + 1}", op, (output.dtype,))
    if tensor.data is None:
        return TensorArg(op.inputs[position]), None, op.inputs[position]
    name = f"op{op.index}_input{position + 1}"
    values = np.asarray(tensor.data).reshape(-1)
    return SymbolArg(name), ConstantArray(ACTIVATION_CTYPES[output.dtype], name, values), None


def _scaling(op: Operator, first: Tensor, second: Tensor, output: Tensor) -> dict[str, int]:
    if op.name in ("ADD", "SUB"):
        return add_parameters(first, second, output)
    if op.name == "SQUARED_DIFFERENCE":
        return squared_difference_parameters(first, second, output)
    multiplier, shift = quantize_multiplier(first.scale * second.scale / output.scale)
    return {"left_shift": 0, "first_multiplier": 0, "second_multiplier": 0,
            "output_multiplier": multiplier, "first_shift": 0, "second_shift": 0,
            "output_shift": shift}


@lowers("SUB", "MUL", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", types=SAME_TYPES)
def lower_binary(graph: Graph, op: Operator) -> LoweredOp:
    """es_add_params holds the arithmetic's constants, es_broadcast the shapes (binary.c)."""
    first, second = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    check_dtype(output, "output", op, tuple(ACTIVATION_CTYPES))
    operands = [_operand(graph, op, position, output) for position in (0, 1)]
    if all(activation is None for _, _, activation in operands):
        raise UserInputError(f"op {op.index} ({op.name}) has two constant inputs; codegen "
                             "needs at least one activation")
    if (output.dtype == "int16" and op.name not in _COMPARISONS
            and (first.zero_point or second.zero_point or output.zero_point)):
        raise UserInputError(f"op {op.index} ({op.name}): int16 tensors need zero point 0 "
                             "(TFLite's 16x8 spec)")
    shape = ConstantStruct("es_broadcast", f"op{op.index}_shape", (
        *dims4(output.shape), *broadcast_strides(first, output, op),
        *broadcast_strides(second, output, op)))
    params = None if op.name in _COMPARISONS else _params(graph, op)
    inputs = tuple(index for _, _, index in operands if index is not None)
    # Element i of a same-shape input is read before output element i is written (the same
    # bytes: the dtypes match); a broadcast input is read again later, so never shared.
    overlap = tuple((index, 0) for index in inputs if graph.tensors[index].shape == output.shape)
    arguments = (SymbolArg(shape.name, address=True), operands[0][0], operands[1][0],
                 TensorArg(op.outputs[0]))
    if params is not None:
        arguments = (SymbolArg(params.name, address=True), *arguments)
    shapes = " and ".join(str(list(tensor.shape)) for tensor in (first, second))
    return LoweredOp(op.index, op.name, _FAMILIES[(op.name, output.dtype)], arguments,
                     inputs=inputs, outputs=(op.outputs[0],),
                     summary=f"{output.dtype} {shapes} -> {list(output.shape)}",
                     constants=tuple(constant for _, constant, _ in operands
                                     if constant is not None),
                     structs=(shape,) if params is None else (params, shape), overlap=overlap)


def _params(graph: Graph, op: Operator) -> ConstantStruct:
    """The op's es_add_params (field order of kernels/portable/add_params.c)."""
    first, second = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    activation = getattr(op.options, "fusedActivationFunction", 0) if op.options else 0
    act_min, act_max = activation_range(activation, output, op.name)
    scaling = _scaling(op, first, second, output)
    return ConstantStruct("es_add_params", f"op{op.index}_params", (
        -first.zero_point, -second.zero_point, output.zero_point, scaling["left_shift"],
        scaling["first_multiplier"], scaling["second_multiplier"], scaling["output_multiplier"],
        scaling["first_shift"], scaling["second_shift"], scaling["output_shift"], act_min,
        act_max))
