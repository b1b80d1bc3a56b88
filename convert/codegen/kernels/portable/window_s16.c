/* @section window_s16 needs linear_s16 */
/* The body of a 16x8 CONV_2D or DEPTHWISE_CONV_2D (reference_integer_ops::ConvPerChannel and
 * DepthwiseConvPerChannel for int16 inputs): taps outside the image are skipped, the sum
 * accumulates in ACC (the bias type; an int32 sum in uint32_t wraps as TFLite Micro's) and
 * REQUANTIZE(acc, multiplier, shift) scales it. depth_multiplier 0 means CONV_2D (weights
 * [out_c][k_h][k_w][in_c]); otherwise DEPTHWISE_CONV_2D (weights [k_h][k_w][out_c]). */
#define ES_WINDOW_S16_LOOP(ACC, BIAS, REQUANTIZE)                                             \
  const int16_t *input = (const int16_t *)input_data;                                        \
  int16_t *output = (int16_t *)output_data;                                                  \
  int32_t out_y, out_x, out_c, k_y, k_x, c;                                                  \
  for (out_y = 0; out_y < p->out_h; ++out_y) {                                               \
    const int32_t in_y0 = out_y * p->stride_h - p->pad_h;                                    \
    for (out_x = 0; out_x < p->out_w; ++out_x) {                                             \
      const int32_t in_x0 = out_x * p->stride_w - p->pad_w;                                  \
      for (out_c = 0; out_c < p->out_c; ++out_c) {                                           \
        ACC acc = 0;                                                                         \
        int32_t result;                                                                      \
        for (k_y = 0; k_y < p->k_h; ++k_y) {                                                 \
          const int32_t in_y = in_y0 + k_y * p->dil_h;                                       \
          for (k_x = 0; k_x < p->k_w; ++k_x) {                                               \
            const int32_t in_x = in_x0 + k_x * p->dil_w;                                     \
            const int16_t *pixel;                                                            \
            if (in_y < 0 || in_y >= p->in_h || in_x < 0 || in_x >= p->in_w) {                \
              continue;                                                                      \
            }                                                                                \
            pixel = input + (in_y * p->in_w + in_x) * p->in_c;                               \
            if (depth_multiplier) {                                                          \
              acc += (ACC)((int32_t)weights[(k_y * p->k_w + k_x) * p->out_c + out_c] *       \
                           ((int32_t)pixel[out_c / depth_multiplier] + p->input_offset));    \
              continue;                                                                      \
            }                                                                                \
            for (c = 0; c < p->in_c; ++c) {                                                  \
              acc += (ACC)((int32_t)weights[((out_c * p->k_h + k_y) * p->k_w + k_x) *        \
                                            p->in_c + c] *                                   \
                           ((int32_t)pixel[c] + p->input_offset));                           \
            }                                                                                \
          }                                                                                  \
        }                                                                                    \
        if (bias) {                                                                          \
          acc += (ACC)bias[out_c];                                                           \
        }                                                                                    \
        result = REQUANTIZE((BIAS)acc, multiplier[out_c], shift[out_c]) + p->output_offset;  \
        *output++ = (int16_t)es_clamp(result, p->act_min, p->act_max);                       \
      }                                                                                      \
    }                                                                                        \
  }
