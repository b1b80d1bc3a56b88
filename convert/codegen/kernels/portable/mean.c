/* @section mean needs common */
/* MEAN over any of the 4 axes (reference_ops::QuantizedMeanOrSum): the integer sum of the
 * reduced elements, minus count * input zero point, times a multiplier that folds in
 * 1 / count. dims are the 4-D input dims; reduce[a] is 1 for a reduced axis. */
static void es_mean(const int32_t dims[4], const int8_t reduce[4], const int8_t *input,
                    int32_t zero_point_sum, int32_t multiplier, int32_t shift,
                    int32_t output_offset, int8_t *output) {
  int32_t out_dims[4];
  int32_t index[4];
  int32_t a;
  int32_t out_index = 0;
  for (a = 0; a < 4; ++a) {
    out_dims[a] = reduce[a] ? 1 : dims[a];
  }
  for (index[0] = 0; index[0] < out_dims[0]; ++index[0]) {
    for (index[1] = 0; index[1] < out_dims[1]; ++index[1]) {
      for (index[2] = 0; index[2] < out_dims[2]; ++index[2]) {
        for (index[3] = 0; index[3] < out_dims[3]; ++index[3]) {
          int32_t r0, r1, r2, r3;
          int32_t sum = 0;
          int32_t result;
          for (r0 = 0; r0 < (reduce[0] ? dims[0] : 1); ++r0) {
            for (r1 = 0; r1 < (reduce[1] ? dims[1] : 1); ++r1) {
              for (r2 = 0; r2 < (reduce[2] ? dims[2] : 1); ++r2) {
                for (r3 = 0; r3 < (reduce[3] ? dims[3] : 1); ++r3) {
                  const int32_t i0 = reduce[0] ? r0 : index[0];
                  const int32_t i1 = reduce[1] ? r1 : index[1];
                  const int32_t i2 = reduce[2] ? r2 : index[2];
                  const int32_t i3 = reduce[3] ? r3 : index[3];
                  sum += input[((i0 * dims[1] + i1) * dims[2] + i2) * dims[3] + i3];
                }
              }
            }
          }
          result = es_requantize(sum - zero_point_sum, multiplier, shift) + output_offset;
          output[out_index++] = (int8_t)es_clamp(result, -128, 127);
        }
      }
    }
  }
}
