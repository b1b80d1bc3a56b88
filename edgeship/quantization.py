"""Affine quantization of float values, rounding as TFLite does (half away from zero), and the
one type that describes a quantized (or float) model input or output.

One copy for every stage: numpy's np.round rounds halves to even, so 0.5 and 2.5 quanta
would become 0 and 2 where TFLite computes 1 and 3.
"""

from dataclasses import dataclass

import numpy as np

# C type of each dtype a model's input or output may have in generated C and firmware
# sources: int8 and int16 activations, the uint8 and float32 that TensorFlow's converter
# leaves at a quantized model's boundary (its QUANTIZE and DEQUANTIZE ops convert them), and
# int32 (ARG_MAX's indices).
C_TYPES = {"uint8": "uint8_t", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t",
           "float32": "float"}


def quantize_values(values: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """round(values / scale) + zero_point, halves away from zero, clipped to dtype's range.

    The division is in float32, as in TFLite.
    """
    scaled = np.asarray(values, dtype=np.float32) / np.float32(scale)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + zero_point
    limits = np.iinfo(np.dtype(dtype))
    return np.clip(rounded, limits.min, limits.max).astype(dtype)


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: name, shape, dtype and affine quantization.

    The one type for it in every stage: what a runtime backend reports, what convert
    records in the manifest, what codegen and embed write into C headers.

    Attributes:
        name: the tensor's name in the artifact.
        shape: dimensions; -1 marks a dimension the runtime resizes (usually the batch).
        dtype: numpy dtype name of the raw tensor ("float32", "int8", "uint8", "int16").
        scale: quantization scale; 0.0 for a float tensor (and for int32 indices).
        zero_point: quantization zero point; 0 for a float tensor.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(np.dtype(self.dtype), np.integer)

    @property
    def size(self) -> int:
        """Values in one tensor of this shape."""
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def ctype(self) -> str:
        """The C type of its values (C_TYPES; KeyError for a dtype C sources do not take)."""
        return C_TYPES[self.dtype]

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Float values -> this tensor's raw dtype (round half away from zero, as TFLite)."""
        if not self.quantized:
            return np.asarray(values, dtype=self.dtype)
        return quantize_values(values, self.scale, self.zero_point, self.dtype)

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        """This tensor's raw values -> float32."""
        if not self.quantized:
            return np.asarray(raw, dtype=np.float32)
        return ((np.asarray(raw, dtype=np.int32) - self.zero_point)
                * np.float32(self.scale)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point}
