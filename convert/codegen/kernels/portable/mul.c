/* @section mul needs binary */
/* MUL of int8 tensors (see binary.c). */
static void es_mul(const es_add_params *p, const es_broadcast *shape,
                   const void *first_data, const void *second_data, void *output_data) {
  ES_BINARY_LOOP(int8_t, es_mul_value)
}
