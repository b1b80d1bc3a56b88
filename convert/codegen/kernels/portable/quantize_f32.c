/* @section quantize_f32 needs quantize_float_bits */
/* QUANTIZE from float32 (reference_ops::AffineQuantize, as TFLite Micro computes it): the value
 * divided by the output scale in float, rounded half away from zero (std::round), plus the
 * output zero point, clamped to [low, high]. With DEQUANTIZE (dequantize.c) the only floating
 * point in generated C: the model's own float input and output.
 *
 * Rounding without <math.h>: from |q| >= 2^24 on every float is an integer and every result
 * clamps, so those saturate (NaN gives low). TFLite's int32 cast is undefined beyond 2^31:
 * on Arm it saturates as here; x86 builds of TFLite Micro give the low end there. */
static inline int32_t es_affine_quantize(float value, float scale, int32_t zero_point,
                                         int32_t low, int32_t high) {
  const float scaled = value / scale;
  float fraction;
  int32_t rounded;
  if (!(scaled > -16777216.0f)) {
    return low;
  }
  if (scaled >= 16777216.0f) {
    return high;
  }
  rounded = (int32_t)scaled; /* toward zero; exact below 2^24 */
  fraction = scaled - (float)rounded; /* exact: both share the exponent range */
  if (fraction >= 0.5f) {
    ++rounded;
  } else if (fraction <= -0.5f) {
    --rounded;
  }
  return es_clamp(rounded + zero_point, low, high);
}

/* The body of QUANTIZE from float32 to OUT values in [LOW, HIGH]. */
#define ES_AFFINE_QUANTIZE_LOOP(OUT, LOW, HIGH)                                             \
  const float *in = (const float *)input_data;                                              \
  OUT *out = (OUT *)output_data;                                                            \
  const float scale = es_float_from_bits(scale_bits);                                       \
  int32_t i;                                                                                \
  for (i = 0; i < size; ++i) {                                                              \
    out[i] = (OUT)es_affine_quantize(in[i], scale, zero_point, LOW, HIGH);                  \
  }
