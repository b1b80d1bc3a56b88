/* CONV_2D with mostly-zero weights stored sparse (the format of portable conv_2d_sparse:
 * per output channel counts[c] entries, each a byte `delta` from the previous entry's tap
 * and an int8 value; gaps over 255 taps bridged by entries of value 0), for cores with the
 * DSP extension. At a few entries per output (VWW's late pointwise layers: 1-10% of their
 * weights) the work is per output, not per entry, so: four output pixels share each entry
 * (one delta and value read for four multiply-adds), and each output is requantized with
 * es_dsp_requantize's words ({bias, M, K, e - 1} per channel, the output offset folded in;
 * doubled for es_dsp_requantize_positive with a ReLU-family activation), where the
 * portable kernel runs TFLite's two roundings; the four bytes of a channel go into one
 * word of a tile in scratch, transposed into the four pixels' rows once all channels are
 * done. The sum is the same integers, so the output is bit-exact. Windows: 1x1 without
 * padding read in place, else im2col rows in scratch (after the tile). */
/* @section dsp_conv_2d_sparse needs common linear_common dsp_common */
#define ES_DSP_SPARSE_WORDS 4

/* Every output channel of four windows (a, b, c, d): the four sums, the channel's words
 * read into locals, the four values requantized, saturated into one word ([a b c d]) and
 * clamped bytewise (`clamp`: the activation range is narrower than int8), stored at
 * tile[channel]. */
static inline __attribute__((always_inline)) void es_dsp_sparse_channels(
    int32_t out_c, const uint16_t *counts, const uint8_t *delta, const int8_t *value,
    const int32_t *q, const int8_t *const *x, uint32_t lows, uint32_t highs,
    const int positive, const int clamp, uint32_t *tile) {
  const int8_t *a = x[0], *b = x[1], *c = x[2], *d = x[3];
  const uint32_t *tile_end = tile + out_c;
  for (; tile != tile_end; ++counts, q += ES_DSP_SPARSE_WORDS) {
    int32_t acc_a = q[0], acc_b = q[0], acc_c = q[0], acc_d = q[0];
    const uint8_t *last = delta + *counts;
    int32_t offset = 0;
    uint32_t packed;
    for (; delta != last; ++delta, ++value) {
      const int32_t w = *value;
      offset += *delta;
      acc_a += a[offset] * w;
      acc_b += b[offset] * w;
      acc_c += c[offset] * w;
      acc_d += d[offset] * w;
    }
    packed = es_dsp_saturate4(es_dsp_requantize_mode(acc_a, q + 1, positive),
                              es_dsp_requantize_mode(acc_b, q + 1, positive),
                              es_dsp_requantize_mode(acc_c, q + 1, positive),
                              es_dsp_requantize_mode(acc_d, q + 1, positive));
    if (clamp) {
      packed = es_min8(es_max8(packed, lows), highs);
    }
    *tile++ = packed;
  }
}

/* Four tile words (channels 0-3, each [pixel 0 1 2 3]) as four pixel rows (each [channel 0
 * 1 2 3]), row k into rows[k]: a 4x4 byte transpose. On DSP cores PKHBT/PKHTB pair the
 * halfwords and UXTB16 picks alternate bytes (16 instructions). */
static inline void es_dsp_transpose4(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3,
                                     uint32_t *rows) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
  uint32_t t0, t1, t2, t3, r0, r1, r2, r3, u;
  __asm("pkhbt %0, %1, %2, lsl #16" : "=r"(t0) : "r"(w0), "r"(w2));
  __asm("pkhbt %0, %1, %2, lsl #16" : "=r"(t1) : "r"(w1), "r"(w3));
  __asm("pkhtb %0, %1, %2, asr #16" : "=r"(t2) : "r"(w2), "r"(w0));
  __asm("pkhtb %0, %1, %2, asr #16" : "=r"(t3) : "r"(w3), "r"(w1));
  r0 = __uxtb16(t0);
  u = __uxtb16(t1);
  r0 |= u << 8;
  __asm("uxtb16 %0, %1, ror #8" : "=r"(r1) : "r"(t0));
  __asm("uxtb16 %0, %1, ror #8" : "=r"(u) : "r"(t1));
  r1 |= u << 8;
  r2 = __uxtb16(t2);
  u = __uxtb16(t3);
  r2 |= u << 8;
  __asm("uxtb16 %0, %1, ror #8" : "=r"(r3) : "r"(t2));
  __asm("uxtb16 %0, %1, ror #8" : "=r"(u) : "r"(t3));
  r3 |= u << 8;
  rows[0] = r0;
  rows[1] = r1;
  rows[2] = r2;
  rows[3] = r3;
#else
  int k;
  for (k = 0; k < 4; ++k) {
    rows[k] = ((w0 >> (8 * k)) & 0xFFu) | ((w1 >> (8 * k)) & 0xFFu) << 8 |
              ((w2 >> (8 * k)) & 0xFFu) << 16 | ((w3 >> (8 * k)) & 0xFFu) << 24;
  }
#endif
}

static void es_dsp_conv_2d_sparse(const es_window *p, const int8_t *input,
                                  const uint16_t *counts, const uint8_t *deltas,
                                  const int8_t *values, const int32_t *words, int direct,
                                  int positive, int8_t *scratch, int8_t *output) {
  const int32_t taps = p->k_h * p->k_w * p->in_c;
  const int32_t pixels = p->out_h * p->out_w;
  const int32_t out_c = p->out_c;
  const int clamp = p->act_min > -128 || p->act_max < 127;
  const uint32_t lows = es_dsp_bytes(p->act_min), highs = es_dsp_bytes(p->act_max);
  uint32_t *tile = (uint32_t *)(void *)scratch;
  int8_t *rows = scratch + 4 * out_c;
  int32_t pixel, k, c;
  for (pixel = 0; pixel < pixels; pixel += 4) {
    /* The last one to three pixels repeat the last window; rows are stored last pixel
     * first, so a repeated pixel's bytes are its own. */
    const int32_t left = pixels - pixel;
    int32_t step[4];
    const int8_t *x[4];
    int8_t *out = output + pixel * out_c;
    for (k = 0; k < 4; ++k) {
      const int32_t at = pixel + (k < left ? k : left - 1);
      step[k] = (at - pixel) * out_c;
      x[k] = es_window_row(p, input, at, taps, direct, direct ? rows : rows + k * taps);
    }
    switch ((positive ? 2 : 0) | (clamp ? 1 : 0)) {  /* each copy with its constants */
      case 0: es_dsp_sparse_channels(out_c, counts, deltas, values, words, x, lows, highs, 0, 0, tile); break;
      case 1: es_dsp_sparse_channels(out_c, counts, deltas, values, words, x, lows, highs, 0, 1, tile); break;
      case 2: es_dsp_sparse_channels(out_c, counts, deltas, values, words, x, lows, highs, 1, 0, tile); break;
      default: es_dsp_sparse_channels(out_c, counts, deltas, values, words, x, lows, highs, 1, 1, tile);
    }
    for (c = 0; c + 4 <= out_c; c += 4) {
      uint32_t row[4];
      es_dsp_transpose4(tile[c], tile[c + 1], tile[c + 2], tile[c + 3], row);
      es_store_word(out + step[3] + c, row[3]);
      es_store_word(out + step[2] + c, row[2]);
      es_store_word(out + step[1] + c, row[1]);
      es_store_word(out + c, row[0]);
    }
    for (; c < out_c; ++c) {
      for (k = 3; k >= 0; --k) {
        out[step[k] + c] = (int8_t)(tile[c] >> (8 * k));
      }
    }
  }
}
