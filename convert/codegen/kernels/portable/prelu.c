/* @section prelu needs binary */
/* PRELU int8 -> int8 (reference_ops::BroadcastPrelu4DSlow): the offset input requantized by
 * input / output scale where it is >= 0, else its product with the offset alpha (broadcast
 * over the input, see binary.c) requantized by input * alpha / output scale; plus the output
 * zero point, clamped. */
typedef struct {
  int32_t input_offset, alpha_offset, output_offset;
  int32_t identity_multiplier, identity_shift;
  int32_t alpha_multiplier, alpha_shift;
} es_prelu_params;

static inline int32_t es_prelu_value(const es_prelu_params *p, int32_t x, int32_t alpha) {
  const int32_t value = x + p->input_offset;
  const int32_t result =
      value >= 0 ? es_requantize(value, p->identity_multiplier, p->identity_shift)
                 : es_requantize(value * (alpha + p->alpha_offset), p->alpha_multiplier,
                                 p->alpha_shift);
  return es_clamp(result + p->output_offset, -128, 127);
}

static void es_prelu(const es_prelu_params *p, const es_broadcast *shape, const void *first_data,
                     const void *second_data, void *output_data) {
  ES_BINARY_LOOP(int8_t, es_prelu_value)
}
