/* @section patch_store needs common */
/* Patch-based inference (codegen --patches): a patch of rows x columns pixels of pixel_bytes
 * bytes, computed in a buffer of its own, copied to its place in the stage output, whose rows
 * are row_bytes apart. */
static void es_patch_store(const int8_t *patch, int32_t rows, int32_t columns,
                           int32_t pixel_bytes, int8_t *destination, int32_t row_bytes) {
  const int32_t patch_row_bytes = columns * pixel_bytes;
  int32_t row;
  for (row = 0; row < rows; ++row) {
    memcpy(destination + row * row_bytes, patch + row * patch_row_bytes,
           (size_t)patch_row_bytes);
  }
}
