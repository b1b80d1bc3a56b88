"""CONV_2D and DEPTHWISE_CONV_2D: per-channel requantization, input offset folded into the bias."""

import numpy as np

from edgeship.convert.codegen.lowering.base import (
    ConstantArray,
    LinearParams,
    LoweredOp,
    SymbolArg,
    TensorArg,
    bias_values,
    check_int8,
    check_symmetric_weights,
    convolution_window,
    lowers,
    window_struct,
)
from edgeship.convert.codegen.lowering.fuse import PadFusedOptions
from edgeship.convert.codegen.lowering.linear16 import lower_convolution_16x8
from edgeship.convert.codegen.lowering.overlap import conv_overlap, element_overlap
from edgeship.convert.codegen.quant import per_channel_multipliers
from edgeship.tflite_graph import Graph, Operator


@lowers("CONV_2D", "DEPTHWISE_CONV_2D", types=(("int8", "int8"), ("int16", "int16")))
def lower_convolution(graph: Graph, op: Operator) -> LoweredOp:
    """CONV_2D (weights [out_c][k_h][k_w][in_c]) and DEPTHWISE_CONV_2D ([1][k_h][k_w][out_c]);
    16x8 ones in lowering.linear16.

    MACs: out_h * out_w * out_c * k_h * k_w * in_c, and for depthwise (one input channel per
    output channel) out_h * out_w * out_c * k_h * k_w.
    """
    if graph.tensors[op.inputs[0]].dtype == "int16":
        return lower_convolution_16x8(graph, op)
    input_tensor, weights = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    for tensor, role in ((input_tensor, "input"), (weights, "weight"), (output, "output")):
        check_int8(tensor, role, op)
    check_symmetric_weights(weights, op)
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    values, summary, depth_multiplier = _fused_window(graph, op, input_tensor, weights, output)
    out_c, k_h, k_w = values["out_c"], values["k_h"], values["k_w"]
    weight_values = np.asarray(weights.data, np.int8)
    prefix = f"op{op.index}"
    pixels_out = values["out_h"] * values["out_w"] * out_c * k_h * k_w
    if depthwise:
        sums = weight_values.reshape(-1, out_c).astype(np.int64).sum(axis=0)
        kernel, leading = "depthwise_conv_2d", (depth_multiplier,)
        overlap, macs = element_overlap(values, depth_multiplier), pixels_out
    else:
        sums = weight_values.reshape(out_c, -1).astype(np.int64).sum(axis=1)
        kernel, leading = "conv_2d", ()
        overlap, macs = conv_overlap(values), pixels_out * values["in_c"]
    multipliers, shifts = per_channel_multipliers(input_tensor, weights, output, out_c)
    bias = bias_values(graph, op, out_c)
    folded = (bias if bias is not None else 0) + values["input_offset"] * sums
    constants = [ConstantArray("int8_t", f"{prefix}_weights", weight_values.reshape(-1)),
                 ConstantArray("int32_t", f"{prefix}_folded_bias", folded),
                 ConstantArray("int32_t", f"{prefix}_multiplier", multipliers),
                 ConstantArray("int8_t", f"{prefix}_shift", shifts)]
    bias_argument = 0
    if bias is not None:
        constants.insert(1, ConstantArray("int32_t", f"{prefix}_bias", bias))
        bias_argument = SymbolArg(f"{prefix}_bias")
    struct = window_struct(op, values)
    taps = (weight_values.reshape(-1, out_c) if depthwise
            else weight_values.reshape(out_c, -1))
    linear = LinearParams(weights=taps, bias=bias, folded_bias=np.asarray(folded, np.int64)
                          * np.ones(out_c, np.int64), multipliers=multipliers, shifts=shifts,
                          window=values, output_offset=values["output_offset"],
                          act_min=values["act_min"], act_max=values["act_max"],
                          depth_multiplier=leading[0] if depthwise else 1)
    arguments = (SymbolArg(struct.name, address=True), *leading, TensorArg(op.inputs[0]),
                 SymbolArg(f"{prefix}_weights"), bias_argument, SymbolArg(f"{prefix}_folded_bias"),
                 SymbolArg(f"{prefix}_multiplier"), SymbolArg(f"{prefix}_shift"),
                 TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, kernel, arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],), summary=summary, constants=tuple(constants),
                     structs=(struct,), overlap=((op.inputs[0], overlap),), macs=int(macs),
                     linear=linear)


def _fused_window(graph: Graph, op: Operator, input_tensor, weights, output
                  ) -> tuple[dict, str, int]:
    """convolution_window, and for a conv with a fused PAD (lowering.fuse) the window over the
    PAD's input: the padded tensor's shape decides the conv's own padding, then the PAD's top
    and left pads add to it (bottom and right follow from the output size)."""
    options = op.options
    if not isinstance(options, PadFusedOptions):
        return convolution_window(op, input_tensor, weights, output)
    padded = graph.tensors[options.padded_tensor]
    values, summary, depth_multiplier = convolution_window(op, padded, weights, output)
    _, in_h, in_w, _ = input_tensor.shape
    values = {**values, "in_h": in_h, "in_w": in_w, "pad_h": values["pad_h"] + options.pad_top,
              "pad_w": values["pad_w"] + options.pad_left}
    bottom = padded.shape[1] - in_h - options.pad_top
    right = padded.shape[2] - in_w - options.pad_left
    summary += (f", PAD fused ({options.pad_top},{bottom})x({options.pad_left},{right}) "
                f"from {in_h}x{in_w}")
    return values, summary, depth_multiplier
