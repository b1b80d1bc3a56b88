/* @section softmax_s8_s16 needs softmax_common */
/* SOFTMAX int8 -> int16 (reference_ops::Softmax<int8_t, int16_t>; softmax_common.c): the int8
 * kernel's arithmetic, rounded to 16 bits (scale 1/65536, zero point -32768). */
static void es_softmax_s8_s16(int32_t rows, int32_t depth, int32_t input_multiplier,
                              int32_t input_left_shift, int32_t diff_min, const int8_t *input,
                              void *output) {
  es_softmax_rows(rows, depth, input_multiplier, input_left_shift, diff_min, input, output, 16);
}
