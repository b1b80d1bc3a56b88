/* @section logistic_s16 needs common */
/* LOGISTIC int16 -> int16 (reference_integer_ops::Logistic, 16-bit): the input rescaled so
 * that 2^17 is 10.7, the sigmoid interpolated between entries of a 256-entry table of
 * sigmoid(i / 24) in Q0.16 (quant.sigmoid_table_uint16) on its magnitude, mirrored for
 * negative inputs, to Q0.15. */
static void es_logistic_s16(int32_t size, int32_t input_multiplier, int32_t input_shift,
                            const uint16_t *table, const void *input_data,
                            void *output_data) {
  const int16_t *input = (const int16_t *)input_data;
  int16_t *output = (int16_t *)output_data;
  const int32_t round = input_shift > 0 ? (int32_t)1 << (input_shift - 1) : 0;
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t value = (input[i] * input_multiplier + round) >> input_shift;
    const uint32_t magnitude = (uint32_t)(value < 0 ? -value : value);
    const uint32_t step = magnitude >> 9;
    uint32_t result;
    if (step >= 255) {
      result = (uint32_t)0x7FFF << 10;
    } else {
      const uint32_t low = table[step];
      const uint32_t high = table[step + 1];
      result = (low << 9) + (magnitude & 0x1FF) * (high - low);
    }
    result = value >= 0 ? result + (1u << 9) : ((1u << 25) - result + (1u << 9) - 1);
    output[i] = (int16_t)(result >> 10);
  }
}
