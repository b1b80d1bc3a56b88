/* @section cmsis_pool_2d needs cmsis_common */
/* MAX_POOL_2D (arm_max_pool_s8) and AVERAGE_POOL_2D (arm_avgpool_s8). */
static void es_cmsis_pool_2d(const es_window *p, int average, const int8_t *input,
                             int8_t *scratch, int32_t scratch_bytes, int8_t *output) {
  const cmsis_nn_context context = {scratch, scratch_bytes};
  const cmsis_nn_pool_params params = {{p->stride_w, p->stride_h}, {p->pad_w, p->pad_h},
                                       {p->act_min, p->act_max}};
  const cmsis_nn_dims input_dims = {1, p->in_h, p->in_w, p->in_c};
  const cmsis_nn_dims filter_dims = {1, p->k_h, p->k_w, 1};
  const cmsis_nn_dims output_dims = {1, p->out_h, p->out_w, p->out_c};
  if (average) {
    (void)arm_avgpool_s8(&context, &params, &input_dims, input, &filter_dims, &output_dims,
                         output);
  } else {
    (void)arm_max_pool_s8(&context, &params, &input_dims, input, &filter_dims, &output_dims,
                          output);
  }
}
