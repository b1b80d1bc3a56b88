/* @section leaky_relu needs common */
/* LEAKY_RELU int8 -> int8 (reference_ops::QuantizeLeakyRelu): the offset input requantized by
 * input / output scale where it is >= 0, by input * alpha / output scale where it is negative
 * (a negative alpha's multiplier made positive and the product negated, as TFLite does), plus
 * the output zero point, clamped. */
static void es_leaky_relu(int32_t size, int32_t input_zero_point, int32_t output_offset,
                          int32_t identity_multiplier, int32_t identity_shift,
                          int32_t alpha_multiplier, int32_t alpha_shift, int32_t alpha_negative,
                          const int8_t *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t value = input[i] - input_zero_point;
    int32_t result = output_offset;
    if (value >= 0) {
      result += es_requantize(value, identity_multiplier, identity_shift);
    } else {
      const int32_t scaled = es_requantize(value, alpha_multiplier, alpha_shift);
      result += alpha_negative ? -scaled : scaled;
    }
    output[i] = (int8_t)es_clamp(result, -128, 127);
  }
}
