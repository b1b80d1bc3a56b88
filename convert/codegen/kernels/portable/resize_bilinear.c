/* @section resize_bilinear needs common */
/* RESIZE_BILINEAR of int8 values (reference_ops::ResizeBilinearInteger): each output value
 * is the four neighbours weighted in 1/1024ths along y and x, summed in 64 bits and divided
 * by 2^20, rounded half away from zero. rows holds per output row (y0 offset, y1 offset,
 * y weight) and cols per output column (x0 offset, x1 offset, x weight): input byte offsets
 * and the position's 10-bit fraction past y0 (x0), computed at generation time. */
static void es_resize_bilinear(int32_t batches, int32_t out_h, int32_t out_w, int32_t depth,
                               int32_t input_batch_bytes, const int32_t *rows,
                               const int32_t *cols, const int8_t *input, int8_t *output) {
  int32_t b, y, x, c;
  for (b = 0; b < batches; ++b) {
    const int8_t *image = input + b * input_batch_bytes;
    for (y = 0; y < out_h; ++y) {
      const int8_t *row0 = image + rows[3 * y];
      const int8_t *row1 = image + rows[3 * y + 1];
      const int64_t dy = rows[3 * y + 2];
      for (x = 0; x < out_w; ++x) {
        const int32_t x0 = cols[3 * x];
        const int32_t x1 = cols[3 * x + 1];
        const int64_t dx = cols[3 * x + 2];
        for (c = 0; c < depth; ++c) {
          const int64_t sum = row0[x0 + c] * (1024 - dy) * (1024 - dx) +
                              row1[x0 + c] * dy * (1024 - dx) +
                              row0[x1 + c] * (1024 - dy) * dx + row1[x1 + c] * dy * dx;
          const int64_t round = sum > 0 ? ((int64_t)1 << 19) : -((int64_t)1 << 19);
          *output++ = (int8_t)((sum + round) / ((int64_t)1 << 20));
        }
      }
    }
  }
}
