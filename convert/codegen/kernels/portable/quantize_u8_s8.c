/* @section quantize_u8_s8 needs requantize */
/* QUANTIZE uint8 -> int8: the input of a model converted with uint8 input (see requantize.c).
 * TFLite Micro's shortcut for a zero point 128 apart at equal scales, x ^ 0x80, is what this
 * computes there too. */
static void es_quantize_u8_s8(int32_t size, const void *input_data, int32_t input_offset,
                  int32_t multiplier, int shift, int32_t output_offset, void *output_data) {
  ES_REQUANTIZE_LOOP(uint8_t, int8_t, -128, 127)
}
