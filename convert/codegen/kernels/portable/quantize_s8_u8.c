/* @section quantize_s8_u8 needs requantize */
/* QUANTIZE int8 -> uint8: the output of a model converted with uint8 output (see
 * requantize.c, and quantize_u8_s8.c for TFLite Micro's x ^ 0x80 shortcut). */
static void es_quantize_s8_u8(int32_t size, const void *input_data, int32_t input_offset,
                  int32_t multiplier, int shift, int32_t output_offset, void *output_data) {
  ES_REQUANTIZE_LOOP(int8_t, uint8_t, 0, 255)
}
