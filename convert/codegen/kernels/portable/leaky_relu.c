/* @section leaky_relu needs leaky_relu_loop */
/* LEAKY_RELU int8 -> int8 (leaky_relu_loop.c). */
static void es_leaky_relu(int32_t size, int32_t input_zero_point, int32_t output_offset,
                          int32_t identity_multiplier, int32_t identity_shift,
                          int32_t alpha_multiplier, int32_t alpha_shift, int32_t alpha_negative,
                          const void *input_data, void *output_data) {
  ES_LEAKY_RELU_LOOP(int8_t, -128, 127)
}
