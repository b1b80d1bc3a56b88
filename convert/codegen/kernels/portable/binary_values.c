/* @section binary_values needs binary */
/* The per-pair arithmetic of MAXIMUM, MINIMUM (TFLite Micro's MaximumOp and MinimumOp on the
 * raw values: the converter gives inputs and output one quantization) and SQUARED_DIFFERENCE
 * (squared_difference.cc: both inputs shifted left by left_shift, 7 for int8 and 0 for int16,
 * and rescaled to twice the larger scale; the squared difference requantized). */
#define ES_MAXIMUM_VALUE(p, a, b) ((a) > (b) ? (a) : (b))
#define ES_MINIMUM_VALUE(p, a, b) ((a) < (b) ? (a) : (b))

static inline int32_t es_squared_difference_value(const es_add_params *p, int32_t a, int32_t b) {
  const int32_t shifted1 = (a + p->input1_offset) * (1 << p->left_shift);
  const int32_t shifted2 = (b + p->input2_offset) * (1 << p->left_shift);
  const int32_t difference = es_requantize(shifted1, p->input1_multiplier, p->input1_shift) -
                             es_requantize(shifted2, p->input2_multiplier, p->input2_shift);
  const int32_t result =
      es_requantize(difference * difference, p->output_multiplier, p->output_shift) +
      p->output_offset;
  return es_clamp(result, p->act_min, p->act_max);
}
