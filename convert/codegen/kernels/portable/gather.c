/* @section gather needs common */
/* GATHER (TFLite Micro's gather.cc): for each batch and outer block, the rows of inner_bytes
 * bytes that the int32 indices name along the gathered axis (axis_size rows per block). The
 * indices are a constant array or a tensor computed at run time; an index outside
 * [0, axis_size) is undefined in TFLite Micro and copies nothing here. */
static void es_gather(int32_t batches, int32_t outer, int32_t axis_size, int32_t coords,
                      int32_t inner_bytes, const void *input_data, const void *indices_data,
                      void *output_data) {
  const int8_t *input = (const int8_t *)input_data;
  const int32_t *indices = (const int32_t *)indices_data;
  int8_t *output = (int8_t *)output_data;
  int32_t batch, block, coord;
  for (batch = 0; batch < batches; ++batch) {
    for (block = 0; block < outer; ++block) {
      const int8_t *rows = input + (batch * outer + block) * axis_size * inner_bytes;
      for (coord = 0; coord < coords; ++coord) {
        const int32_t index = indices[batch * coords + coord];
        if (index >= 0 && index < axis_size) {
          memcpy(output, rows + index * inner_bytes, (size_t)inner_bytes);
        }
        output += inner_bytes;
      }
    }
  }
}
