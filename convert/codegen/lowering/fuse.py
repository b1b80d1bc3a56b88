"""Graph passes before lowering that save memory without changing a single output value.

fuse_padding folds a PAD (or a PADV2 whose pad value is the zero point) into the CONV_2D or
DEPTHWISE_CONV_2D that alone reads it: the convolution reads the PAD's input and treats the
padded rows and columns as outside taps. Every int8 convolution kernel computes an outside
tap as the input zero point (it adds (x + input_offset) * w = 0 for it), and that is exactly
the value PAD writes there, so the fused op is bit-exact and the padded tensor, usually the
largest of the model, never exists. The conv's own padding (SAME) adds to the PAD's; the
bottom and right amounts follow from the output size, as the kernels bound taps by in_h and
in_w.

Pooling is not fused: TFLite Micro's pools skip outside taps (max over fewer values, an
average over fewer), which differs from pooling over zero-point padding.
"""

from dataclasses import dataclass, replace

import numpy as np

from edgeship.convert.codegen.quant import padding_and_size
from edgeship.tflite_graph import Graph, Operator

FUSED_CONSUMERS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass(frozen=True)
class PadFusedOptions:
    """A convolution's options with a fused PAD: the options of the .tflite op, plus where the
    padded tensor was (its shape decides the conv's own padding) and the pads before the
    image (top, left). Attribute reads fall through to the original options."""

    options: object
    padded_tensor: int
    pad_top: int
    pad_left: int

    def __getattr__(self, name: str):
        return getattr(self.options, name)


def fuse_padding(graph: Graph) -> Graph:
    """The graph with every fusable PAD folded into its convolution (see the module docstring).

    The ops left keep their order and are renumbered 0, 1, ..., as after constant folding.

    Args:
        graph: the model's graph (constants folded).

    Returns:
        The same graph when no PAD fuses, else a copy without the fused PADs.
    """
    readers: dict[int, list[Operator]] = {}
    for op in graph.operators:
        for index in op.inputs:
            if index >= 0:
                readers.setdefault(index, []).append(op)
    fused: dict[int, Operator] = {}  # consumer's index -> its replacement
    dropped: set[int] = set()
    for op in graph.operators:
        consumer = _fusable_consumer(graph, op, readers)
        if consumer is None:
            continue
        pads = np.asarray(graph.tensors[op.inputs[1]].data, np.int64).reshape(4, 2)
        options = PadFusedOptions(consumer.options, op.outputs[0], int(pads[1, 0]),
                                  int(pads[2, 0]))
        fused[consumer.index] = replace(consumer, inputs=[op.inputs[0], *consumer.inputs[1:]],
                                        options=options)
        dropped.add(op.index)
    if not dropped:
        return graph
    kept = [fused.get(op.index, op) for op in graph.operators if op.index not in dropped]
    operators = [replace(op, index=position) for position, op in enumerate(kept)]
    return replace(graph, operators=operators)


def _fusable_consumer(graph: Graph, op: Operator, readers: dict[int, list[Operator]]
                      ) -> Operator | None:
    """The convolution a PAD fuses into, or None when it must stay an op of its own."""
    if op.name not in ("PAD", "PADV2") or len(op.inputs) < 2:
        return None
    padded = op.outputs[0]
    consumers = readers.get(padded, [])
    if padded in graph.outputs or len(consumers) != 1:
        return None
    consumer = consumers[0]
    if consumer.name not in FUSED_CONSUMERS or consumer.inputs[0] != padded \
            or padded in consumer.inputs[1:] or isinstance(consumer.options, PadFusedOptions):
        return None
    source, output = graph.tensors[op.inputs[0]], graph.tensors[padded]
    # int8 only: the 16x8 kernels would do the same, but they are another family's lowering.
    if source.dtype != "int8" or output.dtype != "int8":
        return None
    if (np.float32(source.scale), source.zero_point) != (np.float32(output.scale),
                                                        output.zero_point):
        return None
    paddings = graph.tensors[op.inputs[1]]
    if paddings.data is None or len(source.shape) != 4:
        return None
    pads = np.asarray(paddings.data, np.int64).reshape(-1, 2)
    if pads.shape != (4, 2) or np.any(pads < 0) or np.any(pads[[0, 3]] != 0):
        return None  # only height and width padding is implicit in a convolution
    if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = graph.tensors[op.inputs[2]]
        if value.data is None or value.size != 1 or value.dtype != "int8" \
                or int(np.asarray(value.data).reshape(-1)[0]) != output.zero_point \
                or (np.float32(value.scale), value.zero_point) != (np.float32(output.scale),
                                                                   output.zero_point):
            return None  # lower_pad names the mismatch TFLite Micro refuses
    if source.shape[1] == 1 and not _symmetric_enough(graph, consumer, source.shape[2],
                                                      output.shape[2], int(pads[2, 0])):
        return None
    return consumer


def _symmetric_enough(graph: Graph, consumer: Operator, in_w: int, padded_w: int,
                      pad_left: int) -> bool:
    """CMSIS-NN's 1xN convolution on Helium (arm_convolve_1_x_n_s8) takes rows of height 1
    only with left padding total // 2 (right the rest): such fusions are kept to it."""
    options = consumer.options
    weights = graph.tensors[consumer.inputs[1]]
    k_w = weights.shape[2]
    dilation = getattr(options, "dilationWFactor", 1)
    own, out_w = padding_and_size(options.padding, padded_w, k_w, options.strideW, dilation)
    total = (out_w - 1) * options.strideW + (k_w - 1) * dilation + 1 - in_w
    return (own + pad_left) * 2 + total % 2 == total
