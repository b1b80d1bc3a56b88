/* @section add_s16 needs binary */
/* ADD of int16 tensors (see binary.c). */
static void es_add_s16(const es_add_params *p, const es_broadcast *shape,
                       const void *first_data, const void *second_data, void *output_data) {
  ES_BINARY_LOOP(int16_t, es_add_value)
}
