"""What a lowering produces (LoweredOp and its parts), the @lowers registry, and the checks
every op family shares."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeship.convert.codegen.quant import activation_range, padding_and_size
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator, Tensor

_CTYPE_BYTES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4,
                "int64_t": 8}
# Bytes per value of every dtype a generated tensor may have: int8/int16 activations
# (c_source.ACTIVATION_CTYPES), uint8/float32 model I/O and int32 (ARG_MAX's indices).
ACTIVATION_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "float32": 4}


@dataclass(frozen=True)
class ConstantArray:
    """A const C array the op's kernel reads (weights, biases, multipliers...)."""

    ctype: str
    name: str
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.values.size * _CTYPE_BYTES[self.ctype])


@dataclass(frozen=True)
class ConstantStruct:
    """A const C struct (es_window, es_add_params) initialized from integers in field order."""

    ctype: str
    name: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class StateArray:
    """Mutable static storage that persists across invokes: a recurrent op's state (TFLite's
    variable tensors). Starts at `fill` (every element), and NAME_reset() sets it back."""

    ctype: str
    name: str
    size: int
    fill: int = 0

    @property
    def nbytes(self) -> int:
        return self.size * {"int8_t": 1, "int16_t": 2, "int32_t": 4}[self.ctype]


@dataclass(frozen=True)
class TensorArg:
    """A kernel argument that is an activation buffer: emission turns it into a pointer."""

    tensor: int


@dataclass(frozen=True)
class SymbolArg:
    """A kernel argument naming a constant: an array, or `&name` for a struct."""

    name: str
    address: bool = False


@dataclass(frozen=True)
class ScratchArg:
    """A kernel argument that is the op's scratch buffer (LoweredOp.scratch_bytes bytes).

    The memory plan places it like a tensor live during that op only, so it shares the
    activation buffer's bytes with tensors that are dead at that point.
    """

    op: int


# A kernel argument: an integer literal, a tensor's buffer, a constant's name, or scratch.
Argument = int | TensorArg | SymbolArg | ScratchArg


@dataclass(frozen=True, eq=False)
class LinearParams:
    """The arithmetic of a conv, depthwise or fully connected op, for variants that re-lay it out.

    Every such op is `out = clamp(requantize(folded_bias + sum(x * w)) + output_offset)`
    over an int8 window x (padding counted as the input zero point, so that the folded
    input offset is exact everywhere). A kernel variant's `specialize` reads this to store
    the weights in its own order (or compactly, see lowering.sparse) and to pick its kernel.

    Attributes:
        weights: int8 [rows][taps] (conv: [out_c][k_h*k_w*in_c]; depthwise: [k_h*k_w][out_c]
            as TFLite stores it; fully connected: [units][depth]).
        bias: the int32 bias, or None.
        folded_bias: bias + input_offset * sum(weights of the channel), int64.
        multipliers, shifts: per-channel (or one) requantization constants.
        window: the es_window fields (conv, depthwise), or None (fully connected).
        depth_multiplier: depthwise only (1 otherwise).
        batches: fully connected rows (1 otherwise).
        per_channel: False when one multiplier serves every channel (fully connected).
        output_offset, act_min, act_max: the output's zero point and activation range.
    """

    weights: np.ndarray
    bias: np.ndarray | None
    folded_bias: np.ndarray
    multipliers: np.ndarray
    shifts: np.ndarray
    window: dict | None
    output_offset: int
    act_min: int
    act_max: int
    depth_multiplier: int = 1
    batches: int = 1
    per_channel: bool = True


@dataclass(frozen=True)
class LoweredOp:
    """One op of the graph, lowered: which kernel computes it and with which numbers.

    Immutable and complete: everything emission and memory planning need is here, so the
    kernel variant chosen at emission (see codegen.kernels) renders the call from `kernel`
    and `arguments` alone.

    Attributes:
        index: the op's position in execution order.
        name: the TFLite builtin op ("CONV_2D").
        kernel: the kernel family computing it ("conv_2d"); None for an op that is no code
            (RESHAPE: its output aliases its input's bytes).
        arguments: the kernel's arguments in order.
        inputs: activation tensors it reads (constants left out).
        outputs: tensors it writes.
        summary: one line for the C comment ("28x28x1 -> 26x26x8, 3x3 ...").
        constants: arrays the call names.
        structs: structs the call names.
        overlap: (input tensor, largest safe output shift) pairs: how far the output may
            start after (or, negative, before) that input's bytes and still be computed
            correctly by the kernel's loop order (see lowering.overlap).
        macs: multiply-accumulates per inference (0 for ops without them).
        scratch_bytes: bytes of the ScratchArg buffer the kernel needs (0: none).
        linear: the op's arithmetic for conv, depthwise and fully connected ops (None for
            the others), read by kernel variants that re-lay out weights.
        states: static arrays the op keeps from one invoke to the next (an LSTM's hidden
            and cell state), outside the activation buffer.
    """

    index: int
    name: str
    kernel: str | None
    arguments: tuple[Argument, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    summary: str
    constants: tuple[ConstantArray, ...] = ()
    structs: tuple[ConstantStruct, ...] = ()
    overlap: tuple[tuple[int, int], ...] = ()
    macs: int = 0
    scratch_bytes: int = 0
    linear: LinearParams | None = None
    states: tuple[StateArray, ...] = ()

    @property
    def alias(self) -> bool:
        return self.kernel is None

    @property
    def weight_bytes(self) -> int:
        return sum(constant.nbytes for constant in self.constants)


Lowering = Callable[[Graph, Operator], LoweredOp]
LOWERINGS: dict[str, Lowering] = {}
# The (input dtype, output dtype) pairs each op is generated for; int8 -> int8 unless declared.
INT8_ONLY = (("int8", "int8"),)
TYPE_CONSTRAINTS: dict[str, tuple[tuple[str, str], ...]] = {}


def lowers(*ops: str, types: tuple[tuple[str, str], ...] = INT8_ONLY
           ) -> Callable[[Lowering], Lowering]:
    """Register a function as the lowering of the given builtin ops.

    Args:
        *ops: TFLite builtin op names ("CONV_2D", "DEPTHWISE_CONV_2D").
        types: the (first input dtype, output dtype) pairs it generates; any other pair is
            refused by name before lowering (see lowering.lower_graph).
    """

    def register(function: Lowering) -> Lowering:
        for op in ops:
            if op in LOWERINGS:
                raise ValueError(f"{op} is lowered twice ({LOWERINGS[op].__name__}, "
                                 f"{function.__name__})")
            LOWERINGS[op] = function
            TYPE_CONSTRAINTS[op] = tuple(types)
        return function

    return register


# --- checks and shapes every family uses ------------------------------------------------------

def check_int8(tensor: Tensor, role: str, op: Operator) -> None:
    check_dtype(tensor, role, op, ("int8",))


def check_dtype(tensor: Tensor, role: str, op: Operator, allowed: tuple[str, ...]) -> None:
    """One clear error when a tensor's dtype is not one the op's kernel computes."""
    if tensor.dtype not in allowed:
        raise UserInputError(f"op {op.index} ({op.name}) has a {tensor.dtype} {role} "
                             f"({tensor.name}); codegen generates it for "
                             f"{' or '.join(allowed)} only")


def io_tensors(graph: Graph, op: Operator) -> tuple[Tensor, Tensor]:
    """The op's first input and first output, both checked int8."""
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    check_int8(input_tensor, "input", op)
    check_int8(output, "output", op)
    return input_tensor, output


def shape4(tensor: Tensor) -> tuple[int, int, int, int]:
    shape = tuple(tensor.shape)
    if len(shape) > 4:
        raise UserInputError(f"tensor {tensor.name} has rank {len(shape)}; codegen handles up to 4")
    return (1,) * (4 - len(shape)) + shape


def check_symmetric_weights(weights: Tensor, op: Operator) -> None:
    if np.any(weights.zero_points != 0):
        raise UserInputError(f"op {op.index} ({op.name}) has asymmetric weights; the int8 "
                             "spec (and codegen) needs weight zero points of 0")


def bias_values(graph: Graph, op: Operator, channels: int) -> np.ndarray | None:
    """The op's constant int32 bias (input 2), or None without one."""
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return None
    bias = graph.tensors[op.inputs[2]]
    if bias.dtype != "int32" or bias.data is None:
        raise UserInputError(f"op {op.index} ({op.name}) has a {bias.dtype} bias; codegen "
                             "needs constant int32 biases")
    return np.asarray(bias.data, np.int64).reshape(channels)


def fully_connected_dims(op: Operator, input_tensor: Tensor, weights: Tensor
                         ) -> tuple[int, int, int]:
    """(batches, depth, units) of a FULLY_CONNECTED with default-format [units][depth] weights."""
    if op.options is not None and getattr(op.options, "weightsFormat", 0) != 0:
        raise UserInputError(f"op {op.index} (FULLY_CONNECTED) uses shuffled weights; "
                             "codegen needs the default weight format")
    units, depth = weights.shape
    batches = input_tensor.size // depth
    if batches * depth != input_tensor.size:
        raise UserInputError(f"op {op.index} (FULLY_CONNECTED): input of {input_tensor.size} "
                             f"values is not a multiple of depth {depth}")
    return batches, depth, units


WINDOW_FIELDS = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h",
                 "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "input_offset",
                 "output_offset", "act_min", "act_max")


def window(op: Operator, input_tensor: Tensor, output: Tensor, k_h: int, k_w: int,
           options, dilation: tuple[int, int]) -> tuple[dict, str]:
    """The es_window of a sliding-window op (conv, depthwise, pool) and its summary line."""
    batch_in, in_h, in_w, in_c = shape4(input_tensor)
    batch, out_h, out_w, out_c = shape4(output)
    if batch != 1 or batch_in != 1:
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


def window_struct(op: Operator, values: dict) -> ConstantStruct:
    return ConstantStruct("es_window", f"op{op.index}_window",
                          tuple(int(values[key]) for key in WINDOW_FIELDS))


def convolution_window(op: Operator, input_tensor: Tensor, weights: Tensor, output: Tensor
                       ) -> tuple[dict, str, int]:
    """(es_window values, summary, depth multiplier: 0 for CONV_2D) of a CONV_2D (weights
    [out_c][k_h][k_w][in_c]) or DEPTHWISE_CONV_2D ([1][k_h][k_w][out_c]), checked."""
    options = op.options
    if op.name == "DEPTHWISE_CONV_2D":
        _, k_h, k_w, out_c = weights.shape
    else:
        out_c, k_h, k_w, weight_channels = weights.shape
    values, summary = window(op, input_tensor, output, k_h, k_w, options,
                             (options.dilationHFactor, options.dilationWFactor))
    if op.name != "DEPTHWISE_CONV_2D":
        if weight_channels != values["in_c"]:
            raise UserInputError(f"op {op.index} (CONV_2D): grouped convolutions are not "
                                 "supported")
        return values, summary, 0
    depth_multiplier = out_c // values["in_c"]
    if depth_multiplier * values["in_c"] != out_c:
        raise UserInputError(f"op {op.index} (DEPTHWISE_CONV_2D): {out_c} output channels "
                             f"are not a multiple of {values['in_c']} input channels")
    return values, summary, depth_multiplier
