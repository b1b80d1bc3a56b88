/* @section fully_connected needs common */
/* FULLY_CONNECTED, weights [units][depth] (reference_integer_ops::FullyConnected); weights are
 * symmetric (zero point 0), so folded_bias[u] = bias[u] + input_offset * sum(weights of u). */
static void es_fully_connected(int32_t batches, int32_t depth, int32_t units,
                               const int8_t *input, const int8_t *weights,
                               const int32_t *folded_bias, const int32_t *multiplier,
                               const int8_t *shift, int per_channel, int32_t output_offset,
                               int32_t act_min, int32_t act_max, int8_t *output) {
  int32_t batch, unit, d;
  for (batch = 0; batch < batches; ++batch) {
    const int8_t *in = input + batch * depth;
    for (unit = 0; unit < units; ++unit) {
      const int8_t *row = weights + unit * depth;
      const int32_t channel = per_channel ? unit : 0;
      int32_t acc = 0;
      for (d = 0; d < depth; ++d) {
        acc += (int32_t)in[d] * (int32_t)row[d];
      }
      acc += folded_bias[unit];
      acc = es_requantize(acc, multiplier[channel], shift[channel]) + output_offset;
      output[batch * units + unit] = (int8_t)es_clamp(acc, act_min, act_max);
    }
  }
}
