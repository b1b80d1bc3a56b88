/* CONV_2D as a GEMM: rows of taps (one per output pixel) times rows of weights (one per
 * output channel). Weights, laid out at generation time: output channels in pairs, each
 * pair's rows interleaved four bytes at a time ([pair][group][channel 0: 4 bytes][channel 1:
 * 4 bytes]), rows zero-padded to `row` (a multiple of 8); an odd last channel's row follows
 * alone. Biases and requantization words (es_dsp_requantize's, holding the output offset;
 * doubled, for es_dsp_requantize_positive, with a ReLU-family activation) come interleaved
 * per channel pair (dsp_variant.conv_pair_words). The windows are widened straight from the
 * input a kernel row at a time when a kernel row is whole words, else gathered by
 * es_window_row (im2col, padding as the input zero point so the folded bias is exact
 * everywhere; a 1x1 window without padding whose channels are a multiple of 8 is read in
 * place); either way widened to int16 into scratch, four taps at a time in SXTB16 order, so
 * one pointer walks them and every output channel pair reuses the widening. Two paths:
 * - `staged` (the layer's constants copied into scratch, SRAM: every pixel reads all of
 *   them, and from flash each read would go through the flash cache, a few 16-byte lines on
 *   an STM32L4): weights widened to int16 on the way (es_dsp_stage_widened_pairs), three
 *   windows by two output channels per inner step (3x2 register blocking), windows
 *   interleaved [group][a: taps 0,2][b][c][a: taps 1,3][b][c], 24 bytes, and widened from
 *   the input without im2col, their taps in dsp_variant.conv_tap_order (each kernel row's
 *   whole words, then the rows' leftover taps); in chunks of output channels when the
 *   constants do not fit the stage whole;
 * - otherwise int8 weights read in place, sign-extended in the loop: two windows by two
 *   channels (2x2), windows interleaved [group][a: taps 0,2][a: taps 1,3][b: 0,2][b: 1,3]. */
/* @section dsp_conv_2d needs common linear_common dsp_common */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* One step (four taps) in ARM assembly. Register plan, 14 registers and no stack (gcc's
 * allocation of the C spilled accumulators): a0, a1, b0, b1 (window a or b, channel 0 or 1);
 * x, w, end; al, ah, bl, bh (the windows' widened taps) and wv, wv2 (each channel's four
 * weight bytes, then their taps 1 and 3): six adjacent loads, which pipeline to 7 cycles on
 * the M4; wl (a channel's taps 0 and 2). Per step: 6 loads, 4 SXTB16 and 8 SMLADs for 16
 * MACs. */
#define ES_DSP_CONV_STEP_ASM                   \
  "ldr %[al], [%[x]], #4\n\t"                  \
  "ldr %[ah], [%[x]], #4\n\t"                  \
  "ldr %[bl], [%[x]], #4\n\t"                  \
  "ldr %[bh], [%[x]], #4\n\t"                  \
  "ldr %[wv], [%[w]], #4\n\t"                  \
  "ldr %[wv2], [%[w]], #4\n\t"                 \
  "sxtb16 %[wl], %[wv]\n\t"                    \
  "smlad %[a0], %[al], %[wl], %[a0]\n\t"       \
  "smlad %[b0], %[bl], %[wl], %[b0]\n\t"       \
  "sxtb16 %[wv], %[wv], ror #8\n\t"            \
  "smlad %[a0], %[ah], %[wv], %[a0]\n\t"       \
  "smlad %[b0], %[bh], %[wv], %[b0]\n\t"       \
  "sxtb16 %[wl], %[wv2]\n\t"                   \
  "smlad %[a1], %[al], %[wl], %[a1]\n\t"       \
  "smlad %[b1], %[bl], %[wl], %[b1]\n\t"       \
  "sxtb16 %[wv2], %[wv2], ror #8\n\t"          \
  "smlad %[a1], %[ah], %[wv2], %[a1]\n\t"      \
  "smlad %[b1], %[bh], %[wv2], %[b1]\n\t"

/* a0, a1 (window a, channels 0 and 1), b0, b1 (window b) += the widened windows at x times
 * the channel pair's weights at w until x == end: eight taps first when the row is an odd
 * multiple of 8, then sixteen per loop iteration (the loop's compare and branch, 4 cycles,
 * over 64 MACs). */
#define ES_DSP_CONV_OPERANDS                                                              \
  : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1), [x] "+r"(x), [w] "+r"(w), \
    [al] "=&r"(al), [ah] "=&r"(ah), [bl] "=&r"(bl), [bh] "=&r"(bh), [wv] "=&r"(wv),       \
    [wv2] "=&r"(wv2), [wl] "=&r"(wl)                                                      \
  : [end] "r"(end)                                                                        \
  : "cc", "memory"
/* The loop of one step macro: two steps first when the row is an odd multiple of 8 taps,
 * then four per iteration. */
#define ES_DSP_CONV_LOOP(STEP, OPERANDS)                                                  \
  do {                                                                                    \
    if (odd_eights) {                                                                     \
      __asm__(STEP STEP OPERANDS);                                                        \
    }                                                                                     \
    __asm__("cmp %[x], %[end]\n\t"                                                        \
            "beq 2f\n\t"                                                                  \
            "1:\n\t" STEP STEP STEP STEP                                                  \
            "cmp %[x], %[end]\n\t"                                                        \
            "bne 1b\n\t"                                                                  \
            "2:\n\t" OPERANDS);                                                           \
  } while (0)
#define ES_DSP_CONV_DOT(x, w, end, odd_eights)                       \
  do {                                                               \
    uint32_t al, ah, bl, bh, wv, wv2, wl;                            \
    ES_DSP_CONV_LOOP(ES_DSP_CONV_STEP_ASM, ES_DSP_CONV_OPERANDS);    \
  } while (0)
/* Three windows by two channels (3x2 register blocking) on weights staged widened in pair
 * order (es_dsp_stage_widened_pairs: [channel 0: taps 0,2][channel 1: taps 0,2][channel 0:
 * taps 1,3][channel 1: taps 1,3]) and windows widened three at a time ([a: taps 0,2][b][c]
 * [a: taps 1,3][b][c]). Register plan, 14 registers: the six accumulators a0..c1, x, w, end,
 * the three windows' words xa, xb, xc and the two channels' weight words w0, w1. Per half
 * step five adjacent loads (6 cycles on the M4) and six SMLADs: 24 cycles for 24 MACs where
 * the 2x2 step takes 27. */
#define ES_DSP_CONV_HALF3_ASM                  \
  "ldr %[xa], [%[x]], #4\n\t"                  \
  "ldr %[xb], [%[x]], #4\n\t"                  \
  "ldr %[xc], [%[x]], #4\n\t"                  \
  "ldr %[w0], [%[w]], #4\n\t"                  \
  "ldr %[w1], [%[w]], #4\n\t"                  \
  "smlad %[a0], %[xa], %[w0], %[a0]\n\t"       \
  "smlad %[b0], %[xb], %[w0], %[b0]\n\t"       \
  "smlad %[c0], %[xc], %[w0], %[c0]\n\t"       \
  "smlad %[a1], %[xa], %[w1], %[a1]\n\t"       \
  "smlad %[b1], %[xb], %[w1], %[b1]\n\t"       \
  "smlad %[c1], %[xc], %[w1], %[c1]\n\t"
#define ES_DSP_CONV_STEP3_ASM ES_DSP_CONV_HALF3_ASM ES_DSP_CONV_HALF3_ASM
#define ES_DSP_CONV3_OPERANDS                                                             \
  : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1), [c0] "+r"(c0),            \
    [c1] "+r"(c1), [x] "+r"(x), [w] "+r"(w), [xa] "=&r"(xa), [xb] "=&r"(xb),              \
    [xc] "=&r"(xc), [w0] "=&r"(w0), [w1] "=&r"(w1)                                        \
  : [end] "r"(end)                                                                        \
  : "cc", "memory"
#define ES_DSP_CONV_DOT3(x, w, end, odd_eights)                      \
  do {                                                               \
    uint32_t xa, xb, xc, w0, w1;                                     \
    ES_DSP_CONV_LOOP(ES_DSP_CONV_STEP3_ASM, ES_DSP_CONV3_OPERANDS);  \
  } while (0)
#else
/* The same integers in plain C. */
#define ES_DSP_CONV_DOT(x, w, end, odd_eights)                                          \
  do {                                                                                  \
    (void)(odd_eights);                                                                 \
    while ((x) != (end)) {                                                              \
      const uint32_t al = es_word(x), ah = es_word((x) + 4);                            \
      const uint32_t bl = es_word((x) + 8), bh = es_word((x) + 12);                     \
      const uint32_t w0 = es_word(w), w1 = es_word((w) + 4);                            \
      a0 = es_dsp_dot4(a0, al, ah, w0);                                                 \
      b0 = es_dsp_dot4(b0, bl, bh, w0);                                                 \
      a1 = es_dsp_dot4(a1, al, ah, w1);                                                 \
      b1 = es_dsp_dot4(b1, bl, bh, w1);                                                 \
      (x) += 16;                                                                        \
      (w) += 8;                                                                         \
    }                                                                                   \
  } while (0)
#define ES_DSP_CONV_DOT3(x, w, end, odd_eights)                                         \
  do {                                                                                  \
    (void)(odd_eights);                                                                 \
    while ((x) != (end)) {                                                              \
      int half;                                                                         \
      for (half = 0; half < 2; ++half) {                                                \
        const uint32_t xa = es_word(x), xb = es_word((x) + 4), xc = es_word((x) + 8);   \
        const uint32_t w0 = es_word(w), w1 = es_word((w) + 4);                          \
        a0 = es_smlad(xa, w0, a0);                                                      \
        b0 = es_smlad(xb, w0, b0);                                                      \
        c0 = es_smlad(xc, w0, c0);                                                      \
        a1 = es_smlad(xa, w1, a1);                                                      \
        b1 = es_smlad(xb, w1, b1);                                                      \
        c1 = es_smlad(xc, w1, c1);                                                      \
        (x) += 12;                                                                      \
        (w) += 8;                                                                       \
      }                                                                                 \
    }                                                                                   \
  } while (0)
#endif

/* Staged weights widened: each word of four int8 weights as its two SXTB16 halves (taps 0,2
 * then 1,3), so the staged layout is the flash layout with every 4 bytes doubled to 8. */
static inline void es_dsp_stage_widened(int8_t *destination, const int8_t *source,
                                        int32_t bytes) {
  int32_t i;
  for (i = 0; i < bytes; i += 4) {
    const uint32_t v = es_word(source + i);
    es_store_word(destination + 2 * i, es_sxtb16_low(v));
    es_store_word(destination + 2 * i + 4, es_sxtb16_high(v));
  }
}

/* Staged widened in pair order for the 3x2 step: each pair's two 4-byte words (channel 0,
 * channel 1) become [0: taps 0,2][1: taps 0,2][0: taps 1,3][1: taps 1,3]. `bytes` covers
 * whole pairs (a multiple of 8). */
static inline void es_dsp_stage_widened_pairs(int8_t *destination, const int8_t *source,
                                              int32_t bytes) {
  int32_t i;
  for (i = 0; i < bytes; i += 8) {
    const uint32_t v0 = es_word(source + i), v1 = es_word(source + i + 4);
    es_store_word(destination + 2 * i, es_sxtb16_low(v0));
    es_store_word(destination + 2 * i + 4, es_sxtb16_low(v1));
    es_store_word(destination + 2 * i + 8, es_sxtb16_high(v0));
    es_store_word(destination + 2 * i + 12, es_sxtb16_high(v1));
  }
}

/* One output channel of one window (an odd last channel). */
static inline int8_t es_dsp_finish(int32_t acc, const int32_t *q, const es_window *p,
                                   int positive) {
  return (int8_t)es_clamp(es_dsp_requantize_mode(acc, q, positive), p->act_min, p->act_max);
}

/* Words per output channel pair (dsp_variant.conv_pair_words): the two folded biases, then
 * each channel's requantization words {M, K, e - 1} (es_dsp_requantize, the output offset in
 * K), so the pair loop walks one pointer. */
#define ES_DSP_CONV_PAIR_WORDS 8

/* The output channel pairs of one pixel pair (windows widened at `scratch`): the dot product
 * (above, on int8 weights read in place), the four accumulators requantized (no offset to add: it is in the words),
 * saturated and packed into one word [a0 a1 b0 b1], clamped to the activation range with two
 * bytewise SEL steps unless the range is all of int8 (`clamp` is a constant at each call, so
 * the compiler drops the clamp from the other copy), and stored as two halfwords: window b's
 * first (at `b_step` bytes after window a's), so that when there is no window b (b_step 0)
 * window a's store is the one that stands. No branch per pair. */
static inline __attribute__((always_inline)) const int8_t *es_dsp_conv_pairs(
    const int8_t *scratch, const int8_t *end, int odd_eights, const int8_t *w,
    const int32_t *words, const int32_t *words_end, int32_t b_step, uint32_t lows,
    uint32_t highs, const int clamp, const int positive, int8_t *out) {
  for (; words != words_end; words += ES_DSP_CONV_PAIR_WORDS, out += 2) {
    int32_t a0 = words[0], a1 = words[1];
    int32_t b0 = a0, b1 = a1;
    const int8_t *x = scratch;
    uint32_t packed;
    ES_DSP_CONV_DOT(x, w, end, odd_eights);
    packed = es_dsp_saturate4(es_dsp_requantize_mode(a0, words + 2, positive),
                              es_dsp_requantize_mode(a1, words + 5, positive),
                              es_dsp_requantize_mode(b0, words + 2, positive),
                              es_dsp_requantize_mode(b1, words + 5, positive));
    if (clamp) {
      packed = es_min8(es_max8(packed, lows), highs);
    }
    es_store_half(out + b_step, packed >> 16);
    es_store_half(out, packed);
  }
  return w;
}

/* es_dsp_conv_pairs for three windows (a; b at `b_step` bytes of output after it; c at
 * `c_step`) on weights staged in pair order: the 3x2 step, six accumulators requantized,
 * window c's halfword stored first, then b's, then a's, so repeated windows (b_step or
 * c_step equal to an earlier one's, at the end of the pixels) leave the right bytes. */
static inline __attribute__((always_inline)) const int8_t *es_dsp_conv_triples(
    const int8_t *scratch, const int8_t *end, const int odd_eights, const int8_t *w,
    const int32_t *words, const int32_t *words_end, int32_t b_step, int32_t c_step,
    uint32_t lows, uint32_t highs, const int clamp, const int positive, int8_t *out) {
  for (; words != words_end; words += ES_DSP_CONV_PAIR_WORDS, out += 2) {
    int32_t a0 = words[0], a1 = words[1];
    int32_t b0 = a0, b1 = a1, c0 = a0, c1 = a1;
    const int8_t *x = scratch;
    uint32_t ab, cc;
    ES_DSP_CONV_DOT3(x, w, end, odd_eights);
    ab = es_dsp_saturate4(es_dsp_requantize_mode(a0, words + 2, positive),
                          es_dsp_requantize_mode(a1, words + 5, positive),
                          es_dsp_requantize_mode(b0, words + 2, positive),
                          es_dsp_requantize_mode(b1, words + 5, positive));
    cc = es_dsp_saturate2(es_dsp_requantize_mode(c0, words + 2, positive),
                          es_dsp_requantize_mode(c1, words + 5, positive));
    if (clamp) {
      ab = es_min8(es_max8(ab, lows), highs);
      cc = es_min8(es_max8(cc, lows), highs);
    }
    es_store_half(out + c_step, cc);
    es_store_half(out + b_step, ab >> 16);
    es_store_half(out, ab);
  }
  return w;
}

/* One 16-byte group of the interleaved scratch: four taps of window a (word va) and of
 * window b (vb), widened in SXTB16 order; returns the next group. */
static inline int8_t *es_dsp_widen_group(int8_t *wide, uint32_t va, uint32_t vb) {
  es_store_word(wide, es_sxtb16_low(va));
  es_store_word(wide + 4, es_sxtb16_high(va));
  es_store_word(wide + 8, es_sxtb16_low(vb));
  es_store_word(wide + 12, es_sxtb16_high(vb));
  return wide + 16;
}

/* Two groups (eight taps of each window, read at a and b) widened into the interleaved
 * scratch at `wide`; returns the next group. On DSP cores in ARM assembly so the four loads
 * and the eight stores each run back to back (they pipeline: 5 and 9 cycles on the M4; gcc
 * interleaved the stores with the SXTB16s, 31 cycles where this takes 22). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static inline int8_t *es_dsp_widen_two_groups(int8_t *wide, const int8_t *a, const int8_t *b) {
  uint32_t va, vb, va2, vb2, t0, t1, t2, t3;
  /* volatile: its effect is the stores; gcc drops a plain asm whose outputs go unused. */
  __asm__ volatile("ldr %[va], [%[a]]\n\t"
          "ldr %[vb], [%[b]]\n\t"
          "ldr %[va2], [%[a], #4]\n\t"
          "ldr %[vb2], [%[b], #4]\n\t"
          "sxtb16 %[t0], %[va]\n\t"
          "sxtb16 %[va], %[va], ror #8\n\t"
          "sxtb16 %[t1], %[vb]\n\t"
          "sxtb16 %[vb], %[vb], ror #8\n\t"
          "sxtb16 %[t2], %[va2]\n\t"
          "sxtb16 %[va2], %[va2], ror #8\n\t"
          "sxtb16 %[t3], %[vb2]\n\t"
          "sxtb16 %[vb2], %[vb2], ror #8\n\t"
          "str %[t0], [%[wide]], #4\n\t"
          "str %[va], [%[wide]], #4\n\t"
          "str %[t1], [%[wide]], #4\n\t"
          "str %[vb], [%[wide]], #4\n\t"
          "str %[t2], [%[wide]], #4\n\t"
          "str %[va2], [%[wide]], #4\n\t"
          "str %[t3], [%[wide]], #4\n\t"
          "str %[vb2], [%[wide]], #4\n\t"
          : [wide] "+r"(wide), [va] "=&r"(va), [vb] "=&r"(vb), [va2] "=&r"(va2),
            [vb2] "=&r"(vb2), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3)
          : [a] "r"(a), [b] "r"(b)
          : "memory");
  return wide;
}
#else
static inline int8_t *es_dsp_widen_two_groups(int8_t *wide, const int8_t *a, const int8_t *b) {
  return es_dsp_widen_group(es_dsp_widen_group(wide, es_word(a), es_word(b)), es_word(a + 4),
                            es_word(b + 4));
}
#endif

/* Where kernel row k_y of output pixel `pixel`'s window is, as int8 taps: in place in the
 * input when the row lies inside it, else gathered into `edge` (the zero point outside). */
static inline const int8_t *es_dsp_kernel_row(const es_window *p, const int8_t *input,
                                              int32_t pixel, int32_t k_y, int8_t *edge) {
  const int32_t out_y = pixel / p->out_w;
  const int32_t in_y = out_y * p->stride_h - p->pad_h + k_y * p->dil_h;
  const int32_t in_x0 = (pixel - out_y * p->out_w) * p->stride_w - p->pad_w;
  const int zero_point = -p->input_offset;
  int32_t k_x;
  if (in_y < 0 || in_y >= p->in_h) {
    memset(edge, zero_point, (size_t)(p->k_w * p->in_c));
    return edge;
  }
  if (p->dil_w == 1 && in_x0 >= 0 && in_x0 + p->k_w <= p->in_w) {
    return input + (in_y * p->in_w + in_x0) * p->in_c;
  }
  for (k_x = 0; k_x < p->k_w; ++k_x) {
    const int32_t in_x = in_x0 + k_x * p->dil_w;
    if (in_x < 0 || in_x >= p->in_w) {
      memset(edge + k_x * p->in_c, zero_point, (size_t)p->in_c);
    } else {
      memcpy(edge + k_x * p->in_c, input + (in_y * p->in_w + in_x) * p->in_c, (size_t)p->in_c);
    }
  }
  return edge;
}

/* The windows of output pixels a and b (b = a when there is no second pixel) widened
 * straight from the input into the interleaved scratch, one kernel row at a time, when a
 * kernel row is whole words (k_w * in_c a multiple of 4): no im2col copy of rows inside the
 * input (es_dsp_kernel_row), then the zero padding to `row` taps. `edges`: 2 k_w in_c bytes.
 * Not inlined: inlined, it changed the register allocation of the pair loop beside it
 * (measured: KWS +0.8%, VWW +1.1% estimated cycles). */
static __attribute__((noinline)) void es_dsp_widen_windows(const es_window *p,
                                                           const int8_t *input, int32_t pixel_a,
                                                           int32_t pixel_b, int32_t row,
                                                           int8_t *edges, int8_t *wide) {
  const int32_t row_bytes = p->k_w * p->in_c;
  int32_t k_y, g;
  for (k_y = 0; k_y < p->k_h; ++k_y) {
    const int8_t *a = es_dsp_kernel_row(p, input, pixel_a, k_y, edges);
    const int8_t *b = es_dsp_kernel_row(p, input, pixel_b, k_y, edges + row_bytes);
    for (g = 0; g + 8 <= row_bytes; g += 8) {
      wide = es_dsp_widen_two_groups(wide, a + g, b + g);
    }
    if (g < row_bytes) {
      wide = es_dsp_widen_group(wide, es_word(a + g), es_word(b + g));
    }
  }
  for (g = p->k_h * row_bytes; g < row; g += 4) {
    es_store_word(wide, 0);
    es_store_word(wide + 4, 0);
    es_store_word(wide + 8, 0);
    es_store_word(wide + 12, 0);
    wide += 16;
  }
}

/* One 24-byte group of the three-window scratch: four taps of windows a, b and c (words at
 * a, b, c) widened, [a: taps 0,2][b][c][a: taps 1,3][b][c]; returns the next group. On DSP
 * cores in ARM assembly, the three loads and six stores back to back. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static inline int8_t *es_dsp_widen_group3(int8_t *wide, const int8_t *a, const int8_t *b,
                                          const int8_t *c) {
  uint32_t va, vb, vc, t0, t1, t2;
  __asm__ volatile("ldr %[va], [%[a]]\n\t"
          "ldr %[vb], [%[b]]\n\t"
          "ldr %[vc], [%[c]]\n\t"
          "sxtb16 %[t0], %[va]\n\t"
          "sxtb16 %[t1], %[vb]\n\t"
          "sxtb16 %[t2], %[vc]\n\t"
          "sxtb16 %[va], %[va], ror #8\n\t"
          "sxtb16 %[vb], %[vb], ror #8\n\t"
          "sxtb16 %[vc], %[vc], ror #8\n\t"
          "str %[t0], [%[wide]], #4\n\t"
          "str %[t1], [%[wide]], #4\n\t"
          "str %[t2], [%[wide]], #4\n\t"
          "str %[va], [%[wide]], #4\n\t"
          "str %[vb], [%[wide]], #4\n\t"
          "str %[vc], [%[wide]], #4\n\t"
          : [wide] "+r"(wide), [va] "=&r"(va), [vb] "=&r"(vb), [vc] "=&r"(vc),
            [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2)
          : [a] "r"(a), [b] "r"(b), [c] "r"(c)
          : "memory");
  return wide;
}
#else
static inline int8_t *es_dsp_widen_group3(int8_t *wide, const int8_t *a, const int8_t *b,
                                          const int8_t *c) {
  const uint32_t va = es_word(a), vb = es_word(b), vc = es_word(c);
  es_store_word(wide, es_sxtb16_low(va));
  es_store_word(wide + 4, es_sxtb16_low(vb));
  es_store_word(wide + 8, es_sxtb16_low(vc));
  es_store_word(wide + 12, es_sxtb16_high(va));
  es_store_word(wide + 16, es_sxtb16_high(vb));
  es_store_word(wide + 20, es_sxtb16_high(vc));
  return wide + 24;
}
#endif

/* The three windows of pixels[0..2] widened straight from the input into the three-window
 * scratch, in dsp_variant.conv_tap_order: each kernel row's whole words where they lie (in
 * place when the row is inside the input, else gathered into `edges` by es_dsp_kernel_row),
 * then the rows' last k_w in_c % 4 taps, collected into `edges` after the three edge rows
 * (one zero-padded tail a window), then zeros to `row`. No im2col copy of whole words; a
 * 3x3 RGB window reads 6 words and 3 bytes. */
static __attribute__((noinline)) void es_dsp_widen_windows3(const es_window *p,
                                                            const int8_t *input,
                                                            const int32_t *pixels, int32_t row,
                                                            int8_t *edges, int8_t *wide) {
  const int32_t row_bytes = p->k_w * p->in_c;
  const int32_t whole = row_bytes & ~3;
  const int32_t tail = (p->k_h * (row_bytes - whole) + 3) & ~3;
  int8_t *tails = edges + 3 * row_bytes;
  /* Three pixels of one output row whose windows lie inside the input (most of them): each
   * kernel row of b and c is a's moved by the stride, and the next kernel row of each is
   * the input row(s) below, so one division finds all nine rows. */
  const int32_t out_y = pixels[0] / p->out_w;
  const int32_t out_x = pixels[0] - out_y * p->out_w;
  const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
  const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
  const int inside = pixels[2] == pixels[0] + 2 && out_x + 2 < p->out_w && p->dil_w == 1 &&
                     in_y0 >= 0 && in_y0 + (p->k_h - 1) * p->dil_h < p->in_h && in_x0 >= 0 &&
                     in_x0 + 2 * p->stride_w + p->k_w <= p->in_w;
  const int32_t step = p->stride_w * p->in_c, down = p->dil_h * p->in_w * p->in_c;
  const int8_t *next = input + (in_y0 * p->in_w + in_x0) * p->in_c;
  int32_t k_y, g, t = 0;
  if (inside) {
    for (k_y = 0; k_y < p->k_h; ++k_y, next += down) {
      for (g = 0; g < whole; g += 4) {
        wide = es_dsp_widen_group3(wide, next + g, next + step + g, next + 2 * step + g);
      }
      for (; g < row_bytes; ++g, ++t) {
        tails[t] = next[g];
        tails[tail + t] = next[step + g];
        tails[2 * tail + t] = next[2 * step + g];
      }
    }
  } else {
    for (k_y = 0; k_y < p->k_h; ++k_y) {
      const int8_t *a = es_dsp_kernel_row(p, input, pixels[0], k_y, edges);
      const int8_t *b = es_dsp_kernel_row(p, input, pixels[1], k_y, edges + row_bytes);
      const int8_t *c = es_dsp_kernel_row(p, input, pixels[2], k_y, edges + 2 * row_bytes);
      for (g = 0; g < whole; g += 4) {
        wide = es_dsp_widen_group3(wide, a + g, b + g, c + g);
      }
      for (; g < row_bytes; ++g, ++t) {
        tails[t] = a[g];
        tails[tail + t] = b[g];
        tails[2 * tail + t] = c[g];
      }
    }
  }
  for (; t < tail; ++t) {
    tails[t] = 0;
    tails[tail + t] = 0;
    tails[2 * tail + t] = 0;
  }
  for (g = 0; g < tail; g += 4) {
    wide = es_dsp_widen_group3(wide, tails + g, tails + tail + g, tails + 2 * tail + g);
  }
  for (g = p->k_h * whole + tail; g < row; g += 4) {
    es_store_word(wide, 0);
    es_store_word(wide + 4, 0);
    es_store_word(wide + 8, 0);
    es_store_word(wide + 12, 0);
    es_store_word(wide + 16, 0);
    es_store_word(wide + 20, 0);
    wide += 24;
  }
}

/* Scratch bytes es_dsp_widen_windows3 uses at `edges` (dsp_variant.conv_gather_bytes). */
static inline int32_t es_dsp_gather_bytes(const es_window *p) {
  const int32_t row_bytes = p->k_w * p->in_c;
  const int32_t tail = (p->k_h * (row_bytes & 3) + 3) & ~3;
  return (3 * (row_bytes + tail) + 7) & ~7;
}

/* A window read in place (a 1x1 window without padding): the input pixel under `pixel`. */
static inline const int8_t *es_dsp_pixel_window(const es_window *p, const int8_t *input,
                                                int32_t pixel) {
  if (p->stride_h == 1 && p->stride_w == 1) {  /* the output grid is the input's */
    return input + pixel * p->in_c;
  }
  return es_window_row(p, input, pixel, 0, 1, 0);
}

/* Staged layers, three pixels at a time (the 3x2 step; the last one or two pixels repeat
 * the last window): widen the three windows, then every output channel pair and an odd
 * last channel (its row staged on its own, es_dsp_stage_widened's layout). Scratch: the
 * widened windows (6 row bytes), the edge rows and tails unless `direct`
 * (es_dsp_gather_bytes), the stage. */
static void es_dsp_conv_2d_triples(const es_window *p, const int8_t *input,
                                   const int8_t *weights, const int32_t *words, int32_t row,
                                   int direct, int32_t chunk, int positive, int8_t *scratch,
                                   int8_t *output) {
  const int32_t pixels = p->out_h * p->out_w;
  const int32_t out_c = p->out_c;
  const uint32_t lows = es_dsp_bytes(p->act_min), highs = es_dsp_bytes(p->act_max);
  const int clamp = p->act_min > -128 || p->act_max < 127;
  int8_t *windows = scratch + 6 * row;
  const int8_t *end = scratch + 6 * row;
  const int odd_eights = row % 16 != 0;
  const int mode = (clamp ? 1 : 0) | (positive ? 2 : 0) | (odd_eights ? 4 : 0);
  int32_t first, pixel, g;
  for (first = 0; first < out_c; first += chunk) {
    const int32_t count = out_c - first < chunk ? out_c - first : chunk;
    const int32_t pairs = count / 2;
    const int8_t *chunk_weights = weights + first * row;
    const int32_t *chunk_words = words + ES_DSP_CONV_PAIR_WORDS * (first / 2);
    const int32_t *words_end;
    int8_t *copy = windows + (direct ? 0 : es_dsp_gather_bytes(p));
    es_dsp_stage_widened_pairs(copy, chunk_weights, 2 * pairs * row);
    es_dsp_stage_widened(copy + 4 * pairs * row, chunk_weights + 2 * pairs * row,
                         (count % 2) * row);
    chunk_weights = copy;
    copy += 2 * count * row;
    es_dsp_stage(copy, chunk_words, 4 * ES_DSP_CONV_PAIR_WORDS * ((count + 1) / 2));
    chunk_words = (const int32_t *)(void *)copy;
    words_end = chunk_words + ES_DSP_CONV_PAIR_WORDS * pairs;
    for (pixel = 0; pixel < pixels; pixel += 3) {
      const int32_t left = pixels - pixel;
      const int32_t at[3] = {pixel, left > 1 ? pixel + 1 : pixel,
                             left > 2 ? pixel + 2 : (left > 1 ? pixel + 1 : pixel)};
      int8_t *out = output + pixel * out_c + first;
      const int32_t b_step = (at[1] - pixel) * out_c, c_step = (at[2] - pixel) * out_c;
      const int8_t *w;
      if (direct) {  /* row: the pixel's in_c bytes */
        const int8_t *a = es_dsp_pixel_window(p, input, at[0]);
        const int8_t *b = es_dsp_pixel_window(p, input, at[1]);
        const int8_t *c = es_dsp_pixel_window(p, input, at[2]);
        int8_t *wide = scratch;
        for (g = 0; g < row; g += 4) {
          wide = es_dsp_widen_group3(wide, a + g, b + g, c + g);
        }
      } else {
        es_dsp_widen_windows3(p, input, at, row, windows, scratch);
      }
#define ES_DSP_CONV_TRIPLES(odd_, clamp_, positive_)                                           \
  es_dsp_conv_triples(scratch, end, odd_, chunk_weights, chunk_words, words_end, b_step, c_step, \
                      lows, highs, clamp_, positive_, out)
      switch (mode) {  /* each copy of the loop with its constants */
        case 0: w = ES_DSP_CONV_TRIPLES(0, 0, 0); break;
        case 1: w = ES_DSP_CONV_TRIPLES(0, 1, 0); break;
        case 2: w = ES_DSP_CONV_TRIPLES(0, 0, 1); break;
        case 3: w = ES_DSP_CONV_TRIPLES(0, 1, 1); break;
        case 4: w = ES_DSP_CONV_TRIPLES(1, 0, 0); break;
        case 5: w = ES_DSP_CONV_TRIPLES(1, 1, 0); break;
        case 6: w = ES_DSP_CONV_TRIPLES(1, 0, 1); break;
        default: w = ES_DSP_CONV_TRIPLES(1, 1, 1); break;
      }
#undef ES_DSP_CONV_TRIPLES
      if (count % 2) {
        int32_t acc_a = words_end[0], acc_b = words_end[0], acc_c = words_end[0];
        for (g = 0; g < row; g += 4) {
          const int8_t *x = scratch + 6 * g;
          const uint32_t wl = es_word(w + 2 * g), wh = es_word(w + 2 * g + 4);
          acc_a = es_smlad(es_word(x + 12), wh, es_smlad(es_word(x), wl, acc_a));
          acc_b = es_smlad(es_word(x + 16), wh, es_smlad(es_word(x + 4), wl, acc_b));
          acc_c = es_smlad(es_word(x + 20), wh, es_smlad(es_word(x + 8), wl, acc_c));
        }
        out[count - 1 + c_step] = es_dsp_finish(acc_c, words_end + 2, p, positive);
        out[count - 1 + b_step] = es_dsp_finish(acc_b, words_end + 2, p, positive);
        out[count - 1] = es_dsp_finish(acc_a, words_end + 2, p, positive);
      }
    }
  }
}

/* Layers whose constants are staged take the three-window path above; the others (weights
 * read in place as int8, from flash) run here, per pixel pair: widen both windows into
 * scratch, then every output channel pair (es_dsp_conv_pairs) and an odd last channel.
 * `words`: ES_DSP_CONV_PAIR_WORDS per channel pair, an odd last channel's words as a pair's
 * first half. */
static void es_dsp_conv_2d(const es_window *p, const int8_t *input, const int8_t *weights,
                           const int32_t *words, int32_t row, int direct, int staged,
                           int32_t chunk, int positive, int8_t *scratch, int8_t *output) {
  const int32_t pixels = p->out_h * p->out_w;
  const int32_t out_c = p->out_c;
  const uint32_t lows = es_dsp_bytes(p->act_min), highs = es_dsp_bytes(p->act_max);
  const int clamp = p->act_min > -128 || p->act_max < 127;
  /* Kernel rows of whole words: each window widened straight from the input. */
  const int whole_rows = !direct && (p->k_w * p->in_c) % 4 == 0;
  int8_t *windows = scratch + 4 * row;
  const int8_t *end = scratch + 4 * row;
  const int odd_eights = row % 16 != 0;
  const int mode = (clamp ? 1 : 0) | (positive ? 2 : 0);
  const int32_t *words_end = words + ES_DSP_CONV_PAIR_WORDS * (out_c / 2);
  int32_t pixel, g;
  if (staged) {
    es_dsp_conv_2d_triples(p, input, weights, words, row, direct, chunk, positive, scratch,
                           output);
    return;
  }
  for (pixel = 0; pixel < pixels; pixel += 2) {
    const int two = pixel + 1 < pixels;
    int8_t *out = output + pixel * out_c;
    const int32_t b_step = two ? out_c : 0;
    const int8_t *w;
    if (whole_rows) {
      es_dsp_widen_windows(p, input, pixel, two ? pixel + 1 : pixel, row, windows, scratch);
    } else {
      const int8_t *a = es_window_row(p, input, pixel, row, direct, windows);
      const int8_t *b = two ? es_window_row(p, input, pixel + 1, row, direct, windows + row) : a;
      int8_t *wide = scratch;
      for (g = 0; g < row; g += 8) {  /* row: a multiple of 8 */
        wide = es_dsp_widen_two_groups(wide, a + g, b + g);
      }
    }
#define ES_DSP_CONV_PAIRS(clamp_, positive_)                                                 \
  es_dsp_conv_pairs(scratch, end, odd_eights, weights, words, words_end, b_step, lows, highs, \
                    clamp_, positive_, out)
    switch (mode) {  /* each copy of the pair loop with its constants */
      case 0: w = ES_DSP_CONV_PAIRS(0, 0); break;
      case 1: w = ES_DSP_CONV_PAIRS(1, 0); break;
      case 2: w = ES_DSP_CONV_PAIRS(0, 1); break;
      default: w = ES_DSP_CONV_PAIRS(1, 1); break;
    }
#undef ES_DSP_CONV_PAIRS
    if (out_c % 2) {
      int32_t acc_a = words_end[0], acc_b = words_end[0];
      for (g = 0; g < row; g += 4) {
        const int8_t *x = scratch + 4 * g;
        const uint32_t v = es_word(w + g);
        acc_a = es_dsp_dot4(acc_a, es_word(x), es_word(x + 4), v);
        acc_b = es_dsp_dot4(acc_b, es_word(x + 8), es_word(x + 12), v);
      }
      out[out_c - 1 + b_step] = es_dsp_finish(acc_b, words_end + 2, p, positive);
      out[out_c - 1] = es_dsp_finish(acc_a, words_end + 2, p, positive);
    }
  }
}
