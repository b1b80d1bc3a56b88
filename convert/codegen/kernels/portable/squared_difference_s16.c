/* @section squared_difference_s16 needs binary_values */
/* SQUARED_DIFFERENCE of int16 tensors, broadcast (see binary.c and binary_values.c). */
static void es_squared_difference_s16(const es_add_params *p, const es_broadcast *shape,
                                      const void *first_data, const void *second_data,
                                      void *output_data) {
  ES_BINARY_LOOP(int16_t, es_squared_difference_value)
}
