"""How far an op's output may overlap its input, from its kernel's loop order.

A kernel may write its output over its input's bytes if every write lands below every input
byte still to be read. With the output placed `shift` bytes after the input (negative:
before), writing output element k is safe when shift + k < (lowest input index read after
that write). Each function returns the largest safe shift for the loop order of its kernel
in kernels/portable/; a shift of 0 with an output no larger than the input means fully in
place. A kernel variant with another loop order must keep within these limits.
"""

import numpy as np


def _top_left_pixels(window: dict) -> np.ndarray:
    """Flat input pixel index of each output pixel's first tap inside the image."""
    rows = np.maximum(np.arange(window["out_h"]) * window["stride_h"] - window["pad_h"], 0)
    cols = np.maximum(np.arange(window["out_w"]) * window["stride_w"] - window["pad_w"], 0)
    return (rows[:, None] * window["in_w"] + cols[None, :]).reshape(-1).astype(np.int64)


def shift_limit(lowest_read: np.ndarray) -> int:
    """Element order: element k's reads, then its write; later elements' reads follow."""
    if lowest_read.size < 2:
        return int(lowest_read.min(initial=0))
    later = np.minimum.accumulate(lowest_read[::-1])[::-1][1:]
    return int((later - np.arange(lowest_read.size - 1) - 1).min())


def element_overlap(window: dict, depth_multiplier: int) -> int:
    """Pooling and depthwise: one output value per (pixel, channel), from its own channel."""
    channels = np.arange(window["out_c"]) // depth_multiplier
    lowest = _top_left_pixels(window)[:, None] * window["in_c"] + channels[None, :]
    return shift_limit(lowest.reshape(-1))


def conv_overlap(window: dict, group: int = 2) -> int:
    """CONV_2D reads every input channel and writes `group` pixels' channels block by block
    (the portable kernels two), so after a write of pixel p the windows of pixels
    p - group + 1 onwards may still be read."""
    lowest = _top_left_pixels(window) * window["in_c"]
    later = np.minimum.accumulate(lowest[::-1])[::-1]
    pixels = np.arange(lowest.size)
    still_read = later[np.maximum(pixels - group + 1, 0)]
    return int((still_read - (pixels + 1) * window["out_c"]).min())


def mean_overlap(dims, reduce) -> int:
    """MEAN walks the output in order; each output value reads from its first reduced element."""
    kept = [range(1) if reduce[axis] else range(dims[axis]) for axis in range(4)]
    strides = [int(np.prod(dims[axis + 1:])) for axis in range(4)]
    grid = np.meshgrid(*[np.asarray(k) for k in kept], indexing="ij")
    lowest = sum(grid[axis] * strides[axis] for axis in range(4)).reshape(-1)
    return shift_limit(lowest.astype(np.int64))
