/* CONV_2D with mostly-zero weights stored sparse (edgeship.convert.codegen.lowering.sparse):
 * per output channel counts[c] entries, each a byte `delta` (tap index minus the previous
 * entry's, from 0) and an int8 value; a gap over 255 taps is bridged by entries of value 0.
 * Zeros cost neither flash nor multiply-adds; the sum is the same integers in the same
 * order as TFLite's, so the output is bit-exact. Two output pixels share each entry. */
/* @section conv_2d_sparse needs common linear_common */
static void es_conv_2d_sparse(const es_window *p, const int8_t *input, const uint16_t *counts,
                              const uint8_t *deltas, const int8_t *values,
                              const int32_t *folded_bias, const int32_t *multiplier,
                              const int8_t *shift, int direct, int8_t *scratch,
                              int8_t *output) {
  const int32_t taps = p->k_h * p->k_w * p->in_c;
  const int32_t pixels = p->out_h * p->out_w;
  int32_t pixel, c, i;
  for (pixel = 0; pixel < pixels; pixel += 2) {
    const int pair = pixel + 1 < pixels;
    const int8_t *a = es_window_row(p, input, pixel, taps, direct, scratch);
    const int8_t *b =
        pair ? es_window_row(p, input, pixel + 1, taps, direct, direct ? scratch : scratch + taps)
             : a;
    int8_t *out_a = output + pixel * p->out_c;
    const uint8_t *delta = deltas;
    const int8_t *value = values;
    for (c = 0; c < p->out_c; ++c) {
      int32_t acc_a = folded_bias[c], acc_b = folded_bias[c];
      int32_t offset = 0;
      const int32_t count = counts[c];
      for (i = 0; i < count; ++i) {
        const int32_t w = value[i];
        offset += delta[i];
        acc_a += a[offset] * w;
        acc_b += b[offset] * w;
      }
      delta += count;
      value += count;
      out_a[c] = es_linear_finish(acc_a, multiplier[c], shift[c], p->output_offset, p->act_min,
                                  p->act_max);
      if (pair) {
        out_a[p->out_c + c] = es_linear_finish(acc_b, multiplier[c], shift[c], p->output_offset,
                                               p->act_min, p->act_max);
      }
    }
  }
}
