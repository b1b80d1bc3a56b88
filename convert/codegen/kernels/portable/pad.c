/* @section pad needs common */
/* PAD of a 4-D tensor with the output zero point (reference_ops::Pad). */
static void es_pad(const int32_t in_dims[4], const int32_t before[4], const int32_t after[4],
                   int8_t pad_value, const int8_t *input, int8_t *output) {
  const int32_t out_dims[4] = {
      in_dims[0] + before[0] + after[0], in_dims[1] + before[1] + after[1],
      in_dims[2] + before[2] + after[2], in_dims[3] + before[3] + after[3]};
  int32_t b, y, x;
  int8_t *out = output;
  for (b = 0; b < out_dims[0]; ++b) {
    for (y = 0; y < out_dims[1]; ++y) {
      for (x = 0; x < out_dims[2]; ++x) {
        const int32_t in_b = b - before[0];
        const int32_t in_y = y - before[1];
        const int32_t in_x = x - before[2];
        if (in_b < 0 || in_b >= in_dims[0] || in_y < 0 || in_y >= in_dims[1] || in_x < 0 ||
            in_x >= in_dims[2]) {
          memset(out, pad_value, (size_t)out_dims[3]);
        } else {
          memset(out, pad_value, (size_t)before[3]);
          memcpy(out + before[3],
                 input + ((in_b * in_dims[1] + in_y) * in_dims[2] + in_x) * in_dims[3],
                 (size_t)in_dims[3]);
          memset(out + before[3] + in_dims[3], pad_value, (size_t)after[3]);
        }
        out += out_dims[3];
      }
    }
  }
}
