/* @section logistic needs fixed_point */
/* LOGISTIC int8 -> int8 (reference_integer_ops::Logistic): the offset input, beyond the input
 * radius saturated, else rescaled to Q4.27 and passed through gemmlowp's fixed-point logistic;
 * the Q0.31 result rounded to the output scale 1/256 with zero point -128. */
static void es_logistic(int32_t size, int32_t input_zero_point, int32_t input_radius,
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
      const int32_t result = es_shift_round(es_fp_logistic(input_q4, 4), 23) - 128;
      output[i] = (int8_t)es_clamp(result, -128, 127);
    }
  }
}
