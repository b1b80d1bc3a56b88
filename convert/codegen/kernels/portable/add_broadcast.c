/* @section add_broadcast needs binary */
/* ADD of int8 tensors with a broadcast or constant operand (see binary.c; two same-shape
 * activations take add.c's flat loop). */
static void es_add_broadcast(const es_add_params *p, const es_broadcast *shape,
                             const void *first_data, const void *second_data,
                             void *output_data) {
  ES_BINARY_LOOP(int8_t, es_add_value)
}
