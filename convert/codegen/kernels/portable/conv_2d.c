/* @section conv_2d needs common */
/* CONV_2D, per-channel weights [out_c][k_h][k_w][in_c] (reference_integer_ops::ConvPerChannel).
 * folded_bias[c] = bias[c] + input_offset * sum(weights of c): for windows that lie wholly
 * inside the image the sum of (x + input_offset) * w equals sum(x * w) + that constant, exactly
 * in integers; windows that touch the padding skip the outside taps as the reference does. */
static int es_window_inside(const es_window *p, int32_t in_y0, int32_t in_x0) {
  return in_y0 >= 0 && in_x0 >= 0 && in_y0 + (p->k_h - 1) * p->dil_h < p->in_h &&
         in_x0 + (p->k_w - 1) * p->dil_w < p->in_w;
}

static int8_t es_conv_finish(const es_window *p, int32_t acc, int32_t multiplier, int shift) {
  acc = es_requantize(acc, multiplier, shift) + p->output_offset;
  return (int8_t)es_clamp(acc, p->act_min, p->act_max);
}

/* Windows wholly inside the image, dilation 1 along x: each filter row meets one contiguous
 * run of k_w * in_c input bytes. Computes `pixels` (1 or 2) neighbouring outputs, four
 * channels at a time, so every byte loaded feeds several multiply-adds. */
static void es_conv_inside(const es_window *p, const int8_t *input, const int8_t *weights,
                           const int32_t *folded_bias, const int32_t *multiplier,
                           const int8_t *shift, int32_t in_y0, int32_t in_x0, int pixels,
                           int8_t *out) {
  const int32_t row_size = p->k_w * p->in_c;
  const int32_t filter_size = p->k_h * row_size;
  const int32_t second = pixels > 1 ? p->stride_w * p->in_c : 0;
  int8_t *out_second = out + (pixels > 1 ? p->out_c : 0);
  const int32_t blocked = p->out_c - p->out_c % 4;
  int32_t out_c, k_y, c;
  for (out_c = 0; out_c < blocked; out_c += 4) {
    const int8_t *filter = weights + (size_t)out_c * (size_t)filter_size;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    for (k_y = 0; k_y < p->k_h; ++k_y) {
      const int8_t *in_a = input + ((in_y0 + k_y * p->dil_h) * p->in_w + in_x0) * p->in_c;
      const int8_t *in_b = in_a + second;
      const int8_t *f0 = filter + k_y * row_size;
      const int8_t *f1 = f0 + filter_size;
      const int8_t *f2 = f1 + filter_size;
      const int8_t *f3 = f2 + filter_size;
      for (c = 0; c < row_size; ++c) {
        const int32_t va = in_a[c], vb = in_b[c];
        const int32_t w0 = f0[c], w1 = f1[c], w2 = f2[c], w3 = f3[c];
        a0 += va * w0;
        a1 += va * w1;
        a2 += va * w2;
        a3 += va * w3;
        b0 += vb * w0;
        b1 += vb * w1;
        b2 += vb * w2;
        b3 += vb * w3;
      }
    }
    out[out_c] = es_conv_finish(p, a0 + folded_bias[out_c], multiplier[out_c], shift[out_c]);
    out[out_c + 1] =
        es_conv_finish(p, a1 + folded_bias[out_c + 1], multiplier[out_c + 1], shift[out_c + 1]);
    out[out_c + 2] =
        es_conv_finish(p, a2 + folded_bias[out_c + 2], multiplier[out_c + 2], shift[out_c + 2]);
    out[out_c + 3] =
        es_conv_finish(p, a3 + folded_bias[out_c + 3], multiplier[out_c + 3], shift[out_c + 3]);
    if (pixels > 1) {
      out_second[out_c] =
          es_conv_finish(p, b0 + folded_bias[out_c], multiplier[out_c], shift[out_c]);
      out_second[out_c + 1] = es_conv_finish(p, b1 + folded_bias[out_c + 1],
                                             multiplier[out_c + 1], shift[out_c + 1]);
      out_second[out_c + 2] = es_conv_finish(p, b2 + folded_bias[out_c + 2],
                                             multiplier[out_c + 2], shift[out_c + 2]);
      out_second[out_c + 3] = es_conv_finish(p, b3 + folded_bias[out_c + 3],
                                             multiplier[out_c + 3], shift[out_c + 3]);
    }
  }
  for (out_c = blocked; out_c < p->out_c; ++out_c) {
    const int8_t *filter = weights + (size_t)out_c * (size_t)filter_size;
    int32_t a = 0, b = 0;
    for (k_y = 0; k_y < p->k_h; ++k_y) {
      const int8_t *in_a = input + ((in_y0 + k_y * p->dil_h) * p->in_w + in_x0) * p->in_c;
      const int8_t *in_b = in_a + second;
      const int8_t *f = filter + k_y * row_size;
      for (c = 0; c < row_size; ++c) {
        a += in_a[c] * f[c];
        b += in_b[c] * f[c];
      }
    }
    out[out_c] = es_conv_finish(p, a + folded_bias[out_c], multiplier[out_c], shift[out_c]);
    if (pixels > 1) {
      out_second[out_c] =
          es_conv_finish(p, b + folded_bias[out_c], multiplier[out_c], shift[out_c]);
    }
  }
}

/* Windows touching the padding (or dilated along x): the reference loop, outside taps skipped. */
static void es_conv_border(const es_window *p, const int8_t *input, const int8_t *weights,
                           const int32_t *bias, const int32_t *multiplier, const int8_t *shift,
                           int32_t in_y0, int32_t in_x0, int8_t *out) {
  int32_t out_c, k_y, k_x, c;
  for (out_c = 0; out_c < p->out_c; ++out_c) {
    const int8_t *filter = weights + out_c * p->k_h * p->k_w * p->in_c;
    int32_t acc = bias ? bias[out_c] : 0;
    for (k_y = 0; k_y < p->k_h; ++k_y) {
      const int32_t in_y = in_y0 + k_y * p->dil_h;
      if (in_y < 0 || in_y >= p->in_h) {
        continue;
      }
      for (k_x = 0; k_x < p->k_w; ++k_x) {
        const int32_t in_x = in_x0 + k_x * p->dil_w;
        const int8_t *in_px;
        const int8_t *filter_px;
        if (in_x < 0 || in_x >= p->in_w) {
          continue;
        }
        in_px = input + (in_y * p->in_w + in_x) * p->in_c;
        filter_px = filter + (k_y * p->k_w + k_x) * p->in_c;
        for (c = 0; c < p->in_c; ++c) {
          acc += ((int32_t)in_px[c] + p->input_offset) * (int32_t)filter_px[c];
        }
      }
    }
    out[out_c] = es_conv_finish(p, acc, multiplier[out_c], shift[out_c]);
  }
}

static void es_conv_2d(const es_window *p, const int8_t *input, const int8_t *weights,
                       const int32_t *bias, const int32_t *folded_bias,
                       const int32_t *multiplier, const int8_t *shift, int8_t *output) {
  int32_t out_y, out_x;
  for (out_y = 0; out_y < p->out_h; ++out_y) {
    const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
    for (out_x = 0; out_x < p->out_w; ++out_x) {
      const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
      int8_t *out = output + (out_y * p->out_w + out_x) * p->out_c;
      if (p->dil_w == 1 && es_window_inside(p, in_y0, in_x0)) {
        const int pair = out_x + 1 < p->out_w && es_window_inside(p, in_y0, in_x0 + p->stride_w);
        es_conv_inside(p, input, weights, folded_bias, multiplier, shift, in_y0, in_x0,
                       pair ? 2 : 1, out);
        out_x += pair;
      } else {
        es_conv_border(p, input, weights, bias, multiplier, shift, in_y0, in_x0, out);
      }
    }
  }
}
