/* @section pad needs common */
/* PAD and PADV2 of up to 5-D int8 or int16 tensors (reference_ops::Pad): the output filled
 * with pad_value, then each input row (in_dims[4] values) copied to output + start +
 * i0 * out_strides[0] + ... + i3 * out_strides[3] (byte offsets fixed at generation). */
static void es_pad(const int32_t in_dims[5], const int32_t out_strides[4], int32_t start,
                   int32_t output_size, int32_t element_bytes, int32_t pad_value,
                   const void *input_data, void *output_data) {
  const int8_t *input = (const int8_t *)input_data;
  int8_t *output = (int8_t *)output_data;
  const int32_t row_bytes = in_dims[4] * element_bytes;
  int32_t i0, i1, i2, i3;
  if (element_bytes == 1) {
    memset(output, pad_value, (size_t)output_size);
  } else {
    int16_t *values = (int16_t *)output_data;
    int32_t i;
    for (i = 0; i < output_size; ++i) {
      values[i] = (int16_t)pad_value;
    }
  }
  for (i0 = 0; i0 < in_dims[0]; ++i0) {
    for (i1 = 0; i1 < in_dims[1]; ++i1) {
      for (i2 = 0; i2 < in_dims[2]; ++i2) {
        for (i3 = 0; i3 < in_dims[3]; ++i3) {
          memcpy(output + start + i0 * out_strides[0] + i1 * out_strides[1] +
                     i2 * out_strides[2] + i3 * out_strides[3],
                 input, (size_t)row_bytes);
          input += row_bytes;
        }
      }
    }
  }
}
