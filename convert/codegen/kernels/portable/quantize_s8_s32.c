/* @section quantize_s8_s32 needs requantize */
/* QUANTIZE int8 -> int32 (see requantize.c; TFLite Micro's int32 outputs, e.g. a model's
 * last op handing scores to the application). */
static void es_quantize_s8_s32(int32_t size, const void *input_data, int32_t input_offset,
                  int32_t multiplier, int shift, int32_t output_offset, void *output_data) {
  ES_REQUANTIZE_LOOP(int8_t, int32_t, INT32_MIN, INT32_MAX)
}
