"""QUANTIZE and DEQUANTIZE: requantization between integer types and the model's boundary."""

from edgeship.convert.codegen.lowering.base import LoweredOp, TensorArg, lowers
from edgeship.convert.codegen.quant import quantize_multiplier

from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator


# QUANTIZE between integer types: kernel family per (input, output) dtype.
_QUANTIZE_FAMILIES = {("int8", "int8"): "quantize", ("int8", "int16"): "quantize_s8_s16",
                      ("int16", "int8"): "quantize_s16_s8", ("int16", "int16"): "quantize_s16_s16"}


@lowers("QUANTIZE", types=tuple(_QUANTIZE_FAMILIES))
def lower_quantize(graph: Graph, op: Operator) -> LoweredOp:
    """QUANTIZE between int8 and int16 (requantization): TFLite Micro's
    PrepareQuantizeReference takes QuantizeMultiplier of input_scale / output_scale in double;
    reference_ops::Requantize applies it to (x - input zero point), adds the output zero point
    and clamps to the output type."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    for tensor, role in ((input_tensor, "input"), (output, "output")):
        if tensor.scales.size != 1 or tensor.zero_points.size != 1:
            raise UserInputError(f"op {op.index} (QUANTIZE) has a per-channel quantized {role} "
                                 f"({tensor.name}); codegen requantizes per-tensor tensors only")
    if input_tensor.size != output.size:
        raise UserInputError(f"op {op.index} (QUANTIZE) changes the element count")
    multiplier, shift = quantize_multiplier(input_tensor.scale / output.scale)
    arguments = (input_tensor.size, TensorArg(op.inputs[0]), -input_tensor.zero_point, multiplier,
                 shift, output.zero_point, TensorArg(op.outputs[0]))
    types = (input_tensor.dtype, output.dtype)
    # Element i is read, then written: in place unless the output is wider (its element i
    # would cover input elements still to be read).
    widens = types == ("int8", "int16")
    return LoweredOp(op.index, op.name, _QUANTIZE_FAMILIES[types], arguments,
                     inputs=(op.inputs[0],), outputs=(op.outputs[0],),
                     summary=(f"{input_tensor.size} values, {input_tensor.dtype} scale "
                              f"{input_tensor.scale:.6g} zero point {input_tensor.zero_point} -> "
                              f"{output.dtype} {output.scale:.6g} {output.zero_point}"),
                     overlap=() if widens else ((op.inputs[0], 0),))
