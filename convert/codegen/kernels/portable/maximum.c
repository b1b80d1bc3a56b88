/* @section maximum needs binary_values */
/* MAXIMUM of int8 tensors, broadcast (see binary.c and binary_values.c). */
static void es_maximum(const es_broadcast *shape, const void *first_data,
                       const void *second_data, void *output_data) {
  ES_BINARY_LOOP(int8_t, ES_MAXIMUM_VALUE)
}
