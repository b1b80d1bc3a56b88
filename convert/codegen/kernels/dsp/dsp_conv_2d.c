/* CONV_2D as rows of taps times rows of weights, two output pixels by two output channels
 * per inner step (2x2 register blocking): four bytes of each of two windows and four of each
 * of two filters give eight SMLADs; the loop does two such steps (rows are padded to a
 * multiple of 8), in assembly on DSP cores. The two windows come from es_window_row (im2col, padding as the input zero
 * point so the folded bias is exact everywhere; a 1x1 window without padding whose channels
 * are a multiple of 8 is read in place) and are interleaved four bytes at a time in scratch
 * ([group][window a: 4 bytes][window b: 4 bytes]), so one pointer walks both. Weights, laid
 * out at generation time: output channels in pairs, each pair's rows interleaved four bytes
 * at a time ([pair][group][channel 0: 4 bytes][channel 1: 4 bytes]), rows zero-padded to
 * `row`; an odd last channel's row follows alone. Requantization is es_dsp_requantize. */
/* @section dsp_conv_2d needs common linear_common dsp_common */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* One step in ARM assembly: gcc's allocation of the C spilled accumulators to the stack;
 * written out, the step takes 13 registers and no stack. */
#define ES_DSP_CONV_STEP_ASM                   \
  "ldr %[va], [%[x]], #4\n\t"                  \
  "ldr %[vb], [%[x]], #4\n\t"                  \
  "ldr %[wv], [%[w]], #4\n\t"                  \
  "sxtb16 %[al], %[va]\n\t"                    \
  "sxtb16 %[va], %[va], ror #8\n\t"            \
  "sxtb16 %[bl], %[vb]\n\t"                    \
  "sxtb16 %[vb], %[vb], ror #8\n\t"            \
  "sxtb16 %[wh], %[wv]\n\t"                    \
  "smlad %[a0], %[al], %[wh], %[a0]\n\t"       \
  "smlad %[b0], %[bl], %[wh], %[b0]\n\t"       \
  "sxtb16 %[wv], %[wv], ror #8\n\t"            \
  "smlad %[a0], %[va], %[wv], %[a0]\n\t"       \
  "smlad %[b0], %[vb], %[wv], %[b0]\n\t"       \
  "ldr %[wv], [%[w]], #4\n\t"                  \
  "sxtb16 %[wh], %[wv]\n\t"                    \
  "smlad %[a1], %[al], %[wh], %[a1]\n\t"       \
  "smlad %[b1], %[bl], %[wh], %[b1]\n\t"       \
  "sxtb16 %[wv], %[wv], ror #8\n\t"            \
  "smlad %[a1], %[va], %[wv], %[a1]\n\t"       \
  "smlad %[b1], %[vb], %[wv], %[b1]\n\t"

/* a0, a1 (window a, channels 0 and 1), b0, b1 (window b) += the interleaved windows at x
 * times the channel pair's weights at w, 16 bytes of windows at a time until x == end. */
#define ES_DSP_CONV_DOT(x, w, end)                                                        \
  do {                                                                                    \
    uint32_t va, vb, al, bl, wv, wh;                                                      \
    __asm__("1:\n\t" ES_DSP_CONV_STEP_ASM ES_DSP_CONV_STEP_ASM                            \
            "cmp %[x], %[end]\n\t"                                                        \
            "bne 1b\n\t"                                                                  \
            : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1), [x] "+r"(x),    \
              [w] "+r"(w), [va] "=&r"(va), [vb] "=&r"(vb), [al] "=&r"(al), [bl] "=&r"(bl), \
              [wv] "=&r"(wv), [wh] "=&r"(wh)                                              \
            : [end] "r"(end)                                                              \
            : "cc", "memory");                                                            \
  } while (0)
#else
#define ES_DSP_CONV_DOT(x, w, end)                                \
  do {                                                            \
    while ((x) != (end)) {                                        \
      const uint32_t va = es_word(x), vb = es_word((x) + 4);      \
      const uint32_t w0 = es_word(w), w1 = es_word((w) + 4);      \
      const uint32_t al = es_sxtb16_low(va), ah = es_sxtb16_high(va); \
      const uint32_t bl = es_sxtb16_low(vb), bh = es_sxtb16_high(vb); \
      a0 = es_dsp_dot4(a0, al, ah, w0);                         \
      b0 = es_dsp_dot4(b0, bl, bh, w0);                         \
      a1 = es_dsp_dot4(a1, al, ah, w1);                         \
      b1 = es_dsp_dot4(b1, bl, bh, w1);                         \
      (x) += 8;                                                   \
      (w) += 8;                                                   \
    }                                                             \
  } while (0)
#endif

static inline int8_t es_dsp_finish(int32_t acc, const int32_t *q, const es_window *p) {
  return (int8_t)es_clamp(es_dsp_requantize(acc, q) + p->output_offset, p->act_min, p->act_max);
}

static void es_dsp_conv_2d(const es_window *p, const int8_t *input, const int8_t *weights,
                           const int32_t *folded_bias, const int32_t *requant, int32_t row,
                           int direct, int8_t *scratch, int8_t *output) {
  const int32_t pixels = p->out_h * p->out_w;
  const int32_t pairs = p->out_c / 2;
  int8_t *windows = scratch + 2 * row;
  int32_t pixel, pair, g;
  for (pixel = 0; pixel < pixels; pixel += 2) {
    const int two = pixel + 1 < pixels;
    const int8_t *a = es_window_row(p, input, pixel, row, direct, windows);
    const int8_t *b = two ? es_window_row(p, input, pixel + 1, row, direct, windows + row) : a;
    const int8_t *end = scratch + 2 * row;
    int8_t *out_a = output + pixel * p->out_c;
    int8_t *out_b = out_a + p->out_c;
    const int8_t *w = weights;
    for (g = 0; g < row; g += 4) {
      es_store_word(scratch + 2 * g, es_word(a + g));
      es_store_word(scratch + 2 * g + 4, es_word(b + g));
    }
    for (pair = 0; pair < pairs; ++pair) {
      const int32_t c = 2 * pair;
      int32_t a0 = folded_bias[c], a1 = folded_bias[c + 1];
      int32_t b0 = a0, b1 = a1;
      const int8_t *x = scratch;
      ES_DSP_CONV_DOT(x, w, end);
      out_a[c] = es_dsp_finish(a0, requant + 3 * c, p);
      out_a[c + 1] = es_dsp_finish(a1, requant + 3 * c + 3, p);
      if (two) {
        out_b[c] = es_dsp_finish(b0, requant + 3 * c, p);
        out_b[c + 1] = es_dsp_finish(b1, requant + 3 * c + 3, p);
      }
    }
    if (p->out_c % 2) {
      const int32_t c = p->out_c - 1;
      int32_t acc_a = folded_bias[c], acc_b = folded_bias[c];
      for (g = 0; g < row; g += 4) {
        const uint32_t wv = es_word(w + g);
        const uint32_t va = es_word(scratch + 2 * g), vb = es_word(scratch + 2 * g + 4);
        const uint32_t w_low = es_sxtb16_low(wv), w_high = es_sxtb16_high(wv);
        acc_a = es_smlad(es_sxtb16_low(va), w_low, acc_a);
        acc_a = es_smlad(es_sxtb16_high(va), w_high, acc_a);
        acc_b = es_smlad(es_sxtb16_low(vb), w_low, acc_b);
        acc_b = es_smlad(es_sxtb16_high(vb), w_high, acc_b);
      }
      out_a[c] = es_dsp_finish(acc_a, requant + 3 * c, p);
      if (two) {
        out_b[c] = es_dsp_finish(acc_b, requant + 3 * c, p);
      }
    }
  }
}
