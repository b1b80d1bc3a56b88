"""Can an int8 ONNX model saturate ONNX Runtime's 16-bit pair sums? Proved from the file.

On x86-64 without VNNI (AVX2, AVX512 without VNNI), ORT's u8 x s8 GEMM and convolution
kernels multiply with `vpmaddubsw`: two adjacent products along the reduction axis,
a0*w0 + a1*w1 with a raw u8 activation (s8 activations are shifted to u8 first) and an s8
weight, are added into one *saturating* int16 before the 32-bit accumulation. Whenever that
pair sum leaves [-32768, 32767] the result is clipped and the output drifts from the
model's integer semantics; with VNNI (`vpdpbusd`) the same products accumulate exactly in
32 bits. u8 x u8 kernels widen both operands to 16 bits first and cannot saturate.

The bound here does not depend on how ORT orders the reduction axis or on any input: for each
output channel it pairs the two largest weight magnitudes with the largest u8 activation
(255). A channel whose bound fits in int16 is computed exactly on every CPU; one that does not
*can* saturate for some input. 7-bit weights (ORT's reduce_range, |w| <= 64) give
255 x (64 + 64) = 32,640, always inside.

Shared by convert (the delivered file must pass) and validate (naming the op when ORT's int8
outputs diverge); it needs only the `onnx` package.
"""

import os
from dataclasses import dataclass

import numpy as np

from edgeship.deps import require

INT16_MAX = 32767
ACTIVATION_MAX = 255  # the largest raw u8 operand; MLAS maps s8 activations onto u8 too
_WEIGHT_INPUT = {"Conv": 1, "MatMul": 1, "Gemm": 1, "QLinearConv": 3, "QLinearMatMul": 3, "QGemm": 3,
                 "ConvInteger": 1, "MatMulInteger": 1}


@dataclass(frozen=True)
class PairSumBound:
    """The largest 16-bit pair sum one quantized convolution or matrix product can reach.

    Attributes:
        node: the ONNX node's name (or its output's, where the node has none).
        op_type: Conv, MatMul, Gemm or their QOperator forms (QLinearConv, QGemm, ...).
        kernel: "u8 x s8" or "s8 x s8" (pair sums in int16 without VNNI), or "u8 x u8"
            (widened to 16 bits, exact).
        worst_pair_sum: max over output channels of 255 x (two largest |w|); 0 for u8 x u8.
        channels: output channels of the op.
        channels_over: channels whose bound exceeds 32,767.
    """

    node: str
    op_type: str
    kernel: str
    worst_pair_sum: int
    channels: int
    channels_over: int

    @property
    def can_saturate(self) -> bool:
        return self.channels_over > 0

    def describe(self) -> str:
        if not self.can_saturate:
            return (f"{self.node} ({self.op_type}, {self.kernel}): worst pair sum "
                    f"{self.worst_pair_sum:,} <= {INT16_MAX:,}, exact on every CPU")
        return (f"{self.node} ({self.op_type}, {self.kernel}): in {self.channels_over} of "
                f"{self.channels} output channels two 8-bit weights times 8-bit activations can sum "
                f"to {self.worst_pair_sum:,} > {INT16_MAX:,}; ONNX Runtime's x86-64 kernels "
                "without VNNI (AVX2 vpmaddubsw) saturate that 16-bit pair sum, so the outputs "
                "depend on the CPU (quantize with 7-bit weights, reduce_range, to make it exact)")


def pair_sum_bounds(model) -> tuple[PairSumBound, ...]:
    """The pair-sum bound of every 8-bit convolution and matrix product in an ONNX model.

    Args:
        model: a path, the serialized bytes, or an onnx.ModelProto (QDQ or QOperator).

    Returns:
        One PairSumBound per quantized Conv/MatMul/Gemm with 8-bit activations and weights,
        in graph order; float ops are not listed.
    """
    onnx = require("onnx")
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(str(model))
    elif isinstance(model, bytes):
        model = onnx.load_from_string(model)
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    producers = {output: node for node in model.graph.node for output in node.output}
    bounds = []
    for node in model.graph.node:
        weight_index = _WEIGHT_INPUT.get(node.op_type)
        if weight_index is None or len(node.input) <= weight_index:
            continue
        activation_type = _eight_bit_type(node, 0, producers, initializers, model)
        weights = _quantized_weights(node, weight_index, producers, initializers, onnx)
        if activation_type is None or weights is None:
            continue
        bounds.append(_bound(node, weights, activation_type))
    return tuple(bounds)


def saturating_ops(model) -> tuple[PairSumBound, ...]:
    """The ops of `model` whose 16-bit pair sums can saturate without VNNI (empty: exact)."""
    return tuple(bound for bound in pair_sum_bounds(model) if bound.can_saturate)


def _bound(node, weights: np.ndarray, activation_type: str) -> PairSumBound:
    """Per output channel: 255 x (largest + second largest |w|) for s8 weights."""
    name = node.name or node.output[0]
    activation = {"uint8": "u8", "int8": "s8"}[activation_type]
    if weights.dtype == np.uint8:
        channels = weights.shape[_output_axis(node, weights)]
        return PairSumBound(name, node.op_type, f"{activation} x u8", 0, int(channels), 0)
    axis = _output_axis(node, weights)
    rows = np.moveaxis(np.abs(weights.astype(np.int32)), axis, 0).reshape(weights.shape[axis], -1)
    largest_two = np.sort(rows, axis=1)[:, -2:].sum(axis=1) if rows.shape[1] > 1 else rows[:, 0]
    sums = ACTIVATION_MAX * largest_two
    return PairSumBound(name, node.op_type, f"{activation} x s8", int(sums.max()), int(rows.shape[0]),
                        int(np.count_nonzero(sums > INT16_MAX)))


def _output_axis(node, weights: np.ndarray) -> int:
    """The weight axis of output channels: 0 for Conv, the last for MatMul, per transB for Gemm."""
    if node.op_type in ("Conv", "QLinearConv", "ConvInteger"):
        return 0
    if node.op_type in ("Gemm", "QGemm"):
        trans_b = next((attribute.i for attribute in node.attribute if attribute.name == "transB"), 0)
        return 0 if trans_b else weights.ndim - 1
    return weights.ndim - 1


def _quantized_weights(node, index: int, producers: dict, initializers: dict, onnx):
    """The integer weight tensor behind input `index` (an int8/uint8 initializer, directly or
    through DequantizeLinear), or None for float weights."""
    name = node.input[index]
    producer = producers.get(name)
    if producer is not None and producer.op_type == "DequantizeLinear":
        name = producer.input[0]
    tensor = initializers.get(name)
    if tensor is None:
        return None
    array = onnx.numpy_helper.to_array(tensor)
    return array if array.dtype in (np.int8, np.uint8) else None


def _eight_bit_type(node, index: int, producers: dict, initializers: dict, model):
    """uint8/int8 when input `index` is an 8-bit tensor (directly, QOperator, or the
    DequantizeLinear of one, QDQ); None for a float activation."""
    name = node.input[index]
    producer = producers.get(name)
    if node.op_type in ("Conv", "MatMul", "Gemm"):
        if producer is None or producer.op_type != "DequantizeLinear":
            return None
        zero_point = producer.input[2] if len(producer.input) > 2 else ""
        tensor = initializers.get(zero_point)
        if tensor is None:
            return "uint8"  # ONNX's default zero point type
        return {2: "uint8", 3: "int8"}.get(tensor.data_type)
    for value in list(model.graph.value_info) + list(model.graph.input):
        if value.name == name:
            return {2: "uint8", 3: "int8"}.get(value.type.tensor_type.elem_type)
    quantized_io = node.op_type.startswith("QLinear") or node.op_type == "QGemm"
    zero_point = node.input[index + 2] if quantized_io else ""
    tensor = initializers.get(zero_point)
    return {2: "uint8", 3: "int8"}.get(tensor.data_type) if tensor is not None else "uint8"
