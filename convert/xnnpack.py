"""Graph rewrites of an int8 .tflite so XNNPACK takes more of it.

XNNPACK (LiteRT's default CPU delegate) has no int8 SOFTMAX and no int8 AVERAGE_POOL_2D: each
splits the delegated graph, and the op runs on LiteRT's own kernels between partitions
(`edgeship bench` shows the partitions and the ops left outside).

- AVERAGE_POOL_2D has no exact rewrite: TFLite's int8 kernel rounds the raw window sum half
  away from zero, while every XNNPACK-supported int8 op (a depthwise convolution with unit
  weights, MEAN) requantizes the zero-point-shifted sum, so ties of negative sums round the
  other way; no constant weight or bias reproduces a tie rule that depends on the sum's sign.
- SOFTMAX at the output has no exact rewrite either (XNNPACK computes softmax in float only).
  `float_softmax_output` is the documented option where the result changes: the int8 logits
  are dequantized (exactly) and the softmax runs in float, so the model's output becomes
  float32 probabilities instead of int8-quantized ones. Top-1 can differ from the int8
  softmax only where the int8 output ties.
"""

import copy
from dataclasses import dataclass

import numpy as np

from edgeship.deps import require
from edgeship.errors import ToolFailureError, UserInputError
from edgeship.tflite_graph import (
    buffer_data,
    builtin_code,
    flatbuffer_schema,
    read_model,
    write_model,
)


def float_softmax_output(tflite_bytes: bytes) -> bytes:
    """Replace the int8 SOFTMAX that produces the graph output by DEQUANTIZE + float SOFTMAX.

    Args:
        tflite_bytes: a full-integer .tflite whose output is an int8 SOFTMAX.

    Returns:
        The rewritten model: same inputs, float32 output (probabilities).

    Raises:
        UserInputError: the model's output is not produced by an int8 SOFTMAX.
    """
    types = flatbuffer_schema().TensorType
    model = read_model(tflite_bytes)
    subgraph = model.subgraphs[0]
    (output,) = subgraph.outputs
    softmax = next((op for op in subgraph.operators if list(op.outputs) == [output]
                    and builtin_code(model, op) == flatbuffer_schema().BuiltinOperator.SOFTMAX), None)
    if softmax is None or subgraph.tensors[output].type != types.INT8:
        raise UserInputError("float softmax output needs an int8 model whose output is a SOFTMAX")
    logits = subgraph.tensors[softmax.inputs[0]]
    float_logits = _add_tensor(model, (logits.name or b"logits") + b"/dequantized",
                               list(logits.shape), logits, tensor_type=types.FLOAT32)
    probabilities = subgraph.tensors[output]
    probabilities.type = types.FLOAT32
    probabilities.quantization = None
    dequantize = _new_op(model, "DEQUANTIZE", 2, [softmax.inputs[0]], [float_logits], 0, None)
    softmax.inputs = [float_logits]
    subgraph.operators.insert(subgraph.operators.index(softmax), dequantize)
    return write_model(model)


# --- rewrites for the phone file (model_int8_xnnpack.tflite) ------------------------------------

# XNNPACK's int8 convolution kernels pack input channels in groups of 4 (and output channels
# in groups of 16 on AVX-512), so a convolution reading ONE channel (the first layer of every
# grayscale model) does the work of four: measured on lenet5's first layer, 13.3 us in int8
# against 8.0 us in float. Reading SPACE_TO_DEPTH(2) of the input instead (four channels at half
# the resolution) turns it into a convolution that fills those groups.
NARROW_INPUT_CHANNELS = 2
# The rewritten kernel has 4 * K'^2 / K^2 times the original multiply-accumulates (zero taps
# included); beyond this ratio the rewrite stops paying for itself.
MAX_MAC_GROWTH = 2.0

REWRITE_MODES = ("exact", "rounding", "off")
# TFLite numbers int8 DEPTH_TO_SPACE as version 2, but LiteRT's reference op resolver registers
# version 1 only, although its kernel (like the optimized one, XNNPACK's and TFLite Micro's)
# takes int8. Version 1 lets every runtime open the file, so that validate can prove the rewrite
# exact on the reference kernels too (tests/convert/test_xnnpack.py runs all of them).
_DEPTH_TO_SPACE_VERSION = 1


@dataclass(frozen=True)
class Rewrite:
    """One change made to the graph: the op, what it became, and whether results can differ."""

    op: str
    became: str
    exact: bool

    def describe(self) -> str:
        return f"{self.op} -> {self.became} ({'bit-exact' if self.exact else 'ties may round 1 quantum apart'})"


def rewrite_for_xnnpack(tflite_bytes: bytes, mode: str = "exact") -> tuple[bytes, list[Rewrite]]:
    """The int8 model rewritten so that XNNPACK runs it faster.

    Args:
        tflite_bytes: a full-integer int8 .tflite (the delivered model_int8.tflite).
        mode: "exact": only rewrites whose int8 results are identical on every runtime
            (narrow-input convolutions through SPACE_TO_DEPTH); "rounding": also int8
            AVERAGE_POOL_2D as a DEPTHWISE_CONV_2D that XNNPACK runs (outputs can differ by
            one quantum where the window's mean is exactly half-way); "off": nothing.

    Returns:
        (bytes, rewrites): the new model and what changed; no rewrites -> the input unchanged.
    """
    if mode not in REWRITE_MODES:
        raise UserInputError(f"unknown XNNPACK rewrite mode {mode!r}; valid: {', '.join(REWRITE_MODES)}")
    if mode == "off":
        return tflite_bytes, []
    model = read_model(tflite_bytes)
    rewrites = _narrow_convs_to_space_to_depth(model, tflite_bytes)
    if mode == "rounding":
        rewrites += _average_pools_to_depthwise(model)
    if not rewrites:
        return tflite_bytes, []
    return write_model(model), rewrites


def _narrow_convs_to_space_to_depth(model, source: bytes) -> list[Rewrite]:
    schema = flatbuffer_schema()
    subgraph = model.subgraphs[0]
    rewrites = []
    for op in list(subgraph.operators):
        if builtin_code(model, op) != schema.BuiltinOperator.CONV_2D:
            continue
        plan = _space_to_depth_plan(model, op, source)
        if plan is None:
            continue
        name = _tensor_name(subgraph, op.outputs[0])
        folded = _apply_space_to_depth(model, op, plan, source)
        became = ("SPACE_TO_DEPTH + CONV_2D" if plan.stride == 2 else
                  "SPACE_TO_DEPTH + CONV_2D + max over phases (the 2x2 MAX_POOL_2D)" if folded
                  else "SPACE_TO_DEPTH + CONV_2D + DEPTH_TO_SPACE")
        rewrites.append(Rewrite("CONV_2D " + name, became, exact=True))
    return rewrites


@dataclass(frozen=True)
class _Axis:
    """One spatial axis of the rewritten convolution."""

    kernel: int        # K': taps of the new kernel along this axis
    pad_before: int    # p': rows (of the half-resolution input) padded before
    padding: int       # the TFLite padding enum giving exactly p' and the output size
    taps: tuple        # (new tap d', input sub-row b, output phase a) -> original tap, or absent


@dataclass(frozen=True)
class _S2DPlan:
    stride: int
    height: _Axis
    width: _Axis


def _space_to_depth_plan(model, op, source: bytes) -> "_S2DPlan | None":
    """How to rewrite one CONV_2D through SPACE_TO_DEPTH(2), or None where it does not apply."""
    schema = flatbuffer_schema()
    subgraph = model.subgraphs[0]
    inputs = [subgraph.tensors[index] for index in op.inputs]
    output = subgraph.tensors[op.outputs[0]]
    options = op.builtinOptions
    if (len(inputs) < 2 or inputs[0].type != schema.TensorType.INT8
            or inputs[1].type != schema.TensorType.INT8
            or inputs[0].shape is None or len(inputs[0].shape) != 4 or inputs[0].shape[0] != 1
            or not 1 <= inputs[0].shape[3] <= NARROW_INPUT_CHANNELS
            or options.strideH != options.strideW or options.strideH not in (1, 2)
            or options.dilationHFactor != 1 or options.dilationWFactor != 1
            or _constant(model, inputs[1], source) is None
            or (len(inputs) > 2 and op.inputs[2] >= 0
                and _constant(model, inputs[2], source) is None)):
        return None
    stride = options.strideH
    _, height, width, _ = inputs[0].shape
    _, out_height, out_width, _ = output.shape
    _, kernel_height, kernel_width, _ = inputs[1].shape
    axes = [_axis_plan(size, out_size, kernel, stride, options.padding == schema.Padding.SAME)
            for size, out_size, kernel in ((height, out_height, kernel_height),
                                           (width, out_width, kernel_width))]
    if None in axes or axes[0].padding != axes[1].padding:
        return None
    growth = 4 * axes[0].kernel * axes[1].kernel / (kernel_height * kernel_width)
    if stride == 1 and growth > MAX_MAC_GROWTH or stride == 2 and growth > 4 * MAX_MAC_GROWTH:
        return None
    return _S2DPlan(stride, axes[0], axes[1])


def _axis_plan(size: int, out_size: int, kernel: int, stride: int, same: bool) -> "_Axis | None":
    """Taps of the half-resolution kernel along one axis (None: odd size or no TFLite padding fits).

    Output row y (phase a = y mod 2 when stride is 1) reads input rows y*stride - p + d for
    original taps d; input row r is half-resolution row r // 2, sub-row r % 2.
    """
    if size % 2:
        return None
    pad_before = max((out_size - 1) * stride + kernel - size, 0) // 2 if same else 0
    phases = (0, 1) if stride == 1 else (0,)
    if stride == 1 and out_size % 2:
        return None
    offsets = {}
    for phase in phases:
        for tap in range(kernel):
            row = phase - pad_before + tap if stride == 1 else tap - pad_before
            offsets[(phase, tap)] = (row // 2, row % 2)
    first = min(offset for offset, _ in offsets.values())
    new_kernel = max(offset for offset, _ in offsets.values()) - first + 1
    new_pad = -first
    half, new_out = size // 2, out_size // 2 if stride == 1 else out_size
    schema = flatbuffer_schema()
    if new_pad == (new_kernel - 1) // 2 and half == new_out:
        padding = schema.Padding.SAME
    elif new_pad == 0 and half - new_kernel + 1 == new_out:
        padding = schema.Padding.VALID
    else:
        return None
    taps = tuple(((offset + new_pad, sub_row, phase), tap)
                 for (phase, tap), (offset, sub_row) in offsets.items())
    return _Axis(new_kernel, new_pad, padding, taps)


def _apply_space_to_depth(model, op, plan: _S2DPlan, source: bytes) -> bool:
    """Rewrite the op in place; True when a following 2x2 max pool was folded in."""
    schema = flatbuffer_schema()
    subgraph = model.subgraphs[0]
    source, weights_tensor = (subgraph.tensors[index] for index in op.inputs[:2])
    output = subgraph.tensors[op.outputs[0]]
    weights = _constant(model, weights_tensor, source)
    out_channels, _, _, in_channels = weights.shape
    phases = 4 if plan.stride == 1 else 1
    new = np.zeros((phases * out_channels, plan.height.kernel, plan.width.kernel, 4 * in_channels),
                   np.int8)
    for (new_row, sub_row, phase_row), tap_row in plan.height.taps:
        for (new_col, sub_col, phase_col), tap_col in plan.width.taps:
            out_group = (phase_row * 2 + phase_col) if phases == 4 else 0
            in_group = sub_row * 2 + sub_col
            new[out_group * out_channels:(out_group + 1) * out_channels, new_row, new_col,
                in_group * in_channels:(in_group + 1) * in_channels] = weights[:, tap_row, tap_col, :]

    _, height, width, _ = source.shape
    folded = _add_tensor(model, source.name + b"/space_to_depth", [1, height // 2, width // 2,
                                                                    4 * in_channels], source)
    space_to_depth = _new_op(model, "SPACE_TO_DEPTH", 2, [op.inputs[0]], [folded],
                             schema.BuiltinOptions.SpaceToDepthOptions,
                             _options(schema.SpaceToDepthOptionsT, blockSize=2))
    op.inputs[0] = folded
    op.inputs[1] = _add_constant(model, weights_tensor.name + b"/space_to_depth", new,
                                 _tiled(weights_tensor.quantization, phases))
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        bias_tensor = subgraph.tensors[op.inputs[2]]
        bias = _constant(model, bias_tensor, source)
        op.inputs[2] = _add_constant(model, bias_tensor.name + b"/space_to_depth",
                                     np.tile(bias, phases), _tiled(bias_tensor.quantization, phases))
    options = op.builtinOptions
    options.strideH = options.strideW = 1
    options.padding = plan.height.padding
    position = subgraph.operators.index(op)
    subgraph.operators.insert(position, space_to_depth)
    if phases == 4:
        _, out_height, out_width, _ = output.shape
        phased = _add_tensor(model, output.name + b"/phases",
                             [1, out_height // 2, out_width // 2, 4 * out_channels], output)
        depth_to_space = _new_op(model, "DEPTH_TO_SPACE", _DEPTH_TO_SPACE_VERSION, [phased], [op.outputs[0]],
                                 schema.BuiltinOptions.DepthToSpaceOptions,
                                 _options(schema.DepthToSpaceOptionsT, blockSize=2))
        op.outputs[0] = phased
        subgraph.operators.insert(position + 2, depth_to_space)
        _release_unused(model, weights_tensor)
        return _fold_max_pool(model, depth_to_space)
    _release_unused(model, weights_tensor)
    return False


def _fold_max_pool(model, depth_to_space) -> bool:
    """DEPTH_TO_SPACE(2) then a 2x2/2 MAX_POOL_2D: the max over the four phase groups instead.

    Pool output (i, j) covers rows 2i, 2i+1 and columns 2j, 2j+1 of the shuffled tensor: the
    four phases of pixel (i, j) before the shuffle. So the phased tensor [1, H, W, 4*C] is read
    as [1, H*W, 4, C] and pooled 1x4 (a max: exact), then read back as [1, H, W, C].
    """
    schema = flatbuffer_schema()
    subgraph = model.subgraphs[0]
    (phased,), (shuffled,) = depth_to_space.inputs, depth_to_space.outputs
    readers = [op for op in subgraph.operators if shuffled in op.inputs]
    if len(readers) != 1 or shuffled in subgraph.outputs:
        return False
    (pool,) = readers
    options = pool.builtinOptions
    phased_tensor = subgraph.tensors[phased]
    _, height, width, channels = phased_tensor.shape
    out = subgraph.tensors[pool.outputs[0]]
    if (builtin_code(model, pool) != schema.BuiltinOperator.MAX_POOL_2D
            or (options.filterHeight, options.filterWidth, options.strideH, options.strideW)
            != (2, 2, 2, 2) or list(out.shape) != [1, height, width, channels // 4]
            or _quant(out) != _quant(phased_tensor)):
        return False
    grouped = _add_tensor(model, phased_tensor.name + b"/groups",
                          [1, height * width, 4, channels // 4], phased_tensor)
    pooled = _add_tensor(model, phased_tensor.name + b"/max", [1, height * width, 1, channels // 4],
                         phased_tensor)
    position = subgraph.operators.index(depth_to_space)
    subgraph.operators[position] = _reshape(model, phased, grouped)
    pool.inputs[0] = grouped
    pool.outputs[0], final = pooled, pool.outputs[0]
    options.filterHeight, options.filterWidth, options.strideH, options.strideW = 1, 4, 1, 4
    options.padding = schema.Padding.VALID
    subgraph.operators.insert(subgraph.operators.index(pool) + 1, _reshape(model, pooled, final))
    return True


def _reshape(model, source: int, target: int):
    schema = flatbuffer_schema()
    shape = [-1] + list(model.subgraphs[0].tensors[target].shape)[1:]  # any batch size
    shape_tensor = _add_constant(model, model.subgraphs[0].tensors[target].name + b"/shape",
                                 np.array(shape, np.int32), None)
    return _new_op(model, "RESHAPE", 1, [source, shape_tensor], [target],
                   schema.BuiltinOptions.ReshapeOptions,
                   _options(schema.ReshapeOptionsT, newShape=shape))


def _average_pools_to_depthwise(model) -> list[Rewrite]:
    schema = flatbuffer_schema()
    subgraph = model.subgraphs[0]
    rewrites = []
    for position, op in enumerate(subgraph.operators):
        if builtin_code(model, op) != schema.BuiltinOperator.AVERAGE_POOL_2D:
            continue
        source, output = subgraph.tensors[op.inputs[0]], subgraph.tensors[op.outputs[0]]
        options = op.builtinOptions
        if (source.type != schema.TensorType.INT8 or _quant(source) != _quant(output)
                or _quant(source) is None or not _pool_pads_nothing(source, output, options)):
            continue
        channels = source.shape[3]
        count = options.filterHeight * options.filterWidth
        scale, _ = _quant(source)
        # Weight 2 at scale 1/(2n): the accumulator is even, so TFLite's requantization (a
        # rounding doubling multiply, then a rounding shift) rounds once, like the pool.
        weight_scale = 1.0 / (2 * count)
        weights = np.full((1, options.filterHeight, options.filterWidth, channels), 2, np.int8)
        weight_q = _quantization([weight_scale] * channels, [0] * channels, 3)
        bias_q = _quantization([scale * weight_scale] * channels, [0] * channels, 0)
        inputs = [op.inputs[0],
                  _add_constant(model, output.name + b"/pool_weights", weights, weight_q),
                  _add_constant(model, output.name + b"/pool_bias", np.zeros(channels, np.int32),
                                bias_q)]
        depthwise = _new_op(model, "DEPTHWISE_CONV_2D", 3, inputs, list(op.outputs),
                            schema.BuiltinOptions.DepthwiseConv2DOptions,
                            _options(schema.DepthwiseConv2DOptionsT, padding=options.padding,
                                     strideW=options.strideW, strideH=options.strideH,
                                     depthMultiplier=1,
                                     fusedActivationFunction=options.fusedActivationFunction,
                                     dilationWFactor=1, dilationHFactor=1))
        subgraph.operators[position] = depthwise
        rewrites.append(Rewrite("AVERAGE_POOL_2D " + _tensor_name(subgraph, op.outputs[0]),
                                "DEPTHWISE_CONV_2D", exact=False))
    return rewrites


def _pool_pads_nothing(source, output, options) -> bool:
    """True when the pool's window never covers padding (SAME pools divide by the valid count)."""
    if source.shape is None or len(source.shape) != 4 or source.shape[0] != 1:
        return False
    for size, out_size, window, stride in ((source.shape[1], output.shape[1], options.filterHeight,
                                            options.strideH),
                                           (source.shape[2], output.shape[2], options.filterWidth,
                                            options.strideW)):
        if (out_size - 1) * stride + window > size:
            return False
    return True


def check_runs(tflite_bytes: bytes, sample: np.ndarray) -> None:
    """Prove a rewritten file loads and runs in LiteRT with its default (XNNPACK) kernels."""
    from edgeship.convert.tflite import describe_io, quantize_input

    interpreter_module = require("ai_edge_litert.interpreter")
    try:
        interpreter = interpreter_module.Interpreter(model_content=tflite_bytes, num_threads=1)
        interpreter.allocate_tensors()
        typed = quantize_input(sample[np.newaxis], describe_io(tflite_bytes)["input"])
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], typed)
        interpreter.invoke()
    except (ValueError, RuntimeError) as error:
        raise ToolFailureError(f"the XNNPACK rewrite of the int8 model does not run in LiteRT: "
                               f"{error} (convert with --xnnpack off)") from error


def report_lines(record: dict | None) -> list[str]:
    """The convert report's paragraph on model_int8_xnnpack.tflite."""
    if not record or record["mode"] == "off":
        return []
    if not record["file"]:
        return [(f"XNNPACK rewrites (`--xnnpack {record['mode']}`): none applies to this "
                 "model, so no model_int8_xnnpack.tflite; phones run `model_int8.tflite`."), ""]
    kind = ("identical int8 results on every runtime" if record["exact"] else
            "results may differ by one quantum where an average-pool window's mean is half-way")
    heading = (f"`{record['file']}` (`--xnnpack {record['mode']}`, for LiteRT's XNNPACK delegate "
               f"on phones; {kind}):")
    return [heading, ""] + [f"- {line}" for line in record["rewrites"]] + [""]


# --- flatbuffer editing helpers ---------------------------------------------------------------

def _tensor_name(subgraph, index: int) -> str:
    return (subgraph.tensors[index].name or b"").decode(errors="replace")


def _constant(model, tensor, source: bytes) -> "np.ndarray | None":
    """A constant tensor's values (None for an activation), read as tflite_graph reads them."""
    dtype = {flatbuffer_schema().TensorType.INT8: "int8", flatbuffer_schema().TensorType.INT32: "int32"}.get(tensor.type)
    return (buffer_data(model.buffers[tensor.buffer], source, dtype, list(tensor.shape))
            if dtype else None)


def _quant(tensor):
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0])


def _quantization(scale, zero_point, dimension: int):
    q = flatbuffer_schema().QuantizationParametersT()
    q.scale = [float(value) for value in scale]
    q.zeroPoint = [int(value) for value in zero_point]
    q.quantizedDimension = dimension
    return q


def _tiled(quantization, times: int):
    if quantization is None or quantization.scale is None or len(quantization.scale) <= 1:
        return copy.deepcopy(quantization)
    return _quantization(list(quantization.scale) * times, list(quantization.zeroPoint) * times,
                         quantization.quantizedDimension)


def _options(options_type, **fields):
    options = options_type()
    for name, value in fields.items():
        setattr(options, name, value)
    return options


def _add_buffer(model, data: "np.ndarray | None") -> int:
    buffer = flatbuffer_schema().BufferT()
    if data is not None:
        buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def _add_tensor(model, name: bytes, shape: list[int], like, tensor_type: int | None = None
                ) -> int:
    """A new activation tensor with the type and quantization of `like` (or a float type)."""
    tensor = flatbuffer_schema().TensorT()
    tensor.name = name
    tensor.shape = list(shape)
    tensor.type = like.type if tensor_type is None else tensor_type
    if like.shapeSignature is not None and len(like.shapeSignature) and like.shapeSignature[0] < 0:
        tensor.shapeSignature = [-1] + list(shape)[1:]  # batch resizable like its neighbour
    tensor.quantization = copy.deepcopy(like.quantization) if tensor_type is None else None
    tensor.buffer = _add_buffer(model, None)
    model.subgraphs[0].tensors.append(tensor)
    return len(model.subgraphs[0].tensors) - 1


def _add_constant(model, name: bytes, values: np.ndarray, quantization) -> int:
    schema = flatbuffer_schema()
    tensor = schema.TensorT()
    tensor.name = name
    tensor.shape = list(values.shape)
    tensor.type = schema.TensorType.INT8 if values.dtype == np.int8 else schema.TensorType.INT32
    tensor.quantization = quantization
    tensor.buffer = _add_buffer(model, values)
    model.subgraphs[0].tensors.append(tensor)
    return len(model.subgraphs[0].tensors) - 1


def _new_op(model, name: str, version: int, inputs, outputs, options_type: int, options):
    schema = flatbuffer_schema()
    builtin = getattr(schema.BuiltinOperator, name)
    index = next((position for position, code in enumerate(model.operatorCodes)
                  if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin), None)
    if index is None:
        code = schema.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.version = version
        model.operatorCodes.append(code)
        index = len(model.operatorCodes) - 1
    else:
        model.operatorCodes[index].version = max(model.operatorCodes[index].version, version)
    op = schema.OperatorT()
    op.opcodeIndex = index
    op.inputs = list(inputs)
    op.outputs = list(outputs)
    op.builtinOptionsType = options_type
    op.builtinOptions = options
    return op


def _release_unused(model, tensor) -> None:
    """Empty a constant's buffer once no op reads its tensor (the file keeps no dead weights)."""
    subgraph = model.subgraphs[0]
    index = subgraph.tensors.index(tensor)
    shared = any(other is not tensor and other.buffer == tensor.buffer for other in subgraph.tensors)
    if not shared and not any(index in op.inputs for op in subgraph.operators):
        model.buffers[tensor.buffer].data = None
