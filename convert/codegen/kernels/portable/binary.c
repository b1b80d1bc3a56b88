/* @section binary needs add_params */
/* SUB, MUL and int16 ADD of two tensors broadcast over a 4-d output (TFLite Micro's
 * BroadcastQuantSubSlow, reference_integer_ops::Mul and BroadcastMul6DSlow,
 * reference_ops::AddGeneralParamScale and BroadcastAdd4DSlow): every constant,
 * the output's dims and each input's strides (0 along broadcast axes) are fixed at
 * generation time. */
typedef struct {
  int32_t dim0, dim1, dim2, dim3;
  int32_t first0, first1, first2, first3;
  int32_t second0, second1, second2, second3;
} es_broadcast;

/* reference_ops::SubElementwise (sign -1) and AddElementwise (sign 1) on one pair: both
 * inputs shifted left by left_shift (20 for int8, 15 for int16) and rescaled, the difference
 * or sum requantized to the output. */
static inline int32_t es_add_sub_value(const es_add_params *p, int32_t a, int32_t b, int sign) {
  const int32_t shifted1 = (int32_t)((uint32_t)(a + p->input1_offset) << p->left_shift);
  const int32_t shifted2 = (int32_t)((uint32_t)(b + p->input2_offset) << p->left_shift);
  const int32_t scaled1 = es_requantize(shifted1, p->input1_multiplier, p->input1_shift);
  const int32_t scaled2 = es_requantize(shifted2, p->input2_multiplier, p->input2_shift);
  const int32_t combined = sign > 0 ? scaled1 + scaled2 : scaled1 - scaled2;
  const int32_t result =
      es_requantize(combined, p->output_multiplier, p->output_shift) + p->output_offset;
  return es_clamp(result, p->act_min, p->act_max);
}

static inline int32_t es_sub_value(const es_add_params *p, int32_t a, int32_t b) {
  return es_add_sub_value(p, a, b, -1);
}

static inline int32_t es_add_value(const es_add_params *p, int32_t a, int32_t b) {
  return es_add_sub_value(p, a, b, 1);
}

/* reference_integer_ops::MulElementwise on one pair (int16 products fit 32 bits). */
static inline int32_t es_mul_value(const es_add_params *p, int32_t a, int32_t b) {
  const int32_t product = (a + p->input1_offset) * (b + p->input2_offset);
  const int32_t result =
      es_requantize(product, p->output_multiplier, p->output_shift) + p->output_offset;
  return es_clamp(result, p->act_min, p->act_max);
}

/* The body of a binary kernel over TYPE values: VALUE(p, a, b) for each output element. */
#define ES_BINARY_LOOP(TYPE, VALUE)                                                               \
  const TYPE *first = (const TYPE *)first_data;                                                   \
  const TYPE *second = (const TYPE *)second_data;                                                 \
  TYPE *output = (TYPE *)output_data;                                                             \
  int32_t i0, i1, i2, i3, index = 0;                                                              \
  for (i0 = 0; i0 < shape->dim0; ++i0) {                                                          \
    for (i1 = 0; i1 < shape->dim1; ++i1) {                                                        \
      for (i2 = 0; i2 < shape->dim2; ++i2) {                                                      \
        const TYPE *a = first + i0 * shape->first0 + i1 * shape->first1 + i2 * shape->first2;     \
        const TYPE *b = second + i0 * shape->second0 + i1 * shape->second1 + i2 * shape->second2; \
        for (i3 = 0; i3 < shape->dim3; ++i3) {                                                    \
          output[index++] = (TYPE)VALUE(p, a[i3 * shape->first3], b[i3 * shape->second3]);        \
        }                                                                                         \
      }                                                                                           \
    }                                                                                             \
  }
