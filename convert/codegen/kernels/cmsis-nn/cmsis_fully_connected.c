/* @section cmsis_fully_connected needs cmsis_common */
/* FULLY_CONNECTED through arm_fully_connected_wrapper_s8 (per-tensor or per-channel). */
static void es_cmsis_fully_connected(int32_t batches, int32_t depth, int32_t units,
                                     const int8_t *input, const int8_t *weights,
                                     const int32_t *bias, const int32_t *multiplier,
                                     const int32_t *shift, int32_t per_channel,
                                     int32_t input_offset, int32_t output_offset,
                                     int32_t act_min, int32_t act_max, int8_t *output) {
  /* No scratch off Helium (arm_fully_connected_s8_get_buffer_size is 0 there). */
  const cmsis_nn_context context = {0, 0};
  const cmsis_nn_fc_params params = {input_offset, 0, output_offset, {act_min, act_max}};
  const cmsis_nn_quant_params quant = {(int32_t *)multiplier, (int32_t *)shift, per_channel};
  const cmsis_nn_dims input_dims = {batches, 1, 1, depth};
  const cmsis_nn_dims filter_dims = {depth, 1, 1, units};
  const cmsis_nn_dims bias_dims = {1, 1, 1, units};
  const cmsis_nn_dims output_dims = {batches, 1, 1, units};
  (void)arm_fully_connected_wrapper_s8(&context, &params, &quant, &input_dims, input,
                                       &filter_dims, weights, &bias_dims, bias, &output_dims,
                                       output);
}
