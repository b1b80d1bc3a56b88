/* @section leaky_relu_s16 needs leaky_relu_loop */
/* LEAKY_RELU int16 -> int16: the int8 kernel's loop clamped to the int16 range. */
static void es_leaky_relu_s16(int32_t size, int32_t input_zero_point, int32_t output_offset,
                              int32_t identity_multiplier, int32_t identity_shift,
                              int32_t alpha_multiplier, int32_t alpha_shift,
                              int32_t alpha_negative, const void *input_data,
                              void *output_data) {
  ES_LEAKY_RELU_LOOP(int16_t, -32768, 32767)
}
