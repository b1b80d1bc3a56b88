/* @section cmsis_softmax needs cmsis_common */
/* SOFTMAX through arm_softmax_s8 (TFLite Micro's fixed-point exp, bit-accurate). */
static void es_cmsis_softmax(int32_t rows, int32_t depth, int32_t multiplier,
                             int32_t left_shift, int32_t diff_min, const int8_t *input,
                             int8_t *output) {
  arm_softmax_s8(input, rows, depth, multiplier, left_shift, diff_min, output);
}
