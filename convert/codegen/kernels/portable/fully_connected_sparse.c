/* FULLY_CONNECTED with mostly-zero weights stored sparse, in the format of conv_2d_sparse.c. */
/* @section fully_connected_sparse needs common linear_common */
static void es_fully_connected_sparse(int32_t batches, int32_t depth, int32_t units,
                                      const int8_t *input, const uint16_t *counts,
                                      const uint8_t *deltas, const int8_t *values,
                                      const int32_t *folded_bias, const int32_t *multiplier,
                                      const int8_t *shift, int per_channel,
                                      int32_t output_offset, int32_t act_min, int32_t act_max,
                                      int8_t *output) {
  int32_t batch, unit, i;
  for (batch = 0; batch < batches; ++batch) {
    const int8_t *in = input + batch * depth;
    const uint8_t *delta = deltas;
    const int8_t *value = values;
    for (unit = 0; unit < units; ++unit) {
      const int32_t channel = per_channel ? unit : 0;
      const int32_t count = counts[unit];
      int32_t acc = folded_bias[unit], offset = 0;
      for (i = 0; i < count; ++i) {
        offset += delta[i];
        acc += in[offset] * value[i];
      }
      delta += count;
      value += count;
      output[batch * units + unit] = es_linear_finish(acc, multiplier[channel], shift[channel],
                                                      output_offset, act_min, act_max);
    }
  }
}
