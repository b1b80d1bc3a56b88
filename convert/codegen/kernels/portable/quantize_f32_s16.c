/* @section quantize_f32_s16 needs quantize_f32 */
/* QUANTIZE float32 -> int16: the input of a 16x8 model with float input (see
 * quantize_f32.c). */
static void es_quantize_f32_s16(int32_t size, const void *input_data, uint32_t scale_bits,
                                int32_t zero_point, void *output_data) {
  ES_AFFINE_QUANTIZE_LOOP(int16_t, -32768, 32767)
}
