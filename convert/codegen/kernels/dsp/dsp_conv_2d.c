/* CONV_2D as a GEMM: rows of taps (one per output pixel) times rows of weights (one per
 * output channel), two output pixels by two output channels per inner step (2x2 register
 * blocking). The two windows are widened straight from the input a kernel row at a time
 * when a kernel row is whole words (es_dsp_widen_windows), else gathered by es_window_row
 * (im2col, padding as the input zero point so the folded bias is exact everywhere; a 1x1
 * window without padding whose channels are a multiple of 8 is read in place); either way
 * they are widened to int16 once per pixel pair into
 * scratch, four taps at a time in SXTB16 order ([group][a: taps 0,2][a: taps 1,3][b: taps
 * 0,2][b: taps 1,3], 16 bytes), so one pointer walks both windows and every output channel
 * pair reuses the widening. Weights, laid out at generation time: output channels in pairs,
 * each pair's rows interleaved four bytes at a time ([pair][group][channel 0: 4 bytes]
 * [channel 1: 4 bytes]), rows zero-padded to `row` (a multiple of 8); an odd last channel's
 * row follows alone. Biases and requantization words (es_dsp_requantize's, holding the
 * output offset; doubled, for es_dsp_requantize_positive, with a ReLU-family activation)
 * come interleaved per channel pair (dsp_variant.conv_pair_words). With
 * `staged`, the weights (widened to int16 on the way, es_dsp_stage_widened) and those words
 * are first copied into scratch (SRAM): every pixel pair reads all of them, and from flash
 * each read would go through the flash cache (a few 16-byte lines on an STM32L4). */
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

/* The same step on weights staged widened (es_dsp_stage_widened: [channel 0: taps 0,2]
 * [channel 0: taps 1,3][channel 1: ...], int16): no SXTB16 left. Register plan, 13
 * registers: the four accumulators, x, w, end, the four window words and wl, wh (one
 * channel's weight words at a time). Six adjacent loads (7 cycles), four SMLADs, two more
 * loads (3 cycles), four SMLADs: 18 cycles for 16 MACs where the int8 step takes 19. */
#define ES_DSP_CONV_STEP16_ASM                 \
  "ldr %[al], [%[x]], #4\n\t"                  \
  "ldr %[ah], [%[x]], #4\n\t"                  \
  "ldr %[bl], [%[x]], #4\n\t"                  \
  "ldr %[bh], [%[x]], #4\n\t"                  \
  "ldr %[wl], [%[w]], #4\n\t"                  \
  "ldr %[wh], [%[w]], #4\n\t"                  \
  "smlad %[a0], %[al], %[wl], %[a0]\n\t"       \
  "smlad %[b0], %[bl], %[wl], %[b0]\n\t"       \
  "smlad %[a0], %[ah], %[wh], %[a0]\n\t"       \
  "smlad %[b0], %[bh], %[wh], %[b0]\n\t"       \
  "ldr %[wl], [%[w]], #4\n\t"                  \
  "ldr %[wh], [%[w]], #4\n\t"                  \
  "smlad %[a1], %[al], %[wl], %[a1]\n\t"       \
  "smlad %[b1], %[bl], %[wl], %[b1]\n\t"       \
  "smlad %[a1], %[ah], %[wh], %[a1]\n\t"       \
  "smlad %[b1], %[bh], %[wh], %[b1]\n\t"
#define ES_DSP_CONV16_OPERANDS                                                            \
  : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1), [x] "+r"(x), [w] "+r"(w), \
    [al] "=&r"(al), [ah] "=&r"(ah), [bl] "=&r"(bl), [bh] "=&r"(bh), [wl] "=&r"(wl),       \
    [wh] "=&r"(wh)                                                                        \
  : [end] "r"(end)                                                                        \
  : "cc", "memory"
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
#define ES_DSP_CONV_DOT16(x, w, end, odd_eights)                     \
  do {                                                               \
    uint32_t al, ah, bl, bh, wl, wh;                                 \
    ES_DSP_CONV_LOOP(ES_DSP_CONV_STEP16_ASM, ES_DSP_CONV16_OPERANDS); \
  } while (0)
#else
/* The same integers in plain C: int8 weights (sign-extended here) or staged int16 ones. */
#define ES_DSP_CONV_HOST_DOT(x, w, end, widened)                                        \
  do {                                                                                  \
    while ((x) != (end)) {                                                              \
      const uint32_t al = es_word(x), ah = es_word((x) + 4);                            \
      const uint32_t bl = es_word((x) + 8), bh = es_word((x) + 12);                     \
      const uint32_t l0 = widened ? es_word(w) : es_sxtb16_low(es_word(w));             \
      const uint32_t h0 = widened ? es_word((w) + 4) : es_sxtb16_high(es_word(w));      \
      const uint32_t l1 = widened ? es_word((w) + 8) : es_sxtb16_low(es_word((w) + 4)); \
      const uint32_t h1 =                                                               \
          widened ? es_word((w) + 12) : es_sxtb16_high(es_word((w) + 4));               \
      a0 = es_smlad(ah, h0, es_smlad(al, l0, a0));                                      \
      b0 = es_smlad(bh, h0, es_smlad(bl, l0, b0));                                      \
      a1 = es_smlad(ah, h1, es_smlad(al, l1, a1));                                      \
      b1 = es_smlad(bh, h1, es_smlad(bl, l1, b1));                                      \
      (x) += 16;                                                                        \
      (w) += (widened) ? 16 : 8;                                                        \
    }                                                                                   \
  } while (0)
#define ES_DSP_CONV_DOT(x, w, end, odd_eights) \
  do {                                         \
    (void)(odd_eights);                        \
    ES_DSP_CONV_HOST_DOT(x, w, end, 0);        \
  } while (0)
#define ES_DSP_CONV_DOT16(x, w, end, odd_eights) \
  do {                                           \
    (void)(odd_eights);                          \
    ES_DSP_CONV_HOST_DOT(x, w, end, 1);          \
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
 * (above; on int16 weights when `widened`, the staged layout), the four accumulators requantized (no offset to add: it is in the words),
 * saturated and packed into one word [a0 a1 b0 b1], clamped to the activation range with two
 * bytewise SEL steps unless the range is all of int8 (`clamp` is a constant at each call, so
 * the compiler drops the clamp from the other copy), and stored as two halfwords: window b's
 * first (at `b_step` bytes after window a's), so that when there is no window b (b_step 0)
 * window a's store is the one that stands. No branch per pair. */
static inline __attribute__((always_inline)) const int8_t *es_dsp_conv_pairs(
    const int8_t *scratch, const int8_t *end, int odd_eights, const int8_t *w,
    const int32_t *words, const int32_t *words_end, int32_t b_step, uint32_t lows,
    uint32_t highs, const int clamp, const int widened, const int positive, int8_t *out) {
  for (; words != words_end; words += ES_DSP_CONV_PAIR_WORDS, out += 2) {
    int32_t a0 = words[0], a1 = words[1];
    int32_t b0 = a0, b1 = a1;
    const int8_t *x = scratch;
    uint32_t packed;
    if (widened) {
      ES_DSP_CONV_DOT16(x, w, end, odd_eights);
    } else {
      ES_DSP_CONV_DOT(x, w, end, odd_eights);
    }
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

/* Per pixel pair: widen both windows into scratch, then every output channel pair
 * (es_dsp_conv_pairs) and an odd last channel. `words`: ES_DSP_CONV_PAIR_WORDS per channel
 * pair, an odd last channel's words as a pair's first half. */
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
  const int mode = (clamp ? 1 : 0) | (staged ? 2 : 0) | (positive ? 4 : 0);
  int32_t first, pixel, g;
  /* Output channels in chunks of `chunk` (even; out_c when the layer's constants fit the
   * stage at once): each chunk's weights and words are staged, then every pixel pair runs
   * over them, so weights too large to stage whole still come from flash once. */
  for (first = 0; first < out_c; first += chunk) {
    const int32_t count = out_c - first < chunk ? out_c - first : chunk;
    const int32_t pairs = count / 2;
    const int8_t *chunk_weights = weights + first * row;
    const int32_t *chunk_words = words + ES_DSP_CONV_PAIR_WORDS * (first / 2);
    const int32_t *words_end;
    if (staged) {
      int8_t *copy = windows + (direct ? 0 : 2 * row);
      es_dsp_stage_widened(copy, chunk_weights, count * row);
      chunk_weights = copy;
      copy += 2 * count * row;
      es_dsp_stage(copy, chunk_words, 4 * ES_DSP_CONV_PAIR_WORDS * ((count + 1) / 2));
      chunk_words = (const int32_t *)(void *)copy;
    }
    words_end = chunk_words + ES_DSP_CONV_PAIR_WORDS * pairs;
    for (pixel = 0; pixel < pixels; pixel += 2) {
      const int two = pixel + 1 < pixels;
      int8_t *out = output + pixel * out_c + first;
      const int32_t b_step = two ? out_c : 0;
      const int8_t *w;
      if (whole_rows) {
        es_dsp_widen_windows(p, input, pixel, two ? pixel + 1 : pixel, row, windows, scratch);
      } else {
        const int8_t *a = es_window_row(p, input, pixel, row, direct, windows);
        const int8_t *b =
            two ? es_window_row(p, input, pixel + 1, row, direct, windows + row) : a;
        int8_t *wide = scratch;
        for (g = 0; g < row; g += 8) {  /* row: a multiple of 8 */
          wide = es_dsp_widen_two_groups(wide, a + g, b + g);
        }
      }
#define ES_DSP_CONV_PAIRS(clamp_, widened_, positive_)                                      \
  es_dsp_conv_pairs(scratch, end, odd_eights, chunk_weights, chunk_words, words_end, b_step, \
                    lows, highs, clamp_, widened_, positive_, out)
      switch (mode) {  /* each copy of the pair loop with its constants */
        case 0: w = ES_DSP_CONV_PAIRS(0, 0, 0); break;
        case 1: w = ES_DSP_CONV_PAIRS(1, 0, 0); break;
        case 2: w = ES_DSP_CONV_PAIRS(0, 1, 0); break;
        case 3: w = ES_DSP_CONV_PAIRS(1, 1, 0); break;
        case 4: w = ES_DSP_CONV_PAIRS(0, 0, 1); break;
        case 5: w = ES_DSP_CONV_PAIRS(1, 0, 1); break;
        case 6: w = ES_DSP_CONV_PAIRS(0, 1, 1); break;
        default: w = ES_DSP_CONV_PAIRS(1, 1, 1); break;
      }
#undef ES_DSP_CONV_PAIRS
      if (count % 2) {
        int32_t acc_a = words_end[0], acc_b = words_end[0];
        for (g = 0; g < row; g += 4) {
          const int8_t *x = scratch + 4 * g;
          const uint32_t wl = staged ? es_word(w + 2 * g) : es_sxtb16_low(es_word(w + g));
          const uint32_t wh = staged ? es_word(w + 2 * g + 4) : es_sxtb16_high(es_word(w + g));
          acc_a = es_smlad(es_word(x + 4), wh, es_smlad(es_word(x), wl, acc_a));
          acc_b = es_smlad(es_word(x + 12), wh, es_smlad(es_word(x + 8), wl, acc_b));
        }
        out[count - 1 + b_step] = es_dsp_finish(acc_b, words_end + 2, p, positive);
        out[count - 1] = es_dsp_finish(acc_a, words_end + 2, p, positive);
      }
    }
  }
}
