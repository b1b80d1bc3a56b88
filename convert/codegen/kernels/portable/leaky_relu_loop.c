/* @section leaky_relu_loop needs common */
/* LEAKY_RELU (reference_ops::QuantizeLeakyRelu, one template for int8 and int16): the offset
 * input requantized by input / output scale where it is >= 0, by input * alpha / output scale
 * where it is negative (a negative alpha's multiplier made positive and the product negated,
 * as TFLite does), plus the output zero point, clamped to the type's range [LOW, HIGH]. */
#define ES_LEAKY_RELU_LOOP(T, LOW, HIGH)                                                    \
  const T *input = (const T *)input_data;                                                   \
  T *output = (T *)output_data;                                                             \
  int32_t i;                                                                                \
  for (i = 0; i < size; ++i) {                                                              \
    const int32_t value = input[i] - input_zero_point;                                      \
    int32_t result = output_offset;                                                         \
    if (value >= 0) {                                                                       \
      result += es_requantize(value, identity_multiplier, identity_shift);                  \
    } else {                                                                                \
      const int32_t scaled = es_requantize(value, alpha_multiplier, alpha_shift);           \
      result += alpha_negative ? -scaled : scaled;                                          \
    }                                                                                       \
    output[i] = (T)es_clamp(result, LOW, HIGH);                                             \
  }
