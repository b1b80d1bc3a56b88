"""QUANTIZE and DEQUANTIZE: requantization between integer types, and the model's uint8 or
float32 boundary (the ops TensorFlow's converter puts at a model's input and output).

Each is computed as TFLite Micro's quantize and dequantize kernels compute it, for the type
pairs they accept (int32 only as an output of int8 or int16): integer to integer by reference_ops::Requantize, float32
to integer by reference_ops::AffineQuantize, integer to float32 by reference_ops::Dequantize.
The float scale of the last two travels to the kernel as its IEEE 754 bits, so the C divides
and multiplies by exactly the float TFLite Micro uses.
"""

import numpy as np

from edgeship.convert.codegen.lowering.base import LoweredOp, TensorArg, lowers
from edgeship.convert.codegen.quant import quantize_multiplier
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator, Tensor

# QUANTIZE between integer types: kernel family per (input, output) dtype.
_REQUANTIZE_FAMILIES = {("int8", "int8"): "quantize", ("int8", "int16"): "quantize_s8_s16",
                        ("int16", "int8"): "quantize_s16_s8",
                        ("int16", "int16"): "quantize_s16_s16",
                        ("int8", "int32"): "quantize_s8_s32", ("int16", "int32"): "quantize_s16_s32",
                        ("uint8", "int8"): "quantize_u8_s8", ("int8", "uint8"): "quantize_s8_u8"}
# QUANTIZE from float32 (a model's float input).
_AFFINE_FAMILIES = {("float32", "int8"): "quantize_f32_s8", ("float32", "int16"): "quantize_f32_s16"}
# DEQUANTIZE to float32 (a model's float output).
_DEQUANTIZE_FAMILIES = {("int8", "float32"): "dequantize_s8", ("uint8", "float32"): "dequantize_u8",
                        ("int16", "float32"): "dequantize_s16"}
# Byte width of each dtype these kernels read or write: a wider output cannot be in place.
_WIDTHS = {"uint8": 1, "int8": 1, "int16": 2, "int32": 4, "float32": 4}


@lowers("QUANTIZE", types=(*_REQUANTIZE_FAMILIES, *_AFFINE_FAMILIES))
def lower_quantize(graph: Graph, op: Operator) -> LoweredOp:
    """QUANTIZE to int8, uint8, int16 or int32, from an integer type or float32.

    Between integer types, TFLite Micro's PrepareQuantizeReference takes QuantizeMultiplier
    of input_scale / output_scale in double; reference_ops::Requantize applies it to
    (x - input zero point), adds the output zero point and clamps to the output type. From
    float32, reference_ops::AffineQuantize divides by the output scale in float and rounds
    half away from zero (kernels/portable/quantize_f32.c).
    """
    input_tensor, output = _elementwise_tensors(graph, op)
    types = (input_tensor.dtype, output.dtype)
    if types in _AFFINE_FAMILIES:
        arguments = (input_tensor.size, TensorArg(op.inputs[0]), _float_bits(output.scale),
                     output.zero_point, TensorArg(op.outputs[0]))
        return _boundary_op(op, _AFFINE_FAMILIES[types], arguments, input_tensor, output,
                            f"{input_tensor.size} values, float32 -> {_quantization(output)}")
    multiplier, shift = quantize_multiplier(input_tensor.scale / output.scale)
    arguments = (input_tensor.size, TensorArg(op.inputs[0]), -input_tensor.zero_point, multiplier,
                 shift, output.zero_point, TensorArg(op.outputs[0]))
    return _boundary_op(op, _REQUANTIZE_FAMILIES[types], arguments, input_tensor, output,
                        (f"{input_tensor.size} values, {_quantization(input_tensor)} -> "
                         f"{_quantization(output)}"))


@lowers("DEQUANTIZE", types=tuple(_DEQUANTIZE_FAMILIES))
def lower_dequantize(graph: Graph, op: Operator) -> LoweredOp:
    """DEQUANTIZE int8, uint8 or int16 to float32: reference_ops::Dequantize, the float input
    scale times (x - zero point) in double, rounded once to float."""
    input_tensor, output = _elementwise_tensors(graph, op)
    arguments = (input_tensor.size, TensorArg(op.inputs[0]), _float_bits(input_tensor.scale),
                 input_tensor.zero_point, TensorArg(op.outputs[0]))
    return _boundary_op(op, _DEQUANTIZE_FAMILIES[(input_tensor.dtype, output.dtype)], arguments,
                        input_tensor, output,
                        f"{input_tensor.size} values, {_quantization(input_tensor)} -> float32")


def _elementwise_tensors(graph: Graph, op: Operator) -> tuple[Tensor, Tensor]:
    """The op's input and output, checked: as many values, integer ones quantized per tensor
    with a positive scale (the float side carries no quantization)."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    for tensor, role in ((input_tensor, "input"), (output, "output")):
        if tensor.dtype == "float32":
            continue
        if tensor.scales.size == 0:
            raise UserInputError(f"op {op.index} ({op.name}) has an unquantized {tensor.dtype} "
                                 f"{role} ({tensor.name}); codegen needs its scale and zero point")
        if tensor.scales.size != 1 or tensor.zero_points.size != 1:
            raise UserInputError(f"op {op.index} ({op.name}) has a per-channel quantized {role} "
                                 f"({tensor.name}); codegen handles per-tensor tensors only")
        if not tensor.scale > 0:
            raise UserInputError(f"op {op.index} ({op.name}) has {role} scale {tensor.scale} "
                                 f"({tensor.name}); a quantization scale must be positive")
    if input_tensor.size != output.size:
        raise UserInputError(f"op {op.index} ({op.name}) changes the element count")
    return input_tensor, output


def _boundary_op(op: Operator, kernel: str, arguments: tuple, input_tensor: Tensor,
                 output: Tensor, summary: str) -> LoweredOp:
    # Element i is read, then written: in place unless the output is wider (its element i
    # would cover input elements still to be read).
    widens = _WIDTHS[output.dtype] > _WIDTHS[input_tensor.dtype]
    return LoweredOp(op.index, op.name, kernel, arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],), summary=summary,
                     overlap=() if widens else ((op.inputs[0], 0),))


def _quantization(tensor: Tensor) -> str:
    return f"{tensor.dtype} scale {tensor.scale:.6g} zero point {tensor.zero_point}"


def _float_bits(value: float) -> int:
    """The IEEE 754 bits of a float32 (es_float_from_bits turns them back into the float)."""
    return int(np.float32(value).view(np.uint32))
