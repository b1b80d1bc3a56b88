/* @section add needs add_params */
/* ADD of two same-shape tensors (reference_integer_ops::AddElementwise): both inputs are
 * rescaled to a common scale with 20 bits of headroom, summed, then requantized. */
static void es_add(const es_add_params *p, int32_t size, const int8_t *input1,
                   const int8_t *input2, int8_t *output) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t shifted1 = (int32_t)((uint32_t)(input1[i] + p->input1_offset) << p->left_shift);
    const int32_t shifted2 = (int32_t)((uint32_t)(input2[i] + p->input2_offset) << p->left_shift);
    const int32_t scaled1 = es_requantize(shifted1, p->input1_multiplier, p->input1_shift);
    const int32_t scaled2 = es_requantize(shifted2, p->input2_multiplier, p->input2_shift);
    const int32_t sum = scaled1 + scaled2;
    const int32_t result =
        es_requantize(sum, p->output_multiplier, p->output_shift) + p->output_offset;
    output[i] = (int8_t)es_clamp(result, p->act_min, p->act_max);
  }
}
