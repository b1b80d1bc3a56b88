/* @section pool_common needs common */
/* The body of MAX_POOL_2D and AVERAGE_POOL_2D over TYPE values (reference_integer_ops::MaxPool
 * and AveragePool, int8 and int16 alike) over the taps inside the image; the average is
 * rounded half away from zero, the max starts at LOWEST. */
#define ES_POOL_LOOP(TYPE, LOWEST)                                                              \
  const TYPE *input = (const TYPE *)input_data;                                                 \
  TYPE *output = (TYPE *)output_data;                                                           \
  int32_t out_y, out_x, c, k_y, k_x;                                                            \
  for (out_y = 0; out_y < p->out_h; ++out_y) {                                                  \
    const int32_t in_y0 = out_y * p->stride_h - p->pad_h;                                       \
    const int32_t y_start = in_y0 < 0 ? -in_y0 : 0;                                             \
    const int32_t y_end = p->in_h - in_y0 < p->k_h ? p->in_h - in_y0 : p->k_h;                  \
    for (out_x = 0; out_x < p->out_w; ++out_x) {                                                \
      const int32_t in_x0 = out_x * p->stride_w - p->pad_w;                                     \
      const int32_t x_start = in_x0 < 0 ? -in_x0 : 0;                                           \
      const int32_t x_end = p->in_w - in_x0 < p->k_w ? p->in_w - in_x0 : p->k_w;                \
      const int32_t count = (y_end - y_start) * (x_end - x_start);                              \
      for (c = 0; c < p->in_c; ++c) {                                                           \
        int32_t result = average ? 0 : LOWEST;                                                  \
        for (k_y = y_start; k_y < y_end; ++k_y) {                                               \
          for (k_x = x_start; k_x < x_end; ++k_x) {                                             \
            const int32_t value = input[((in_y0 + k_y) * p->in_w + in_x0 + k_x) * p->in_c + c]; \
            if (average) {                                                                      \
              result += value;                                                                  \
            } else if (value > result) {                                                        \
              result = value;                                                                   \
            }                                                                                   \
          }                                                                                     \
        }                                                                                       \
        if (average && count > 0) {                                                             \
          result = result > 0 ? (result + count / 2) / count : (result - count / 2) / count;    \
        }                                                                                       \
        output[(out_y * p->out_w + out_x) * p->out_c + c] =                                     \
            (TYPE)es_clamp(result, p->act_min, p->act_max);                                     \
      }                                                                                         \
    }                                                                                           \
  }
