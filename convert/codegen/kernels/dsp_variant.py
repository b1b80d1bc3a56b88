"""The dsp kernel variant: edgeship's kernels for Cortex-M cores with the DSP extension.

C in kernels/dsp/ (ACLE intrinsics under `#if __ARM_FEATURE_DSP`, the same integers in plain
C otherwise, so host builds are bit-exact too). At generation time each op is specialized:
- mostly-zero conv and fully connected layers are stored sparse (lowering.sparse, DSP_RULE);
  sparse convolutions -> dsp_conv_2d_sparse (four pixels per entry, a bias and
  es_dsp_requantize's words per channel, outputs through a tile in scratch);
- CONV_2D -> dsp_conv_2d: weights in output-channel pairs interleaved by 4 bytes, rows
  zero-padded to a multiple of 8; staged layers (below) run three windows by two channels
  (3x2 register blocking), their windows widened to int16 straight from the input with the
  taps in conv_tap_order (scratch: the windows, edge rows and tails, conv_gather_bytes); the
  others two by two (2x2) on int8 weights read in place, through im2col rows unless the
  window is one pixel of a multiple of 8 channels; the output offset folded into the
  requantization words (requant_words), which come with the biases per channel pair
  (conv_pair_words);
- DEPTHWISE_CONV_2D with depth multiplier 1 -> dsp_depthwise_conv_2d: weights as int16 pairs
  in channel quads (depthwise weights are small: 2x their bytes), scratch a band of k_h padded
  input rows, the output offset folded into the requantization words; 3x3 windows at stride 1
  along rows, or 2 with rows of 4 outputs or more (pair_layout), take the pair layout
  instead (when its constants are staged): int8 taps in flash (depthwise_pair_taps), expanded
  in scratch to one block per channel of the weight pairs (w0, w1), (w0, w2), (w1, w2) of
  each row, its requantization words and bias, weights and bias doubled for a one-SMMLAR
  requantization (doubled_requant_words; with a ReLU-family activation without the sign
  term); scratch also the input rows as int16 column pairs per channel;
- both, when their constants are at most STAGE_BYTES, copy them into scratch (SRAM) first
  (conv: weights widened to int16 on the way, and a chunk of output channels at a time when
  they do not fit whole, conv_stage_chunk);
- FULLY_CONNECTED with depth a multiple of 8 -> dsp_fully_connected: units in fours
  interleaved by 4 bytes.
- ADD of two same-shape int8 tensors -> dsp_add: each input's rescaling a 256-entry int32
  table (reference arithmetic, reference_requantize, run at generation time), so an element
  costs two table reads, an add and one es_dsp_requantize; the tables staged in scratch from
  ADD_STAGE_ELEMENTS elements.
Conv and ADD with a ReLU-family activation (act_min >= the output offset) requantize with
es_dsp_requantize_positive (doubled words, no sign term: exact where the activation keeps
the value).
Each needs every channel's requantization in es_dsp_requantize's range (requant_table: right
shifts of 2 or more); an op outside it stays portable.
Everything else (pooling, softmax, depth multiplier > 1...) is the portable kernel.
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

# Constants a kernel reads again for every pixel (pair), up to this many bytes, are copied
# into its scratch (SRAM) first: from flash, each read would go through the flash cache (the
# STM32L4R5's ART keeps 8 lines of 16 bytes for data; 5 wait states per miss at 120 MHz), and
# a layer's weights do not fit. Staging costs RAM (the scratch grows by this much at most)
# and one copy per inference. Measured with --board nucleo-l4r5zi: 6 KB holds every KWS
# layer (7.09 -> 6.06 M cycles); 20 KB also ResNet-8's 3x3 convolutions up to 32 -> 64
# channels (23.30 -> 22.73 M; RAM 37,068 -> 44,552 B, below X-CUBE-AI's 56,672). Since conv
# weights are staged widened to int16 (twice the bytes, one cycle less per 16 MACs) and
# larger layers in chunks: ResNet-8 20.50 -> 20.04 M, RAM 44,608 -> 53,824 B (12 KB: 20.70 M,
# 46,720 B; 16 KB: 20.44 M, 50,272 B); KWS 5.08 -> 4.92 M, RAM 16,816 -> 19,496 B.
STAGE_BYTES = 20480

# An ADD of this many elements or more copies its two rescaling tables (2 KB) into scratch
# first: each element reads both at random, and from flash through the STM32L4R5's data
# cache (8 lines of 16 bytes) nearly every read misses (5 wait states). Measured with
# --board nucleo-l4r5zi on ResNet-8's three ADDs (16,384, 8,192 and 4,096 elements): 848k ->
# 632k cycles, the model 21.18 -> 20.96 M; RAM unchanged (the 2 KB fit in the plan's gaps).
ADD_STAGE_ELEMENTS = 1024

# Measured (Cortex-M4 estimate): once the dense GEMM kernels widened each window once per
# pixel pair and staged their constants, tests/convert's pruned model (8% entries) took the
# same cycles sparse as dense (it took 0.88x before); VWW's sparse layers are sparser (the
# model's cycles are the same with 0.1 and 0.2 here, 1.01x with 0.05). 0.1 keeps sparse where
# it still pays (sparse bytes are then < 0.2x dense). Re-measured after the dense pair loop
# and window widening got faster (--board nucleo-l4r5zi): VWW 14.07 M cycles at 0.1 and 0.2,
# 14.18 M at 0.05, 16.64 M all dense. Again after staged layers went three windows at a
# time without im2col: 12.24 M at 0.1, 12.27 M at 0.05, 12.59 M at 0.03, 14.25 M all dense;
# tests/convert's 4% model is then 1.05x the cycles sparse (at under half the flash). With
# dsp_conv_2d_sparse (four pixels an entry, es_dsp_requantize): VWW 10.60 M at 0.1 to 0.3
# (its layers are at 1-10% or above 36%), 10.96 M at 0.05, 11.04 M at 0.4, 13.84 M dense.
DSP_RULE = SparseRule(0.1, "dsp sparse is within a few percent of the dense GEMM kernels' "
                           "cycles up to 10% entries (faster on VWW) at under half the bytes")


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


def _positive_words(linear, requant: np.ndarray) -> tuple[bool, np.ndarray]:
    """(positive, words): an activation that clamps everything below the output zero point
    (ReLU, ReLU6) lets a conv's requantization drop its sign term (es_dsp_requantize_positive,
    on doubled words), where the doubled accumulators fit; else requant_table's words."""
    if linear.act_min < linear.output_offset:
        return False, requant
    magnitude = np.abs(np.asarray(linear.weights, np.int64)).sum(axis=1)
    doubled = doubled_requant_words(
        requant, np.abs(np.asarray(linear.folded_bias, np.int64)) + 128 * magnitude)
    return (False, requant) if doubled is None else (True, doubled)


def _conv(op: LoweredOp, stage_bytes: int) -> LoweredOp:
    linear = op.linear
    window = linear.window
    taps = linear.weights.shape[1]
    row = (taps + 7) // 8 * 8
    requant = requant_table(linear, len(linear.folded_bias), linear.output_offset)
    if requant is None:
        return op
    direct = window_is_pixel(window) and window["in_c"] % 8 == 0
    prefix = f"op{op.index}"
    positive, requant = _positive_words(linear, requant)
    words = conv_pair_words(linear.folded_bias, requant)
    # Every pixel reads all of them: staged in SRAM when read more than once, whole when they
    # fit STAGE_BYTES, else in chunks of output channels (conv_stage_chunk). Staged layers
    # take the three-window path, whose windows are read straight from the input in
    # conv_tap_order (the weights' taps permuted to it).
    order, staged_row = (np.arange(taps), row) if direct else conv_tap_order(window)
    chunk = conv_stage_chunk(window["out_c"], staged_row, stage_bytes)
    staged = window["out_h"] * window["out_w"] > 2 and chunk > 0
    chunk = chunk if staged else window["out_c"]
    weights = linear.weights
    if staged:
        weights, row = np.asarray(weights)[:, order], staged_row
    constants = (ConstantArray("int8_t", f"{prefix}_weights", interleave_rows(weights, 2, row)),
                 ConstantArray("int32_t", f"{prefix}_words", words))
    arguments = (op.arguments[0], TensorArg(op.inputs[0]), SymbolArg(f"{prefix}_weights"),
                 SymbolArg(f"{prefix}_words"), row, int(direct), int(staged), chunk,
                 int(positive), ScratchArg(op.index), TensorArg(op.outputs[0]))
    # Staged layers run three windows at a time (the 3x2 step): 6 row bytes of widened
    # windows and the kernel rows' edges and tails (conv_gather_bytes); the others two (4
    # row bytes widened, 2 of im2col rows).
    windows = ((6 * row + (0 if direct else conv_gather_bytes(window))) if staged
               else (4 if direct else 6) * row)
    scratch = windows + (chunk * (2 * row + 16) if staged else 0)
    # In chunks, every chunk reads the whole input again after earlier chunks wrote their
    # outputs for every pixel: the output may not overlap the input.
    overlap = op.overlap if chunk == window["out_c"] else ()
    return dataclasses.replace(op, kernel="dsp_conv_2d", arguments=arguments,
                               constants=constants, scratch_bytes=scratch, overlap=overlap)


def conv_tap_order(window: dict) -> tuple[np.ndarray, int]:
    """The three-window path's tap order and padded row: each kernel row's whole words of
    taps as they lie in the input (k_w in_c bytes, read in place, no im2col copy), then the
    rows' last k_w in_c % 4 taps gathered after all rows into whole words (zero-padded),
    then zeros to a multiple of 8. Returns (order: for each position, the im2col tap it
    holds; row). A 3x3 RGB window: 2 words of each row, then one word of the three last
    taps, 28 taps in 32 as im2col's 27 are."""
    row_bytes, whole, tail = _kernel_row_split(window)
    order = [k_y * row_bytes + tap for k_y in range(window["k_h"]) for tap in range(whole)]
    order += [k_y * row_bytes + tap for k_y in range(window["k_h"])
              for tap in range(whole, row_bytes)]
    used = window["k_h"] * whole + tail
    return np.asarray(order, np.int64), (used + 7) // 8 * 8


def conv_gather_bytes(window: dict) -> int:
    """Scratch the three-window path uses beside the widened windows when they are not read
    in place: three kernel rows gathered at the edges (k_w in_c bytes each) and the three
    windows' tails (dsp_conv_2d's es_dsp_widen_windows3), rounded to 8."""
    row_bytes, _, tail = _kernel_row_split(window)
    return (3 * (row_bytes + tail) + 7) // 8 * 8


def _kernel_row_split(window: dict) -> tuple[int, int, int]:
    """(bytes of a kernel row, its whole words' bytes, the bytes of all rows' leftover taps
    rounded up to whole words): es_dsp_widen_windows3's split."""
    row_bytes = window["k_w"] * window["in_c"]
    whole = row_bytes // 4 * 4
    return row_bytes, whole, (window["k_h"] * (row_bytes - whole) + 3) // 4 * 4


def conv_stage_chunk(out_c: int, row: int, stage_bytes: int) -> int:
    """Output channels dsp_conv_2d stages at a time: all of them when their weights (staged
    widened to int16: 2 row bytes each) and words (16 bytes each) fit stage_bytes, else the
    most (an even number) that fit; 0 when not even two fit. Measured with --board
    nucleo-l4r5zi on ResNet-8's last 3x3 convolution (64 -> 64 channels, 37,888 bytes as
    int8, two chunks): 3.50 -> 3.27 M cycles, its windows widened twice instead of its weights
    read from flash for every pixel pair."""
    if out_c * (2 * row + 16) <= stage_bytes:
        return out_c
    return stage_bytes // (2 * row + 16) // 2 * 2


def conv_pair_words(folded_bias, requant: np.ndarray) -> np.ndarray:
    """dsp_conv_2d's per-channel-pair words: [bias 0, bias 1, {M, K, e - 1} of channel 0, the
    same of channel 1] (ES_DSP_CONV_PAIR_WORDS = 8), so one pointer walks them; an odd last
    channel fills a pair's first half (bias, bias slot, its words, zeros)."""
    bias = np.asarray(folded_bias, np.int64).reshape(-1)
    channels = len(bias)
    pairs = (channels + 1) // 2
    padded_bias = np.zeros(2 * pairs, np.int64)
    padded_bias[:channels] = bias
    table = np.zeros((2 * pairs, 3), np.int64)
    table[:channels] = np.asarray(requant, np.int64).reshape(-1, 3)[:channels]
    words = np.concatenate([padded_bias.reshape(pairs, 2), table.reshape(pairs, 6)], axis=1)
    return words.reshape(-1).astype(np.int32)


def requant_table(linear, channels: int, output_offset: int = 0,
                  taps_axis: int = 1) -> np.ndarray | None:
    """{M, 2^(e - 2) + offset * 2^(e - 1), e - 1} per channel for es_dsp_requantize (e =
    -shift), int32, padded to `channels` with zero multipliers; None when a channel is outside
    what it computes exactly (a right shift below 2 with a nonzero multiplier: scales of 1/4
    and more). With an output offset, each channel's accumulator bound (|folded bias| + 128
    sum |w|, the weights' taps along `taps_axis`: 1 for conv, 0 for depthwise) goes to
    requant_words."""
    if not output_offset:
        return requant_words(linear.multipliers, linear.shifts, channels)
    taps = np.abs(np.asarray(linear.weights, np.int64)).sum(axis=taps_axis)
    folded = np.asarray(linear.folded_bias, np.int64)
    bound = np.abs(folded) + 128 * taps
    multipliers = np.broadcast_to(np.asarray(linear.multipliers, np.int64), folded.shape)
    shifts = np.broadcast_to(np.asarray(linear.shifts, np.int64), folded.shape)
    # A channel with no nonzero weight outputs one value: requantize(folded bias) + offset,
    # computed here (dead channels of trained models, whose huge biases would not fold).
    constants = {channel: reference_requantize(int(folded[channel]), int(multipliers[channel]),
                                               int(shifts[channel])) + output_offset
                 for channel in np.flatnonzero(taps == 0)}
    return requant_words(multipliers, shifts, channels, output_offset, bound, constants)


def requant_words(multipliers, shifts, channels: int, output_offset: int = 0,
                  accumulator_bound=2**31, constants: dict | None = None) -> np.ndarray | None:
    """requant_table of bare multipliers and (TFLite, left-positive) shifts.

    With an output offset, es_dsp_requantize returns requantize(x) + offset: the offset times
    2^(e - 1) added to the high word shifts out exactly as `offset` (the word's low e - 1 bits
    do not change). The high word is at most |x| M / 2^32 + 2^(e - 2) + 1 in magnitude before
    it (|x| <= accumulator_bound, per channel or one for all), so the sum fits in int32 when
    that plus |offset| 2^(e - 1) is below 2^31; otherwise None. `constants` (channel ->
    output value, offset included) stores those channels as M = 0 with the value in the high
    word: es_dsp_requantize returns it for any accumulator.
    """
    multipliers = np.asarray(multipliers, np.int64).reshape(-1)
    shifts = -np.asarray(shifts, np.int64).reshape(-1)
    bound = np.broadcast_to(np.minimum(np.asarray(accumulator_bound, np.int64), 2**31),
                            multipliers.shape)
    # A channel whose result is 0 for every accumulator within the bound (TFLite's first
    # rounding gives |v| <= bound M / 2^31 + 1, the second rounds |v| < 2^(e - 1) to 0; dead
    # channels with tiny scales) is stored as M = 0, which es_dsp_requantize computes for any e.
    zero = (shifts >= 2) & ((bound * multipliers) // 2**31 + 2 < 2.0 ** (shifts - 1))
    multipliers = np.where(zero, 0, multipliers)
    constant = np.zeros(multipliers.shape, bool)
    constant[list(constants or {})] = True
    multipliers = np.where(constant, 0, multipliers)
    if np.any((multipliers < 0) | (multipliers >= 2**31) | (shifts > 31)
              | ((shifts < 2) & (multipliers != 0))):
        return None
    shifts = np.where(multipliers == 0, 2, shifts)  # a zero multiplier gives 0 for any e
    table = np.zeros((channels, 3), np.int64)
    table[:, 1:] = [1, 1]
    table[:len(multipliers)] = np.stack([multipliers, 2 ** (shifts - 2), shifts - 1], axis=1)
    if output_offset:
        padded = np.zeros(channels, np.int64)
        padded[:len(multipliers)] = bound
        bound = padded
        exponents = table[:, 2] + 1
        high = (bound * table[:, 0]) // 2**32 + 2 ** (exponents - 2) + 1
        if np.any(high + abs(output_offset) * 2 ** (exponents - 1) >= 2**31):
            return None
        table[:, 1] += output_offset * 2 ** (exponents - 1)
    for channel, value in (constants or {}).items():
        table[channel] = [0, 1 + 2 * value, 1]  # (2 value + 1 + (x >> 31)) >> 1 = value
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


def depthwise_pair_taps(weights: np.ndarray, depth: int) -> np.ndarray:
    """3x3 depthwise weights [taps][channels] (taps row-major) as the pair layout stores them
    in flash: each channel's 9 int8 taps in 12 bytes (3 int32 words), channels zero-padded to
    `depth`. The kernel expands them when it stages its constants (es_dsp_pair_constants)."""
    taps, channels = weights.shape
    padded = np.zeros((depth, 12), np.int8)
    padded[:channels, :taps] = np.asarray(weights).T
    return padded.view("<i4").reshape(-1).astype(np.int32)


def doubled_requant_words(table: np.ndarray, accumulator_bound) -> np.ndarray | None:
    """requant_table's words for accumulators held doubled (2x: the pair layout's doubled
    weights and bias), as es_dsp_requantize_doubled computes them with one SMMLAR:
    {M, 2 h, e} for {M, h, e - 1}. requantize(x) = floor((x M + K) / 2^(31 + e)) (see
    es_dsp_requantize) = floor((2x M + 2^31 + (2h - [x < 0]) 2^32) / 2^(32 + e)): SMMLAR's
    rounding constant is the low word, and the top word, shifted right by e, is the result.
    Exact when 2x and that top word fit in int32 (|x| <= the bound, per channel); else None."""
    words = np.asarray(table, np.int64).reshape(-1, 3).copy()
    bound = np.zeros(len(words), np.int64)
    given = np.asarray(accumulator_bound, np.int64).reshape(-1)
    bound[:len(given)] = given
    top = 2 * np.abs(words[:, 1]) + 2 + (2 * bound * words[:, 0]) // 2**32
    if np.any(2 * bound >= 2**31) or np.any(top >= 2**31):
        return None
    words[:, 1] *= 2
    words[:, 2] += 1
    return words.reshape(-1).astype(np.int32)


def pair_layout(window: dict) -> bool:
    """dsp_depthwise_conv_2d's pair layout computes this window: 3x3, stride 1 along rows, or
    2 with at least 4 outputs a row (shorter rows widen too many inputs per product: VWW's
    3x3x128 output took 7.4 cycles/MAC, 7.0 on the four-channel layout); no dilation (the
    band's three ring rows are then window rows 0, 1, 2 in some rotation)."""
    stride_w = window["stride_w"]
    return (window["k_h"] == 3 and window["k_w"] == 3 and window["dil_w"] == 1
            and window["dil_h"] == 1 and (stride_w == 1 or stride_w == 2 and window["out_w"] >= 4))


def pair_count(window: dict) -> int:
    """Column pairs a pair-layout band row holds: those the last output reads (stride 1:
    E[j + 1] of its pair j; stride 2: E[x + 1] of output x)."""
    if window["stride_w"] == 2:
        return window["out_w"] + 1
    return (window["out_w"] + 1) // 2 + 1


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


def _sparse_conv(op: LoweredOp, sparse: LoweredOp) -> LoweredOp:
    """The sparse conv (lowering.sparse's format) as dsp_conv_2d_sparse computes it: the
    entries as they are, the biases and requantization words per channel ({bias, M, K,
    e - 1}, the output offset folded in; doubled for a ReLU-family activation); the portable
    sparse kernel where a channel's requantization is outside es_dsp_requantize's range."""
    linear = op.linear
    channels = len(linear.folded_bias)
    requant = requant_table(linear, channels, linear.output_offset)
    if requant is None:
        return sparse
    positive, requant = _positive_words(linear, requant)
    words = np.concatenate([np.asarray(linear.folded_bias, np.int64).reshape(-1, 1),
                            np.asarray(requant, np.int64).reshape(-1, 3)], axis=1)
    counts, deltas, values = sparse.constants[:3]
    prefix = f"op{op.index}"
    constants = (counts, deltas, values,
                 ConstantArray("int32_t", f"{prefix}_words", words.reshape(-1).astype(np.int32)))
    window, source, _, _, _, _, _, _, direct, _, target = sparse.arguments
    arguments = (window, source, *(SymbolArg(constant.name) for constant in constants), direct,
                 int(positive), ScratchArg(op.index), target)
    taps = linear.weights.shape[1]
    # The outputs of a group of four pixels are written after all its channels (from a tile
    # in scratch, 4 bytes a channel), its windows read before: the portable loop order's
    # limit holds. Scratch: the tile, then four im2col rows unless read in place.
    return dataclasses.replace(sparse, kernel="dsp_conv_2d_sparse", arguments=arguments,
                               constants=constants,
                               scratch_bytes=4 * linear.window["out_c"] + (0 if direct else 4 * taps))


def _depthwise(op: LoweredOp, stage_bytes: int) -> LoweredOp:
    linear, prefix = op.linear, f"op{op.index}"
    window = linear.window
    depth = (window["out_c"] + 3) // 4 * 4
    requant = requant_table(linear, depth, linear.output_offset, taps_axis=0)
    if requant is None or window["k_h"] > 16:  # ES_DSP_MAX_K_H
        return op
    width = (window["out_w"] - 1) * window["stride_w"] + (window["k_w"] - 1) * window["dil_w"] + 1
    folded = np.zeros(depth, np.int64)
    folded[:window["out_c"]] = linear.folded_bias
    pairs = pair_count(window) if pair_layout(window) else 0
    if pairs:  # accumulators doubled, for a one-SMMLAR requantization
        taps = np.abs(np.asarray(linear.weights, np.int64)).sum(axis=0)
        doubled = doubled_requant_words(requant, np.abs(folded[:window["out_c"]]) + 128 * taps)
        pairs = pairs if doubled is not None else 0
    # The pair layout's constants are expanded (13 words a channel) only in scratch (SRAM):
    # it runs staged, or not at all.
    if pairs and window["out_h"] * window["out_w"] > 1 and 52 * depth <= stage_bytes:
        weights, folded, requant = depthwise_pair_taps(linear.weights, depth), 2 * folded, doubled
        constant_bytes, staged = 52 * depth, True
        band_bytes = window["k_h"] * 4 * window["out_c"] * pairs
    else:
        pairs = 0
        weights = depthwise_weight_words(linear.weights, depth)
        constant_bytes = depth * (2 * window["k_h"] * window["k_w"] + 16)
        staged = window["out_h"] * window["out_w"] > 1 and constant_bytes <= stage_bytes
        band_bytes = window["k_h"] * width * depth
    constants = (ConstantArray("int32_t", f"{prefix}_weights", weights),
                 ConstantArray("int32_t", f"{prefix}_folded_bias", folded),
                 ConstantArray("int32_t", f"{prefix}_requant", requant))
    arguments = (op.arguments[0], TensorArg(op.inputs[0]), SymbolArg(f"{prefix}_weights"),
                 SymbolArg(f"{prefix}_folded_bias"), SymbolArg(f"{prefix}_requant"), depth,
                 width, int(math.gcd(window["dil_h"], window["k_h"]) == 1), int(staged),
                 pairs, int(bool(pairs) and linear.act_min >= linear.output_offset),
                 ScratchArg(op.index), TensorArg(op.outputs[0]))
    overlap = tuple((tensor, min(limit, band_overlap(window))) for tensor, limit in op.overlap)
    return dataclasses.replace(op, kernel="dsp_depthwise_conv_2d", arguments=arguments,
                               constants=constants, overlap=overlap,
                               scratch_bytes=band_bytes + (constant_bytes if staged else 0))


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


def reference_requantize(x: int, multiplier: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier on one int32 (es_requantize in common.c)."""
    x = ((x << max(shift, 0)) + 2**31) % 2**32 - 2**31
    if x == multiplier == -2**31:
        high = 2**31 - 1
    else:
        product = x * multiplier
        nudge = 2**30 if product >= 0 else 1 - 2**30
        total = product + nudge
        high = abs(total) // 2**31 * (1 if total >= 0 else -1)  # C division: toward zero
    exponent = max(-shift, 0)
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> exponent) + (1 if (high & mask) > threshold else 0)


def add_rescale_table(offset: int, left_shift: int, multiplier: int, shift: int) -> np.ndarray:
    """One ADD input's rescaled value for each byte 0..255 read as int8 (index: the byte as
    unsigned), as reference AddElementwise computes it."""
    values = [reference_requantize((int(np.int8(np.uint8(byte))) + offset) << left_shift,
                                   multiplier, shift) for byte in range(256)]
    return np.asarray(values, np.int64).astype(np.int32)


def _add(op: LoweredOp, stage_bytes: int) -> LoweredOp:
    (offset1, offset2, output_offset, left_shift, multiplier1, multiplier2, output_multiplier,
     shift1, shift2, output_shift, act_min, act_max) = op.structs[0].values
    table1 = add_rescale_table(offset1, left_shift, multiplier1, shift1)
    table2 = add_rescale_table(offset2, left_shift, multiplier2, shift2)
    # The output offset goes into the requantization words when the sum's bound lets it.
    bound = int(np.abs(table1.astype(np.int64)).max() + np.abs(table2.astype(np.int64)).max())
    requant = requant_words([output_multiplier], [output_shift], 1, output_offset, bound)
    # ReLU family (act_min >= the output offset): the sign-free requantization, as in _conv.
    positive = requant is not None and act_min >= output_offset
    if requant is not None:
        output_offset = 0
    else:
        requant = requant_words([output_multiplier], [output_shift], 1)
    if requant is None:
        return op
    if positive:
        doubled = doubled_requant_words(requant, [bound])
        positive = doubled is not None
        requant = doubled if positive else requant
    prefix = f"op{op.index}"
    constants = (ConstantArray("int32_t", f"{prefix}_table1", table1),
                 ConstantArray("int32_t", f"{prefix}_table2", table2),
                 ConstantArray("int32_t", f"{prefix}_requant", requant))
    _, size, first, second, output = op.arguments
    staged = size >= ADD_STAGE_ELEMENTS and stage_bytes >= 2 * 4 * 256
    arguments = (size, first, second, SymbolArg(f"{prefix}_table1"),
                 SymbolArg(f"{prefix}_table2"), SymbolArg(f"{prefix}_requant"), output_offset,
                 act_min, act_max, int(positive), ScratchArg(op.index) if staged else 0,
                 output)
    return dataclasses.replace(op, kernel="dsp_add", arguments=arguments, constants=constants,
                               structs=(), scratch_bytes=2 * 4 * 256 if staged else 0)


def specialize(op: LoweredOp, stage_bytes: int | None = None) -> LoweredOp:
    """The op as the dsp variant computes it (see the module docstring); stage_bytes: the most
    scratch it may use to stage constants in SRAM (None: STAGE_BYTES)."""
    stage_bytes = STAGE_BYTES if stage_bytes is None else stage_bytes
    if op.kernel == "add":
        return _add(op, stage_bytes)
    sparse = sparsify(op, DSP_RULE)
    if sparse is not None:
        return _sparse_conv(op, sparse) if sparse.kernel == "conv_2d_sparse" else sparse
    linear = op.linear
    if op.kernel == "conv_2d":
        return _conv(op, stage_bytes)
    if op.kernel == "depthwise_conv_2d" and linear.depth_multiplier == 1:
        return _depthwise(op, stage_bytes)
    if op.kernel == "fully_connected" and linear.weights.shape[1] % 8 == 0:
        return _fully_connected(op)
    return op


DSP = KernelVariant("dsp", "dual 16-bit MACs (ACLE __smlad, __sxtb16) for Cortex-M4/M7/M33, "
                    "weights re-laid out at generation; plain C where the core lacks them",
                    fallback="portable", specialize=specialize,
                    stage_limits=(12288, 6144, 0))
