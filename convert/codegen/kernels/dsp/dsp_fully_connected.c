/* FULLY_CONNECTED, depth a multiple of 8: four units per inner loop share each word of
 * input (one LDR and two SXTB16 feed eight SMLADs; the loop, two words at a time, in ARM
 * assembly on DSP cores). Weights, laid out at generation time: units in fours, their rows
 * interleaved four bytes at a time ([quad][group][unit 0..3: 4 bytes each]); the units%4 last
 * rows follow one after the other. Requantization is es_dsp_requantize (`requant` holds one
 * channel, or one per unit with per_channel). */
/* @section dsp_fully_connected needs common linear_common dsp_common */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define ES_DSP_FC_UNIT_ASM(acc, weight)               \
  "sxtb16 %[wh], %[" weight "]\n\t"                    \
  "smlad %[" acc "], %[xl], %[wh], %[" acc "]\n\t"     \
  "sxtb16 %[" weight "], %[" weight "], ror #8\n\t"    \
  "smlad %[" acc "], %[xh], %[" weight "], %[" acc "]\n\t"
/* Loads grouped so they pipeline (a load after a load takes one cycle on the M4): the input
 * word and all four units' weight words back to back (6 cycles), 14 registers. */
#define ES_DSP_FC_STEP_ASM                                          \
  "ldr %[xl], [%[x]], #4\n\t"                                       \
  "ldr %[wv], [%[w]], #4\n\t"                                       \
  "ldr %[wv2], [%[w]], #4\n\t"                                      \
  "ldr %[wv3], [%[w]], #4\n\t"                                      \
  "ldr %[wv4], [%[w]], #4\n\t"                                      \
  "sxtb16 %[xh], %[xl], ror #8\n\t"                                 \
  "sxtb16 %[xl], %[xl]\n\t"                                         \
  ES_DSP_FC_UNIT_ASM("a0", "wv") ES_DSP_FC_UNIT_ASM("a1", "wv2")    \
  ES_DSP_FC_UNIT_ASM("a2", "wv3") ES_DSP_FC_UNIT_ASM("a3", "wv4")
/* a0..a3 += the input at x times four units' interleaved weights at w, until x == end:
 * eight inputs first when the depth is an odd multiple of 8, then sixteen per iteration. */
#define ES_DSP_FC_OPERANDS                                                                \
  : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [w] "+r"(w), \
    [xl] "=&r"(xl), [xh] "=&r"(xh), [wv] "=&r"(wv), [wv2] "=&r"(wv2), [wv3] "=&r"(wv3),   \
    [wv4] "=&r"(wv4), [wh] "=&r"(wh)                                                      \
  : [end] "r"(end)                                                                        \
  : "cc", "memory"
#define ES_DSP_FC_DOT(x, w, end, odd_eights)                                              \
  do {                                                                                    \
    uint32_t xl, xh, wv, wv2, wv3, wv4, wh;                                               \
    if (odd_eights) {                                                                     \
      __asm__(ES_DSP_FC_STEP_ASM ES_DSP_FC_STEP_ASM ES_DSP_FC_OPERANDS);                  \
    }                                                                                     \
    __asm__("cmp %[x], %[end]\n\t"                                                        \
            "beq 2f\n\t"                                                                  \
            "1:\n\t" ES_DSP_FC_STEP_ASM ES_DSP_FC_STEP_ASM ES_DSP_FC_STEP_ASM               \
            ES_DSP_FC_STEP_ASM                                                            \
            "cmp %[x], %[end]\n\t"                                                        \
            "bne 1b\n\t"                                                                  \
            "2:\n\t" ES_DSP_FC_OPERANDS);                                                 \
  } while (0)
#else
#define ES_DSP_FC_DOT(x, w, end, odd_eights)                                         \
  do {                                                                               \
    (void)(odd_eights);                                                              \
    while ((x) != (end)) {                                                           \
      const uint32_t xv = es_word(x);                                                \
      const uint32_t xl = es_sxtb16_low(xv), xh = es_sxtb16_high(xv);                \
      const uint32_t w0 = es_word(w), w1 = es_word((w) + 4);                         \
      const uint32_t w2 = es_word((w) + 8), w3 = es_word((w) + 12);                  \
      a0 = es_dsp_dot4(a0, xl, xh, w0);                                         \
      a1 = es_dsp_dot4(a1, xl, xh, w1);                                         \
      a2 = es_dsp_dot4(a2, xl, xh, w2);                                         \
      a3 = es_dsp_dot4(a3, xl, xh, w3);                                         \
      (x) += 4;                                                                      \
      (w) += 16;                                                                     \
    }                                                                                \
  } while (0)
#endif

static void es_dsp_fully_connected(int32_t batches, int32_t depth, int32_t units,
                                   const int8_t *input, const int8_t *weights,
                                   const int32_t *folded_bias, const int32_t *requant,
                                   int per_channel, int32_t output_offset, int32_t act_min,
                                   int32_t act_max, int8_t *output) {
  const int32_t groups = depth / 4;
  const int32_t quads = units / 4;
  const int32_t step = per_channel ? 3 : 0;
  const int odd_eights = depth % 16 != 0;
  const uint32_t lows = es_dsp_bytes(act_min), highs = es_dsp_bytes(act_max);
  int32_t batch, quad, unit, g;
  for (batch = 0; batch < batches; ++batch) {
    const int8_t *in = input + batch * depth;
    const int8_t *end = in + depth;
    int8_t *out = output + batch * units;
    const int8_t *w = weights;
    for (quad = 0; quad < quads; ++quad) {
      const int32_t *q = requant + 4 * step * quad;
      int32_t a0 = folded_bias[4 * quad], a1 = folded_bias[4 * quad + 1];
      int32_t a2 = folded_bias[4 * quad + 2], a3 = folded_bias[4 * quad + 3];
      const int8_t *x = in;
      ES_DSP_FC_DOT(x, w, end, odd_eights);
      es_store_word(out + 4 * quad,
                    es_dsp_pack4(es_dsp_requantize(a0, q) + output_offset,
                                 es_dsp_requantize(a1, q + step) + output_offset,
                                 es_dsp_requantize(a2, q + 2 * step) + output_offset,
                                 es_dsp_requantize(a3, q + 3 * step) + output_offset, lows,
                                 highs));
    }
    for (unit = 4 * quads; unit < units; ++unit) {
      int32_t acc = folded_bias[unit];
      for (g = 0; g < groups; ++g) {
        const uint32_t x = es_word(in + 4 * g), wv = es_word(w + 4 * g);
        acc = es_smlad(es_sxtb16_low(x), es_sxtb16_low(wv), acc);
        acc = es_smlad(es_sxtb16_high(x), es_sxtb16_high(wv), acc);
      }
      w += depth;
      out[unit] = (int8_t)es_clamp(es_dsp_requantize(acc, requant + step * unit) + output_offset,
                                   act_min, act_max);
    }
  }
}
