"""The "cmsis-nn" kernel variant: the generated C calls Arm's CMSIS-NN kernels.

CMSIS-NN (https://github.com/ARM-software/CMSIS-NN) is the int8 kernel library TFLite Micro
uses on Cortex-M, bit-exact with TFLite Micro's reference kernels. The user passes its path
(CodegenConfig.cmsis_nn); codegen writes NAME_cmsis_nn.mk listing the CMSIS-NN sources the
model calls and the include flag. Each op CMSIS-NN computes becomes a call of a thin wrapper
(kernels/cmsis-nn/cmsis_FAMILY.c) that fills CMSIS-NN's structs from the constants fixed at
generation time; its scratch buffer is planned inside the activation buffer (ScratchArg,
sized by scratch_bytes below, CMSIS-NN's arm_*_get_buffer_size). Ops CMSIS-NN lacks fall
back to the portable kernel, op by op, and are named in NAME_cmsis_nn.mk and NAME_ops.json.

Scratch sizes are for cores without Helium (plain C and the DSP extension; the largest of
the two, and of gcc's and armclang's 1x1 path); the generated C refuses MVE builds with
#error rather than under-allocate. tests/convert/test_codegen_cmsis_nn.py checks the sizes
against CMSIS-NN's own functions.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.artifacts import write_text_atomic
from edgeship.convert.codegen.kernels.variant import PORTABLE, KernelVariant
from edgeship.convert.codegen.lowering import (
    ConstantArray,
    LoweredOp,
    ScratchArg,
    SymbolArg,
    TensorArg,
)
from edgeship.convert.codegen.lowering.base import WINDOW_FIELDS
from edgeship.errors import UserInputError

NAME = "cmsis-nn"
HEADER = "Include/arm_nnfunctions.h"

# Kernel family -> the CMSIS-NN sources (under Source/) its calls reach, found by linking the
# wrappers for cortex-m0plus, cortex-m4 and the host (a test links every family).
SOURCES = {
    "cmsis_conv_2d": (
        "ConvolutionFunctions/arm_convolve_wrapper_s8.c", "ConvolutionFunctions/arm_convolve_s8.c",
        "ConvolutionFunctions/arm_convolve_1x1_s8.c", "ConvolutionFunctions/arm_convolve_1x1_s8_fast.c",
        "ConvolutionFunctions/arm_convolve_1_x_n_s8.c",
        "ConvolutionFunctions/arm_nn_mat_mult_kernel_s8_s16.c",
        "ConvolutionFunctions/arm_nn_mat_mult_kernel_row_offset_s8_s16.c",
        "NNSupportFunctions/arm_nn_mat_mult_nt_t_s8.c",
        "NNSupportFunctions/arm_q7_to_q15_with_offset.c",
        "NNSupportFunctions/arm_s8_to_s16_unordered_with_offset.c"),
    "cmsis_depthwise_conv_2d": (
        "ConvolutionFunctions/arm_depthwise_conv_wrapper_s8.c",
        "ConvolutionFunctions/arm_depthwise_conv_s8.c",
        "ConvolutionFunctions/arm_depthwise_conv_s8_opt.c",
        "ConvolutionFunctions/arm_depthwise_conv_3x3_s8.c",
        "ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s8.c",
        "ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c",
        "NNSupportFunctions/arm_q7_to_q15_with_offset.c"),
    "cmsis_fully_connected": (
        "FullyConnectedFunctions/arm_fully_connected_wrapper_s8.c",
        "FullyConnectedFunctions/arm_fully_connected_s8.c",
        "FullyConnectedFunctions/arm_fully_connected_per_channel_s8.c",
        "NNSupportFunctions/arm_nn_vec_mat_mult_t_s8.c",
        "NNSupportFunctions/arm_nn_vec_mat_mult_t_per_ch_s8.c"),
    "cmsis_pool_2d": (
        "PoolingFunctions/arm_max_pool_s8.c", "PoolingFunctions/arm_avgpool_s8.c",
        "PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c"),
    "cmsis_add": ("BasicMathFunctions/arm_elementwise_add_s8.c",),
    "cmsis_softmax": ("SoftmaxFunctions/arm_softmax_s8.c",
                      "SoftmaxFunctions/arm_nn_softmax_common_s8.c"),
}


# --- scratch sizes: CMSIS-NN's arm_*_get_buffer_size for plain C and DSP builds --------------

def _aligned4(value: int) -> int:
    return value + (4 - value % 4) % 4


def conv_scratch_bytes(window: dict, arch: str) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size[_dsp] (arch "c" or "dsp"); "armclang-dsp" is
    the DSP 1x1 fast path built with armclang, which alone needs a buffer there."""
    pad_h, pad_w = window["pad_h"], window["pad_w"]
    dilated = (window["dil_h"], window["dil_w"]) != (1, 1)
    if (pad_h, pad_w) == (0, 0) and (window["k_h"], window["k_w"]) == (1, 1) and not dilated:
        fast = (window["stride_h"], window["stride_w"]) == (1, 1)
        return 2 * window["in_c"] * 2 if fast and arch == "armclang-dsp" else 0
    # 1xN and the general im2col path share arm_convolve_s8_get_buffer_size off Helium.
    return 2 * _aligned4(window["k_h"] * window["k_w"] * window["in_c"]) * 2


def depthwise_scratch_bytes(window: dict, depth_multiplier: int, arch: str) -> int:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size[_dsp] (arch "c" or "dsp")."""
    if depth_multiplier != 1 or (window["dil_h"], window["dil_w"]) != (1, 1):
        return 0
    if (window["k_h"], window["k_w"]) == (3, 3) and window["pad_h"] <= 1 and window["pad_w"] <= 1:
        return 0
    return window["in_c"] * window["k_h"] * window["k_w"] * 2 if arch != "c" else 0


def avgpool_scratch_bytes(channels: int, arch: str) -> int:
    """arm_avgpool_s8_get_buffer_size[_dsp] (arch "c" or "dsp")."""
    return channels * 4 if arch != "c" else 0


_ARCHES = ("c", "dsp", "armclang-dsp")


# --- specialize: each lowered op as a CMSIS-NN call, or unchanged (portable fallback) --------

def _window(op: LoweredOp) -> dict:
    return dict(zip(WINDOW_FIELDS, op.structs[0].values, strict=True))


def _scratch(op: LoweredOp, size: int) -> tuple:
    """The (pointer, bytes) arguments of a scratch buffer: NULL and 0 when none is needed."""
    return (ScratchArg(op.index), size) if size else (0, 0)


def _requantization(op: LoweredOp) -> tuple[ConstantArray, ...]:
    """Multipliers and CMSIS-NN's int32 shifts (portable stores int8 shifts)."""
    prefix, linear = f"op{op.index}", op.linear
    return (ConstantArray("int32_t", f"{prefix}_multiplier",
                          np.asarray(linear.multipliers, np.int32)),
            ConstantArray("int32_t", f"{prefix}_shift", np.asarray(linear.shifts, np.int32)))


def _convolution(op: LoweredOp) -> LoweredOp:
    """CONV_2D / DEPTHWISE_CONV_2D: weights as TFLite stores them, the real bias (zeros when
    the model has none) and the input offset, as TFLite Micro hands them to CMSIS-NN."""
    linear, prefix = op.linear, f"op{op.index}"
    window = linear.window
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    channels = window["out_c"]
    bias = linear.bias if linear.bias is not None else np.zeros(channels, np.int64)
    constants = (ConstantArray("int8_t", f"{prefix}_weights", linear.weights.reshape(-1)),
                 ConstantArray("int32_t", f"{prefix}_bias", np.asarray(bias, np.int64)),
                 *_requantization(op))
    if depthwise:
        size = max(depthwise_scratch_bytes(window, linear.depth_multiplier, arch)
                   for arch in _ARCHES)
        kernel, leading = "cmsis_depthwise_conv_2d", (linear.depth_multiplier,)
    else:
        size = max(conv_scratch_bytes(window, arch) for arch in _ARCHES)
        kernel, leading = "cmsis_conv_2d", ()
    arguments = (op.arguments[0], *leading, TensorArg(op.inputs[0]),
                 SymbolArg(f"{prefix}_weights"), SymbolArg(f"{prefix}_bias"),
                 SymbolArg(f"{prefix}_multiplier"), SymbolArg(f"{prefix}_shift"),
                 *_scratch(op, size), TensorArg(op.outputs[0]))
    # CMSIS-NN's loop orders differ from portable's: output and input never share bytes.
    return dataclasses.replace(op, kernel=kernel, arguments=arguments, constants=constants,
                               overlap=(), scratch_bytes=size)


def _fully_connected(op: LoweredOp) -> LoweredOp:
    """FULLY_CONNECTED: the folded bias with input offset 0 is exact (no padding), and saves
    CMSIS-NN the offset arithmetic."""
    linear, prefix = op.linear, f"op{op.index}"
    units = linear.weights.shape[0]
    constants = (ConstantArray("int8_t", f"{prefix}_weights", linear.weights.reshape(-1)),
                 ConstantArray("int32_t", f"{prefix}_folded_bias", linear.folded_bias),
                 *_requantization(op))
    arguments = (linear.batches, linear.weights.shape[1], units, TensorArg(op.inputs[0]),
                 SymbolArg(f"{prefix}_weights"), SymbolArg(f"{prefix}_folded_bias"),
                 SymbolArg(f"{prefix}_multiplier"), SymbolArg(f"{prefix}_shift"),
                 int(linear.per_channel), 0, linear.output_offset, linear.act_min,
                 linear.act_max, TensorArg(op.outputs[0]))
    return dataclasses.replace(op, kernel="cmsis_fully_connected", arguments=arguments,
                               constants=constants, overlap=())


def _pool(op: LoweredOp) -> LoweredOp:
    """MAX_POOL_2D / AVERAGE_POOL_2D (arm_max_pool_s8 needs input and output apart)."""
    average = op.name == "AVERAGE_POOL_2D"
    channels = _window(op)["in_c"]
    size = max(avgpool_scratch_bytes(channels, arch) for arch in _ARCHES) if average else 0
    arguments = (op.arguments[0], int(average), TensorArg(op.inputs[0]), *_scratch(op, size),
                 TensorArg(op.outputs[0]))
    return dataclasses.replace(op, kernel="cmsis_pool_2d", arguments=arguments, overlap=(),
                               scratch_bytes=size)


def _add(op: LoweredOp) -> LoweredOp:
    """ADD: es_add's parameters as literals (CMSIS-NN takes the same ones); element i is read
    before it is written, so portable's in-place overlap holds."""
    (params,) = op.structs
    return dataclasses.replace(op, kernel="cmsis_add", structs=(),
                               arguments=(*params.values, *op.arguments[1:]))


def _softmax(op: LoweredOp) -> LoweredOp:
    """SOFTMAX: CMSIS-NN takes portable's parameters; a row is read in full (max, sum of
    exponentials) and then value i is read before it is written, so the overlap holds."""
    return dataclasses.replace(op, kernel="cmsis_softmax")


_SPECIALIZE = {"conv_2d": _convolution, "depthwise_conv_2d": _convolution,
               "fully_connected": _fully_connected, "pool_2d": _pool, "add": _add,
               "softmax": _softmax}


def specialize(op: LoweredOp) -> LoweredOp:
    """op as a CMSIS-NN call, or unchanged (a portable kernel) where CMSIS-NN has no kernel."""
    if op.kernel in _SPECIALIZE:
        return _SPECIALIZE[op.kernel](op)
    return dataclasses.replace(op, summary=f"{op.summary} [portable kernel: CMSIS-NN has none]")


def fallback_ops(lowered: list[LoweredOp]) -> list[str]:
    """'op N NAME' for each op computed by a portable kernel instead of CMSIS-NN."""
    return [f"op {op.index} {op.name}" for op in lowered
            if op.kernel is not None and not op.kernel.startswith("cmsis_")]


# --- the CMSIS-NN path and the build fragment -------------------------------------------------

def check_cmsis_nn_dir(path: str | None) -> Path:
    """The CMSIS-NN folder the user named, checked to hold Include/ and Source/.

    Raises:
        UserInputError: no path given, or not a CMSIS-NN checkout.
    """
    if not path:
        raise UserInputError("--kernels cmsis-nn needs the CMSIS-NN folder: pass --cmsis-nn DIR "
                             "(a checkout of https://github.com/ARM-software/CMSIS-NN)")
    root = Path(path).expanduser().resolve()
    if not (root / HEADER).is_file() or not (root / "Source").is_dir():
        raise UserInputError(f"--cmsis-nn {path}: not a CMSIS-NN folder (no {HEADER} or "
                             "Source/ there)")
    return root


def cmsis_sources(root: Path, lowered: list[LoweredOp]) -> list[Path]:
    """The CMSIS-NN .c files the ops call, in a stable order.

    Raises:
        UserInputError: the folder lacks one of them (another CMSIS-NN version).
    """
    families = {op.kernel for op in lowered if op.kernel in SOURCES}
    relative = sorted({source for family in families for source in SOURCES[family]})
    missing = [name for name in relative if not (root / "Source" / name).is_file()]
    if missing:
        raise UserInputError(f"--cmsis-nn {root}: missing Source/{missing[0]} (and "
                             f"{len(missing) - 1} more); codegen expects CMSIS-NN 6.x or later")
    return [root / "Source" / name for name in relative]


def render_makefile(name: str, root: Path, sources: list[Path], fallbacks: list[str]) -> str:
    """NAME_cmsis_nn.mk: the CMSIS-NN sources and flags NAME.c needs (include it, or copy)."""
    upper = name.upper()
    lines = [f"# {name}_cmsis_nn.mk: generated by edgeship codegen --kernels cmsis-nn.",
             f"# Build {name}.c with $({upper}_CMSIS_NN_CFLAGS) and add $({upper}_CMSIS_NN_SOURCES)",
             "# to the firmware's sources. Set CMSIS_NN to move the CMSIS-NN folder.",
             "# Ops on portable kernels (CMSIS-NN has none for them): "
             + (", ".join(fallbacks) if fallbacks else "none"),
             f"CMSIS_NN ?= {root}",
             f"{upper}_CMSIS_NN_CFLAGS = -I$(CMSIS_NN)/Include",
             f"{upper}_CMSIS_NN_SOURCES = \\"]
    relative = [source.relative_to(root).as_posix() for source in sources]
    lines += [f"    $(CMSIS_NN)/{item} \\" for item in relative[:-1]]
    lines += [f"    $(CMSIS_NN)/{relative[-1]}"] if relative else ["    "]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CmsisNnBuild:
    """What a firmware build needs beside NAME.c: NAME_cmsis_nn.mk and what it lists."""

    makefile: Path
    sources: tuple[Path, ...]
    include_dirs: tuple[Path, ...]
    fallbacks: tuple[str, ...]


def write_cmsis_nn_build(out: Path, name: str, root: Path,
                         lowered: list[LoweredOp]) -> CmsisNnBuild:
    """Write NAME_cmsis_nn.mk for the specialized ops (see render_makefile)."""
    sources = cmsis_sources(root, lowered)
    fallbacks = fallback_ops(lowered)
    makefile = write_text_atomic(out / f"{name}_cmsis_nn.mk",
                                 render_makefile(name, root, sources, fallbacks))
    return CmsisNnBuild(makefile, tuple(sources), (root / "Include",), tuple(fallbacks))


CMSIS_NN = KernelVariant(NAME, "Arm's CMSIS-NN kernels (--cmsis-nn DIR), portable C for the "
                         "ops CMSIS-NN lacks", fallback=PORTABLE.name, specialize=specialize)
