/* @section quantize_s16_s8 needs requantize */
/* QUANTIZE int16 -> int8 (see requantize.c). */
static void es_quantize_s16_s8(int32_t size, const void *input_data, int32_t input_offset,
                  int32_t multiplier, int shift, int32_t output_offset, void *output_data) {
  ES_REQUANTIZE_LOOP(int16_t, int8_t, -128, 127)
}
