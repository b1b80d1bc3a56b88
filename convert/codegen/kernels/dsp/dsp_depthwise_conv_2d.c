/* DEPTHWISE_CONV_2D with depth multiplier 1. The k_h input rows an output row reads are
 * copied into a band (scratch, k_h rows) with the padding written out as the input zero
 * point, so every window is inside the band and the folded bias is exact everywhere: no
 * border case. Channels are stored `depth` apart in the band (out_c rounded up to 4), and
 * every window is computed four channels at a time: one word of input per tap, sign-extended
 * in pairs (SXTB16: channels 0 and 2, 1 and 3), times two words of int16 weights laid out at
 * generation time ([channel group][tap][(w0, w2), (w1, w3)]), into four single
 * multiply-adds (SMLABB/SMLATT: the channels must not be summed). Requantization is
 * es_dsp_requantize, its words holding the output offset too (dsp_variant.requant_words);
 * four outputs are saturated, packed (es_dsp_pack4), clamped together and stored as one
 * word. With `staged`, the weights, folded biases and requantization words are first copied
 * after the band (SRAM), as in dsp_conv_2d. 3x3 windows at stride 1 or 2 along rows take the
 * pair layout below instead. */
/* @section dsp_depthwise_conv_2d needs common linear_common dsp_common */
#define ES_DSP_DW_TAP(OFFSET)                                        \
  do {                                                               \
    const uint32_t xv = es_word(x + (OFFSET));                       \
    const uint32_t x_low = es_sxtb16_low(xv), x_high = es_sxtb16_high(xv); \
    const uint32_t w_low = (uint32_t)w[0], w_high = (uint32_t)w[1];  \
    acc0 = es_smlabb(x_low, w_low, acc0);                            \
    acc2 = es_smlatt(x_low, w_low, acc2);                            \
    acc1 = es_smlabb(x_high, w_high, acc1);                          \
    acc3 = es_smlatt(x_high, w_high, acc3);                          \
    w += 2;                                                          \
  } while (0)

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* Three taps of one band row (a 3-wide window row) in ARM assembly. Register plan (11 of
 * the core's 14): x (the row at this window's column and channel group), t (bytes between
 * taps), w (the weights, advanced by 6 words), acc0..acc3, and four temporaries: xv (the
 * tap's four input bytes, then its odd channels), xl (its even channels), wl and wh (the
 * tap's weights: (w0, w2) and (w1, w3)). The three loads of a tap are adjacent, so they
 * pipeline (2 + 1 + 1 cycles on the M4). In C, gcc kept the row pointers and the tap
 * stride on the stack. */
#define ES_DSP_DW_TAP_ASM(ADDRESS)                 \
  "ldr %[xv], " ADDRESS "\n\t"                     \
  "ldr %[wl], [%[w]], #4\n\t"                     \
  "ldr %[wh], [%[w]], #4\n\t"                     \
  "sxtb16 %[xl], %[xv]\n\t"                       \
  "sxtb16 %[xv], %[xv], ror #8\n\t"               \
  "smlabb %[a0], %[xl], %[wl], %[a0]\n\t"         \
  "smlatt %[a2], %[xl], %[wl], %[a2]\n\t"         \
  "smlabb %[a1], %[xv], %[wh], %[a1]\n\t"         \
  "smlatt %[a3], %[xv], %[wh], %[a3]\n\t"
#define ES_DSP_DW_ROW3(row, stride)                                                            \
  do {                                                                                    \
    uint32_t xv, xl, wl, wh;                                                              \
    __asm__(ES_DSP_DW_TAP_ASM("[%[x]]") ES_DSP_DW_TAP_ASM("[%[x], %[t]]")                 \
            ES_DSP_DW_TAP_ASM("[%[x], %[t], lsl #1]")                                     \
            : [a0] "+r"(acc0), [a1] "+r"(acc1), [a2] "+r"(acc2), [a3] "+r"(acc3),         \
              [w] "+r"(w), [xv] "=&r"(xv), [xl] "=&r"(xl), [wl] "=&r"(wl), [wh] "=&r"(wh)  \
            : [x] "r"(row), [t] "r"(stride)                                                  \
            : "memory");                                                                  \
  } while (0)
#else
#define ES_DSP_DW_ROW3(x_row, t)         \
  do {                                   \
    const int8_t *x = (x_row);           \
    ES_DSP_DW_TAP(0);                    \
    ES_DSP_DW_TAP(t);                    \
    ES_DSP_DW_TAP(2 * (t));              \
  } while (0)
#endif

/* Fill `bytes` bytes (a multiple of 4) with the word `fill`. */
static void es_dsp_fill(int8_t *destination, uint32_t fill, int32_t bytes) {
  int32_t i;
  for (i = 0; i < bytes; i += 4) {
    es_store_word(destination + i, fill);
  }
}

/* Input row in_y as one band row: band column j is input column j - pad_w, each pixel
 * `depth` bytes (channels past in_c, and rows and columns outside the image, hold the zero
 * point). */
static void es_dsp_band_row(const es_window *p, const int8_t *input, int32_t in_y,
                            int32_t depth, int32_t width, int8_t *row) {
  const uint32_t zero_points = es_dsp_bytes(-p->input_offset);
  const int32_t first = p->pad_w < width ? p->pad_w : width;
  const int32_t last = p->pad_w + p->in_w < width ? p->pad_w + p->in_w : width;
  const int8_t *source = input + in_y * p->in_w * p->in_c - first * p->in_c;
  int32_t j, i;
  if (in_y < 0 || in_y >= p->in_h) {
    es_dsp_fill(row, zero_points, width * depth);
    return;
  }
  es_dsp_fill(row, zero_points, first * depth);
  if (depth == p->in_c) {
    for (i = first * depth; i < last * depth; i += 4) {
      es_store_word(row + i, es_word(source + i));
    }
  } else {
    for (j = first; j < last; ++j) {
      es_dsp_fill(row + j * depth, zero_points, depth);
      memcpy(row + j * depth, source + j * p->in_c, (size_t)p->in_c);
    }
  }
  es_dsp_fill(row + last * depth, zero_points, (width - last) * depth);
}

/* 3x3 windows at stride 1 or 2 along rows (dil_h 1) take another band layout, so one SMLAD
 * does two taps of one channel. The band holds, per channel and column pair j, the pair word
 * E[j] = (x[2j], x[2j + 1]) (int16 halves) of each of its three ring rows side by side
 * ([channel][pair][slot], slot = input row mod 3), and a window row's three weights are three
 * pair words ((w0, w1), (w0, w2), (w1, w2); es_dsp_pair_constants). At stride 1,
 * outputs 2j and 2j + 1 take four instructions per window row for their six products:
 *   even += E[j] . (w0, w1) + low(E[j + 1]) high(w02)            SMLAD, SMLABT
 *   odd  += high(E[j]) low(w02) + E[j + 1] . (w1, w2)            SMLATB, SMLAD
 * (at stride 2 every output is an "even" one, of pair x). Four outputs of one channel at a
 * time (ES_DSP_PAIR_QUAD), channel after channel: each loaded weight word serves four
 * outputs, each band word two or more; one pointer reaches all three rows by immediate
 * offsets (the slots of window rows 0, 1, 2 are one of three rotations, each its own copy of
 * the loop). Per window row: 6 loads and 8 multiply-adds for 12 products. A channel's
 * constants are one block of 13 words (9 weight pairs, 3 requantization words, the bias), so
 * one pointer reaches them too. The weights and bias are doubled at generation time, so the
 * requantization is one SMMLAR and two shifts (es_dsp_requantize_doubled); outputs are
 * saturated and stored one byte at a time, and the activation range (when narrower than
 * int8) is applied to the output row afterwards. Measured with --board nucleo-l4r5zi: KWS's
 * layers (25x5x64) 5.66 -> 3.16 cycles/MAC, VWW's stride-1 ones 5.6-6.5 -> 2.9-5.4 and its
 * stride-2 ones 6.3-6.5 -> 4.8-5.9. At stride 2 each input value serves fewer products, so
 * the band's widening costs more per product: rows of fewer than 4 outputs (VWW's 3x3x128:
 * 7.4, 7.0 on the four-channel layout) stay on the four-channel layout. */

/* Two halfwords of a and b as one word: the low ones (a's low; PKHBT) or the high ones
 * (a's high in the low half; PKHTB). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static inline uint32_t es_pack_low(uint32_t a, uint32_t b) {
  uint32_t result;
  __asm("pkhbt %0, %1, %2, lsl #16" : "=r"(result) : "r"(a), "r"(b));
  return result;
}
static inline uint32_t es_pack_high(uint32_t a, uint32_t b) {
  uint32_t result;
  __asm("pkhtb %0, %2, %1, asr #16" : "=r"(result) : "r"(a), "r"(b));
  return result;
}
#else
static inline uint32_t es_pack_low(uint32_t a, uint32_t b) { return (a & 0xFFFFu) | (b << 16); }
static inline uint32_t es_pack_high(uint32_t a, uint32_t b) {
  return (a >> 16) | (b & 0xFFFF0000u);
}
#endif

/* Four channels of a column pair (a: column 2j's four bytes, b: column 2j + 1's) as their
 * four pair words, `channel_words` apart: bytes interleaved (a0 a1 b0 b1, a2 a3 b2 b3), then
 * sign-extended in pairs, so 2 PKH and 4 SXTB16. */
static inline void es_dsp_pair_quad(uint32_t a, uint32_t b, uint32_t *out,
                                    int32_t channel_words) {
  const uint32_t low = es_pack_low(a, b), high = es_pack_high(a, b);
  out[0] = es_sxtb16_low(low);
  out[channel_words] = es_sxtb16_high(low);
  out[2 * channel_words] = es_sxtb16_low(high);
  out[3 * channel_words] = es_sxtb16_high(high);
}

/* Input row in_y into ring slot `slot` of the pair-layout band (padding and rows outside the
 * image hold the input zero point). Each pair's inside or outside columns are decided once:
 * a pair wholly outside is stored as zero points, one half outside reads the other only;
 * channels past the last multiple of 4 go one at a time. */
static void es_dsp_pair_row(const es_window *p, const int8_t *input, int32_t in_y,
                            int32_t pairs, int32_t slot, uint32_t *band) {
  const int32_t zero_point = -p->input_offset, in_c = p->in_c, quads = in_c & ~3;
  const int32_t channel_words = 3 * pairs;
  const uint32_t zero_bytes = es_dsp_bytes(zero_point);
  const uint32_t zero_pair = ((uint32_t)zero_point & 0xFFFFu) | ((uint32_t)zero_point << 16);
  const int8_t *source = input + in_y * p->in_w * in_c;
  const int outside = in_y < 0 || in_y >= p->in_h;
  int32_t pair, c;
  for (pair = 0; pair < pairs; ++pair) {
    const int32_t x0 = 2 * pair - p->pad_w, x1 = x0 + 1;
    const int inside0 = !outside && x0 >= 0 && x0 < p->in_w;
    const int inside1 = !outside && x1 >= 0 && x1 < p->in_w;
    const int8_t *a = source + x0 * in_c, *b = source + x1 * in_c;
    uint32_t *out = band + 3 * pair + slot;
    if (inside0 && inside1) {
      for (c = 0; c < quads; c += 4) {
        es_dsp_pair_quad(es_word(a + c), es_word(b + c), out, channel_words);
        out += 4 * channel_words;
      }
    } else if (inside0) {
      for (c = 0; c < quads; c += 4) {
        es_dsp_pair_quad(es_word(a + c), zero_bytes, out, channel_words);
        out += 4 * channel_words;
      }
    } else if (inside1) {
      for (c = 0; c < quads; c += 4) {
        es_dsp_pair_quad(zero_bytes, es_word(b + c), out, channel_words);
        out += 4 * channel_words;
      }
    } else {
      for (c = 0; c < quads; ++c) {
        *out = zero_pair;
        out += channel_words;
      }
    }
    for (c = quads; c < in_c; ++c) {
      const int32_t xa = inside0 ? a[c] : zero_point, xb = inside1 ? b[c] : zero_point;
      *out = inside0 || inside1 ? ((uint32_t)xa & 0xFFFFu) | ((uint32_t)xb << 16) : zero_pair;
      out += channel_words;
    }
  }
}

/* es_dsp_requantize of an accumulator held doubled (x2 = 2x), its words q = {M, 2h, e}
 * (dsp_variant.doubled_requant_words): the top word of x2 M + 2^31 + (2h - [x < 0]) 2^32
 * (one SMMLAR, whose rounding constant is that 2^31), shifted right by e. */
static inline int32_t es_dsp_requantize_doubled(int32_t x2, const int32_t *q) {
  const int64_t high = (int64_t)(q[1] + (x2 >> 31)) * 4294967296LL;
  return (int32_t)((high + (int64_t)x2 * q[0] + 0x80000000LL) >> 32) >> q[2];
}

/* One requantized output (offset included), saturated to int8; the activation range is
 * applied to the whole output row afterwards (es_dsp_clamp_bytes), as all of int8 is usual. */
static inline int8_t es_dsp_pair_output(int32_t acc, const int32_t *q) {
  return (int8_t)es_ssat8(es_dsp_requantize_doubled(acc, q));
}
/* The same without the sign term where `positive` (ES_DSP_REQUANTIZE_POSITIVE_ASM's
 * arithmetic: es_dsp_requantize_positive on an accumulator already doubled). */
static inline int8_t es_dsp_pair_output_mode(int32_t acc, const int32_t *q, const int positive) {
  if (positive) {
    const int64_t high = (int64_t)q[1] * 4294967296LL;
    return (int8_t)es_ssat8((int32_t)((high + (int64_t)acc * q[0] + 0x80000000LL) >> 32) >> q[2]);
  }
  return es_dsp_pair_output(acc, q);
}

/* The products of one window row (weights w[0..2]: w01, w02, w12) for outputs 2j, 2j + 1
 * (E0 = E[j], E1 = E[j + 1]). */
#define ES_DSP_PAIR_TAPS(E0, E1, w, even, odd)                                        \
  do {                                                                                \
    even = es_smlabt((E1), (uint32_t)(w)[1], es_smlad((E0), (uint32_t)(w)[0], even)); \
    odd = es_smlad((E1), (uint32_t)(w)[2], es_smlatb((E0), (uint32_t)(w)[1], odd));   \
  } while (0)
/* The even output of pair E[j], E[j + 1] (window row k: slot S, weights w + 3k). */
#define ES_DSP_PAIR_EVEN(S, k, acc)                                            \
  acc = es_smlabt(e[3 + (S)], (uint32_t)w[3 * (k) + 1],                        \
                  es_smlad(e[(S)], (uint32_t)w[3 * (k)], acc))

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* Window row K (its band words at slot S of e, its weights at w + 12 K bytes) for four
 * outputs, in ARM assembly. Register plan (10 registers): acc0..acc3, e, w, and four
 * temporaries: t0 (w01, then w12), t1 (E0, then E2), t2 (E1), t3 (w02). Four loads are
 * adjacent, then two, so they pipeline (5 + 3 cycles on the M4); 8 multiply-adds: 16 cycles
 * for 12 products. In C, gcc spilled the weights and row pointers. The first row starts the
 * accumulators from the bias (loaded into acc0 with the row's loads). */
#define ES_DSP_PAIR_ROW4_ASM(K, S, LOAD_BIAS, B0, B1, B2, B3) \
  LOAD_BIAS                                                   \
  "ldr %[t0], [%[w], #(12 * " #K ")]\n\t"                     \
  "ldr %[t1], [%[e], #(4 * " #S ")]\n\t"                      \
  "ldr %[t2], [%[e], #(12 + 4 * " #S ")]\n\t"                 \
  "ldr %[t3], [%[w], #(12 * " #K " + 4)]\n\t"                 \
  "smlad %[a2], %[t2], %[t0], %[" B2 "]\n\t"                  \
  "smlatb %[a1], %[t1], %[t3], %[" B1 "]\n\t"                 \
  "smlatb %[a3], %[t2], %[t3], %[" B3 "]\n\t"                 \
  "smlad %[a0], %[t1], %[t0], %[" B0 "]\n\t"                  \
  "smlabt %[a0], %[t2], %[t3], %[a0]\n\t"                     \
  "ldr %[t1], [%[e], #(24 + 4 * " #S ")]\n\t"                 \
  "ldr %[t0], [%[w], #(12 * " #K " + 8)]\n\t"                 \
  "smlabt %[a2], %[t1], %[t3], %[a2]\n\t"                     \
  "smlad %[a1], %[t2], %[t0], %[a1]\n\t"                      \
  "smlad %[a3], %[t1], %[t0], %[a3]\n\t"
#define ES_DSP_PAIR_LOAD_BIAS "ldr %[a0], [%[w], #48]\n\t"
#define ES_DSP_PAIR_QUAD(S0, S1, S2)                                                       \
  do {                                                                                     \
    uint32_t t0, t1, t2, t3;                                                               \
    __asm__(ES_DSP_PAIR_ROW4_ASM(0, S0, ES_DSP_PAIR_LOAD_BIAS, "a0", "a0", "a0", "a0")     \
            ES_DSP_PAIR_ROW4_ASM(1, S1, "", "a0", "a1", "a2", "a3")                        \
            ES_DSP_PAIR_ROW4_ASM(2, S2, "", "a0", "a1", "a2", "a3")                        \
            : [a0] "=&r"(acc0), [a1] "=&r"(acc1), [a2] "=&r"(acc2), [a3] "=&r"(acc3),      \
              [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3)               \
            : [e] "r"(e), [w] "r"(w)                                                       \
            : "memory");                                                                   \
  } while (0)
/* The same for five outputs (a row of 4k + 1 ends with them): the fifth, the even output of
 * pair E2, E3, takes one more load and two multiply-adds per window row (t4: E3), the
 * weight w12 loaded last so that t0 still holds w01 for it: 20 cycles for 15 products. */
#define ES_DSP_PAIR_ROW5_ASM(K, S, LOAD_BIAS, COPY_BIAS, B1, B2, B3) \
  LOAD_BIAS                                              \
  "ldr %[t0], [%[w], #(12 * " #K ")]\n\t"                \
  "ldr %[t1], [%[e], #(4 * " #S ")]\n\t"                 \
  "ldr %[t2], [%[e], #(12 + 4 * " #S ")]\n\t"            \
  "ldr %[t3], [%[w], #(12 * " #K " + 4)]\n\t"            \
  "smlad %[a2], %[t2], %[t0], %[" B2 "]\n\t"             \
  "smlatb %[a1], %[t1], %[t3], %[" B1 "]\n\t"            \
  "smlatb %[a3], %[t2], %[t3], %[" B3 "]\n\t"            \
  COPY_BIAS                                              \
  "smlad %[a0], %[t1], %[t0], %[a0]\n\t"                 \
  "smlabt %[a0], %[t2], %[t3], %[a0]\n\t"                \
  "ldr %[t1], [%[e], #(24 + 4 * " #S ")]\n\t"            \
  "ldr %[t4], [%[e], #(36 + 4 * " #S ")]\n\t"            \
  "smlad %[a4], %[t1], %[t0], %[a4]\n\t"                 \
  "smlabt %[a4], %[t4], %[t3], %[a4]\n\t"                \
  "smlabt %[a2], %[t1], %[t3], %[a2]\n\t"                \
  "ldr %[t0], [%[w], #(12 * " #K " + 8)]\n\t"            \
  "smlad %[a1], %[t2], %[t0], %[a1]\n\t"                 \
  "smlad %[a3], %[t1], %[t0], %[a3]\n\t"
#define ES_DSP_PAIR_QUINT(S0, S1, S2)                                                      \
  do {                                                                                     \
    uint32_t t0, t1, t2, t3, t4;                                                           \
    __asm__(ES_DSP_PAIR_ROW5_ASM(0, S0, ES_DSP_PAIR_LOAD_BIAS, "mov %[a4], %[a0]\n\t",    \
                                 "a0", "a0", "a0")                                         \
            ES_DSP_PAIR_ROW5_ASM(1, S1, "", "", "a1", "a2", "a3")                          \
            ES_DSP_PAIR_ROW5_ASM(2, S2, "", "", "a1", "a2", "a3")                          \
            : [a0] "=&r"(acc0), [a1] "=&r"(acc1), [a2] "=&r"(acc2), [a3] "=&r"(acc3),      \
              [a4] "=&r"(acc4), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2),            \
              [t3] "=&r"(t3), [t4] "=&r"(t4)                                               \
            : [e] "r"(e), [w] "r"(w)                                                       \
            : "memory");                                                                   \
  } while (0)
/* Window row K for four outputs at stride 2 (output x reads E[x] and E[x + 1]: even outputs
 * only): E0..E4 through t1 and t2 in turn, w01 in t0, w02 in t3; 7 loads and 8 multiply-adds,
 * 18 cycles for 12 products. The accumulators start from the bias. */
#define ES_DSP_PAIR_ROW4_STRIDE2_ASM(K, S)               \
  "ldr %[t0], [%[w], #(12 * " #K ")]\n\t"                \
  "ldr %[t1], [%[e], #(4 * " #S ")]\n\t"                 \
  "ldr %[t2], [%[e], #(12 + 4 * " #S ")]\n\t"            \
  "ldr %[t3], [%[w], #(12 * " #K " + 4)]\n\t"            \
  "smlad %[a0], %[t1], %[t0], %[a0]\n\t"                 \
  "smlabt %[a0], %[t2], %[t3], %[a0]\n\t"                \
  "smlad %[a1], %[t2], %[t0], %[a1]\n\t"                 \
  "ldr %[t1], [%[e], #(24 + 4 * " #S ")]\n\t"            \
  "ldr %[t2], [%[e], #(36 + 4 * " #S ")]\n\t"            \
  "smlabt %[a1], %[t1], %[t3], %[a1]\n\t"                \
  "smlad %[a2], %[t1], %[t0], %[a2]\n\t"                 \
  "smlabt %[a2], %[t2], %[t3], %[a2]\n\t"                \
  "smlad %[a3], %[t2], %[t0], %[a3]\n\t"                 \
  "ldr %[t1], [%[e], #(48 + 4 * " #S ")]\n\t"            \
  "smlabt %[a3], %[t1], %[t3], %[a3]\n\t"
#define ES_DSP_PAIR_QUAD2(S0, S1, S2)                                                      \
  do {                                                                                     \
    uint32_t t0, t1, t2, t3;                                                               \
    __asm__("ldr %[a0], [%[w], #48]\n\t"                                                   \
            "mov %[a1], %[a0]\n\t"                                                         \
            "mov %[a2], %[a0]\n\t"                                                         \
            "mov %[a3], %[a0]\n\t"                                                         \
            ES_DSP_PAIR_ROW4_STRIDE2_ASM(0, S0) ES_DSP_PAIR_ROW4_STRIDE2_ASM(1, S1)        \
            ES_DSP_PAIR_ROW4_STRIDE2_ASM(2, S2)                                            \
            : [a0] "=&r"(acc0), [a1] "=&r"(acc1), [a2] "=&r"(acc2), [a3] "=&r"(acc3),      \
              [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3)               \
            : [e] "r"(e), [w] "r"(w)                                                       \
            : "memory");                                                                   \
  } while (0)
/* acc0..acc3 requantized (es_dsp_requantize_doubled with the channel's words at w + 36
 * bytes), saturated and stored at o, o + step, o + 2 step, o + 3 step. In assembly so the
 * requantization words stay in registers (m, h, x; hh the SMMLAR's high word, then o +
 * 2 step): gcc reloaded them after every byte store, which may alias them. Volatile: its
 * effect is the stores. */
#define ES_DSP_REQUANTIZE_ASM(A)                   \
  "add %[hh], %[h], %[" A "], asr #31\n\t"         \
  "smmlar %[" A "], %[" A "], %[m], %[hh]\n\t"     \
  "asr %[" A "], %[" A "], %[x]\n\t"               \
  "ssat %[" A "], #8, %[" A "]\n\t"
#define ES_DSP_PAIR_LOAD_Q \
  "ldr %[m], [%[w], #36]\n\tldr %[h], [%[w], #40]\n\tldr %[x], [%[w], #44]\n\t"
#define ES_DSP_PAIR_STORE_OPERANDS [m] "=&r"(m), [h] "=&r"(h), [x] "=&r"(x), [hh] "=&r"(hh)
/* The requantization words loaded, REQUANTIZE and STORES run; the accumulators' operands
 * follow (a variadic tail: they hold commas). */
#define ES_DSP_PAIR_STORE_ASM(REQUANTIZE, STORES, ...)                                     \
  do {                                                                                     \
    uint32_t m, h, x, hh;                                                                  \
    __asm__ volatile(ES_DSP_PAIR_LOAD_Q REQUANTIZE STORES                                  \
                     : __VA_ARGS__, ES_DSP_PAIR_STORE_OPERANDS                             \
                     : [w] "r"(w), [o] "r"(o), [s] "r"(step)                               \
                     : "memory");                                                          \
  } while (0)
/* With a ReLU-family activation (`positive`: act_min at or above the output offset), the
 * sign term dropped (es_dsp_requantize_positive's argument: exact where the activation keeps
 * the value, at most the offset below it, which SSAT or the row clamp maps to act_min). */
#define ES_DSP_REQUANTIZE_POSITIVE_ASM(A)          \
  "smmlar %[" A "], %[" A "], %[m], %[h]\n\t"     \
  "asr %[" A "], %[" A "], %[x]\n\t"               \
  "ssat %[" A "], #8, %[" A "]\n\t"
#define ES_DSP_REQUANTIZE3(RQ) RQ("a0") RQ("a1") RQ("a2")
#define ES_DSP_PAIR_STORE4_WITH(RQ)                                                        \
  ES_DSP_PAIR_STORE_ASM(ES_DSP_REQUANTIZE3(RQ) RQ("a3"),                                    \
                        "add %[hh], %[o], %[s], lsl #1\n\t"                                 \
                        "strb %[a0], [%[o]]\n\t"                                            \
                        "strb %[a1], [%[o], %[s]]\n\t"                                      \
                        "strb %[a2], [%[hh]]\n\t"                                           \
                        "strb %[a3], [%[hh], %[s]]\n\t",                                    \
                        [a0] "+r"(acc0), [a1] "+r"(acc1), [a2] "+r"(acc2), [a3] "+r"(acc3))
/* The first three only (a row of 4k + 3 ends with them). */
#define ES_DSP_PAIR_STORE3_WITH(RQ)                                                        \
  ES_DSP_PAIR_STORE_ASM(ES_DSP_REQUANTIZE3(RQ),                                            \
                        "strb %[a0], [%[o]]\n\t"                                            \
                        "strb %[a1], [%[o], %[s]]\n\t"                                      \
                        "strb %[a2], [%[o], %[s], lsl #1]\n\t",                             \
                        [a0] "+r"(acc0), [a1] "+r"(acc1), [a2] "+r"(acc2))
/* All five of ES_DSP_PAIR_QUINT. */
#define ES_DSP_PAIR_STORE5_WITH(RQ)                                                        \
  ES_DSP_PAIR_STORE_ASM(ES_DSP_REQUANTIZE3(RQ) RQ("a3") RQ("a4"),                           \
                        "strb %[a0], [%[o]]\n\t"                                            \
                        "strb %[a1], [%[o], %[s]]\n\t"                                      \
                        "strb %[a2], [%[o], %[s], lsl #1]\n\t"                              \
                        "add %[hh], %[o], %[s], lsl #1\n\t"                                 \
                        "strb %[a3], [%[hh], %[s]]\n\t"                                     \
                        "strb %[a4], [%[hh], %[s], lsl #1]\n\t",                            \
                        [a0] "+r"(acc0), [a1] "+r"(acc1), [a2] "+r"(acc2), [a3] "+r"(acc3), \
                        [a4] "+r"(acc4))
/* `positive` is a constant where these expand (es_dsp_pair_output_row's copies). */
#define ES_DSP_PAIR_STORE_N(N)                                 \
  do {                                                         \
    if (positive) {                                            \
      ES_DSP_PAIR_STORE##N##_WITH(ES_DSP_REQUANTIZE_POSITIVE_ASM); \
    } else {                                                   \
      ES_DSP_PAIR_STORE##N##_WITH(ES_DSP_REQUANTIZE_ASM);      \
    }                                                          \
  } while (0)
#define ES_DSP_PAIR_STORE3(w, o, step) ES_DSP_PAIR_STORE_N(3)
#define ES_DSP_PAIR_STORE4(w, o, step) ES_DSP_PAIR_STORE_N(4)
#define ES_DSP_PAIR_STORE5(w, o, step) ES_DSP_PAIR_STORE_N(5)
#else
#define ES_DSP_PAIR_QUAD(S0, S1, S2)                                  \
  do {                                                                \
    acc0 = acc1 = acc2 = acc3 = w[12];                                \
    ES_DSP_PAIR_TAPS(e[(S0)], e[3 + (S0)], w, acc0, acc1);            \
    ES_DSP_PAIR_TAPS(e[3 + (S0)], e[6 + (S0)], w, acc2, acc3);        \
    ES_DSP_PAIR_TAPS(e[(S1)], e[3 + (S1)], w + 3, acc0, acc1);        \
    ES_DSP_PAIR_TAPS(e[3 + (S1)], e[6 + (S1)], w + 3, acc2, acc3);    \
    ES_DSP_PAIR_TAPS(e[(S2)], e[3 + (S2)], w + 6, acc0, acc1);        \
    ES_DSP_PAIR_TAPS(e[3 + (S2)], e[6 + (S2)], w + 6, acc2, acc3);    \
  } while (0)
#define ES_DSP_PAIR_QUINT(S0, S1, S2)  \
  do {                                 \
    ES_DSP_PAIR_QUAD(S0, S1, S2);      \
    acc4 = w[12];                      \
    e += 6;                            \
    ES_DSP_PAIR_EVEN(S0, 0, acc4);     \
    ES_DSP_PAIR_EVEN(S1, 1, acc4);     \
    ES_DSP_PAIR_EVEN(S2, 2, acc4);     \
    e -= 6;                            \
  } while (0)
#define ES_DSP_PAIR_QUAD2(S0, S1, S2)  \
  do {                                 \
    acc0 = acc1 = acc2 = acc3 = w[12]; \
    ES_DSP_PAIR_EVEN(S0, 0, acc0);     \
    ES_DSP_PAIR_EVEN(S1, 1, acc0);     \
    ES_DSP_PAIR_EVEN(S2, 2, acc0);     \
    e += 3;                            \
    ES_DSP_PAIR_EVEN(S0, 0, acc1);     \
    ES_DSP_PAIR_EVEN(S1, 1, acc1);     \
    ES_DSP_PAIR_EVEN(S2, 2, acc1);     \
    e += 3;                            \
    ES_DSP_PAIR_EVEN(S0, 0, acc2);     \
    ES_DSP_PAIR_EVEN(S1, 1, acc2);     \
    ES_DSP_PAIR_EVEN(S2, 2, acc2);     \
    e += 3;                            \
    ES_DSP_PAIR_EVEN(S0, 0, acc3);     \
    ES_DSP_PAIR_EVEN(S1, 1, acc3);     \
    ES_DSP_PAIR_EVEN(S2, 2, acc3);     \
    e -= 9;                            \
  } while (0)
#define ES_DSP_PAIR_STORE3(w, o, step)                                 \
  do {                                                                 \
    (o)[0] = es_dsp_pair_output_mode(acc0, (w) + 9, positive);         \
    (o)[step] = es_dsp_pair_output_mode(acc1, (w) + 9, positive);      \
    (o)[2 * (step)] = es_dsp_pair_output_mode(acc2, (w) + 9, positive); \
  } while (0)
#define ES_DSP_PAIR_STORE4(w, o, step)                     \
  do {                                                     \
    ES_DSP_PAIR_STORE3(w, o, step);                        \
    (o)[3 * (step)] = es_dsp_pair_output_mode(acc3, (w) + 9, positive); \
  } while (0)
#define ES_DSP_PAIR_STORE5(w, o, step)                     \
  do {                                                     \
    ES_DSP_PAIR_STORE4(w, o, step);                        \
    (o)[4 * (step)] = es_dsp_pair_output_mode(acc4, (w) + 9, positive); \
  } while (0)
#endif

/* Every channel's outputs x0 .. x0 + 3 (NAME: QUAD, QUAD2 at stride 2, or QUINT for five;
 * STORES of them kept: 3, 4 or 5), window rows 0, 1, 2 in band slots S0, S1, S2: a channel
 * is one pass of the kernel, its constants the next 13 words. Expects p, band, pairs,
 * weights, out, out_w and step in scope. */
#define ES_DSP_PAIR_CHANNELS(NAME, STORES, x0, S0, S1, S2)                                 \
  do {                                                                                     \
    const uint32_t *e = band + 3 * ((x0) * p->stride_w / 2);  /* pair of column x0 */      \
    const int32_t *w = weights, *end = weights + 13 * p->out_c;                            \
    int8_t *o = out + (x0) * step;                                                         \
    for (; w < end; w += 13, e += 3 * pairs, ++o) {                                        \
      int32_t acc0, acc1, acc2, acc3, acc4 = 0;                                            \
      ES_DSP_PAIR_##NAME(S0, S1, S2);                                                      \
      ES_DSP_PAIR_STORE##STORES(w, o, step);                                               \
      (void)acc4;                                                                          \
    }                                                                                      \
  } while (0)

/* One output row, window rows 0, 1, 2 in band slots S0, S1, S2: four outputs at a time; a
 * row of 4k + 1 (k > 0) ends with five, one of 4k + 2 (k > 0) with four that overlap the
 * previous four by two (the same values stored again), one of 4k + 3 with four of which the
 * last is not stored; rows of 1 and 2 in C. */
#define ES_DSP_PAIR_ROW(S0, S1, S2)                                                         \
  do {                                                                                      \
    const int32_t tail = out_w % 4, quads = (tail == 1 && out_w > 1 ? out_w - 5 : out_w) / 4; \
    const int32_t fours = quads + (out_w > 4 && tail == 2);                                 \
    int32_t i, x = 4 * quads;                                                               \
    for (i = 0; i < fours; ++i) { /* the last one of 4k + 2 at out_w - 4 */                 \
      ES_DSP_PAIR_CHANNELS(QUAD, 4, i < quads ? 4 * i : out_w - 4, S0, S1, S2);             \
    }                                                                                       \
    if (out_w > 4 && tail == 1) {                                                           \
      ES_DSP_PAIR_CHANNELS(QUINT, 5, x, S0, S1, S2);                                        \
    } else if (tail == 3) {                                                                 \
      ES_DSP_PAIR_CHANNELS(QUAD, 3, x, S0, S1, S2);                                         \
    } else if (out_w < 3) {                                                                 \
      es_dsp_pair_short_row(p, band, pairs, S0, S1, S2, weights, out);                      \
    }                                                                                       \
  } while (0)

/* A row of one or two outputs, in C. */
static void es_dsp_pair_short_row(const es_window *p, const uint32_t *band, int32_t pairs,
                                  int32_t s0, int32_t s1, int32_t s2, const int32_t *weights,
                                  int8_t *out) {
  int32_t c;
  for (c = 0; c < p->out_c; ++c) {
    const int32_t *w = weights + 13 * c;
    const uint32_t *e = band + 3 * pairs * c;
    int32_t acc0 = w[12], acc1 = w[12];
    ES_DSP_PAIR_TAPS(e[s0], e[3 + s0], w, acc0, acc1);
    ES_DSP_PAIR_TAPS(e[s1], e[3 + s1], w + 3, acc0, acc1);
    ES_DSP_PAIR_TAPS(e[s2], e[3 + s2], w + 6, acc0, acc1);
    out[c] = es_dsp_pair_output(acc0, w + 9);
    if (p->out_w == 2) {
      out[p->out_c + c] = es_dsp_pair_output(acc1, w + 9);
    }
  }
}

/* One output row at stride 2 (at least 4 outputs: dsp_variant.pair_layout): four outputs
 * at a time, the last four ending at the row's end (overlapping the previous ones for a row
 * of 4k + r: the same values stored again). */
#define ES_DSP_PAIR_ROW_STRIDE2(S0, S1, S2)                                                 \
  do {                                                                                      \
    int32_t i;                                                                              \
    for (i = 0; i < (out_w + 3) / 4; ++i) {                                                 \
      ES_DSP_PAIR_CHANNELS(QUAD2, 4, 4 * i + 4 <= out_w ? 4 * i : out_w - 4, S0, S1, S2);   \
    }                                                                                       \
  } while (0)

/* One output row of the pair layout; `first` the band slot of window row 0; `positive` a
 * constant in each copy (es_dsp_pair_row_signed, es_dsp_pair_row_positive). */
static inline __attribute__((always_inline)) void es_dsp_pair_output_row(
    const es_window *p, const uint32_t *band, int32_t pairs, int32_t first,
    const int32_t *weights, int8_t *out, const int positive) {
  const int32_t out_w = p->out_w, step = p->out_c;
  if (p->stride_w == 2 && first == 0) {
    ES_DSP_PAIR_ROW_STRIDE2(0, 1, 2);
  } else if (p->stride_w == 2 && first == 1) {
    ES_DSP_PAIR_ROW_STRIDE2(1, 2, 0);
  } else if (p->stride_w == 2) {
    ES_DSP_PAIR_ROW_STRIDE2(2, 0, 1);
  } else if (first == 0) {
    ES_DSP_PAIR_ROW(0, 1, 2);
  } else if (first == 1) {
    ES_DSP_PAIR_ROW(1, 2, 0);
  } else {
    ES_DSP_PAIR_ROW(2, 0, 1);
  }
}

static void es_dsp_pair_row_signed(const es_window *p, const uint32_t *band, int32_t pairs,
                                   int32_t first, const int32_t *weights, int8_t *out) {
  es_dsp_pair_output_row(p, band, pairs, first, weights, out, 0);
}
static void es_dsp_pair_row_positive(const es_window *p, const uint32_t *band, int32_t pairs,
                                     int32_t first, const int32_t *weights, int8_t *out) {
  es_dsp_pair_output_row(p, band, pairs, first, weights, out, 1);
}

/* The pair layout's constants in scratch: for each channel (its 9 int8 taps 12 bytes apart
 * in `taps`) the weight pair words (2 w0, 2 w1), (2 w0, 2 w2), (2 w1, 2 w2) of each window
 * row (low half first), its 3 requantization words and its bias (both already for doubled
 * accumulators): dsp_variant.depthwise_pair_taps, doubled_requant_words. */
static void es_dsp_pair_constants(const int8_t *taps, const int32_t *folded_bias,
                                  const int32_t *requant, int32_t depth, int32_t *out) {
  int32_t c, k;
  for (c = 0; c < depth; ++c, taps += 12, out += 13) {
    for (k = 0; k < 3; ++k) {
      const uint32_t w0 = (uint32_t)(2 * taps[3 * k]) & 0xFFFFu;
      const uint32_t w1 = (uint32_t)(2 * taps[3 * k + 1]) & 0xFFFFu;
      const uint32_t w2 = (uint32_t)(2 * taps[3 * k + 2]) & 0xFFFFu;
      out[3 * k] = (int32_t)(w0 | w1 << 16);
      out[3 * k + 1] = (int32_t)(w0 | w2 << 16);
      out[3 * k + 2] = (int32_t)(w1 | w2 << 16);
    }
    out[9] = requant[3 * c];
    out[10] = requant[3 * c + 1];
    out[11] = requant[3 * c + 2];
    out[12] = folded_bias[c];
  }
}

/* Clamp `count` int8 values to the activation range, four at a time. */
static void es_dsp_clamp_bytes(int8_t *values, int32_t count, int32_t act_min,
                               int32_t act_max) {
  const uint32_t lows = es_dsp_bytes(act_min), highs = es_dsp_bytes(act_max);
  int32_t i = 0;
  for (; i + 4 <= count; i += 4) {
    es_store_word(values + i, es_min8(es_max8(es_word(values + i), lows), highs));
  }
  for (; i < count; ++i) {
    values[i] = (int8_t)es_clamp(values[i], act_min, act_max);
  }
}

#define ES_DSP_MAX_K_H 16

/* Band rows are a ring: input row in_y lives in slot in_y mod k_h (when dil_h and k_h are
 * coprime, so one output row's rows take distinct slots), so each output row copies only
 * the rows the previous one did not have (one, at stride 1). `pairs` > 0: the pair layout
 * (3x3, stride 1 or 2 along rows, dil_h 1; that many column pairs per band row); 0: the
 * four-channel layout. */
static void es_dsp_depthwise_conv_2d(const es_window *p, const int8_t *input,
                                     const int32_t *weights, const int32_t *folded_bias,
                                     const int32_t *requant, int32_t depth, int32_t width,
                                     int ring, int staged, int32_t pairs, int positive,
                                     int8_t *band, int8_t *output) {
  const uint32_t lows = es_dsp_bytes(p->act_min), highs = es_dsp_bytes(p->act_max);
  const int32_t row_bytes = pairs ? 4 * p->out_c * pairs : width * depth;
  const int32_t tap_bytes = p->dil_w * depth;
  const int full = p->act_min == -128 && p->act_max == 127;
  const int32_t out_c = p->out_c, k_h = p->k_h;
  const int three = p->k_h == 3 && p->k_w == 3;
  int32_t slot_rows[ES_DSP_MAX_K_H];
  const int8_t *rows[ES_DSP_MAX_K_H];
  int32_t out_y, out_x, c, k_y, k_x, first = 0;
  if (pairs) {  /* the pair layout runs staged: its constants expanded, 13 words a channel */
    int32_t *expanded = (int32_t *)(void *)(band + k_h * row_bytes);
    es_dsp_pair_constants((const int8_t *)(const void *)weights, folded_bias, requant, depth,
                          expanded);
    weights = expanded;
  } else if (staged) {  /* every output pixel reads them all: copy them to SRAM once */
    int8_t *copy = band + k_h * row_bytes;
    const int32_t weight_bytes = 2 * p->k_h * p->k_w * depth;
    es_dsp_stage(copy, weights, weight_bytes);
    weights = (const int32_t *)(void *)copy;
    es_dsp_stage(copy + weight_bytes, folded_bias, 4 * depth);
    folded_bias = (const int32_t *)(void *)(copy + weight_bytes);
    es_dsp_stage(copy + weight_bytes + 4 * depth, requant, 12 * depth);
    requant = (const int32_t *)(void *)(copy + weight_bytes + 4 * depth);
  }
  for (k_y = 0; k_y < k_h; ++k_y) {
    slot_rows[k_y] = INT32_MIN;
  }
  for (out_y = 0; out_y < p->out_h; ++out_y) {
    for (k_y = 0; k_y < k_h; ++k_y) {
      const int32_t in_y = out_y * p->stride_h - p->pad_h + k_y * p->dil_h;
      const int32_t slot = ring ? ((in_y % k_h) + k_h) % k_h : k_y;
      if (slot_rows[slot] != in_y) {
        if (pairs) {  /* slots interleaved word by word */
          es_dsp_pair_row(p, input, in_y, pairs, slot, (uint32_t *)(void *)band);
        } else {
          es_dsp_band_row(p, input, in_y, depth, width, band + slot * row_bytes);
        }
        slot_rows[slot] = in_y;
      }
      rows[k_y] = band + slot * row_bytes;
      first = k_y == 0 ? slot : first;
    }
    if (pairs) {
      int8_t *out = output + out_y * p->out_w * out_c;
      if (positive) {
        es_dsp_pair_row_positive(p, (const uint32_t *)(const void *)band, pairs, first,
                                 weights, out);
      } else {
        es_dsp_pair_row_signed(p, (const uint32_t *)(const void *)band, pairs, first, weights,
                               out);
      }
      if (!full) {
        es_dsp_clamp_bytes(out, p->out_w * out_c, p->act_min, p->act_max);
      }
      continue;
    }
    const int8_t *row0 = rows[0], *row1 = three ? rows[1] : row0, *row2 = three ? rows[2] : row0;
    for (out_x = 0; out_x < p->out_w; ++out_x) {
      const int32_t column = out_x * p->stride_w * depth;
      int8_t *out = output + (out_y * p->out_w + out_x) * out_c;
      const int32_t *w = weights;
      for (c = 0; c < depth; c += 4) {
        int32_t acc0 = folded_bias[c], acc1 = folded_bias[c + 1];
        int32_t acc2 = folded_bias[c + 2], acc3 = folded_bias[c + 3];
        const int32_t *q = requant + 3 * c;
        const int8_t *x;
        uint32_t packed;
        if (three) {
          ES_DSP_DW_ROW3(row0 + column + c, tap_bytes);
          ES_DSP_DW_ROW3(row1 + column + c, tap_bytes);
          ES_DSP_DW_ROW3(row2 + column + c, tap_bytes);
        } else {
          for (k_y = 0; k_y < k_h; ++k_y) {
            x = rows[k_y] + column + c;
            for (k_x = 0; k_x < p->k_w; ++k_x) {
              ES_DSP_DW_TAP(k_x * tap_bytes);
            }
          }
        }
        packed = es_dsp_pack4(es_dsp_requantize(acc0, q), es_dsp_requantize(acc1, q + 3),
                              es_dsp_requantize(acc2, q + 6), es_dsp_requantize(acc3, q + 9),
                              lows, highs);
        if (c + 4 <= out_c) {
          es_store_word(out + c, packed);
        } else {
          for (k_x = 0; c + k_x < out_c; ++k_x) {
            out[c + k_x] = (int8_t)(uint8_t)(packed >> (8 * k_x));
          }
        }
      }
    }
  }
}
