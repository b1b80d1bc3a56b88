/* @section relu needs common */
/* RELU int8 -> int8 (TFLite Micro's ReluQuantized): the offset input requantized to the output
 * scale, plus the output zero point, clamped to [act_min, act_max] (act_min: the output's
 * zero, as at least -128). */
static void es_relu(int32_t size, int32_t input_zero_point, int32_t multiplier, int32_t shift,
                    int32_t output_offset, int32_t act_min, int32_t act_max, const int8_t *input,
                    int8_t *output) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t result =
        output_offset + es_requantize(input[i] - input_zero_point, multiplier, shift);
    output[i] = (int8_t)es_clamp(result, act_min, act_max);
  }
}
