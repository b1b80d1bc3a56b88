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
 * after the band (SRAM), as in dsp_conv_2d. */
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

#define ES_DSP_MAX_K_H 16

/* Band rows are a ring: input row in_y lives in slot in_y mod k_h (when dil_h and k_h are
 * coprime, so one output row's rows take distinct slots), so each output row copies only
 * the rows the previous one did not have (one, at stride 1). */
static void es_dsp_depthwise_conv_2d(const es_window *p, const int8_t *input,
                                     const int32_t *weights, const int32_t *folded_bias,
                                     const int32_t *requant, int32_t depth, int32_t width,
                                     int ring, int staged, int8_t *band, int8_t *output) {
  const uint32_t lows = es_dsp_bytes(p->act_min), highs = es_dsp_bytes(p->act_max);
  const int32_t row_bytes = width * depth, tap_bytes = p->dil_w * depth;
  const int32_t out_c = p->out_c, k_h = p->k_h;
  const int three = p->k_h == 3 && p->k_w == 3;
  int32_t slot_rows[ES_DSP_MAX_K_H];
  const int8_t *rows[ES_DSP_MAX_K_H];
  int32_t out_y, out_x, c, k_y, k_x;
  if (staged) {  /* every output pixel reads them all: copy them to SRAM once */
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
        es_dsp_band_row(p, input, in_y, depth, width, band + slot * row_bytes);
        slot_rows[slot] = in_y;
      }
      rows[k_y] = band + slot * row_bytes;
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
