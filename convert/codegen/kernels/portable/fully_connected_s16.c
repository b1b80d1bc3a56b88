/* @section fully_connected_s16 needs linear_s16 */
/* 16x8 FULLY_CONNECTED with an int64 bias (or none): an int64 sum (see linear_s16.c). */
static void es_fully_connected_s16(int32_t batches, int32_t depth, int32_t units,
                                   const void *input_data, const int8_t *weights,
                                   const int64_t *bias, int32_t input_offset,
                                   const int32_t *multiplier, const int8_t *shift,
                                   int per_channel, int32_t output_offset, int32_t act_min,
                                   int32_t act_max, void *output_data) {
  ES_FULLY_CONNECTED_S16_LOOP(int64_t, int64_t, es_requantize_s64)
}
