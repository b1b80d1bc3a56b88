/* @section tanh needs fixed_point */
/* TANH int8 -> int8 (reference_integer_ops::Tanh): as LOGISTIC, with gemmlowp's fixed-point
 * tanh and the output scale 1/128 with zero point 0. */
static void es_tanh(int32_t size, int32_t input_zero_point, int32_t input_radius,
                    int32_t input_multiplier, int32_t input_shift, const int8_t *input,
                    int8_t *output) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t value = input[i] - input_zero_point;
    if (value <= -input_radius) {
      output[i] = -128;
    } else if (value >= input_radius) {
      output[i] = 127;
    } else {
      const int32_t input_q4 = es_requantize(value, input_multiplier, input_shift);
      const int32_t result = es_shift_round(es_fp_tanh(input_q4, 4), 24);
      output[i] = (int8_t)es_clamp(result, -128, 127);
    }
  }
}
