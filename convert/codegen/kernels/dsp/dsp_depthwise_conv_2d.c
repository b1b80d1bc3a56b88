/* DEPTHWISE_CONV_2D with depth multiplier 1, weights as TFLite stores them ([k_y][k_x][c]):
 * four channels per inner loop, one word of input and one of weights per tap, sign-extended
 * in pairs, into four single multiply-adds (SMLABB/SMLATT: the channels must not be summed).
 * A window wholly inside the image starts from the folded bias and sums x * w; a window
 * touching the padding visits only its taps inside the image (a rectangle) and starts from
 * the bias, adding the input offset to each x in pairs (SADD16), as TFLite does. Both are the
 * same loop (ES_DSP_DEPTHWISE_TAPS), so no border window falls back to a slow path. */
/* @section dsp_depthwise_conv_2d needs common linear_common dsp_common */
typedef struct {
  const int8_t *x;      /* first tap inside the image, channel 0 */
  const int8_t *w;      /* its weights, channel 0 */
  int32_t rows, cols;   /* taps inside the image */
  int32_t x_tap, x_row; /* input step to the next tap, and from a row's end to the next row */
  int32_t w_row;        /* weight step from a row's end to the next row */
} es_dsp_taps;

#define ES_DSP_DEPTHWISE_TAPS(OFFSET)                                       \
  for (k_y = 0; k_y < t->rows; ++k_y) {                                    \
    for (k_x = 0; k_x < t->cols; ++k_x) {                                  \
      const uint32_t xv = es_word(x), wv = es_word(w);                     \
      const uint32_t x_low = OFFSET(es_sxtb16_low(xv));                    \
      const uint32_t x_high = OFFSET(es_sxtb16_high(xv));                  \
      const uint32_t w_low = es_sxtb16_low(wv), w_high = es_sxtb16_high(wv); \
      acc0 = es_smlabb(x_low, w_low, acc0);                                \
      acc2 = es_smlatt(x_low, w_low, acc2);                                \
      acc1 = es_smlabb(x_high, w_high, acc1);                              \
      acc3 = es_smlatt(x_high, w_high, acc3);                              \
      x += t->x_tap;                                                       \
      w += out_c;                                                          \
    }                                                                      \
    x += t->x_row;                                                         \
    w += t->w_row;                                                         \
  }

#define ES_DSP_NO_OFFSET(v) (v)
#define ES_DSP_ADD_OFFSET(v) es_sadd16((v), offsets)

static void es_dsp_depthwise_pixel(const es_window *p, const es_dsp_taps *t,
                                   const int32_t *start, int border,
                                   const int32_t *multiplier, const int8_t *shift,
                                   int8_t *out) {
  const int32_t out_c = p->out_c;
  const uint32_t offsets = ((uint32_t)p->input_offset & 0xFFFFu) | ((uint32_t)p->input_offset << 16);
  const int32_t blocked = out_c - out_c % 4;
  int32_t c, k_y, k_x;
  for (c = 0; c < blocked; c += 4) {
    int32_t acc0 = start ? start[c] : 0, acc1 = start ? start[c + 1] : 0;
    int32_t acc2 = start ? start[c + 2] : 0, acc3 = start ? start[c + 3] : 0;
    const int8_t *x = t->x + c;
    const int8_t *w = t->w + c;
    if (border) {
      ES_DSP_DEPTHWISE_TAPS(ES_DSP_ADD_OFFSET)
    } else {
      ES_DSP_DEPTHWISE_TAPS(ES_DSP_NO_OFFSET)
    }
    out[c] = es_linear_finish(acc0, multiplier[c], shift[c], p->output_offset, p->act_min,
                              p->act_max);
    out[c + 1] = es_linear_finish(acc1, multiplier[c + 1], shift[c + 1], p->output_offset,
                                  p->act_min, p->act_max);
    out[c + 2] = es_linear_finish(acc2, multiplier[c + 2], shift[c + 2], p->output_offset,
                                  p->act_min, p->act_max);
    out[c + 3] = es_linear_finish(acc3, multiplier[c + 3], shift[c + 3], p->output_offset,
                                  p->act_min, p->act_max);
  }
  for (c = blocked; c < out_c; ++c) {
    int32_t acc = start ? start[c] : 0;
    const int8_t *x = t->x + c;
    const int8_t *w = t->w + c;
    for (k_y = 0; k_y < t->rows; ++k_y) {
      for (k_x = 0; k_x < t->cols; ++k_x) {
        acc += ((int32_t)*x + (border ? p->input_offset : 0)) * (int32_t)*w;
        x += t->x_tap;
        w += out_c;
      }
      x += t->x_row;
      w += t->w_row;
    }
    out[c] = es_linear_finish(acc, multiplier[c], shift[c], p->output_offset, p->act_min,
                              p->act_max);
  }
}

/* First (*first) and one-past-last (*last) tap k with 0 <= start + k * dilation < size. */
static void es_tap_range(int32_t start, int32_t taps, int32_t dilation, int32_t size,
                         int32_t *first, int32_t *last) {
  int32_t k = 0;
  while (k < taps && start + k * dilation < 0) {
    ++k;
  }
  *first = k;
  while (k < taps && start + k * dilation < size) {
    ++k;
  }
  *last = k;
}

static void es_dsp_depthwise_conv_2d(const es_window *p, const int8_t *input,
                                     const int8_t *weights, const int32_t *bias,
                                     const int32_t *folded_bias, const int32_t *multiplier,
                                     const int8_t *shift, int8_t *output) {
  int32_t out_y, out_x, y0, y1, x0, x1;
  es_dsp_taps taps;
  taps.x_tap = p->dil_w * p->in_c;
  for (out_y = 0; out_y < p->out_h; ++out_y) {
    const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
    es_tap_range(in_y0, p->k_h, p->dil_h, p->in_h, &y0, &y1);
    for (out_x = 0; out_x < p->out_w; ++out_x) {
      const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
      int border;
      es_tap_range(in_x0, p->k_w, p->dil_w, p->in_w, &x0, &x1);
      border = !(y0 == 0 && y1 == p->k_h && x0 == 0 && x1 == p->k_w);
      taps.rows = y1 > y0 ? y1 - y0 : 0;
      taps.cols = x1 > x0 ? x1 - x0 : 0;
      taps.x = input + ((in_y0 + y0 * p->dil_h) * p->in_w + in_x0 + x0 * p->dil_w) * p->in_c;
      taps.w = weights + (y0 * p->k_w + x0) * p->out_c;
      taps.x_row = p->dil_h * p->in_w * p->in_c - taps.cols * taps.x_tap;
      taps.w_row = (p->k_w - taps.cols) * p->out_c;
      es_dsp_depthwise_pixel(p, &taps, border ? bias : folded_bias, border, multiplier, shift,
                             output + (out_y * p->out_w + out_x) * p->out_c);
    }
  }
}
