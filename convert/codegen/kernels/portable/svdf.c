/* @section svdf needs common */
/* SVDF, int8 input and weights, int16 time weights and state (TFLite Micro's
 * EvalIntegerSvdfReference<int16_t>): per invoke the state (memory_size values per filter)
 * shifts one step older; each filter's feature dot product, requantized to the state's scale
 * and clamped to int16, becomes its newest value; each filter's state times its time weights
 * (int32 sums) is summed over the rank into the units, the bias added, and the result
 * requantized to int8. As TFLite Micro, no fused activation in this integer kernel. The
 * state persists across invokes (a variable tensor); NAME_reset() zeroes it. */
typedef struct {
  int32_t batches, input_size, filters, rank, memory_size;
  int32_t input_zero_point, state_zero_point, output_zero_point;
  int32_t feature_multiplier, feature_shift; /* input x feature weights -> state scale */
  int32_t output_multiplier, output_shift;   /* state x time weights -> output scale */
} es_svdf_params;

static void es_svdf(const es_svdf_params *p, const int8_t *feature_weights,
                    const int16_t *time_weights, const int32_t *bias, int16_t *state,
                    void *scratch, const void *input_data, void *output_data) {
  const int8_t *input = (const int8_t *)input_data;
  int8_t *output = (int8_t *)output_data;
  const int32_t units = p->filters / p->rank;
  const int32_t state_size = p->batches * p->filters * p->memory_size;
  int32_t *filter_sums = (int32_t *)scratch;               /* batches x filters */
  int32_t *unit_sums = filter_sums + p->batches * p->filters; /* batches x units */
  int32_t b, r, c, i, j;
  /* Shift the state one step older (its last value is overwritten below). */
  for (i = 0; i + 1 < state_size; ++i) {
    state[i] = state[i + 1];
  }
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = input + b * p->input_size;
    for (r = 0; r < p->filters; ++r) {
      const int8_t *w = feature_weights + r * p->input_size;
      int32_t dot = 0;
      for (c = 0; c < p->input_size; ++c) {
        dot += (int32_t)w[c] * ((int32_t)x[c] - p->input_zero_point);
      }
      dot = es_clamp(es_requantize(dot, p->feature_multiplier, p->feature_shift), -32768, 32767);
      state[(b * p->filters + r) * p->memory_size + p->memory_size - 1] =
          (int16_t)(p->state_zero_point + dot);
    }
  }
  for (b = 0; b < p->batches; ++b) {
    const int16_t *s = state + b * p->memory_size * p->filters;
    const int16_t *t = time_weights;
    for (i = 0; i < p->filters; ++i) {
      int32_t sum = 0;
      for (j = 0; j < p->memory_size; ++j) {
        sum += (int32_t)*t++ * ((int32_t)*s++ - p->state_zero_point);
      }
      filter_sums[b * p->filters + i] = sum;
    }
  }
  for (b = 0; b < p->batches; ++b) {
    const int32_t *sums = filter_sums + b * p->filters;
    for (i = 0; i < units; ++i) {
      int32_t total = bias ? bias[i] : 0;
      for (j = 0; j < p->rank; ++j) {
        total += sums[i * p->rank + j];
      }
      unit_sums[b * units + i] = total;
    }
  }
  for (i = 0; i < p->batches * units; ++i) {
    const int32_t value = es_requantize(unit_sums[i], p->output_multiplier, p->output_shift)
                          + p->output_zero_point;
    output[i] = (int8_t)es_clamp(value, -128, 127);
  }
}
