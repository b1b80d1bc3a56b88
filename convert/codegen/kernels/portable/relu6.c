/* @section relu6 needs common */
/* RELU6 int8 -> int8 (TFLite Micro's Relu6Quantized): the input clamped to its own quantized
 * 0 and 6; the output keeps the input's scale and zero point, whatever the output tensor says. */
static void es_relu6(int32_t size, int32_t low, int32_t high, const int8_t *input,
                     int8_t *output) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    output[i] = (int8_t)es_clamp(input[i], low, high);
  }
}
