/* @section dequantize_u8 needs dequantize */
/* DEQUANTIZE uint8 -> float32 (see dequantize.c). */
static void es_dequantize_u8(int32_t size, const void *input_data, uint32_t scale_bits,
                             int32_t zero_point, void *output_data) {
  ES_DEQUANTIZE_LOOP(uint8_t)
}
