/* @section dequantize needs quantize_float_bits */
/* DEQUANTIZE to float32 (reference_ops::Dequantize, as TFLite Micro computes it): the input
 * scale widened to double (DequantizationParams.scale is a double), times (x - zero point) in
 * double, rounded once to float. With QUANTIZE from float (quantize_f32.c) the only floating
 * point in generated C: the model's own float output. */
#define ES_DEQUANTIZE_LOOP(IN)                                                              \
  const IN *in = (const IN *)input_data;                                                    \
  float *out = (float *)output_data;                                                        \
  const double scale = (double)es_float_from_bits(scale_bits);                              \
  int32_t i;                                                                                \
  for (i = 0; i < size; ++i) {                                                              \
    out[i] = (float)(scale * (double)((int32_t)in[i] - zero_point));                        \
  }
