/* @section cmsis_conv_2d needs cmsis_common */
/* CONV_2D through arm_convolve_wrapper_s8, which picks the 1x1 fast path, the 1xN path or
 * im2col + matrix multiply (arm_convolve_s8). shift holds CMSIS-NN's int32 per-channel shifts. */
static void es_cmsis_conv_2d(const es_window *p, const int8_t *input, const int8_t *weights,
                             const int32_t *bias, const int32_t *multiplier,
                             const int32_t *shift, int8_t *scratch, int32_t scratch_bytes,
                             int8_t *output) {
  const cmsis_nn_context context = {scratch, scratch_bytes};
  const cmsis_nn_conv_params params = {p->input_offset, p->output_offset,
                                       {p->stride_w, p->stride_h}, {p->pad_w, p->pad_h},
                                       {p->dil_w, p->dil_h}, {p->act_min, p->act_max}};
  const cmsis_nn_per_channel_quant_params quant = {(int32_t *)multiplier, (int32_t *)shift};
  const cmsis_nn_dims input_dims = {1, p->in_h, p->in_w, p->in_c};
  const cmsis_nn_dims filter_dims = {p->out_c, p->k_h, p->k_w, p->in_c};
  const cmsis_nn_dims bias_dims = {1, 1, 1, p->out_c};
  const cmsis_nn_dims output_dims = {1, p->out_h, p->out_w, p->out_c};
  (void)arm_convolve_wrapper_s8(&context, &params, &quant, &input_dims, input, &filter_dims,
                                weights, &bias_dims, bias, &output_dims, output);
}
