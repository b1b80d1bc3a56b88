"""Affine quantization of float values, rounding as TFLite does (half away from zero).

One copy for every stage: numpy's np.round rounds halves to even, so 0.5 and 2.5 quanta
would become 0 and 2 where TFLite computes 1 and 3.
"""

import numpy as np


def quantize_values(values: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """round(values / scale) + zero_point, halves away from zero, clipped to dtype's range.

    The division is in float32, as in TFLite.
    """
    scaled = np.asarray(values, dtype=np.float32) / np.float32(scale)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + zero_point
    limits = np.iinfo(np.dtype(dtype))
    return np.clip(rounded, limits.min, limits.max).astype(dtype)
