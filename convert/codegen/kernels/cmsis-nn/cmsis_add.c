/* @section cmsis_add needs cmsis_common */
/* ADD of two same-shape tensors through arm_elementwise_add_s8. The parameters are es_add's
 * (kernels/portable/add.c), passed as literals in es_add_params' field order. */
static void es_cmsis_add(int32_t input1_offset, int32_t input2_offset, int32_t output_offset,
                         int32_t left_shift, int32_t input1_multiplier,
                         int32_t input2_multiplier, int32_t output_multiplier,
                         int32_t input1_shift, int32_t input2_shift, int32_t output_shift,
                         int32_t act_min, int32_t act_max, int32_t size, const int8_t *input1,
                         const int8_t *input2, int8_t *output) {
  (void)arm_elementwise_add_s8(input1, input2, input1_offset, input1_multiplier, input1_shift,
                               input2_offset, input2_multiplier, input2_shift, left_shift,
                               output, output_offset, output_multiplier, output_shift, act_min,
                               act_max, size);
}
