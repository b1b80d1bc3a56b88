/* @section cmsis_add needs cmsis_common add */
/* ADD of two same-shape tensors through arm_elementwise_add_s8 (same parameters as es_add). */
static void es_cmsis_add(const es_add_params *p, int32_t size, const int8_t *input1,
                         const int8_t *input2, int8_t *output) {
  (void)arm_elementwise_add_s8(input1, input2, p->input1_offset, p->input1_multiplier,
                               p->input1_shift, p->input2_offset, p->input2_multiplier,
                               p->input2_shift, p->left_shift, output, p->output_offset,
                               p->output_multiplier, p->output_shift, p->act_min, p->act_max,
                               size);
}
