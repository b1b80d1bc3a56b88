/* @section conv_2d_s16_acc32 needs window_s16 */
/* 16x8 CONV_2D with an int32 bias: an int32 sum, requantized as for int8 (see
 * window_s16.c). */
static void es_conv_2d_s16_acc32(const es_window *p, int depth_multiplier,
                                 const void *input_data, const int8_t *weights,
                                 const int32_t *bias, const int32_t *multiplier,
                                 const int8_t *shift, void *output_data) {
  ES_WINDOW_S16_LOOP(uint32_t, int32_t, es_requantize)
}
