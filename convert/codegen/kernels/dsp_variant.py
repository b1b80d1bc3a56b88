"""The dsp kernel variant: edgeship's kernels for Cortex-M cores with the DSP extension.

C in kernels/dsp/ (ACLE intrinsics under `#if __ARM_FEATURE_DSP`, the same integers in plain
C otherwise, so host builds are bit-exact too). At generation time each op is specialized:
- mostly-zero conv and fully connected layers are stored sparse (lowering.sparse, DSP_RULE);
- CONV_2D -> dsp_conv_2d: weights in output-channel pairs interleaved by 4 bytes, rows
  zero-padded to a multiple of 8 (2x2 register blocking); scratch holds the two windows
  interleaved (and their im2col rows unless the window is one pixel of a multiple of 8
  channels);
- DEPTHWISE_CONV_2D with depth multiplier 1 -> dsp_depthwise_conv_2d: weights as int16 pairs
  in channel quads (depthwise weights are small: 2x their bytes), scratch a band of k_h padded
  input rows;
- FULLY_CONNECTED with depth a multiple of 8 -> dsp_fully_connected: units in fours
  interleaved by 4 bytes.
Each needs every channel's requantization in es_dsp_requantize's range (requant_table: right
shifts of 2 or more); an op outside it stays portable.
Everything else (pooling, add, softmax, depth multiplier > 1...) is the portable kernel.
"""

import dataclasses
import math

import numpy as np
from edgeship.convert.codegen.kernels.variant import KernelVariant
from edgeship.convert.codegen.lowering import (
    ConstantArray,
    LoweredOp,
    ScratchArg,
    SymbolArg,
    TensorArg,
)
from edgeship.convert.codegen.lowering.sparse import SparseRule, sparsify, window_is_pixel

# Measured (benchmarks/bench_sparse.py, Cortex-M4 estimate): dscnn pruned to 0.75 (entries
# ~25% of the weights) took 1.02x the dense dsp cycles when stored sparse, so sparse pays for
# the dsp kernels only well below 25%; 0.2 keeps a margin (sparse bytes are then < 0.4x dense).
DSP_RULE = SparseRule(0.2, "dsp dense and sparse break even near 25% entries (dscnn pruned "
                           "0.75, bench_sparse.py); and sparse bytes < dense")


def interleave_rows(weights: np.ndarray, block: int, width: int) -> np.ndarray:
    """Rows zero-padded to width, then in blocks of `block` rows interleaved 4 bytes at a time
    ([block][group][row in block][4 bytes]); the rows%block last rows follow as they are."""
    rows, taps = weights.shape
    padded = np.zeros((rows, width), np.int8)
    padded[:, :taps] = weights
    whole = rows - rows % block
    blocks = padded[:whole].reshape(whole // block, block, width // 4, 4).transpose(0, 2, 1, 3)
    return np.concatenate([blocks.reshape(-1), padded[whole:].reshape(-1)])


def _constants(op: LoweredOp, weights: np.ndarray, with_bias: bool) -> tuple:
    linear, prefix = op.linear, f"op{op.index}"
    constants = [ConstantArray("int8_t", f"{prefix}_weights", weights),
                 ConstantArray("int32_t", f"{prefix}_folded_bias", linear.folded_bias),
                 ConstantArray("int32_t", f"{prefix}_multiplier", linear.multipliers),
                 ConstantArray("int8_t", f"{prefix}_shift", linear.shifts)]
    if with_bias and linear.bias is not None:
        constants.insert(1, ConstantArray("int32_t", f"{prefix}_bias", linear.bias))
    return tuple(constants)


def _conv(op: LoweredOp) -> LoweredOp:
    linear = op.linear
    window = linear.window
    taps = linear.weights.shape[1]
    row = (taps + 7) // 8 * 8
    requant = requant_table(linear, len(linear.folded_bias))
    if requant is None:
        return op
    direct = window_is_pixel(window) and window["in_c"] % 8 == 0
    prefix = f"op{op.index}"
    constants = (ConstantArray("int8_t", f"{prefix}_weights", interleave_rows(linear.weights, 2, row)),
                 ConstantArray("int32_t", f"{prefix}_folded_bias", linear.folded_bias),
                 ConstantArray("int32_t", f"{prefix}_requant", requant))
    arguments = (op.arguments[0], TensorArg(op.inputs[0]), SymbolArg(f"{prefix}_weights"),
                 SymbolArg(f"{prefix}_folded_bias"), SymbolArg(f"{prefix}_requant"), row,
                 int(direct), ScratchArg(op.index), TensorArg(op.outputs[0]))
    return dataclasses.replace(op, kernel="dsp_conv_2d", arguments=arguments,
                               constants=constants, scratch_bytes=(2 if direct else 4) * row)


def requant_table(linear, channels: int) -> np.ndarray | None:
    """{M, 2^(e - 2), e - 1} per channel for es_dsp_requantize (e = -shift), int32, padded
    to `channels` with zero multipliers; None when a channel is outside what it computes
    exactly (a right shift below 2 with a nonzero multiplier: scales of 1/4 and more)."""
    multipliers = np.asarray(linear.multipliers, np.int64)
    shifts = -np.asarray(linear.shifts, np.int64)
    if np.any((multipliers < 0) | (multipliers >= 2**31) | (shifts > 31)
              | ((shifts < 2) & (multipliers != 0))):
        return None
    shifts = np.where(multipliers == 0, 2, shifts)  # a zero multiplier gives 0 for any e
    table = np.zeros((channels, 3), np.int64)
    table[:, 1:] = [1, 1]
    table[:len(multipliers)] = np.stack([multipliers, 2 ** (shifts - 2), shifts - 1], axis=1)
    return table.reshape(-1).astype(np.int32)


def depthwise_weight_words(weights: np.ndarray, depth: int) -> np.ndarray:
    """Depthwise weights [taps][channels] as int16 pairs in int32 words, four channels at a
    time: [channel group][tap][(w0, w2), (w1, w3)] (each pair low half first), channels
    zero-padded to `depth`."""
    taps, channels = weights.shape
    padded = np.zeros((taps, depth), np.int64)
    padded[:, :channels] = weights
    groups = padded.reshape(taps, depth // 4, 4).transpose(1, 0, 2)  # [group][tap][4]
    low = groups[..., [0, 1]] & 0xFFFF
    high = groups[..., [2, 3]] & 0xFFFF
    return (low | (high << 16)).astype(np.uint32).view(np.int32).reshape(-1)


def band_overlap(window: dict) -> int:
    """Largest safe output shift for dsp_depthwise_conv_2d's order: each output row's input
    rows are copied to the band before any of the row is written."""
    limit = None
    row_out = window["out_w"] * window["out_c"]
    for out_y in range(1, window["out_h"]):
        first_row = max(out_y * window["stride_h"] - window["pad_h"], 0)
        candidate = first_row * window["in_w"] * window["in_c"] - out_y * row_out
        limit = candidate if limit is None else min(limit, candidate)
    return 0 if limit is None else limit


def _depthwise(op: LoweredOp) -> LoweredOp:
    linear, prefix = op.linear, f"op{op.index}"
    window = linear.window
    depth = (window["out_c"] + 3) // 4 * 4
    requant = requant_table(linear, depth)
    if requant is None or window["k_h"] > 16:  # ES_DSP_MAX_K_H
        return op
    width = (window["out_w"] - 1) * window["stride_w"] + (window["k_w"] - 1) * window["dil_w"] + 1
    folded = np.zeros(depth, np.int64)
    folded[:window["out_c"]] = linear.folded_bias
    constants = (ConstantArray("int32_t", f"{prefix}_weights",
                               depthwise_weight_words(linear.weights, depth)),
                 ConstantArray("int32_t", f"{prefix}_folded_bias", folded),
                 ConstantArray("int32_t", f"{prefix}_requant", requant))
    arguments = (op.arguments[0], TensorArg(op.inputs[0]), SymbolArg(f"{prefix}_weights"),
                 SymbolArg(f"{prefix}_folded_bias"), SymbolArg(f"{prefix}_requant"), depth,
                 width, int(math.gcd(window["dil_h"], window["k_h"]) == 1), ScratchArg(op.index), TensorArg(op.outputs[0]))
    overlap = tuple((tensor, min(limit, band_overlap(window))) for tensor, limit in op.overlap)
    return dataclasses.replace(op, kernel="dsp_depthwise_conv_2d", arguments=arguments,
                               constants=constants, overlap=overlap,
                               scratch_bytes=window["k_h"] * width * depth)


def _fully_connected(op: LoweredOp) -> LoweredOp:
    linear, prefix = op.linear, f"op{op.index}"
    depth = linear.weights.shape[1]
    requant = requant_table(linear, len(linear.multipliers))
    if requant is None:
        return op
    constants = (ConstantArray("int8_t", f"{prefix}_weights",
                               interleave_rows(linear.weights, 4, depth)),
                 ConstantArray("int32_t", f"{prefix}_folded_bias", linear.folded_bias),
                 ConstantArray("int32_t", f"{prefix}_requant", requant))
    arguments = (*op.arguments[:4], SymbolArg(f"{prefix}_weights"),
                 SymbolArg(f"{prefix}_folded_bias"), SymbolArg(f"{prefix}_requant"),
                 *op.arguments[8:])
    return dataclasses.replace(op, kernel="dsp_fully_connected", arguments=arguments,
                               constants=constants)


def specialize(op: LoweredOp) -> LoweredOp:
    """The op as the dsp variant computes it (see the module docstring)."""
    sparse = sparsify(op, DSP_RULE)
    if sparse is not None:
        return sparse
    linear = op.linear
    if op.kernel == "conv_2d":
        return _conv(op)
    if op.kernel == "depthwise_conv_2d" and linear.depth_multiplier == 1:
        return _depthwise(op)
    if op.kernel == "fully_connected" and linear.weights.shape[1] % 8 == 0:
        return _fully_connected(op)
    return op


DSP = KernelVariant("dsp", "dual 16-bit MACs (ACLE __smlad, __sxtb16) for Cortex-M4/M7/M33, "
                    "weights re-laid out at generation; plain C where the core lacks them",
                    fallback="portable", specialize=specialize)
