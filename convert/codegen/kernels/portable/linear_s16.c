/* @section linear_s16 needs common */
/* TFLite's MultiplyByQuantizedMultiplier for an int64 accumulator (16x8 kernels with an int64
 * bias): the multiplier rounded to 16 bits, one rounding shift. */
static inline int32_t es_requantize_s64(int64_t x, int32_t multiplier, int shift) {
  const int64_t reduced = multiplier < 0x7FFF0000 ? ((multiplier + (1 << 15)) >> 16) : 0x7FFF;
  const int total_shift = 15 - shift;
  return (int32_t)((x * reduced + ((int64_t)1 << (total_shift - 1))) >> total_shift);
}

/* The body of a 16x8 FULLY_CONNECTED (reference_integer_ops::FullyConnected and
 * FullyConnectedPerChannel), weights [units][depth]: the sum accumulates in ACC, the type
 * TFLite Micro accumulates in (the bias type), and REQUANTIZE(acc, multiplier, shift) scales
 * it. An int32 sum is kept in uint32_t, so it wraps as TFLite Micro's does. */
#define ES_FULLY_CONNECTED_S16_LOOP(ACC, BIAS, REQUANTIZE)                                    \
  const int16_t *input = (const int16_t *)input_data;                                        \
  int16_t *output = (int16_t *)output_data;                                                  \
  int32_t batch, unit, d;                                                                    \
  for (batch = 0; batch < batches; ++batch) {                                                \
    const int16_t *in = input + batch * depth;                                               \
    for (unit = 0; unit < units; ++unit) {                                                   \
      const int8_t *row = weights + unit * depth;                                            \
      const int32_t channel = per_channel ? unit : 0;                                        \
      ACC acc = 0;                                                                           \
      int32_t result;                                                                        \
      for (d = 0; d < depth; ++d) {                                                          \
        acc += (ACC)((int32_t)row[d] * ((int32_t)in[d] + input_offset));                     \
      }                                                                                      \
      if (bias) {                                                                            \
        acc += (ACC)bias[unit];                                                              \
      }                                                                                      \
      result = REQUANTIZE((BIAS)acc, multiplier[channel], shift[channel]) + output_offset;   \
      output[batch * units + unit] = (int16_t)es_clamp(result, act_min, act_max);            \
    }                                                                                        \
  }
