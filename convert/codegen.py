"""`edgeship codegen`: an int8 .tflite turned into dependency-free C99, bit-exact with TFLite.

The model is read with the flatbuffer schema bindings ai_edge_litert ships. Every shape,
padding, activation range and fixed-point multiplier is computed here, at generation time,
with TFLite's own formulas (QuantizeMultiplier, CalculateActivationRangeQuantized, the
padding rules), so the generated C only loops over integers: no interpreter, no malloc, no
float. Activations live in one static buffer planned here: each tensor gets an offset, and
tensors whose lifetimes do not overlap share bytes, so the buffer is the peak of live
tensors rather than their sum.

Output: NAME.h (run function, sizes, scales, zero points, labels) and NAME.c (weights as
const arrays, the kernels the model uses, one call per op), plus NAME_samples.h/.c with
`samples > 0`: test images already quantized and the int8 outputs TFLite Micro computes for
them, so a firmware can check itself ("10/10 match").
"""

import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from edgeship.artifacts import sha256_file, write_json_atomic, write_text_atomic
from edgeship.deps import require
from edgeship.errors import UserInputError

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D",
                 "AVERAGE_POOL_2D", "RESHAPE", "SOFTMAX", "ADD", "MEAN", "PAD", "QUANTIZE")
# Ops generated for one (input, output) type pair only.
_SUPPORTED_TYPES = {"QUANTIZE": ("int8", "int8")}
ARENA_ALIGNMENT = 4
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
                 6: "bool", 7: "int16", 9: "int8", 10: "float64"}
_SECTION = re.compile(r"^/\* @section (\w+)(?: needs ([\w ]+))? \*/$")


# --- reading the flatbuffer ------------------------------------------------------------------

@dataclass
class Tensor:
    """One tensor of the graph, with its constant data when it has any."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: np.ndarray
    zero_points: np.ndarray
    data: np.ndarray | None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def scale(self) -> float:
        """The per-tensor scale as the float32 TFLite stores (0.0 for a float tensor)."""
        return float(self.scales[0]) if self.scales.size else 0.0

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if self.zero_points.size else 0


@dataclass
class Operator:
    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: object


@dataclass
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]

    def op_names(self) -> list[str]:
        return [op.name for op in self.operators]


def read_graph(tflite_bytes: bytes) -> Graph:
    """Parse a .tflite flatbuffer's first subgraph with the generated schema bindings.

    The structure check runs first: codegen and embed (and TFLite Micro after them) are
    pointed at files edgeship did not make.
    """
    from edgeship.model_check import check_tflite_bytes

    check_tflite_bytes(tflite_bytes)
    schema = require("ai_edge_litert.schema_py_generated")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite_bytes, 0))
    except Exception as error:  # flatbuffers raises struct.error, IndexError, ...
        raise UserInputError(f"not a readable .tflite flatbuffer: {error}") from error
    if not model.subgraphs:
        raise UserInputError("the .tflite holds no subgraph")
    if len(model.subgraphs) > 1:
        raise UserInputError(f"the .tflite holds {len(model.subgraphs)} subgraphs; codegen "
                             "supports single-graph classifiers")
    op_names = {value: name for name, value in vars(schema.BuiltinOperator).items()
                if not name.startswith("_")}
    subgraph = model.subgraphs[0]
    tensors = []
    for index, tensor in enumerate(subgraph.tensors):
        quantization = tensor.quantization
        scales = np.asarray(quantization.scale if quantization is not None
                            and quantization.scale is not None else [], np.float32)
        zero_points = np.asarray(quantization.zeroPoint if quantization is not None
                                 and quantization.zeroPoint is not None else [], np.int64)
        dtype = _TENSOR_TYPES.get(tensor.type, f"type{tensor.type}")
        shape = tuple(int(side) for side in (tensor.shape if tensor.shape is not None else []))
        data = _buffer_data(model.buffers[tensor.buffer], tflite_bytes, dtype, shape)
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        tensors.append(Tensor(index, name, shape, dtype, scales, zero_points, data))
    operators = []
    for index, op in enumerate(subgraph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            name = f"CUSTOM({custom})"
        operators.append(Operator(index, name, [int(i) for i in op.inputs],
                                  [int(i) for i in op.outputs], op.builtinOptions))
    return Graph(tensors, operators, [int(i) for i in subgraph.inputs],
                 [int(i) for i in subgraph.outputs])


def _buffer_data(buffer, tflite_bytes: bytes, dtype: str, shape) -> np.ndarray | None:
    raw = None
    if buffer is not None and buffer.data is not None and len(buffer.data):
        raw = np.asarray(buffer.data, np.uint8).tobytes()
    elif buffer is not None and getattr(buffer, "offset", 0) > 1:
        raw = tflite_bytes[buffer.offset:buffer.offset + buffer.size]
    if raw is None or dtype not in ("int8", "int32", "int64", "uint8", "int16", "float32"):
        return None
    return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape if shape else ())


# --- TFLite's quantization arithmetic, done once here -----------------------------------------

def round_half_away(value: float) -> int:
    """TfLiteRound / std::round: halves go away from zero."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = multiplier * 2^(shift - 31), multiplier in Q0.31."""
    if real_multiplier == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real_multiplier)
    fixed = round_half_away(mantissa * (1 << 31))
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def activation_range(activation: int, output: Tensor, op_name: str) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 output (float32 divide, as TFLite)."""

    def quantize(value: float) -> int:
        ratio = float(np.float32(value) / np.float32(output.scale))
        return output.zero_point + round_half_away(ratio)

    if activation == 0:
        return -128, 127
    if activation == 1:
        return max(-128, quantize(0.0)), 127
    if activation == 2:
        return max(-128, quantize(-1.0)), min(127, quantize(1.0))
    if activation == 3:
        return max(-128, quantize(0.0)), min(127, quantize(6.0))
    names = {4: "TANH", 5: "SIGN_BIT"}
    raise UserInputError(f"{op_name} has fused activation {names.get(activation, activation)}, "
                         "which codegen does not support (ReLU, ReLU6 and ReLU-1..1 are)")


def padding_and_size(padding: int, in_size: int, filter_size: int, stride: int,
                     dilation: int) -> tuple[int, int]:
    """ComputeOutSize and ComputePaddingWithOffset: (padding before, output size)."""
    effective = (filter_size - 1) * dilation + 1
    out_size = ((in_size + stride - 1) // stride if padding == 0
                else (in_size + stride - effective) // stride)
    total = max(0, (out_size - 1) * stride + effective - in_size)
    return total // 2, out_size


def softmax_parameters(beta: float, input_scale: float) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling and CalculateInputRadius with 5 integer bits (Q5.26)."""
    integer_bits = 5
    real = min(beta * input_scale * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(1.0 * ((1 << integer_bits) - 1) * (1 << (31 - integer_bits))
                        / (1 << left_shift))
    return multiplier, left_shift, -radius


def mean_parameters(input_scale: float, output_scale: float, count: int) -> tuple[int, int]:
    """QuantizedMeanOrSum's multiplier with 1/count folded in (shift clamped as TFLite does)."""
    multiplier, shift = quantize_multiplier(input_scale / output_scale)
    count_shift = min(count.bit_length() - 1, 32, 31 + shift)
    multiplier = (multiplier << count_shift) // count
    return multiplier, shift - count_shift


# --- lowering the graph to kernel calls -------------------------------------------------------

@dataclass
class ConstantArray:
    ctype: str
    name: str
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.values.size * {"int8_t": 1, "int32_t": 4}[self.ctype])


@dataclass
class LoweredOp:
    """One op as C: the kernel section it needs, its constants and one call statement."""

    index: int
    name: str
    summary: str
    section: str | None
    call: str = ""
    constants: list[ConstantArray] = field(default_factory=list)
    alias: bool = False
    window: tuple[str, str] | None = None  # (variable, initializer) of an es_window
    params: tuple[str, str, str] | None = None  # (type, variable, initializer)
    overlap: dict[int, int] = field(default_factory=dict)  # input tensor -> max output shift


def _check_int8(tensor: Tensor, role: str, op: Operator) -> None:
    if tensor.dtype != "int8":
        raise UserInputError(f"op {op.index} ({op.name}) has a {tensor.dtype} {role} "
                             f"({tensor.name}); codegen generates full-int8 models only")


def _shape4(tensor: Tensor) -> tuple[int, int, int, int]:
    shape = tuple(tensor.shape)
    if len(shape) > 4:
        raise UserInputError(f"tensor {tensor.name} has rank {len(shape)}; codegen handles up to 4")
    return (1,) * (4 - len(shape)) + shape


def _weights_zero(weights: Tensor, op: Operator) -> None:
    if np.any(weights.zero_points != 0):
        raise UserInputError(f"op {op.index} ({op.name}) has asymmetric weights; the int8 "
                             "spec (and codegen) needs weight zero points of 0")


def _per_channel(input_tensor: Tensor, weights: Tensor, output: Tensor, channels: int):
    scales = weights.scales if weights.scales.size > 1 else np.repeat(weights.scales, channels)
    pairs = [quantize_multiplier(float(input_tensor.scale) * float(scale) / float(output.scale))
             for scale in scales]
    return (np.asarray([m for m, _ in pairs], np.int32), np.asarray([s for _, s in pairs], np.int8))


def _bias(graph: Graph, op: Operator, channels: int) -> np.ndarray | None:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return None
    bias = graph.tensors[op.inputs[2]]
    if bias.dtype != "int32" or bias.data is None:
        raise UserInputError(f"op {op.index} ({op.name}) has a {bias.dtype} bias; codegen "
                             "needs constant int32 biases")
    return np.asarray(bias.data, np.int64).reshape(channels)


def _window(op: Operator, input_tensor: Tensor, output: Tensor, k_h: int, k_w: int,
            options, dilation: tuple[int, int]) -> tuple[dict, str]:
    _, in_h, in_w, in_c = _shape4(input_tensor)
    batch, out_h, out_w, out_c = _shape4(output)
    if batch != 1 or _shape4(input_tensor)[0] != 1:
        raise UserInputError(f"op {op.index} ({op.name}) has batch {batch}; codegen models "
                             "run one image at a time (batch 1)")
    pad_h, size_h = padding_and_size(options.padding, in_h, k_h, options.strideH, dilation[0])
    pad_w, size_w = padding_and_size(options.padding, in_w, k_w, options.strideW, dilation[1])
    if (size_h, size_w) != (out_h, out_w):
        raise UserInputError(f"op {op.index} ({op.name}): output {out_h}x{out_w} does not match "
                             f"the padding rules ({size_h}x{size_w})")
    act_min, act_max = activation_range(options.fusedActivationFunction, output, op.name)
    values = {"in_h": in_h, "in_w": in_w, "in_c": in_c, "out_h": out_h, "out_w": out_w,
              "out_c": out_c, "k_h": k_h, "k_w": k_w, "stride_h": options.strideH,
              "stride_w": options.strideW, "pad_h": pad_h, "pad_w": pad_w,
              "dil_h": dilation[0], "dil_w": dilation[1],
              "input_offset": -input_tensor.zero_point, "output_offset": output.zero_point,
              "act_min": act_min, "act_max": act_max}
    padding = "same" if options.padding == 0 else "valid"
    summary = (f"{in_h}x{in_w}x{in_c} -> {out_h}x{out_w}x{out_c}, {k_h}x{k_w} "
               f"stride {options.strideH}x{options.strideW} {padding}")
    return values, summary


def _window_initializer(values: dict) -> str:
    order = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h",
             "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "input_offset", "output_offset",
             "act_min", "act_max")
    return "{" + ", ".join(str(int(values[key])) for key in order) + "}"


def lower_graph(graph: Graph) -> list[LoweredOp]:
    """Every op as a kernel call with its constants; raises on anything not supported."""
    unsupported = sorted({form for op in graph.operators
                          if (form := _unsupported_form(graph, op)) is not None})
    if unsupported:
        supported = ", ".join(f"{name} ({' -> '.join(_SUPPORTED_TYPES[name])})"
                              if name in _SUPPORTED_TYPES else name for name in SUPPORTED_OPS)
        raise UserInputError(
            f"codegen does not support op(s) {', '.join(unsupported)}; the model's ops are "
            f"{', '.join(graph.op_names())}; supported: {supported}")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UserInputError(f"the model has {len(graph.inputs)} input(s) and "
                             f"{len(graph.outputs)} output(s); codegen supports one of each")
    for role, index in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
        tensor = graph.tensors[index]
        if tensor.dtype != "int8":
            raise UserInputError(f"the model's {role} is {tensor.dtype}; codegen needs a "
                                 "full-int8 model with int8 input and output "
                                 "(edgeship convert writes model_int8.tflite)")
    return [_LOWERERS[op.name](graph, op) for op in graph.operators]


def _unsupported_form(graph: Graph, op: Operator) -> str | None:
    """None when codegen generates the op, else how to name it (with types if they decide)."""
    if op.name not in SUPPORTED_OPS:
        return op.name
    if op.name in _SUPPORTED_TYPES:
        types = (graph.tensors[op.inputs[0]].dtype, graph.tensors[op.outputs[0]].dtype)
        if types != _SUPPORTED_TYPES[op.name]:
            return f"{op.name} ({types[0]} -> {types[1]})"
    return None


def _lower_convolution(graph: Graph, op: Operator) -> LoweredOp:
    """CONV_2D (weights [out_c][k_h][k_w][in_c]) and DEPTHWISE_CONV_2D ([1][k_h][k_w][out_c])."""
    input_tensor, weights = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    for tensor, role in ((input_tensor, "input"), (weights, "weight"), (output, "output")):
        _check_int8(tensor, role, op)
    _weights_zero(weights, op)
    options = op.options
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    if depthwise:
        _, k_h, k_w, out_c = weights.shape
    else:
        out_c, k_h, k_w, weight_channels = weights.shape
    window, summary = _window(op, input_tensor, output, k_h, k_w, options,
                              (options.dilationHFactor, options.dilationWFactor))
    weight_values = np.asarray(weights.data, np.int8)
    prefix = f"op{op.index}"
    if depthwise:
        depth_multiplier = out_c // window["in_c"]
        if depth_multiplier * window["in_c"] != out_c:
            raise UserInputError(f"op {op.index} (DEPTHWISE_CONV_2D): {out_c} output channels "
                                 f"are not a multiple of {window['in_c']} input channels")
        sums = weight_values.reshape(-1, out_c).astype(np.int64).sum(axis=0)
        section = "depthwise_conv_2d"
        call = f"es_depthwise_conv_2d(&{prefix}_window, {depth_multiplier}, {{input}}, "
        overlap = _element_overlap(window, depth_multiplier)
    else:
        if weight_channels != window["in_c"]:
            raise UserInputError(f"op {op.index} (CONV_2D): grouped convolutions are not "
                                 "supported")
        sums = weight_values.reshape(out_c, -1).astype(np.int64).sum(axis=1)
        section = "conv_2d"
        call = f"es_conv_2d(&{prefix}_window, {{input}}, "
        overlap = _conv_overlap(window)
    multipliers, shifts = _per_channel(input_tensor, weights, output, out_c)
    bias = _bias(graph, op, out_c)
    folded = (bias if bias is not None else 0) + window["input_offset"] * sums
    constants = [ConstantArray("int8_t", f"{prefix}_weights", weight_values.reshape(-1)),
                 ConstantArray("int32_t", f"{prefix}_folded_bias", folded),
                 ConstantArray("int32_t", f"{prefix}_multiplier", multipliers),
                 ConstantArray("int8_t", f"{prefix}_shift", shifts)]
    bias_name = "0"
    if bias is not None:
        constants.insert(1, ConstantArray("int32_t", f"{prefix}_bias", bias))
        bias_name = f"{prefix}_bias"
    lowered = LoweredOp(op.index, op.name, summary, section, constants=constants)
    lowered.call = (call + f"{prefix}_weights, {bias_name}, {prefix}_folded_bias, "
                    f"{prefix}_multiplier, {prefix}_shift, {{output}});")
    lowered.window = (f"{prefix}_window", _window_initializer(window))
    lowered.overlap = {op.inputs[0]: overlap}
    return lowered


def _lower_fully_connected(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, weights = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    for tensor, role in ((input_tensor, "input"), (weights, "weight"), (output, "output")):
        _check_int8(tensor, role, op)
    _weights_zero(weights, op)
    if op.options is not None and getattr(op.options, "weightsFormat", 0) != 0:
        raise UserInputError(f"op {op.index} (FULLY_CONNECTED) uses shuffled weights; "
                             "codegen needs the default weight format")
    units, depth = weights.shape
    batches = input_tensor.size // depth
    if batches * depth != input_tensor.size:
        raise UserInputError(f"op {op.index} (FULLY_CONNECTED): input of {input_tensor.size} "
                             f"values is not a multiple of depth {depth}")
    per_channel = weights.scales.size > 1
    multipliers, shifts = _per_channel(input_tensor, weights, output,
                                       units if per_channel else 1)
    bias = _bias(graph, op, units)
    weight_values = np.asarray(weights.data, np.int8)
    sums = weight_values.astype(np.int64).sum(axis=1)
    folded = (bias if bias is not None else 0) - input_tensor.zero_point * sums
    activation = op.options.fusedActivationFunction if op.options is not None else 0
    act_min, act_max = activation_range(activation, output, op.name)
    prefix = f"op{op.index}"
    constants = [ConstantArray("int8_t", f"{prefix}_weights", weight_values.reshape(-1)),
                 ConstantArray("int32_t", f"{prefix}_folded_bias", folded),
                 ConstantArray("int32_t", f"{prefix}_multiplier", multipliers),
                 ConstantArray("int8_t", f"{prefix}_shift", shifts)]
    lowered = LoweredOp(op.index, op.name, f"{batches}x{depth} -> {batches}x{units}",
                        "fully_connected", constants=constants)
    lowered.call = (f"es_fully_connected({batches}, {depth}, {units}, {{input}}, "
                    f"{prefix}_weights, {prefix}_folded_bias, {prefix}_multiplier, "
                    f"{prefix}_shift, {int(per_channel)}, {output.zero_point}, {act_min}, "
                    f"{act_max}, {{output}});")
    return lowered


def _lower_pool(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _check_int8(input_tensor, "input", op)
    _check_int8(output, "output", op)
    if (input_tensor.scale, input_tensor.zero_point) != (output.scale, output.zero_point):
        raise UserInputError(f"op {op.index} ({op.name}) rescales its input; TFLite int8 "
                             "pooling keeps the input's scale and zero point")
    options = op.options
    window, summary = _window(op, input_tensor, output, options.filterHeight,
                              options.filterWidth, options, (1, 1))
    prefix = f"op{op.index}"
    lowered = LoweredOp(op.index, op.name, summary, "pool_2d")
    average = int(op.name == "AVERAGE_POOL_2D")
    lowered.call = f"es_pool_2d(&{prefix}_window, {average}, {{input}}, {{output}});"
    lowered.window = (f"{prefix}_window", _window_initializer(window))
    lowered.overlap = {op.inputs[0]: _element_overlap(window, 1)}
    return lowered


def _lower_reshape(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if input_tensor.size != output.size:
        raise UserInputError(f"op {op.index} (RESHAPE) changes the element count")
    return LoweredOp(op.index, op.name, f"{list(input_tensor.shape)} -> {list(output.shape)} "
                     "(same bytes, no code)", None, alias=True)


def _lower_softmax(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    _check_int8(input_tensor, "input", op)
    _check_int8(output, "output", op)
    if output.zero_point != -128 or not math.isclose(output.scale, 1 / 256, rel_tol=1e-6):
        raise UserInputError(f"op {op.index} (SOFTMAX): int8 output must have scale 1/256 and "
                             "zero point -128 (the TFLite spec)")
    multiplier, left_shift, diff_min = softmax_parameters(float(np.float32(op.options.beta)),
                                                          input_tensor.scale)
    depth = input_tensor.shape[-1]
    rows = input_tensor.size // depth
    lowered = LoweredOp(op.index, op.name, f"{rows}x{depth}", "softmax")
    lowered.call = (f"es_softmax({rows}, {depth}, {multiplier}, {left_shift}, {diff_min}, "
                    "{input}, {output});")
    lowered.overlap = {op.inputs[0]: 0}  # each value is read before it is overwritten
    return lowered


def _lower_add(graph: Graph, op: Operator) -> LoweredOp:
    first, second = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    for tensor, role in ((first, "input"), (second, "input"), (output, "output")):
        _check_int8(tensor, role, op)
    if first.shape != second.shape or first.data is not None or second.data is not None:
        raise UserInputError(f"op {op.index} (ADD) broadcasts {list(first.shape)} with "
                             f"{list(second.shape)} or adds a constant; codegen supports ADD "
                             "of two same-shape activations")
    left_shift = 20
    twice_max = 2 * max(first.scale, second.scale)
    first_multiplier, first_shift = quantize_multiplier(first.scale / twice_max)
    second_multiplier, second_shift = quantize_multiplier(second.scale / twice_max)
    output_multiplier, output_shift = quantize_multiplier(
        twice_max / ((1 << left_shift) * output.scale))
    act_min, act_max = activation_range(op.options.fusedActivationFunction, output, op.name)
    prefix = f"op{op.index}"
    values = (-first.zero_point, -second.zero_point, output.zero_point, left_shift,
              first_multiplier, second_multiplier, output_multiplier, first_shift,
              second_shift, output_shift, act_min, act_max)
    lowered = LoweredOp(op.index, op.name, f"{first.size} values", "add")
    lowered.params = ("es_add_params", f"{prefix}_params",
                      "{" + ", ".join(str(int(value)) for value in values) + "}")
    lowered.call = f"es_add(&{prefix}_params, {first.size}, {{input}}, {{input2}}, {{output}});"
    lowered.overlap = {op.inputs[0]: 0, op.inputs[1]: 0}  # element i read, then written
    return lowered


def _lower_quantize(graph: Graph, op: Operator) -> LoweredOp:
    """int8 -> int8 QUANTIZE (requantization): TFLite Micro's PrepareQuantizeReference takes
    QuantizeMultiplier of input_scale / output_scale in double; reference_ops::Requantize
    applies it to (x - input zero point) and adds the output zero point."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    for tensor, role in ((input_tensor, "input"), (output, "output")):
        if tensor.scales.size != 1 or tensor.zero_points.size != 1:
            raise UserInputError(f"op {op.index} (QUANTIZE) has a per-channel quantized {role} "
                                 f"({tensor.name}); codegen requantizes per-tensor int8 only")
    if input_tensor.size != output.size:
        raise UserInputError(f"op {op.index} (QUANTIZE) changes the element count")
    multiplier, shift = quantize_multiplier(input_tensor.scale / output.scale)
    lowered = LoweredOp(op.index, op.name, f"{input_tensor.size} values, scale "
                        f"{input_tensor.scale:.6g} zero point {input_tensor.zero_point} -> "
                        f"{output.scale:.6g} {output.zero_point}", "quantize")
    lowered.call = (f"es_quantize({input_tensor.size}, {{input}}, {-input_tensor.zero_point}, "
                    f"{multiplier}, {shift}, {output.zero_point}, {{output}});")
    lowered.overlap = {op.inputs[0]: 0}  # element i read, then written
    return lowered


def _data_and_constant(graph: Graph, op: Operator, what: str) -> tuple[Tensor, Tensor, Tensor]:
    """An int8 input, a constant second input (axes, paddings) and an int8 output."""
    input_tensor, constant = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    _check_int8(input_tensor, "input", op)
    _check_int8(output, "output", op)
    if constant.data is None:
        raise UserInputError(f"op {op.index} ({op.name}) has computed {what}; codegen needs "
                             "them constant")
    return input_tensor, constant, output


def _lower_mean(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, axis, output = _data_and_constant(graph, op, "axes")
    rank = len(input_tensor.shape)
    axes = sorted({int(a) % rank for a in np.asarray(axis.data).reshape(-1)})
    dims = _shape4(input_tensor)
    reduce = [0] * 4
    for a in axes:
        reduce[a + 4 - rank] = 1
    count = int(np.prod([input_tensor.shape[a] for a in axes]))
    multiplier, shift = mean_parameters(input_tensor.scale, output.scale, count)
    prefix = f"op{op.index}"
    lowered = LoweredOp(op.index, op.name, f"{list(input_tensor.shape)} over axes {axes}", "mean")
    lowered.constants = [ConstantArray("int32_t", f"{prefix}_dims", np.asarray(dims)),
                         ConstantArray("int8_t", f"{prefix}_reduce", np.asarray(reduce))]
    lowered.call = (f"es_mean({prefix}_dims, {prefix}_reduce, {{input}}, "
                    f"{input_tensor.zero_point * count}, {multiplier}, {shift}, "
                    f"{output.zero_point}, {{output}});")
    lowered.overlap = {op.inputs[0]: _mean_overlap(dims, reduce)}
    return lowered


def _lower_pad(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, paddings, output = _data_and_constant(graph, op, "paddings")
    pads = np.asarray(paddings.data, np.int64).reshape(-1, 2)
    pads = np.concatenate([np.zeros((4 - len(pads), 2), np.int64), pads])
    prefix = f"op{op.index}"
    lowered = LoweredOp(op.index, op.name,
                        f"{list(input_tensor.shape)} -> {list(output.shape)}", "pad")
    lowered.constants = [
        ConstantArray("int32_t", f"{prefix}_dims", np.asarray(_shape4(input_tensor))),
        ConstantArray("int32_t", f"{prefix}_before", pads[:, 0]),
        ConstantArray("int32_t", f"{prefix}_after", pads[:, 1])]
    lowered.call = (f"es_pad({prefix}_dims, {prefix}_before, {prefix}_after, "
                    f"{output.zero_point}, {{input}}, {{output}});")
    return lowered


# --- how far an op's output may overlap its input ---------------------------------------------
#
# A kernel may write its output over its input's bytes if every write lands below every input
# byte still to be read. With the output placed `shift` bytes after the input (negative:
# before), writing output element k is safe when shift + k < (lowest input index read after
# that write). Each function returns the largest safe shift for the kernel's loop order in
# kernels.c; a shift of 0 with an output no larger than the input means fully in place.

def _top_left_pixels(window: dict) -> np.ndarray:
    """Flat input pixel index of each output pixel's first tap inside the image."""
    rows = np.maximum(np.arange(window["out_h"]) * window["stride_h"] - window["pad_h"], 0)
    cols = np.maximum(np.arange(window["out_w"]) * window["stride_w"] - window["pad_w"], 0)
    return (rows[:, None] * window["in_w"] + cols[None, :]).reshape(-1).astype(np.int64)


def _shift_limit(lowest_read: np.ndarray) -> int:
    """Element order: element k's reads, then its write; later elements' reads follow."""
    if lowest_read.size < 2:
        return int(lowest_read.min(initial=0))
    later = np.minimum.accumulate(lowest_read[::-1])[::-1][1:]
    return int((later - np.arange(lowest_read.size - 1) - 1).min())


def _element_overlap(window: dict, depth_multiplier: int) -> int:
    """Pooling and depthwise: one output value per (pixel, channel), from its own channel."""
    channels = np.arange(window["out_c"]) // depth_multiplier
    lowest = _top_left_pixels(window)[:, None] * window["in_c"] + channels[None, :]
    return _shift_limit(lowest.reshape(-1))


def _conv_overlap(window: dict) -> int:
    """CONV_2D reads every input channel and writes two pixels' channels block by block, so
    after a write of pixel p the windows of pixels p - 1 onwards may still be read."""
    lowest = _top_left_pixels(window) * window["in_c"]
    later = np.minimum.accumulate(lowest[::-1])[::-1]
    pixels = np.arange(lowest.size)
    still_read = later[np.maximum(pixels - 1, 0)]
    return int((still_read - (pixels + 1) * window["out_c"]).min())


def _mean_overlap(dims, reduce) -> int:
    """MEAN walks the output in order; each output value reads from its first reduced element."""
    kept = [range(1) if reduce[axis] else range(dims[axis]) for axis in range(4)]
    strides = [int(np.prod(dims[axis + 1:])) for axis in range(4)]
    grid = np.meshgrid(*[np.asarray(k) for k in kept], indexing="ij")
    lowest = sum(grid[axis] * strides[axis] for axis in range(4)).reshape(-1)
    return _shift_limit(lowest.astype(np.int64))


_LOWERERS = {
    "CONV_2D": _lower_convolution, "DEPTHWISE_CONV_2D": _lower_convolution,
    "FULLY_CONNECTED": _lower_fully_connected, "MAX_POOL_2D": _lower_pool,
    "AVERAGE_POOL_2D": _lower_pool, "RESHAPE": _lower_reshape, "SOFTMAX": _lower_softmax,
    "ADD": _lower_add, "MEAN": _lower_mean, "PAD": _lower_pad, "QUANTIZE": _lower_quantize,
}


# --- static memory plan -----------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryPlan:
    """Where every activation lives: the caller's input/output buffers or an arena offset."""

    storage: dict[int, tuple[str, int]]  # tensor index -> ("input"|"output"|"arena", offset)
    arena_bytes: int
    final_copy: int | None  # tensor whose bytes are copied to the output buffer at the end
    sum_of_tensors: int


def plan_memory(graph: Graph, lowered: list[LoweredOp]) -> MemoryPlan:
    """Offsets for all activations: greedy by size, sharing bytes between disjoint lifetimes.

    A tensor is live from the op that writes it to the last op that reads it. Two tensors
    live at the same time get disjoint bytes, except an op's output and an input it reads
    for the last time: those may overlap as far as the kernel's loop order allows (see
    _shift_limit). RESHAPE outputs alias their input.
    """
    root = {}
    for op, low in zip(graph.operators, lowered):
        if low.alias:
            root[op.outputs[0]] = root.get(op.inputs[0], op.inputs[0])
    graph_input, graph_output = graph.inputs[0], graph.outputs[0]
    output_root = root.get(graph_output, graph_output)
    first, last = {}, {}
    for op, low in zip(graph.operators, lowered):
        for index in op.inputs:
            if index >= 0 and graph.tensors[index].data is None:
                base = root.get(index, index)
                last[base] = op.index
        if not low.alias:
            first[op.outputs[0]] = op.index
            last.setdefault(op.outputs[0], op.index)
    final_copy = None
    if output_root != graph_output or output_root == graph_input:
        final_copy = output_root
        last[output_root] = len(graph.operators)
    overlap: dict[tuple[int, int], int] = {}  # (output, input root) -> largest output shift
    for op, low in zip(graph.operators, lowered):
        for index, limit in low.overlap.items():
            base = root.get(index, index)
            if last.get(base) == op.index and base != graph_input:
                overlap[(op.outputs[0], base)] = min(limit, overlap.get((op.outputs[0], base),
                                                                         limit))
    storage = {graph_input: ("input", 0)}
    if final_copy is None:
        storage[graph_output] = ("output", 0)
    tensors = [tensor for tensor in first if tensor not in storage]
    sizes = {tensor: graph.tensors[tensor].size for tensor in tensors}
    # Greedy first fit is order-sensitive: try three orders, keep the smallest arena. Reverse
    # execution order suits chains whose outputs must start below their inputs.
    orders = (sorted(tensors, key=lambda tensor: (-sizes[tensor], first[tensor])),
              sorted(tensors, key=lambda tensor: (first[tensor], -sizes[tensor])),
              sorted(tensors, key=lambda tensor: (-first[tensor], -sizes[tensor])))
    placed = min((_place(order, sizes, first, last, overlap) for order in orders),
                 key=lambda offsets: max((offsets[t] + sizes[t] for t in offsets), default=0))
    for tensor in tensors:
        storage[tensor] = ("arena", placed[tensor])
    for tensor, base in root.items():
        storage[tensor] = storage[base]
    arena_bytes = max((offset + sizes[tensor] for tensor, offset in placed.items()), default=0)
    return MemoryPlan(storage, _align(arena_bytes), final_copy, sum(sizes.values()))


def _place(order: list[int], sizes: dict, first: dict, last: dict, overlap: dict) -> dict:
    """First-fit offsets for tensors in the given order."""
    placed: dict[int, int] = {}
    for tensor in order:
        neighbours = [other for other in placed
                      if first[other] <= last[tensor] and first[tensor] <= last[other]]
        candidates = {0}
        for other in neighbours:
            candidates.add(_align(placed[other] + sizes[other]))
            if (tensor, other) in overlap:
                candidates.add(_align_down(placed[other] + overlap[(tensor, other)]))
            if (other, tensor) in overlap:
                candidates.add(_align(placed[other] - overlap[(other, tensor)]))
        for offset in sorted(candidate for candidate in candidates if candidate >= 0):
            if all(_compatible(sizes, overlap, tensor, offset, other, placed[other])
                   for other in neighbours):
                placed[tensor] = offset
                break
    return placed


def _compatible(sizes: dict, overlap: dict, tensor: int, offset: int, other: int,
                other_offset: int) -> bool:
    """Disjoint bytes, or an output overlapping its dying input within the kernel's limit."""
    if offset + sizes[tensor] <= other_offset or other_offset + sizes[other] <= offset:
        return True
    if (tensor, other) in overlap:
        return offset - other_offset <= overlap[(tensor, other)]
    if (other, tensor) in overlap:
        return other_offset - offset <= overlap[(other, tensor)]
    return False


def _align_down(value: int) -> int:
    return value // ARENA_ALIGNMENT * ARENA_ALIGNMENT


def _align(value: int) -> int:
    return (value + ARENA_ALIGNMENT - 1) // ARENA_ALIGNMENT * ARENA_ALIGNMENT


# --- emitting C -------------------------------------------------------------------------------

def kernel_sections() -> dict[str, tuple[list[str], str]]:
    """The kernel library split into sections: name -> (sections it needs, C text)."""
    text = resources.files("edgeship.convert").joinpath("codegen_c/kernels.c").read_text()
    sections: dict[str, tuple[list[str], str]] = {}
    current, needs, lines = None, [], []
    for line in text.splitlines():
        match = _SECTION.match(line.strip())
        if match:
            if current:
                sections[current] = (needs, "\n".join(lines).strip() + "\n")
            current, needs, lines = match.group(1), (match.group(2) or "").split(), []
        elif current:
            lines.append(line)
    if current:
        sections[current] = (needs, "\n".join(lines).strip() + "\n")
    return sections


def _needed_kernels(lowered: list[LoweredOp]) -> str:
    sections = kernel_sections()
    wanted: list[str] = []

    def add(name: str) -> None:
        for dependency in sections[name][0]:
            add(dependency)
        if name not in wanted:
            wanted.append(name)

    add("common")  # <stdint.h>/<string.h>: the output copy needs memcpy even with no kernel
    for low in lowered:
        if low.section:
            add(low.section)
    order = list(sections)
    return "\n".join(sections[name][1] for name in sorted(wanted, key=order.index))


def c_array_literal(values: np.ndarray, per_line: int = 24, indent: str = "    ") -> str:
    """Integers as a C initializer body, per_line values a line."""
    flat = [str(int(value)) for value in np.asarray(values).reshape(-1)]
    lines = [indent + ", ".join(flat[start:start + per_line])
             for start in range(0, len(flat), per_line)]
    return ",\n".join(lines)


def c_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + "".join(char if 32 <= ord(char) < 127 else f"\\x{ord(char):02x}\"\""
                         for char in escaped) + '"'


def check_c_name(name: str) -> str:
    if not _IDENTIFIER.match(name or ""):
        raise UserInputError(f"--name must be a C identifier (letters, digits, _), got {name!r}")
    return name


@dataclass(frozen=True)
class QuantizedIO:
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def _pointer(plan: MemoryPlan, tensor: int) -> str:
    kind, offset = plan.storage[tensor]
    if kind == "arena":
        return f"arena + {offset}" if offset else "arena"
    return kind


def render_source(name: str, graph: Graph, lowered: list[LoweredOp], plan: MemoryPlan,
                  labels: list[str], source_note: str) -> str:
    """NAME.c: kernels, constants, the activation buffer and NAME_run."""
    parts = [f"/* {name}.c: generated by edgeship codegen from {source_note}.",
             " * Plain C99, no dynamic memory, no floating point: TFLite's int8 reference",
             " * arithmetic, bit-exact with TFLite and TFLite Micro. Do not edit; regenerate. */",
             f'#include "{name}.h"', "", _needed_kernels(lowered)]
    for low in lowered:
        if low.constants or low.window or low.params:
            parts.append(f"/* op {low.index}: {low.name} {low.summary} */")
        if low.window:
            variable, initializer = low.window
            parts.append(f"static const es_window {variable} = {initializer};")
        if low.params:
            ctype, variable, initializer = low.params
            parts.append(f"static const {ctype} {variable} = {initializer};")
        for constant in low.constants:
            parts.append(f"static const {constant.ctype} {constant.name}[{constant.values.size}] "
                         f"= {{\n{c_array_literal(constant.values)}\n}};")
    words = max(1, plan.arena_bytes // 4)
    parts.append("")
    parts.append(f"/* Activations: {plan.arena_bytes} bytes, planned at generation time "
                 f"(the tensors alone would take {plan.sum_of_tensors}). */")
    parts.append(f"static int32_t activation_words[{words}];")
    parts.append("")
    parts.append(f"const char *const {name}_labels[{name.upper()}_NUM_CLASSES] = {{")
    parts.append("    " + ", ".join(c_string(label) for label in labels))
    parts.append("};")
    parts.append("")
    parts.append(f"int {name}_run(const int8_t *input, int8_t *output) {{")
    uses_arena = any(kind == "arena" for kind, _ in plan.storage.values())
    if uses_arena:
        parts.append("  int8_t *arena = (int8_t *)activation_words;")
    else:
        parts.append("  (void)activation_words;")
    for op, low in zip(graph.operators, lowered):
        if low.alias:
            parts.append(f"  /* op {low.index}: {low.name} {low.summary} */")
            continue
        pointers = {"input": _pointer(plan, op.inputs[0]),
                    "output": _pointer(plan, op.outputs[0])}
        if op.name == "ADD":
            pointers["input2"] = _pointer(plan, op.inputs[1])
        parts.append(f"  /* op {low.index}: {low.name} {low.summary} */")
        parts.append("  " + low.call.format(**pointers))
    if plan.final_copy is not None:
        size = graph.tensors[graph.outputs[0]].size
        parts.append(f"  memcpy(output, {_pointer(plan, plan.final_copy)}, {size});")
    parts.append("  return 0;")
    parts.append("}")
    return "\n".join(parts) + "\n"


def _float_literal(value: float) -> str:
    return f"{float(np.float32(value)):.9g}f"


def render_header(name: str, input_io: QuantizedIO, output_io: QuantizedIO,
                  arena_bytes: int, labels: list[str], ops: list[str]) -> str:
    """NAME.h: the run function and everything a firmware needs to feed it."""
    upper = name.upper()
    lines = [f"/* {name}.h: generated by edgeship codegen. Do not edit; regenerate. */",
             f"#ifndef {upper}_H_", f"#define {upper}_H_", "", "#include <stdint.h>", "",
             "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
             f"/* Ops: {', '.join(ops)} */",
             f"#define {upper}_INPUT_SIZE {input_io.size}"]
    if len(input_io.shape) == 4:
        lines += [f"#define {upper}_INPUT_HEIGHT {input_io.shape[1]}",
                  f"#define {upper}_INPUT_WIDTH {input_io.shape[2]}",
                  f"#define {upper}_INPUT_CHANNELS {input_io.shape[3]}"]
    lines += [
        f"/* int8 input = round(x / {upper}_INPUT_SCALE) + {upper}_INPUT_ZERO_POINT, clamped */",
        f"#define {upper}_INPUT_SCALE {_float_literal(input_io.scale)}",
        f"#define {upper}_INPUT_ZERO_POINT ({input_io.zero_point})",
        f"#define {upper}_OUTPUT_SIZE {output_io.size}",
        f"/* value = ({upper}_OUTPUT_SCALE) * (int8 output - {upper}_OUTPUT_ZERO_POINT) */",
        f"#define {upper}_OUTPUT_SCALE {_float_literal(output_io.scale)}",
        f"#define {upper}_OUTPUT_ZERO_POINT ({output_io.zero_point})",
        f"/* Bytes of the static activation buffer inside {name}.c (.bss). */",
        f"#define {upper}_ARENA_BYTES {arena_bytes}",
        f"#define {upper}_NUM_CLASSES {len(labels)}", "",
        f"extern const char *const {name}_labels[{upper}_NUM_CLASSES];", "",
        f"/* Runs the model on one int8 input of {upper}_INPUT_SIZE values and writes",
        f" * {upper}_OUTPUT_SIZE int8 outputs; returns 0. Uses a static activation buffer,",
        " * so calls must not overlap (one model, one thread). */",
        f"int {name}_run(const int8_t *input, int8_t *output);", "",
        "#ifdef __cplusplus", "}", "#endif", "", f"#endif  /* {upper}_H_ */"]
    return "\n".join(lines) + "\n"


# --- samples shared by codegen and embed ------------------------------------------------------

@dataclass(frozen=True)
class Samples:
    """Quantized test images, their dataset labels (-1 unknown) and TFLM's int8 outputs."""

    inputs: np.ndarray
    labels: np.ndarray
    expected: np.ndarray
    source: str


def model_io(graph: Graph) -> tuple[QuantizedIO, QuantizedIO]:
    tensors = graph.tensors
    first, last = tensors[graph.inputs[0]], tensors[graph.outputs[0]]
    return (QuantizedIO(first.shape, first.scale, first.zero_point),
            QuantizedIO(last.shape, last.scale, last.zero_point))


def run_directory_dataset(model_path: Path) -> dict | None:
    """The training section of the manifest beside a .tflite, if it sits in a run directory."""
    import json

    manifest_path = Path(model_path).parent / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    dataset = manifest.get("train", {}).get("dataset") if isinstance(manifest, dict) else None
    return dataset if isinstance(dataset, dict) and "spec" in dataset else None


def model_labels(model_path: Path | None, output_size: int) -> list[str]:
    """Class names from the run's manifest when they fit the output, else "0".."N-1"."""
    dataset = run_directory_dataset(model_path) if model_path is not None else None
    names = list(dataset.get("class_names", [])) if dataset else []
    if len(names) == output_size:
        return [str(label) for label in names]
    return [str(index) for index in range(output_size)]


def collect_samples(model_path: Path, count: int, images: np.ndarray | None = None,
                    labels: np.ndarray | None = None, seed: int = 0) -> Samples:
    """count test images quantized for the model, with TFLite Micro's int8 outputs.

    Images come from the caller, else from the test split of the dataset recorded in the
    run directory's manifest (class-balanced, seeded); a model outside a run directory gets
    seeded random int8 inputs, labelled -1.
    """
    from edgeship.runtime.backends import open_backend

    with open_backend("tflm", model_path) as backend:
        info = backend.inputs()[0]
        if images is not None:
            source = "caller-provided images"
            images = np.asarray(images)[:count]
            labels = (np.asarray(labels)[:count] if labels is not None
                      else np.full(len(images), -1))
        else:
            dataset_entry = run_directory_dataset(model_path)
            if dataset_entry is not None:
                from edgeship.train.datasets import (
                    DatasetSpec,
                    class_balanced_indices,
                    load_dataset,
                )

                dataset = load_dataset(DatasetSpec.from_dict(dataset_entry["spec"]))
                chosen = class_balanced_indices(dataset.y_test, min(count, len(dataset.y_test)),
                                                seed)
                images, labels = dataset.x_test[chosen], dataset.y_test[chosen]
                source = f"test split of {dataset.spec.name}"
            else:
                rng = np.random.default_rng(seed)
                images = None
                labels = np.full(count, -1)
                source = "random int8 inputs (the model is not in a run directory)"
        if images is None:
            raw = rng.integers(-128, 128, size=(count,) + tuple(info.shape[1:])).astype(np.int8)
        elif np.asarray(images).dtype == np.int8:
            raw = np.asarray(images, np.int8)
        else:
            shape = tuple(info.shape[1:])
            raw = info.quantize(np.asarray(images, np.float32).reshape((len(images),) + shape))
        expected = backend.infer_raw(raw)
    return Samples(inputs=raw, labels=np.asarray(labels, np.int64).reshape(-1),
                   expected=np.asarray(expected, np.int8).reshape(len(raw), -1), source=source)


def render_samples(name: str, samples: Samples, tool: str) -> tuple[str, str]:
    """NAME_samples.h and NAME_samples.c: plain C, usable from C and C++ firmware alike."""
    upper = name.upper()
    count = len(samples.inputs)
    input_size = int(np.prod(samples.inputs.shape[1:]))
    output_size = samples.expected.shape[1]
    header = "\n".join([
        f"/* {name}_samples.h: generated by edgeship {tool}. Do not edit; regenerate. */",
        f"#ifndef {upper}_SAMPLES_H_", f"#define {upper}_SAMPLES_H_", "",
        "#include <stdint.h>", "", "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
        f"/* {count} samples from the {samples.source}, already quantized to int8. */",
        f"#define {upper}_SAMPLE_COUNT {count}",
        f"#define {upper}_SAMPLE_INPUT_SIZE {input_size}",
        f"#define {upper}_SAMPLE_OUTPUT_SIZE {output_size}", "",
        f"extern const int8_t {name}_sample_inputs[{upper}_SAMPLE_COUNT][{upper}_SAMPLE_INPUT_SIZE];",
        "/* The int8 outputs TFLite Micro's reference kernels compute for each sample. */",
        f"extern const int8_t {name}_sample_outputs[{upper}_SAMPLE_COUNT][{upper}_SAMPLE_OUTPUT_SIZE];",
        "/* The dataset's label of each sample (-1: unknown). */",
        f"extern const int {name}_sample_labels[{upper}_SAMPLE_COUNT];", "",
        "#ifdef __cplusplus", "}", "#endif", "", f"#endif  /* {upper}_SAMPLES_H_ */", ""])
    rows_in = ",\n".join("  {\n" + c_array_literal(row) + "\n  }"
                         for row in samples.inputs.reshape(count, -1))
    rows_out = ",\n".join("  {" + c_array_literal(row, indent="") + "}"
                          for row in samples.expected)
    source = "\n".join([
        f"/* {name}_samples.c: generated by edgeship {tool}. Do not edit; regenerate. */",
        f'#include "{name}_samples.h"', "",
        f"const int8_t {name}_sample_inputs[{upper}_SAMPLE_COUNT][{upper}_SAMPLE_INPUT_SIZE] = {{",
        rows_in, "};", "",
        f"const int8_t {name}_sample_outputs[{upper}_SAMPLE_COUNT][{upper}_SAMPLE_OUTPUT_SIZE] = {{",
        rows_out, "};", "",
        f"const int {name}_sample_labels[{upper}_SAMPLE_COUNT] = {{",
        c_array_literal(samples.labels), "};", ""])
    return header, source


# --- the library call -------------------------------------------------------------------------

@dataclass(frozen=True)
class FirmwareSourceConfig:
    """A model turned into firmware sources (`edgeship codegen` and `edgeship embed`).

    Attributes:
        model: path of the .tflite (full int8 for codegen).
        out: folder to write the sources into.
        name: prefix of every file and public C symbol.
        samples: number of test images (with TFLite Micro's outputs) to embed; 0 for none.
        seed: seed of the sample choice (and of random inputs outside a run directory).
    """

    model: str
    out: str
    name: str = "model"
    samples: int = 0
    seed: int = 0

    def __post_init__(self):
        check_c_name(self.name)
        if self.samples < 0:
            raise ValueError(f"samples must be >= 0, got {self.samples}")


@dataclass(frozen=True)
class CodegenConfig(FirmwareSourceConfig):
    """What `edgeship codegen` generates: NAME.h, NAME.c (and NAME_samples.h/.c)."""


@dataclass(frozen=True)
class CodegenResult:
    out_dir: Path
    files: tuple[Path, ...]
    ops: tuple[str, ...]
    arena_bytes: int
    weight_bytes: int
    sum_of_tensors: int
    input: QuantizedIO
    output: QuantizedIO
    samples: int

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "files": [path.name for path in self.files],
                "ops": list(self.ops), "arena_bytes": self.arena_bytes,
                "weight_bytes": self.weight_bytes, "sum_of_tensors": self.sum_of_tensors,
                "input": {"shape": list(self.input.shape), "scale": self.input.scale,
                          "zero_point": self.input.zero_point},
                "output": {"shape": list(self.output.shape), "scale": self.output.scale,
                           "zero_point": self.output.zero_point},
                "samples": self.samples}


def generate_c(config: CodegenConfig, sample_images: np.ndarray | None = None,
               sample_labels: np.ndarray | None = None) -> CodegenResult:
    """Write standalone C for an int8 .tflite (see the module docstring).

    Args:
        config: the model, output folder, symbol prefix and sample count.
        sample_images: images to embed instead of the run directory's test split (float
            images are quantized with the model's input scale; int8 ones are used as they are).
        sample_labels: their labels, if known.

    Returns:
        The files written and the footprint of the generated code.

    Raises:
        UserInputError: unreadable model, unsupported op (named, with the model's op list),
            non-int8 tensors, a bad name.
    """
    model_path = Path(config.model)
    if not model_path.is_file():
        raise UserInputError(f"model {model_path} does not exist")
    graph = read_graph(model_path.read_bytes())
    lowered = lower_graph(graph)
    plan = plan_memory(graph, lowered)
    input_io, output_io = model_io(graph)
    labels = model_labels(model_path, output_io.size)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} exists and is not a directory")
    note = f"{model_path.name} (sha256 {sha256_file(model_path)[:16]})"
    source = render_source(config.name, graph, lowered, plan, labels, note)
    header = render_header(config.name, input_io, output_io, plan.arena_bytes, labels,
                           graph.op_names())
    files = [write_text_atomic(out / f"{config.name}.h", header),
             write_text_atomic(out / f"{config.name}.c", source)]
    count = 0
    if config.samples:
        samples = collect_samples(model_path, config.samples, sample_images, sample_labels,
                                  config.seed)
        samples_header, samples_source = render_samples(config.name, samples, "codegen")
        files += [write_text_atomic(out / f"{config.name}_samples.h", samples_header),
                  write_text_atomic(out / f"{config.name}_samples.c", samples_source)]
        count = len(samples.inputs)
    weight_bytes = sum(constant.nbytes for low in lowered for constant in low.constants)
    report_path = out / f"{config.name}_codegen.json"
    result = CodegenResult(out_dir=out, files=tuple(files) + (report_path,),
                           ops=tuple(graph.op_names()), arena_bytes=plan.arena_bytes,
                           weight_bytes=weight_bytes, sum_of_tensors=plan.sum_of_tensors,
                           input=input_io, output=output_io, samples=count)
    write_json_atomic(report_path, {"schema_version": 1, "model": str(model_path),
                                    "model_sha256": sha256_file(model_path), **result.to_dict()})
    return result
