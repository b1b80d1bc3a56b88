/* @section requantize needs common */
/* The body of QUANTIZE from IN to OUT values (reference_ops::Requantize): (x - input zero
 * point) times input_scale / output_scale, plus the output zero point, clamped to [LOW, HIGH]. */
#define ES_REQUANTIZE_LOOP(IN, OUT, LOW, HIGH)                                              \
  const IN *in = (const IN *)input_data;                                                    \
  OUT *out = (OUT *)output_data;                                                            \
  int32_t i;                                                                                \
  for (i = 0; i < size; ++i) {                                                              \
    const int32_t result = es_requantize(in[i] + input_offset, multiplier, shift) + output_offset; \
    out[i] = (OUT)es_clamp(result, LOW, HIGH);                                              \
  }
