/* Helpers of the kernels that see a window as one row of taps (sparse and dsp kernels). */
/* @section linear_common needs common */
/* es_requantize in fewer instructions (one SMLAL): for a multiplier other than INT32_MIN
 * (TFLite's are in [2^30, 2^31) or 0), floor((a * b + 2^30) / 2^31) equals gemmlowp's
 * SaturatingRoundingDoublingHighMul for either sign of a * b (write a * b = q * 2^31 + r:
 * both give q + (r >= 2^30)), which is how CMSIS-NN stays bit-exact with TFLite too. */
static inline int32_t es_requantize_fast(int32_t x, int32_t multiplier, int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
  const int64_t product = (int64_t)shifted * multiplier + ((int64_t)1 << 30);
  return es_shift_round((int32_t)(product >> 31), shift > 0 ? 0 : -shift);
}

/* int8 output of an int32 accumulator (TFLite's per-channel requantization, then clamp). */
static inline int8_t es_linear_finish(int32_t acc, int32_t multiplier, int shift,
                                      int32_t output_offset, int32_t act_min, int32_t act_max) {
  acc = es_requantize_fast(acc, multiplier, shift) + output_offset;
  return (int8_t)es_clamp(acc, act_min, act_max);
}

/* n bytes copied, or set to one value, a word at a time then bytewise: im2col's pieces are a
 * few bytes (an RGB kernel row is 9), where a library call's set-up costs more than the copy.
 * The word moves are a 4-byte memcpy the compiler inlines: one unaligned LDR/STR where the
 * core has them, byte moves elsewhere. */
#if defined(__GNUC__)
#define ES_MOVE4(destination, source) __builtin_memcpy((destination), (source), 4)
#else
#define ES_MOVE4(destination, source) memcpy((destination), (source), 4)
#endif
static inline void es_copy_bytes(int8_t *dst, const int8_t *src, int32_t n) {
  for (; n >= 4; n -= 4, dst += 4, src += 4) {
    ES_MOVE4(dst, src);
  }
  for (; n > 0; --n) {
    *dst++ = *src++;
  }
}
static inline void es_fill_bytes(int8_t *dst, int value, int32_t n) {
  const uint32_t word = 0x01010101u * (uint8_t)value;
  for (; n >= 4; n -= 4, dst += 4) {
    ES_MOVE4(dst, &word);
  }
  for (; n > 0; --n) {
    *dst++ = (int8_t)value;
  }
}

/* The window of output pixel `pixel` as one row of `row` bytes, taps in the weights' order
 * (k_y, k_x, channel). Taps outside the image read as the input zero point, whose product
 * with (x + input_offset) is 0, so the bias folded with input_offset * sum(weights) is exact
 * for every window; bytes past the taps are 0. With `direct` (a 1x1 window, no padding) the
 * row is the input pixel itself and nothing is copied. */
static inline const int8_t *es_window_row(const es_window *p, const int8_t *input, int32_t pixel,
                                          int32_t row, int direct, int8_t *dst) {
  const int32_t out_y = pixel / p->out_w;
  const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
  const int32_t in_x0 = (pixel - out_y * p->out_w) * p->stride_w - p->pad_w;
  const int zero_point = -p->input_offset;
  int8_t *out = dst;
  int32_t k_y, k_x;
  if (direct) {
    return input + (in_y0 * p->in_w + in_x0) * p->in_c;
  }
  for (k_y = 0; k_y < p->k_h; ++k_y) {
    const int32_t in_y = in_y0 + k_y * p->dil_h;
    if (in_y < 0 || in_y >= p->in_h) {
      es_fill_bytes(out, zero_point, p->k_w * p->in_c);
      out += p->k_w * p->in_c;
      continue;
    }
    if (p->dil_w == 1 && in_x0 >= 0 && in_x0 + p->k_w <= p->in_w) {
      es_copy_bytes(out, input + (in_y * p->in_w + in_x0) * p->in_c, p->k_w * p->in_c);
      out += p->k_w * p->in_c;
      continue;
    }
    for (k_x = 0; k_x < p->k_w; ++k_x) {
      const int32_t in_x = in_x0 + k_x * p->dil_w;
      if (in_x < 0 || in_x >= p->in_w) {
        es_fill_bytes(out, zero_point, p->in_c);
      } else {
        es_copy_bytes(out, input + (in_y * p->in_w + in_x) * p->in_c, p->in_c);
      }
      out += p->in_c;
    }
  }
  es_fill_bytes(out, 0, row - (int32_t)(out - dst));
  return dst;
}
