/* @section mean_loop needs common */
/* MEAN and SUM over any of the 4 axes (reference_ops::QuantizedMeanOrSum, one template for
 * int8 and int16): the int32 sum of the reduced elements, minus count * input zero point,
 * requantized by a multiplier (SUM: input / output scale; MEAN: with 1 / count folded in),
 * plus the output zero point, clamped to the type's range [LOW, HIGH]. dims are the 4-D input
 * dims; reduce[a] is 1 for a reduced axis. The output is walked in order (see
 * lowering.overlap.mean_overlap). */
#define ES_MEAN_LOOP(T, LOW, HIGH)                                                            \
  const T *input = (const T *)input_data;                                                     \
  T *output = (T *)output_data;                                                               \
  int32_t index[4], limit[4], extent[4];                                                      \
  int32_t a;                                                                                  \
  int32_t out_index = 0;                                                                      \
  for (a = 0; a < 4; ++a) {                                                                   \
    limit[a] = reduce[a] ? 1 : dims[a];                                                       \
    extent[a] = reduce[a] ? dims[a] : 1;                                                      \
  }                                                                                           \
  for (index[0] = 0; index[0] < limit[0]; ++index[0]) {                                       \
    for (index[1] = 0; index[1] < limit[1]; ++index[1]) {                                     \
      for (index[2] = 0; index[2] < limit[2]; ++index[2]) {                                   \
        for (index[3] = 0; index[3] < limit[3]; ++index[3]) {                                 \
          int32_t r0, r1, r2, r3;                                                             \
          int32_t sum = 0;                                                                    \
          int32_t result;                                                                     \
          for (r0 = 0; r0 < extent[0]; ++r0) {                                                \
            for (r1 = 0; r1 < extent[1]; ++r1) {                                              \
              for (r2 = 0; r2 < extent[2]; ++r2) {                                            \
                for (r3 = 0; r3 < extent[3]; ++r3) {                                          \
                  sum += input[(((index[0] + r0) * dims[1] + index[1] + r1) * dims[2] +       \
                                index[2] + r2) * dims[3] + index[3] + r3];                    \
                }                                                                             \
              }                                                                               \
            }                                                                                 \
          }                                                                                   \
          result = es_requantize(sum - zero_point_sum, multiplier, shift) + output_offset;    \
          output[out_index++] = (T)es_clamp(result, LOW, HIGH);                               \
        }                                                                                     \
      }                                                                                       \
    }                                                                                         \
  }
