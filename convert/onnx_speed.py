"""Exact rewrites of the int8 (QDQ) ONNX that let ONNX Runtime's CPU kernels run it faster.

Measured on ONNX Runtime's CPU provider (batch 1, one thread, ORT_ENABLE_ALL) with per-node
profiles: a QLinearConv with ONE input channel (the first conv of every MNIST model) costs
4-6x its float Conv, because the int8 kernels gather one byte per tap; and a
GlobalAveragePool over a 1x1 map (MobileNetV2 at 32x32) runs ORT's generic dequantize,
average, requantize loop over every channel for nothing. Each rewrite here is EXACT: the
file computes the same int8 values with the same int32 accumulators, so ORT's outputs are
bit-identical (tests/convert/test_onnx_speed.py proves it on ORT). None changes a weight
value, so edgeship.onnx_saturation's bound is unchanged.
"""

import math
from dataclasses import dataclass

import numpy as np

from edgeship.deps import require

BLOCK = 2  # space-to-depth block: 1 input channel becomes 4, each output phase a channel group


@dataclass(frozen=True)
class SpeedRewrites:
    """What speed_up_int8_onnx changed (counts of rewritten nodes).

    Attributes:
        space_to_depth_convs: single-input-channel convolutions run on a 2x2 space-to-depth
            view of their input.
        unit_global_pools: GlobalAveragePool nodes over a 1x1 map with the same scale on
            both sides (identities) removed.
    """

    space_to_depth_convs: int = 0
    unit_global_pools: int = 0


def speed_up_int8_onnx(int8_onnx: bytes) -> tuple[bytes, SpeedRewrites]:
    """Applies every exact rewrite to a QDQ int8 ONNX; returns the new bytes and what changed."""
    onnx = require("onnx")
    model = onnx.load_from_string(int8_onnx)
    model = onnx.shape_inference.infer_shapes(model)
    record = SpeedRewrites(space_to_depth_convs=space_to_depth_single_channel_convs(model),
                           unit_global_pools=drop_unit_global_average_pools(model))
    drop_unused_initializers(model)
    return model.SerializeToString(), record


class _Graph:
    """Producers, consumers, constants and known shapes of one ONNX graph (read at creation)."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.model = model
        self.graph = model.graph
        self.constants = {item.name: numpy_helper.to_array(item) for item in self.graph.initializer}
        self.producers = {output: node for node in self.graph.node for output in node.output}
        self.consumers = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.shapes = {}
        for value in list(self.graph.value_info) + list(self.graph.input):
            dims = value.type.tensor_type.shape.dim
            self.shapes[value.name] = [dim.dim_value if dim.HasField("dim_value") else None
                                       for dim in dims]

    def dequantized(self, name: str):
        """The DequantizeLinear producing `name`, or None."""
        node = self.producers.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def sole_quantize(self, name: str):
        """The QuantizeLinear that is the only consumer of `name`, or None."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == "QuantizeLinear" else None

    def scalar_quantization(self, node) -> bool:
        """True when a Q/DQ node has a per-tensor scale and zero point given as constants."""
        return (len(node.input) == 3 and all(name in self.constants for name in node.input[1:])
                and all(self.constants[name].size == 1 for name in node.input[1:]))

    def add_constant(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.constants[name] = value
        return name


def _attributes(node) -> dict:
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def space_to_depth_single_channel_convs(model) -> int:
    """Runs each 1-input-channel int8 Conv on a 2x2 space-to-depth view of its input.

    A stride-1 conv becomes one with 4 input channels, a kernel of ceil((K + 1) / 2) taps and
    4x the output channels (one group per output phase), followed by the depth-to-space
    shuffle; a stride-2 conv becomes a stride-1 conv with 4 input channels and the same
    outputs. The new weights hold the old ones at the taps each phase reaches and zeros
    elsewhere, so every int32 accumulator sums exactly the same products (bit-identical
    outputs), while ORT's int8 kernels get 4 contiguous input bytes per tap. The shuffles are
    written in NHWC (Reshape/Transpose between Q/DQ pairs, so ORT runs them on u8) where
    ORT's own layout transposes cancel them. Where a 2x2 stride-2 MaxPool alone follows
    (same scale), the shuffle and the pool become one u8 ReduceMax over the 4 phase groups
    (the max of the same 4 values: exact). The new Conv keeps the old one's name (reports
    and onnx_saturation name the user's layer). Exact; modifies `model` in place.

    Returns:
        How many convolutions were rewritten.
    """
    graph = _Graph(model)
    rewritten = 0
    for conv in [node for node in graph.graph.node if node.op_type == "Conv"]:
        plan = _space_to_depth_plan(graph, conv)
        if plan is not None:
            _apply_space_to_depth(graph, conv, plan)
            rewritten += 1
    return rewritten


@dataclass(frozen=True)
class _SpaceToDepthPlan:
    weights: np.ndarray  # the new (phases * Cout, 4, K', K') int8 weights
    pads: tuple[int, int, int, int]
    input_hw: tuple[int, int]
    output_hw: tuple[int, int]  # of the original conv
    phases: int  # 4 for stride 1 (depth-to-space after), 1 for stride 2


def _space_to_depth_plan(graph: _Graph, conv) -> _SpaceToDepthPlan | None:
    """The rewrite of one Conv, or None where it does not apply exactly."""
    attributes = _attributes(conv)
    source, weight_dq = graph.dequantized(conv.input[0]), graph.dequantized(conv.input[1])
    output_q = graph.sole_quantize(conv.output[0])
    if (source is None or weight_dq is None or output_q is None or attributes.get("group", 1) != 1
            or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or any(dilation != 1 for dilation in attributes.get("dilations", [1, 1]))
            or not graph.scalar_quantization(source) or not graph.scalar_quantization(output_q)):
        return None
    has_bias = len(conv.input) > 2 and conv.input[2]
    if has_bias and (graph.dequantized(conv.input[2]) is None
                     or graph.dequantized(conv.input[2]).input[0] not in graph.constants):
        return None
    weights = graph.constants.get(weight_dq.input[0])
    shape = graph.shapes.get(conv.input[0])
    if weights is None or weights.ndim != 4 or weights.shape[1] != 1 or weights.dtype != np.int8:
        return None
    if shape is None or len(shape) != 4 or None in shape[1:] or any(side % BLOCK for side in shape[2:]):
        return None
    strides = tuple(attributes.get("strides", [1, 1]))
    if strides not in ((1, 1), (BLOCK, BLOCK)):
        return None
    kernel = weights.shape[2:]
    pads = attributes.get("pads", [0, 0, 0, 0])
    input_hw = tuple(shape[2:])
    output_hw = tuple((input_hw[axis] + pads[axis] + pads[axis + 2] - kernel[axis]) // strides[axis] + 1
                      for axis in range(2))
    phases = BLOCK if strides == (1, 1) else 1
    if any(side % phases for side in output_hw):
        return None
    lead, taps, trail = [], [], []
    for axis in range(2):
        lead.append(math.ceil(pads[axis] / BLOCK))
        taps.append((phases - 1 + kernel[axis] - 1 - pads[axis]) // BLOCK + lead[axis] + 1)
        trail.append(output_hw[axis] // phases - 1 + taps[axis] - input_hw[axis] // BLOCK - lead[axis])
    if min(trail) < 0:
        return None
    out_channels = weights.shape[0]
    new = np.zeros((phases * phases * out_channels, BLOCK * BLOCK, *taps), np.int8)
    for phase_h in range(phases):
        for phase_w in range(phases):
            group = slice((phase_h * phases + phase_w) * out_channels,
                          (phase_h * phases + phase_w + 1) * out_channels)
            for sub_h in range(BLOCK):
                for sub_w in range(BLOCK):
                    for tap_h in range(taps[0]):
                        for tap_w in range(taps[1]):
                            row = BLOCK * (tap_h - lead[0]) + sub_h - phase_h + pads[0]
                            column = BLOCK * (tap_w - lead[1]) + sub_w - phase_w + pads[1]
                            if 0 <= row < kernel[0] and 0 <= column < kernel[1]:
                                new[group, sub_h * BLOCK + sub_w, tap_h, tap_w] = weights[:, 0, row, column]
    return _SpaceToDepthPlan(new, (lead[0], lead[1], trail[0], trail[1]), input_hw, output_hw, phases)


def _tiled(graph: _Graph, name: str, times: int, new_name: str) -> str:
    """A per-channel quantization constant repeated `times` (per-tensor ones are kept)."""
    value = graph.constants[name]
    return name if value.size == 1 else graph.add_constant(new_name, np.tile(value, times))


def _apply_space_to_depth(graph: _Graph, conv, plan: _SpaceToDepthPlan) -> None:
    from onnx import helper

    source, weight_dq = graph.dequantized(conv.input[0]), graph.dequantized(conv.input[1])
    output_q = graph.sole_quantize(conv.output[0])
    prefix = (conv.name or conv.output[0]) + "_s2d"
    repeats = plan.phases * plan.phases
    (height, width), (out_height, out_width) = plan.input_hw, plan.output_hw
    out_channels = plan.weights.shape[0] // repeats
    nodes = []

    def step(op_type: str, data: str, name: str, quantization, **attributes) -> str:
        """One data-movement op on the int8 tensor, wrapped in Q/DQ so ORT runs it on u8."""
        inputs = [data]
        if op_type == "Reshape":
            inputs.append(graph.add_constant(name + "_shape", np.array(attributes.pop("shape"), np.int64)))
        if "axes_input" in attributes:
            inputs.append(attributes.pop("axes_input"))
        nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attributes))
        if quantization is None:
            return name
        scale, zero_point = quantization.input[1:3]
        nodes.append(helper.make_node("QuantizeLinear", [name, scale, zero_point], [name + "_q"],
                                      name=name + "_q"))
        nodes.append(helper.make_node("DequantizeLinear", [name + "_q", scale, zero_point],
                                      [name + "_dq"], name=name + "_dq"))
        return name + "_dq"

    # NCHW with one channel is NHWC: (N,H,W) -> (N,H/2,W/2,2x2) -> NCHW for the conv
    data = step("Reshape", source.output[0], prefix + "_split", source,
                shape=[-1, height // BLOCK, BLOCK, width // BLOCK, BLOCK])
    data = step("Transpose", data, prefix + "_gather", source, perm=[0, 1, 3, 2, 4])
    data = step("Reshape", data, prefix + "_nhwc", source,
                shape=[-1, height // BLOCK, width // BLOCK, BLOCK * BLOCK])
    data = step("Transpose", data, prefix + "_input", source, perm=[0, 3, 1, 2])

    weight_scale, weight_zero_point = weight_dq.input[1:3]
    weights = graph.add_constant(prefix + "_w", plan.weights)
    dq_attributes = {"axis": 0} if graph.constants[weight_scale].size > 1 else {}
    nodes.append(helper.make_node(
        "DequantizeLinear",
        [weights, _tiled(graph, weight_scale, repeats, prefix + "_w_scale"),
         _tiled(graph, weight_zero_point, repeats, prefix + "_w_zero_point")],
        [prefix + "_w_dq"], name=prefix + "_w_dq", **dq_attributes))
    conv_inputs = [data, prefix + "_w_dq"]
    bias_dq = graph.dequantized(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    if bias_dq is not None:
        bias = graph.add_constant(prefix + "_b", np.tile(graph.constants[bias_dq.input[0]], repeats))
        nodes.append(helper.make_node(
            "DequantizeLinear",
            [bias, _tiled(graph, bias_dq.input[1], repeats, prefix + "_b_scale"),
             _tiled(graph, bias_dq.input[2], repeats, prefix + "_b_zero_point")],
            [prefix + "_b_dq"], name=prefix + "_b_dq",
            **({"axis": 0} if graph.constants[bias_dq.input[1]].size > 1 else {})))
        conv_inputs.append(prefix + "_b_dq")
    taps = list(plan.weights.shape[2:])
    final = conv.output[0] if plan.phases == 1 else prefix + "_phases"
    nodes.append(helper.make_node("Conv", conv_inputs, [final], name=conv.name or prefix + "_conv",
                                  kernel_shape=taps, pads=list(plan.pads), strides=[1, 1]))
    if plan.phases > 1:
        scale, zero_point = output_q.input[1:3]
        nodes.append(helper.make_node("QuantizeLinear", [final, scale, zero_point],
                                      [final + "_q"], name=final + "_q"))
        nodes.append(helper.make_node("DequantizeLinear", [final + "_q", scale, zero_point],
                                      [final + "_dq"], name=final + "_dq"))
        data = step("Transpose", final + "_dq", prefix + "_to_nhwc", output_q, perm=[0, 2, 3, 1])
        pool = _following_phase_max_pool(graph, output_q)
        if pool is not None:
            # a 2x2/2 max pool over the depth-to-space result is the max over the 4 phases
            data = step("Reshape", data, prefix + "_phases_nhwc", output_q,
                        shape=[-1, out_height // BLOCK, out_width // BLOCK, BLOCK * BLOCK, out_channels])
            data = step("ReduceMax", data, prefix + "_phase_max", output_q,
                        **_reduce_axes(graph, prefix + "_phase_axes", 3))
            nodes.append(helper.make_node("Transpose", [data], [pool.output[0]], name=prefix + "_output",
                                          perm=[0, 3, 1, 2]))
            for node in (pool, graph.consumers[output_q.output[0]][0], output_q):
                graph.graph.node.remove(node)
        else:
            # depth-to-space in NHWC: (N,Ho/2,Wo/2,[2,2,C]) -> (N,Ho,Wo,C) -> NCHW
            data = step("Reshape", data, prefix + "_unsplit", output_q,
                        shape=[-1, out_height // BLOCK, out_width // BLOCK, BLOCK, BLOCK, out_channels])
            data = step("Transpose", data, prefix + "_scatter", output_q, perm=[0, 1, 3, 2, 4, 5])
            data = step("Reshape", data, prefix + "_merged", output_q,
                        shape=[-1, out_height, out_width, out_channels])
            nodes.append(helper.make_node("Transpose", [data], [conv.output[0]], name=prefix + "_output",
                                          perm=[0, 3, 1, 2]))
    position = list(graph.graph.node).index(conv)
    graph.graph.node.remove(conv)
    for offset, node in enumerate(nodes):
        graph.graph.node.insert(position + offset, node)
    for dequantize in (weight_dq, bias_dq):
        if dequantize is not None and len(graph.consumers.get(dequantize.output[0], [])) == 1:
            graph.graph.node.remove(dequantize)


def _following_phase_max_pool(graph: _Graph, output_q):
    """The 2x2 stride-2 MaxPool that alone reads the conv's int8 output at the same scale, or None."""
    readers = graph.consumers.get(output_q.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "DequantizeLinear":
        return None
    pools = graph.consumers.get(readers[0].output[0], [])
    if len(pools) != 1 or pools[0].op_type != "MaxPool" or len(pools[0].output) != 1:
        return None
    pool, attributes = pools[0], _attributes(pools[0])
    after = graph.sole_quantize(pool.output[0])
    if (list(attributes.get("kernel_shape", [])) != [BLOCK, BLOCK]
            or list(attributes.get("strides", [1, 1])) != [BLOCK, BLOCK]
            or any(attributes.get("pads", [0, 0, 0, 0])) or attributes.get("ceil_mode", 0)
            or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID")
            or any(dilation != 1 for dilation in attributes.get("dilations", [1, 1]))
            or after is None or list(after.input[1:]) != list(output_q.input[1:])):
        return None
    return pool


def _reduce_axes(graph: _Graph, name: str, axis: int) -> dict:
    """ReduceMax's axes as an attribute (opset < 18) or an input (opset >= 18), keepdims 0."""
    opset = next((item.version for item in graph.model.opset_import if item.domain in ("", "ai.onnx")), 17)
    if opset >= 18:
        return {"axes_input": graph.add_constant(name, np.array([axis], np.int64)), "keepdims": 0}
    return {"axes": [axis], "keepdims": 0}


def drop_unit_global_average_pools(model) -> int:
    """Removes int8 GlobalAveragePool nodes over a 1x1 map whose output has the input's scale.

    The average of one value, requantized with the same scale and zero point, is that value:
    ORT's QLinearGlobalAveragePool computes it (dequantize, divide by 1, round) at a cost of
    a full op (about 20 us for MobileNetV2's 1,280 channels at batch 1). Exact; modifies
    `model` in place.

    Returns:
        How many pools were removed.
    """
    graph = _Graph(model)
    removed = 0
    for pool in [node for node in graph.graph.node if node.op_type == "GlobalAveragePool"]:
        source, output_q = graph.dequantized(pool.input[0]), graph.sole_quantize(pool.output[0])
        shape = graph.shapes.get(pool.input[0])
        if (source is None or output_q is None or shape is None or len(shape) < 3
                or any(side != 1 for side in shape[2:])
                or not graph.scalar_quantization(source) or not graph.scalar_quantization(output_q)):
            continue
        same = all(np.array_equal(graph.constants[a], graph.constants[b]) and
                   graph.constants[a].dtype == graph.constants[b].dtype
                   for a, b in zip(source.input[1:], output_q.input[1:]))
        graph_outputs = {output.name for output in graph.graph.output}
        after = graph.consumers.get(output_q.output[0], [])
        if not same or output_q.output[0] in graph_outputs or not after:
            continue
        for consumer in after:  # each consumer is a DequantizeLinear of the pool's int8 output
            for position, name in enumerate(consumer.input):
                if name == output_q.output[0]:
                    consumer.input[position] = source.input[0]
        graph.graph.node.remove(pool)
        graph.graph.node.remove(output_q)
        removed += 1
    return removed


def drop_unused_initializers(model) -> None:
    """Removes initializers no node reads (the replaced weights)."""
    used = {name for node in model.graph.node for name in node.input}
    for item in [item for item in model.graph.initializer if item.name not in used]:
        model.graph.initializer.remove(item)
