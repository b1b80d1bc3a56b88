/* @section copy_rows needs common */
/* Data movement without arithmetic (TRANSPOSE, SLICE, STRIDED_SLICE, DEPTH_TO_SPACE,
 * SPACE_TO_DEPTH, RESIZE_NEAREST_NEIGHBOR, MIRROR_PAD): the output is written in order as
 * rows of row_bytes bytes over the 5-D index (i0..i4) < dims, and each row is copied from
 * input + t0[i0] + t1[i1] + t2[i2] + t3[i3] + t4[i4]. The byte offset tables t0..t4 sit back
 * to back in `offsets` (dims[0] + ... + dims[4] entries), computed at generation time, so
 * the kernel serves int8 and int16 alike. */
static void es_copy_rows(const int32_t dims[5], const int32_t *offsets, int32_t row_bytes,
                         const void *input_data, void *output_data) {
  const int8_t *input = (const int8_t *)input_data;
  int8_t *output = (int8_t *)output_data;
  const int32_t *t0 = offsets;
  const int32_t *t1 = t0 + dims[0];
  const int32_t *t2 = t1 + dims[1];
  const int32_t *t3 = t2 + dims[2];
  const int32_t *t4 = t3 + dims[3];
  int32_t i0, i1, i2, i3, i4;
  for (i0 = 0; i0 < dims[0]; ++i0) {
    for (i1 = 0; i1 < dims[1]; ++i1) {
      for (i2 = 0; i2 < dims[2]; ++i2) {
        for (i3 = 0; i3 < dims[3]; ++i3) {
          const int8_t *base = input + t0[i0] + t1[i1] + t2[i2] + t3[i3];
          if (row_bytes == 1) {
            for (i4 = 0; i4 < dims[4]; ++i4) {
              *output++ = base[t4[i4]];
            }
          } else {
            for (i4 = 0; i4 < dims[4]; ++i4) {
              memcpy(output, base + t4[i4], (size_t)row_bytes);
              output += row_bytes;
            }
          }
        }
      }
    }
  }
}
