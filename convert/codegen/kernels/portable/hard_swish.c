/* @section hard_swish needs common */
/* HARD_SWISH int8 -> int8 (reference_ops::HardSwish, quantized): x * relu6(x + 3) / 6 in 16-bit
 * fixed point. The offset input, shifted left 7 bits, is rescaled to the output scale and,
 * separately, to a "reluish" value where 3.0 is 32768, mapped from [-1, 1] to [0, 1] and
 * multiplied in; every step saturates or rounds as TFLite's int16 arithmetic does. */

/* gemmlowp's SaturatingRoundingDoublingHighMul on int16 values. */
static inline int16_t es_high_mul16(int16_t a, int16_t b) {
  const int32_t product = (int32_t)a * b;
  const int32_t nudge = product >= 0 ? (1 << 14) : (1 - (1 << 14));
  if (a == b && a == INT16_MIN) {
    return INT16_MAX;
  }
  return (int16_t)((product + nudge) / (1 << 15));
}

/* gemmlowp's RoundingDivideByPOT on int16 values (its mask truncated to 16 bits as theirs). */
static inline int16_t es_shift_round16(int16_t x, int exponent) {
  const int16_t mask = (int16_t)(((int64_t)1 << exponent) - 1);
  const int16_t remainder = (int16_t)(x & mask);
  const int16_t threshold = (int16_t)((mask >> 1) + (x < 0 ? 1 : 0));
  return (int16_t)((x >> exponent) + (remainder > threshold ? 1 : 0));
}

static inline int16_t es_shift_left16(int16_t value, int amount) {
  const int64_t result = (int64_t)value * ((int64_t)1 << amount);
  return (int16_t)(result > INT16_MAX ? INT16_MAX : (result < INT16_MIN ? INT16_MIN : result));
}

static void es_hard_swish(int32_t size, int32_t input_zero_point, int32_t output_zero_point,
                          int32_t output_multiplier, int32_t output_exponent,
                          int32_t reluish_multiplier, int32_t reluish_exponent,
                          const int8_t *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int16_t hires = (int16_t)((input[i] - input_zero_point) * (1 << 7));
    const int16_t preshift_output = es_high_mul16(hires, (int16_t)output_multiplier);
    int16_t reluish = hires;
    int16_t result;
    if (reluish_exponent > 0) {
      reluish = es_shift_left16(reluish, reluish_exponent - 1);
    }
    reluish = es_high_mul16(reluish, (int16_t)reluish_multiplier);
    if (reluish_exponent > 0) {
      reluish = es_shift_left16(reluish, 1);
    }
    if (reluish_exponent < 0) {
      reluish = es_shift_round16(reluish, -reluish_exponent);
    }
    reluish = (int16_t)((reluish + (1 << 15)) >> 1);
    /* SaturatingDoublingHighMul: the product's high half rounded toward zero. */
    result = (reluish == INT16_MIN && preshift_output == INT16_MIN)
                 ? INT16_MAX
                 : (int16_t)(((int32_t)reluish * preshift_output) / (1 << 15));
    result = (int16_t)(es_shift_round16(result, -output_exponent) + output_zero_point);
    output[i] = (int8_t)es_clamp(result, -128, 127);
  }
}
