/* @section softmax_s16 needs common */
/* int16 SOFTMAX (reference_ops::SoftmaxInt16, as TFLite Micro runs it): exp and 1 / (1 + x)
 * through TFLite's two 513-entry interpolated tables (LUTPopulate<int16_t>, computed at
 * generation time in the same float32 arithmetic). */
static int16_t es_lut_s16(int16_t value, const int16_t *lut) {
  const uint16_t index = (uint16_t)(256 + (value >> 7));
  const int16_t offset = (int16_t)(value & 0x7f);
  const int16_t base = lut[index];
  const int16_t slope = (int16_t)(lut[index + 1] - lut[index]);
  const int delta = (slope * offset + 64) >> 7;
  return (int16_t)(base + delta);
}

static void es_softmax_s16(int32_t rows, int32_t depth, int32_t input_multiplier,
                           int input_shift, const int16_t *exp_lut,
                           const int16_t *one_over_one_plus_x_lut, const void *input_data,
                           void *output_data) {
  const int16_t *input = (const int16_t *)input_data;
  int16_t *output = (int16_t *)output_data;
  int32_t row, c;
  for (row = 0; row < rows; ++row) {
    const int16_t *in = input + row * depth;
    int16_t *out = output + row * depth;
    int16_t max_in_row = INT16_MIN;
    int32_t sum_of_exps = 0, shifted_sum, sym_shifted_sum;
    int headroom_plus_one = 0, right_shift;
    int16_t reciprocal;
    for (c = 0; c < depth; ++c) {
      max_in_row = in[c] > max_in_row ? in[c] : max_in_row;
    }
    for (c = 0; c < depth; ++c) {
      const int32_t scaled =
          es_requantize(in[c] - max_in_row, input_multiplier, input_shift) + 32767;
      out[c] = es_lut_s16((int16_t)es_clamp(scaled, -32768, 32767), exp_lut);
      sum_of_exps += out[c];
    }
    while (headroom_plus_one < 32 && !((uint32_t)sum_of_exps & (0x80000000u >> headroom_plus_one))) {
      ++headroom_plus_one;
    }
    shifted_sum =
        (int32_t)((((int64_t)sum_of_exps << (headroom_plus_one - 1)) + (1 << 13)) >> 14);
    sym_shifted_sum = shifted_sum + (-((1 << 15) + (1 << 16)));
    reciprocal = es_lut_s16((int16_t)es_clamp(sym_shifted_sum, -32768, 32767),
                            one_over_one_plus_x_lut);
    right_shift = 31 - headroom_plus_one;
    for (c = 0; c < depth; ++c) {
      const int64_t round = (int64_t)1 << (right_shift - 1);
      const int32_t result =
          (int32_t)(((int64_t)out[c] * (int64_t)reciprocal + round) >> right_shift);
      out[c] = (int16_t)es_clamp(result, 0, 32767);
    }
  }
}
