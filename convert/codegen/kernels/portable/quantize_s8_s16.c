/* @section quantize_s8_s16 needs requantize */
/* QUANTIZE int8 -> int16 (see requantize.c). */
static void es_quantize_s8_s16(int32_t size, const void *input_data, int32_t input_offset,
                  int32_t multiplier, int shift, int32_t output_offset, void *output_data) {
  ES_REQUANTIZE_LOOP(int8_t, int16_t, -32768, 32767)
}
