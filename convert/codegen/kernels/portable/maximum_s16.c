/* @section maximum_s16 needs binary_values */
/* MAXIMUM of int16 tensors, broadcast (see binary.c and binary_values.c). */
static void es_maximum_s16(const es_broadcast *shape, const void *first_data,
                           const void *second_data, void *output_data) {
  ES_BINARY_LOOP(int16_t, ES_MAXIMUM_VALUE)
}
