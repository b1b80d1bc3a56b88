/* @section fully_connected_s16_acc32 needs linear_s16 */
/* 16x8 FULLY_CONNECTED with an int32 bias: an int32 sum, requantized as for int8 (see
 * linear_s16.c). */
static void es_fully_connected_s16_acc32(int32_t batches, int32_t depth, int32_t units,
                                         const void *input_data, const int8_t *weights,
                                         const int32_t *bias, int32_t input_offset,
                                         const int32_t *multiplier, const int8_t *shift,
                                         int per_channel, int32_t output_offset,
                                         int32_t act_min, int32_t act_max, void *output_data) {
  ES_FULLY_CONNECTED_S16_LOOP(uint32_t, int32_t, es_requantize)
}
