/* @section dequantize_s16 needs dequantize */
/* DEQUANTIZE int16 -> float32 (see dequantize.c). */
static void es_dequantize_s16(int32_t size, const void *input_data, uint32_t scale_bits,
                              int32_t zero_point, void *output_data) {
  ES_DEQUANTIZE_LOOP(int16_t)
}
