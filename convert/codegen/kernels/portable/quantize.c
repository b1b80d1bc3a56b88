/* @section quantize needs common */
/* QUANTIZE int8 -> int8 (reference_ops::Requantize, as TFLite Micro's quantize kernel calls
 * it): (x - input zero point) times input_scale / output_scale, plus the output zero point. */
static void es_quantize(int32_t size, const int8_t *input, int32_t input_offset,
                        int32_t multiplier, int shift, int32_t output_offset, int8_t *output) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t result =
        es_requantize(input[i] + input_offset, multiplier, shift) + output_offset;
    output[i] = (int8_t)es_clamp(result, -128, 127);
  }
}
