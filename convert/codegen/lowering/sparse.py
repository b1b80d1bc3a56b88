"""Zero weights cost nothing: mostly-zero conv and fully connected layers stored sparse.

Format (kernels/portable/conv_2d_sparse.c, fully_connected_sparse.c): per output channel a
uint16 count of entries, then per entry a uint8 delta (its tap index minus the previous
entry's, starting from 0) and the int8 weight; a gap of more than 255 taps is bridged by
entries of weight 0. Entry bytes: 2 per nonzero (plus the rare bridge), against 1 per weight
dense. The kernel sums the same nonzero products in the same order as the dense one, so the
output is bit-exact; conv windows are read as a row of taps (im2col into the op's scratch,
padding as the input zero point, except 1x1 windows without padding, read in place).

The rule, per layer at generation time (SparseRule): store sparse when the entries are at
most the variant's `max_density` of the dense weights, so sparse bytes are at most
2 * max_density of dense (plus 2 per channel) and, from the measured cycles of both forms
(benchmarks/bench_sparse.py on Cortex-M4; its figures are in docs/results.md), fewer cycles:
portable 0.45, dsp 0.1 (its blocked dense GEMM is much faster than the portable one, so
sparse wins only at far fewer entries; kernels.dsp_variant.DSP_RULE). Depthwise layers stay
dense (one tap row per channel: no gain).
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from edgeship.convert.codegen.lowering.base import (
    ConstantArray,
    LoweredOp,
    ScratchArg,
    SymbolArg,
    TensorArg,
)

MAX_DELTA = 255


@dataclass(frozen=True)
class SparseRule:
    """When a variant stores a layer sparse.

    Attributes:
        max_density: sparse when entries <= max_density * dense weights.
        basis: where the threshold comes from (the measured cycles per dense weight and per
            sparse entry on Cortex-M4).
    """

    max_density: float
    basis: str


# The threshold where benchmarks/bench_sparse.py measured the portable sparse kernels faster
# than dense (Cortex-M4 estimate; the figures are in docs/results.md, not copied here, where
# they would go stale); at 0.45 sparse bytes stay below dense.
PORTABLE_RULE = SparseRule(0.45, "portable sparse faster than dense at <= 45% entries "
                                 "(benchmarks/bench_sparse.py); sparse bytes < dense")


@dataclass(frozen=True)
class SparseWeights:
    counts: np.ndarray  # uint16 per row
    deltas: np.ndarray  # uint8 per entry
    values: np.ndarray  # int8 per entry

    @property
    def entries(self) -> int:
        return int(self.values.size)


def encode_sparse(weights: np.ndarray) -> SparseWeights:
    """Rows of int8 weights as counts, deltas and values (bridges of weight 0 for gaps > 255)."""
    counts, deltas, values = [], [], []
    for row in np.asarray(weights, np.int8):
        previous, count = 0, 0
        for index in np.flatnonzero(row):
            gap = int(index) - previous
            while gap > MAX_DELTA:
                deltas.append(MAX_DELTA)
                values.append(0)
                gap -= MAX_DELTA
                count += 1
            deltas.append(gap)
            values.append(int(row[index]))
            previous, count = int(index), count + 1
        counts.append(count)
    return SparseWeights(np.asarray(counts, np.uint16), np.asarray(deltas, np.uint8),
                         np.asarray(values, np.int8))


def decode_sparse(sparse: SparseWeights, taps: int) -> np.ndarray:
    """The dense rows back (tests check the round trip)."""
    rows = np.zeros((sparse.counts.size, taps), np.int8)
    position = 0
    for row, count in enumerate(sparse.counts):
        offset = 0
        for entry in range(position, position + int(count)):
            offset += int(sparse.deltas[entry])
            if sparse.values[entry]:
                rows[row, offset] = sparse.values[entry]
        position += int(count)
    return rows


def sparsify(op: LoweredOp, rule: SparseRule) -> LoweredOp | None:
    """The op with sparse weights when the rule says it pays, else None."""
    linear = op.linear
    if linear is None or op.kernel not in ("conv_2d", "fully_connected"):
        return None
    if linear.weights.size > 0 and np.count_nonzero(linear.weights) > rule.max_density * linear.weights.size:
        return None
    sparse = encode_sparse(linear.weights)
    if sparse.entries > rule.max_density * linear.weights.size:
        return None
    prefix = f"op{op.index}"
    constants = (ConstantArray("uint16_t", f"{prefix}_counts", sparse.counts),
                 ConstantArray("uint8_t", f"{prefix}_deltas", sparse.deltas),
                 ConstantArray("int8_t", f"{prefix}_values", sparse.values),
                 ConstantArray("int32_t", f"{prefix}_folded_bias", linear.folded_bias),
                 ConstantArray("int32_t", f"{prefix}_multiplier", linear.multipliers),
                 ConstantArray("int8_t", f"{prefix}_shift", linear.shifts))
    sparse_arguments = tuple(SymbolArg(constant.name) for constant in constants)
    density = f"sparse: {sparse.entries} entries for {linear.weights.size} weights"
    if op.kernel == "fully_connected":
        batches, depth, units = op.arguments[:3]
        arguments = (batches, depth, units, TensorArg(op.inputs[0]), *sparse_arguments,
                     int(linear.per_channel), linear.output_offset, linear.act_min,
                     linear.act_max, TensorArg(op.outputs[0]))
        return dataclasses.replace(op, kernel="fully_connected_sparse", arguments=arguments,
                                   constants=constants, summary=f"{op.summary}, {density}")
    direct = window_is_pixel(linear.window)
    taps = linear.weights.shape[1]
    arguments = (op.arguments[0], TensorArg(op.inputs[0]), *sparse_arguments, int(direct),
                 0 if direct else ScratchArg(op.index), TensorArg(op.outputs[0]))
    return dataclasses.replace(op, kernel="conv_2d_sparse", arguments=arguments,
                               constants=constants, scratch_bytes=0 if direct else 2 * taps,
                               summary=f"{op.summary}, {density}")


def window_is_pixel(window: dict) -> bool:
    """A 1x1 window without padding: its taps are the input pixel's bytes, read in place."""
    return (window["k_h"] == 1 and window["k_w"] == 1 and window["pad_h"] == 0
            and window["pad_w"] == 0)
