/* CONV_2D as rows of taps times rows of weights, two output pixels by two output channels
 * per inner loop (2x2 register blocking): four bytes of each of two windows and four of each
 * of two filters give eight SMLADs. The window rows come from es_window_row (im2col into
 * scratch, padding as the input zero point so the folded bias is exact everywhere; a 1x1
 * window without padding whose channels are a multiple of 4 is read in place). Weights, laid
 * out at generation time: output channels in pairs, each pair's rows interleaved four bytes
 * at a time ([pair][group][channel 0: 4 bytes][channel 1: 4 bytes]), rows zero-padded to
 * `row` (a multiple of 4); an odd last channel's row follows alone. */
/* @section dsp_conv_2d needs common linear_common dsp_common */
static void es_dsp_conv_2d(const es_window *p, const int8_t *input, const int8_t *weights,
                           const int32_t *folded_bias, const int32_t *multiplier,
                           const int8_t *shift, int32_t row, int direct, int8_t *scratch,
                           int8_t *output) {
  const int32_t pixels = p->out_h * p->out_w;
  const int32_t groups = row / 4;
  const int32_t pairs = p->out_c / 2;
  int32_t pixel, pair, g;
  for (pixel = 0; pixel < pixels; pixel += 2) {
    const int two = pixel + 1 < pixels;
    const int8_t *a = es_window_row(p, input, pixel, row, direct, scratch);
    const int8_t *b =
        two ? es_window_row(p, input, pixel + 1, row, direct, direct ? scratch : scratch + row)
            : a;
    int8_t *out_a = output + pixel * p->out_c;
    int8_t *out_b = out_a + p->out_c;
    const int8_t *w = weights;
    for (pair = 0; pair < pairs; ++pair) {
      const int32_t c = 2 * pair;
      int32_t a0 = folded_bias[c], a1 = folded_bias[c + 1];
      int32_t b0 = a0, b1 = a1;
      const int8_t *x_a = a;
      const int8_t *x_b = b;
      for (g = 0; g < groups; ++g) {
        const uint32_t w0 = es_word(w), w1 = es_word(w + 4);
        const uint32_t va = es_word(x_a), vb = es_word(x_b);
        const uint32_t w0_low = es_sxtb16_low(w0), w0_high = es_sxtb16_high(w0);
        const uint32_t w1_low = es_sxtb16_low(w1), w1_high = es_sxtb16_high(w1);
        const uint32_t a_low = es_sxtb16_low(va), a_high = es_sxtb16_high(va);
        const uint32_t b_low = es_sxtb16_low(vb), b_high = es_sxtb16_high(vb);
        a0 = es_smlad(a_low, w0_low, a0);
        a0 = es_smlad(a_high, w0_high, a0);
        a1 = es_smlad(a_low, w1_low, a1);
        a1 = es_smlad(a_high, w1_high, a1);
        b0 = es_smlad(b_low, w0_low, b0);
        b0 = es_smlad(b_high, w0_high, b0);
        b1 = es_smlad(b_low, w1_low, b1);
        b1 = es_smlad(b_high, w1_high, b1);
        w += 8;
        x_a += 4;
        x_b += 4;
      }
      out_a[c] = es_linear_finish(a0, multiplier[c], shift[c], p->output_offset, p->act_min,
                                  p->act_max);
      out_a[c + 1] = es_linear_finish(a1, multiplier[c + 1], shift[c + 1], p->output_offset,
                                      p->act_min, p->act_max);
      if (two) {
        out_b[c] = es_linear_finish(b0, multiplier[c], shift[c], p->output_offset, p->act_min,
                                    p->act_max);
        out_b[c + 1] = es_linear_finish(b1, multiplier[c + 1], shift[c + 1], p->output_offset,
                                        p->act_min, p->act_max);
      }
    }
    if (p->out_c % 2) {
      const int32_t c = p->out_c - 1;
      int32_t acc_a = folded_bias[c], acc_b = folded_bias[c];
      for (g = 0; g < groups; ++g) {
        const uint32_t wv = es_word(w + 4 * g);
        const uint32_t va = es_word(a + 4 * g), vb = es_word(b + 4 * g);
        const uint32_t w_low = es_sxtb16_low(wv), w_high = es_sxtb16_high(wv);
        acc_a = es_smlad(es_sxtb16_low(va), w_low, acc_a);
        acc_a = es_smlad(es_sxtb16_high(va), w_high, acc_a);
        acc_b = es_smlad(es_sxtb16_low(vb), w_low, acc_b);
        acc_b = es_smlad(es_sxtb16_high(vb), w_high, acc_b);
      }
      out_a[c] = es_linear_finish(acc_a, multiplier[c], shift[c], p->output_offset, p->act_min,
                                  p->act_max);
      if (two) {
        out_b[c] = es_linear_finish(acc_b, multiplier[c], shift[c], p->output_offset,
                                    p->act_min, p->act_max);
      }
    }
  }
}
