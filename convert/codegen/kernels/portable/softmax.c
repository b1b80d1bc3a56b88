/* @section softmax needs softmax_common */
/* SOFTMAX int8 -> int8 (reference_ops::Softmax; softmax_common.c). */
static void es_softmax(int32_t rows, int32_t depth, int32_t input_multiplier,
                       int32_t input_left_shift, int32_t diff_min, const int8_t *input,
                       int8_t *output) {
  es_softmax_rows(rows, depth, input_multiplier, input_left_shift, diff_min, input, output, 8);
}
