/* @section quantize_f32_s8 needs quantize_f32 */
/* QUANTIZE float32 -> int8: the input of a model converted with float input (see
 * quantize_f32.c). */
static void es_quantize_f32_s8(int32_t size, const void *input_data, uint32_t scale_bits,
                               int32_t zero_point, void *output_data) {
  ES_AFFINE_QUANTIZE_LOOP(int8_t, -128, 127)
}
