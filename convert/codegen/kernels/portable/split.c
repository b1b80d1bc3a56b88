/* @section split needs common */
/* SPLIT, SPLIT_V and UNPACK (TFLite Micro's split.cc, split_v.cc, unpack.cc): for each of
 * `outer` blocks of the input, the next row_bytes[i] bytes go to output i in turn. The call
 * lists the outputs after the input; the macro gathers them into an array (C99 compound
 * literal), so one kernel serves any number of outputs. */
#define es_split(outer, count, row_bytes, input, ...) \
  es_split_list(outer, count, row_bytes, input, (void *const[]){__VA_ARGS__})

static void es_split_list(int32_t outer, int32_t count, const int32_t *row_bytes,
                          const void *input_data, void *const *outputs) {
  const int8_t *input = (const int8_t *)input_data;
  int32_t k, i;
  for (k = 0; k < outer; ++k) {
    for (i = 0; i < count; ++i) {
      memcpy((int8_t *)outputs[i] + k * row_bytes[i], input, (size_t)row_bytes[i]);
      input += row_bytes[i];
    }
  }
}
