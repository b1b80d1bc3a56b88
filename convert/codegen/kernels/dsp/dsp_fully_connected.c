/* FULLY_CONNECTED, depth a multiple of 4: four units per inner loop share each word of
 * input (one LDR and two SXTB16 feed eight SMLADs). Weights, laid out at generation time:
 * units in fours, their rows interleaved four bytes at a time ([quad][group][unit 0..3: 4
 * bytes each]); the units%4 last rows follow one after the other. */
/* @section dsp_fully_connected needs common linear_common dsp_common */
static void es_dsp_fully_connected(int32_t batches, int32_t depth, int32_t units,
                                   const int8_t *input, const int8_t *weights,
                                   const int32_t *folded_bias, const int32_t *multiplier,
                                   const int8_t *shift, int per_channel, int32_t output_offset,
                                   int32_t act_min, int32_t act_max, int8_t *output) {
  const int32_t groups = depth / 4;
  const int32_t quads = units / 4;
  int32_t batch, quad, unit, g, k;
  for (batch = 0; batch < batches; ++batch) {
    const int8_t *in = input + batch * depth;
    int8_t *out = output + batch * units;
    const int8_t *w = weights;
    for (quad = 0; quad < quads; ++quad) {
      int32_t acc[4];
      int32_t acc0 = folded_bias[4 * quad], acc1 = folded_bias[4 * quad + 1];
      int32_t acc2 = folded_bias[4 * quad + 2], acc3 = folded_bias[4 * quad + 3];
      for (g = 0; g < groups; ++g) {
        const uint32_t x = es_word(in + 4 * g);
        const uint32_t x_low = es_sxtb16_low(x), x_high = es_sxtb16_high(x);
        const uint32_t w0 = es_word(w), w1 = es_word(w + 4);
        const uint32_t w2 = es_word(w + 8), w3 = es_word(w + 12);
        acc0 = es_smlad(x_low, es_sxtb16_low(w0), acc0);
        acc0 = es_smlad(x_high, es_sxtb16_high(w0), acc0);
        acc1 = es_smlad(x_low, es_sxtb16_low(w1), acc1);
        acc1 = es_smlad(x_high, es_sxtb16_high(w1), acc1);
        acc2 = es_smlad(x_low, es_sxtb16_low(w2), acc2);
        acc2 = es_smlad(x_high, es_sxtb16_high(w2), acc2);
        acc3 = es_smlad(x_low, es_sxtb16_low(w3), acc3);
        acc3 = es_smlad(x_high, es_sxtb16_high(w3), acc3);
        w += 16;
      }
      acc[0] = acc0;
      acc[1] = acc1;
      acc[2] = acc2;
      acc[3] = acc3;
      for (k = 0; k < 4; ++k) {
        const int32_t u = 4 * quad + k;
        const int32_t channel = per_channel ? u : 0;
        out[u] = es_linear_finish(acc[k], multiplier[channel], shift[channel], output_offset,
                                  act_min, act_max);
      }
    }
    for (unit = 4 * quads; unit < units; ++unit) {
      const int32_t channel = per_channel ? unit : 0;
      int32_t acc = folded_bias[unit];
      for (g = 0; g < groups; ++g) {
        const uint32_t x = es_word(in + 4 * g), wv = es_word(w + 4 * g);
        acc = es_smlad(es_sxtb16_low(x), es_sxtb16_low(wv), acc);
        acc = es_smlad(es_sxtb16_high(x), es_sxtb16_high(wv), acc);
      }
      w += depth;
      out[unit] = es_linear_finish(acc, multiplier[channel], shift[channel], output_offset,
                                   act_min, act_max);
    }
  }
}
