/* @section quantize_s16_s16 needs requantize */
/* QUANTIZE int16 -> int16 (see requantize.c). */
static void es_quantize_s16_s16(int32_t size, const void *input_data, int32_t input_offset,
                  int32_t multiplier, int shift, int32_t output_offset, void *output_data) {
  ES_REQUANTIZE_LOOP(int16_t, int16_t, -32768, 32767)
}
