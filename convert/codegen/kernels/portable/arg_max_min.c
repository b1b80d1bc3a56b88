/* @section arg_max_min needs common */
/* ARG_MAX (maximum 1) and ARG_MIN (maximum 0) of int8 values along one axis, as int32 indices
 * (reference_ops::ArgMinMax): the input seen as [outer][axis_size][inner]; the first index
 * of the extreme value wins. */
static void es_arg_max_min(int32_t outer, int32_t axis_size, int32_t inner, int32_t maximum,
                           const int8_t *input, void *output_data) {
  int32_t *output = (int32_t *)output_data;
  int32_t o, n, i;
  for (o = 0; o < outer; ++o) {
    for (n = 0; n < inner; ++n) {
      const int8_t *column = input + o * axis_size * inner + n;
      int32_t best = column[0];
      int32_t best_index = 0;
      for (i = 1; i < axis_size; ++i) {
        const int32_t value = column[i * inner];
        if (maximum ? value > best : value < best) {
          best = value;
          best_index = i;
        }
      }
      output[o * inner + n] = best_index;
    }
  }
}
