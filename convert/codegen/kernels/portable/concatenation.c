/* @section concatenation needs common */
/* CONCATENATION and PACK (reference_ops::Concatenation, TFLite Micro's pack.cc): for each of
 * `outer` blocks, the next row_bytes[i] bytes of every input in turn. The call lists the
 * inputs after the output; the macro gathers them into an array (C99 compound literal), so
 * one kernel serves any number of inputs. */
#define es_concatenation(outer, count, row_bytes, output, ...) \
  es_concatenation_list(outer, count, row_bytes, output, (const void *const[]){__VA_ARGS__})

static void es_concatenation_list(int32_t outer, int32_t count, const int32_t *row_bytes,
                                  void *output_data, const void *const *inputs) {
  int8_t *output = (int8_t *)output_data;
  int32_t k, i;
  for (k = 0; k < outer; ++k) {
    for (i = 0; i < count; ++i) {
      memcpy(output, (const int8_t *)inputs[i] + k * row_bytes[i], (size_t)row_bytes[i]);
      output += row_bytes[i];
    }
  }
}
