/* @section tanh_s16 needs common */
/* TANH int16 -> int16 (reference_integer_ops::Tanh, 16-bit): tanh(x) = 2 sigmoid(2x) - 1 from
 * the sigmoid table of LOGISTIC (quant.sigmoid_table_uint16), interpolated with 8 fractional
 * bits, to Q0.15. */
static void es_tanh_s16(int32_t size, int32_t input_multiplier, int32_t input_shift,
                        const uint16_t *table, const void *input_data,
                        void *output_data) {
  const int16_t *input = (const int16_t *)input_data;
  int16_t *output = (int16_t *)output_data;
  const int32_t round = input_shift > 0 ? (int32_t)1 << (input_shift - 1) : 0;
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t value = (input[i] * input_multiplier + round) >> input_shift;
    const uint32_t magnitude = (uint32_t)(value < 0 ? -value : value);
    const uint32_t step = magnitude >> 8;
    int32_t result;
    if (step >= 255) {
      result = 0xFFFF << 8;
    } else {
      const uint32_t low = table[step];
      const uint32_t high = table[step + 1];
      result = (int32_t)((low << 8) + (magnitude & 0xFF) * (high - low));
    }
    result = value >= 0 ? result - (1 << 23) + (1 << 7) : -result + (1 << 23) + (1 << 7) - 1;
    output[i] = (int16_t)(result >> 8);
  }
}
