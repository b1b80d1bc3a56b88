"""TFLite's quantization arithmetic, done once here at generation time.

Every fixed-point multiplier, activation range, padding and softmax/mean parameter the
generated C uses comes from these functions, which follow TFLite's own formulas
(QuantizeMultiplier, CalculateActivationRangeQuantized, ComputePaddingWithOffset,
PreprocessSoftmaxScaling), so the C only loops over integers.
"""

import math

import numpy as np

from edgeship.errors import UserInputError
from edgeship.tflite_graph import Tensor


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


def per_channel_multipliers(input_tensor: Tensor, weights: Tensor, output: Tensor,
                            channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(int32 multipliers, int8 shifts) of input scale x weight scale / output scale, per
    channel (a per-tensor weight scale is repeated over the channels)."""
    scales = weights.scales if weights.scales.size > 1 else np.repeat(weights.scales, channels)
    pairs = [quantize_multiplier(float(input_tensor.scale) * float(scale) / float(output.scale))
             for scale in scales]
    return (np.asarray([m for m, _ in pairs], np.int32), np.asarray([s for _, s in pairs], np.int8))


# Value range of each integer activation dtype.
DTYPE_RANGES = {"int8": (-128, 127), "int16": (-32768, 32767)}


def activation_range(activation: int, output: Tensor, op_name: str) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for an int8 or int16 output (float32 divide, as
    TFLite)."""

    def quantize(value: float) -> int:
        ratio = float(np.float32(value) / np.float32(output.scale))
        return output.zero_point + round_half_away(ratio)

    low, high = DTYPE_RANGES.get(output.dtype, DTYPE_RANGES["int8"])
    if activation == 0:
        return low, high
    if activation == 1:
        return max(low, quantize(0.0)), high
    if activation == 2:
        return max(low, quantize(-1.0)), min(high, quantize(1.0))
    if activation == 3:
        return max(low, quantize(0.0)), min(high, quantize(6.0))
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


# Headroom of ADD and SUB's rescaled inputs: 20 bits for int8, 15 for int16 (65535 << 15
# still fits 32 bits).
ARITHMETIC_LEFT_SHIFT = {"int8": 20, "int16": 15}


def add_parameters(first: Tensor, second: Tensor, output: Tensor) -> dict[str, int]:
    """TFLite Micro's CalculateOpDataAdd and CalculateOpDataSub: both inputs rescaled to twice
    the larger scale with a left shift of 20 (int8) or 15 (int16), the sum or difference
    rescaled to the output's scale, the ratios in double. (tflite-micro's newer sub_common.cc
    divides in float32; the TFLite Micro edgeship installs matches double on SUB: float32
    multipliers missed it by one quantum on 2 of 3,000 random int16 inputs.)"""
    left_shift = ARITHMETIC_LEFT_SHIFT[output.dtype]
    twice_max = 2 * max(first.scale, second.scale)
    first_multiplier, first_shift = quantize_multiplier(first.scale / twice_max)
    second_multiplier, second_shift = quantize_multiplier(second.scale / twice_max)
    output_multiplier, output_shift = quantize_multiplier(
        twice_max / ((1 << left_shift) * output.scale))
    return {"first_multiplier": first_multiplier, "first_shift": first_shift,
            "second_multiplier": second_multiplier, "second_shift": second_shift,
            "output_multiplier": output_multiplier, "output_shift": output_shift,
            "left_shift": left_shift}


def lut_int16(input_scale: float, input_zero_point: int, output_scale: float,
              output_zero_point: int, transform) -> np.ndarray:
    """TFLite's LUTPopulateInt16<float>: 512 interpolation steps plus the end point, in
    float32 arithmetic step by step as the C++ does (transform maps a float32 to a float32)."""
    f32 = np.float32
    input_min = f32(input_scale) * f32(-32768 - input_zero_point)
    input_max = f32(input_scale) * f32(32767 - input_zero_point)
    output_min = f32(output_scale) * f32(-32768 - output_zero_point)
    output_max = f32(output_scale) * f32(32767 - output_zero_point)
    step = (input_max - input_min) / f32(512)
    half_step = step / f32(2)
    scaling = f32(65536) / (output_max - output_min)

    def rounded(value) -> np.float32:
        return f32(round_half_away(float(value)))

    lut = np.zeros(513, np.int64)
    for i in range(512):
        start = input_min + f32(i) * step
        value = transform(start)
        midpoint = transform(start + half_step)
        following = transform(input_min + f32(i + 1) * step)
        sample = rounded(value * scaling)
        interpolated = rounded((following * scaling + rounded(value * scaling)) / f32(2))
        error = interpolated - rounded(midpoint * scaling)
        lut[i] = min(max(sample - rounded(error / f32(2)), -32768), 32767)
    lut[512] = min(max(rounded(transform(input_max) * scaling), -32768), 32767)
    return lut


def softmax_int16_tables() -> tuple[np.ndarray, np.ndarray]:
    """TFLite Micro's int16 softmax tables: exp over [-10, 0] and 1 / (1 + x) over [0, 1]."""
    f32 = np.float32
    span = 65535
    exp_lut = lut_int16(f32(10.0) / f32(span), 32767, f32(2.0) / f32(span), 0,
                        lambda value: np.exp(f32(value)))
    reciprocal_lut = lut_int16(f32(1.0) / f32(span), -32768, f32(2.0) / f32(span), 0,
                               lambda value: f32(1.0) / (f32(1.0) + f32(value)))
    return exp_lut, reciprocal_lut


def logistic_tanh_parameters(input_scale: float) -> tuple[int, int, int]:
    """int8 LOGISTIC and TANH (TFLite Micro's logistic_common.cc and tanh.cc): the multiplier
    and left shift taking the offset input to Q4.27, and the input radius beyond which the
    output saturates (CalculateInputRadius), as (multiplier, shift, radius)."""
    integer_bits = 4
    mantissa, shift = math.frexp(float(input_scale) * (1 << (31 - integer_bits)))
    if shift < 0:
        raise UserInputError(f"input scale {input_scale} is too small for TFLite's int8 "
                             "logistic and tanh")
    multiplier = round_half_away(mantissa * (1 << 31))
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << shift))
    return multiplier, shift, radius


def checked_log2(value: float) -> tuple[int, bool]:
    """TFLite's CheckedLog2 in float32: (log2 rounded, whether value is a power of two)."""
    f32 = np.float32
    log2 = f32(np.log(f32(value))) * (f32(1.0) / f32(np.log(f32(2.0))))
    rounded = round_half_away(float(log2))
    return rounded, bool(abs(f32(log2) - f32(rounded)) < f32(1e-3))


def logistic_tanh_int16_parameters(input_scale: float, power_of_two_shifts: tuple[int, ...]
                                   ) -> tuple[int, int]:
    """int16 LOGISTIC and TANH: (multiplier, right shift) taking the input to the table's
    scale, 1 / (3 * 4096). A power-of-two input scale whose shift (12 + log2 scale) is one of
    power_of_two_shifts (LOGISTIC: 0; TANH: 0 or 1) takes TFLite's exact path, 3 << shift;
    any other, the multiplier doubled while it is at most 32767 / 2, then truncated."""
    log2, power_of_two = checked_log2(input_scale)
    shift = 12 + log2
    if power_of_two and shift in power_of_two_shifts:
        return 3 << shift, 0
    multiplier = float(input_scale) * 4096.0 * 3.0
    shift = 0
    while multiplier <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        multiplier *= 2.0
    return int(multiplier), shift


def sigmoid_table_uint16() -> np.ndarray:
    """The 256 sigmoid(i / 24) values in Q0.16 that TFLite's int16 LOGISTIC and TANH
    interpolate (common.h sigmoid_table_uint16): each entry raised by half the error that
    linear interpolation makes at the midpoint to the next, rounded; the last one is 1.0,
    saturated to 65535 (the kernels saturate from there on)."""
    positions = np.arange(256, dtype=np.float64)

    def sigmoid(x):
        return 65536.0 / (1.0 + np.exp(-x / 24.0))

    midpoint_error = sigmoid(positions + 0.5) - (sigmoid(positions) + sigmoid(positions + 1)) / 2
    table = np.floor(sigmoid(positions) + midpoint_error / 2 + 0.5)
    table[-1] = 65535
    return table.astype(np.int64)


def downscale_multiplier_int16(multiplier: int) -> int:
    """TFLite's DownScaleInt32ToInt16Multiplier: a Q0.31 multiplier rounded to Q0.15."""
    if multiplier >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (multiplier + (1 << 15)) >> 16


def hard_swish_parameters(input_scale: float, output_scale: float) -> dict[str, int]:
    """HARD_SWISH (hard_swish_common.cc): the int16 multipliers and exponents from the input on
    a 7-bit finer scale to the output, and to the "reluish" scale where 3.0 is 32768, the
    scales divided in float32 as TFLite does."""
    f32 = np.float32
    hires_input_scale = f32(1.0 / 128.0) * f32(input_scale)
    output_multiplier, output_exponent = quantize_multiplier(
        float(hires_input_scale / f32(output_scale)))
    reluish_multiplier, reluish_exponent = quantize_multiplier(
        float(hires_input_scale / (f32(3.0) / f32(32768.0))))
    return {"output_multiplier": downscale_multiplier_int16(output_multiplier),
            "output_exponent": output_exponent,
            "reluish_multiplier": downscale_multiplier_int16(reluish_multiplier),
            "reluish_exponent": reluish_exponent}


def squared_difference_parameters(first: Tensor, second: Tensor, output: Tensor
                                  ) -> dict[str, int]:
    """SQUARED_DIFFERENCE (squared_difference.cc PrepareQuantized): both inputs shifted left by
    7 bits (int8) or 0 (int16) and rescaled to twice the larger scale; the square rescaled by
    (twice the larger scale)^2 / (2^(2 * left shift) * output scale)."""
    left_shift = 7 if output.dtype == "int8" else 0
    twice_max = 2.0 * max(first.scale, second.scale)
    first_multiplier, first_shift = quantize_multiplier(first.scale / twice_max)
    second_multiplier, second_shift = quantize_multiplier(second.scale / twice_max)
    output_multiplier, output_shift = quantize_multiplier(
        twice_max * twice_max / float(np.float32(1 << (2 * left_shift)) * np.float32(output.scale)))
    return {"first_multiplier": first_multiplier, "first_shift": first_shift,
            "second_multiplier": second_multiplier, "second_shift": second_shift,
            "output_multiplier": output_multiplier, "output_shift": output_shift,
            "left_shift": left_shift}
