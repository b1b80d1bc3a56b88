/* @section reduce_max_min needs common */
/* REDUCE_MAX (maximum 1) and REDUCE_MIN (maximum 0) over any of the 4 axes (TFLite Micro's
 * ReduceGeneric with MinMaxReducerCompare): the raw values, input and output quantized alike.
 * dims are the 4-D input dims; reduce[a] is 1 for a reduced axis. The output is walked in
 * order, as MEAN's (mean.c), so the same overlap holds. */
static void es_reduce_max_min(const int32_t dims[4], const int8_t reduce[4], int32_t maximum,
                              const int8_t *input, int8_t *output) {
  int32_t index[4], limit[4], extent[4];
  int32_t a;
  int32_t out_index = 0;
  for (a = 0; a < 4; ++a) {
    limit[a] = reduce[a] ? 1 : dims[a];
    extent[a] = reduce[a] ? dims[a] : 1;
  }
  for (index[0] = 0; index[0] < limit[0]; ++index[0]) {
    for (index[1] = 0; index[1] < limit[1]; ++index[1]) {
      for (index[2] = 0; index[2] < limit[2]; ++index[2]) {
        for (index[3] = 0; index[3] < limit[3]; ++index[3]) {
          int32_t r0, r1, r2, r3;
          int32_t best = maximum ? -128 : 127;
          for (r0 = 0; r0 < extent[0]; ++r0) {
            for (r1 = 0; r1 < extent[1]; ++r1) {
              for (r2 = 0; r2 < extent[2]; ++r2) {
                for (r3 = 0; r3 < extent[3]; ++r3) {
                  const int32_t value =
                      input[(((index[0] + r0) * dims[1] + index[1] + r1) * dims[2] + index[2] +
                             r2) * dims[3] + index[3] + r3];
                  best = (maximum ? value > best : value < best) ? value : best;
                }
              }
            }
          }
          output[out_index++] = (int8_t)best;
        }
      }
    }
  }
}
