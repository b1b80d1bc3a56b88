/* @section minimum needs binary_values */
/* MINIMUM of int8 tensors, broadcast (see binary.c and binary_values.c). */
static void es_minimum(const es_broadcast *shape, const void *first_data,
                       const void *second_data, void *output_data) {
  ES_BINARY_LOOP(int8_t, ES_MINIMUM_VALUE)
}
