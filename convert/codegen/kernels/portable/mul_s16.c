/* @section mul_s16 needs binary */
/* MUL of int16 tensors (see binary.c). */
static void es_mul_s16(const es_add_params *p, const es_broadcast *shape,
                       const void *first_data, const void *second_data, void *output_data) {
  ES_BINARY_LOOP(int16_t, es_mul_value)
}
