/* @section depthwise_conv_2d needs common */
/* DEPTHWISE_CONV_2D, weights [k_h][k_w][out_c] with out_c = in_c * depth_multiplier
 * (reference_integer_ops::DepthwiseConvPerChannel); folded_bias as in CONV_2D. Windows wholly
 * inside the image with depth multiplier 1 run four channels at a time. */
static int8_t es_depthwise_finish(const es_window *p, int32_t acc, int32_t multiplier,
                                  int shift) {
  acc = es_requantize(acc, multiplier, shift) + p->output_offset;
  return (int8_t)es_clamp(acc, p->act_min, p->act_max);
}

static void es_depthwise_inside(const es_window *p, const int8_t *input, const int8_t *weights,
                                const int32_t *folded_bias, const int32_t *multiplier,
                                const int8_t *shift, int32_t in_y0, int32_t in_x0,
                                int8_t *out) {
  const int32_t row_stride = p->dil_h * p->in_w * p->in_c;
  const int32_t tap_stride = p->dil_w * p->in_c;
  const int8_t *origin = input + (in_y0 * p->in_w + in_x0) * p->in_c;
  const int32_t blocked = p->out_c - p->out_c % 4;
  int32_t c, k_y, k_x;
  for (c = 0; c < blocked; c += 4) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const int8_t *in_row = origin + c;
    const int8_t *filter = weights + c;
    for (k_y = 0; k_y < p->k_h; ++k_y) {
      const int8_t *in_tap = in_row;
      for (k_x = 0; k_x < p->k_w; ++k_x) {
        a0 += in_tap[0] * filter[0];
        a1 += in_tap[1] * filter[1];
        a2 += in_tap[2] * filter[2];
        a3 += in_tap[3] * filter[3];
        in_tap += tap_stride;
        filter += p->out_c;
      }
      in_row += row_stride;
    }
    out[c] = es_depthwise_finish(p, a0 + folded_bias[c], multiplier[c], shift[c]);
    out[c + 1] = es_depthwise_finish(p, a1 + folded_bias[c + 1], multiplier[c + 1], shift[c + 1]);
    out[c + 2] = es_depthwise_finish(p, a2 + folded_bias[c + 2], multiplier[c + 2], shift[c + 2]);
    out[c + 3] = es_depthwise_finish(p, a3 + folded_bias[c + 3], multiplier[c + 3], shift[c + 3]);
  }
  for (c = blocked; c < p->out_c; ++c) {
    int32_t acc = 0;
    for (k_y = 0; k_y < p->k_h; ++k_y) {
      for (k_x = 0; k_x < p->k_w; ++k_x) {
        acc += origin[k_y * row_stride + k_x * tap_stride + c] *
               weights[(k_y * p->k_w + k_x) * p->out_c + c];
      }
    }
    out[c] = es_depthwise_finish(p, acc + folded_bias[c], multiplier[c], shift[c]);
  }
}

static void es_depthwise_conv_2d(const es_window *p, int32_t depth_multiplier,
                                 const int8_t *input, const int8_t *weights,
                                 const int32_t *bias, const int32_t *folded_bias,
                                 const int32_t *multiplier, const int8_t *shift,
                                 int8_t *output) {
  int32_t out_y, out_x, in_c, m, k_y, k_x;
  for (out_y = 0; out_y < p->out_h; ++out_y) {
    const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
    for (out_x = 0; out_x < p->out_w; ++out_x) {
      const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
      const int inside = in_y0 >= 0 && in_x0 >= 0 &&
                         in_y0 + (p->k_h - 1) * p->dil_h < p->in_h &&
                         in_x0 + (p->k_w - 1) * p->dil_w < p->in_w;
      int8_t *out = output + (out_y * p->out_w + out_x) * p->out_c;
      if (inside && depth_multiplier == 1) {
        es_depthwise_inside(p, input, weights, folded_bias, multiplier, shift, in_y0, in_x0,
                            out);
        continue;
      }
      for (in_c = 0; in_c < p->in_c; ++in_c) {
        for (m = 0; m < depth_multiplier; ++m) {
          const int32_t out_c = in_c * depth_multiplier + m;
          int32_t acc = 0;
          for (k_y = 0; k_y < p->k_h; ++k_y) {
            const int32_t in_y = in_y0 + k_y * p->dil_h;
            if (in_y < 0 || in_y >= p->in_h) {
              continue;
            }
            for (k_x = 0; k_x < p->k_w; ++k_x) {
              const int32_t in_x = in_x0 + k_x * p->dil_w;
              if (in_x < 0 || in_x >= p->in_w) {
                continue;
              }
              acc += ((int32_t)input[(in_y * p->in_w + in_x) * p->in_c + in_c] +
                      p->input_offset) *
                     (int32_t)weights[(k_y * p->k_w + k_x) * p->out_c + out_c];
            }
          }
          if (bias) {
            acc += bias[out_c];
          }
          out[out_c] = es_depthwise_finish(p, acc, multiplier[out_c], shift[out_c]);
        }
      }
    }
  }
}
