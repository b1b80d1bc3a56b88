/* @section conv_2d_s16 needs window_s16 */
/* 16x8 CONV_2D (depth_multiplier 0) or DEPTHWISE_CONV_2D with an int64 bias (or none): an
 * int64 sum (see window_s16.c). */
static void es_conv_2d_s16(const es_window *p, int depth_multiplier, const void *input_data,
                           const int8_t *weights, const int64_t *bias,
                           const int32_t *multiplier, const int8_t *shift, void *output_data) {
  ES_WINDOW_S16_LOOP(int64_t, int64_t, es_requantize_s64)
}
