/* @section leaky_relu_s16 needs common */
/* LEAKY_RELU int16 -> int16: the int8 kernel's arithmetic (reference_ops::QuantizeLeakyRelu is
 * one template for both types) clamped to the int16 range. */
static void es_leaky_relu_s16(int32_t size, int32_t input_zero_point, int32_t output_offset,
                              int32_t identity_multiplier, int32_t identity_shift,
                              int32_t alpha_multiplier, int32_t alpha_shift,
                              int32_t alpha_negative, const void *input_data,
                              void *output_data) {
  const int16_t *input = (const int16_t *)input_data;
  int16_t *output = (int16_t *)output_data;
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
    output[i] = (int16_t)es_clamp(result, -32768, 32767);
  }
}
