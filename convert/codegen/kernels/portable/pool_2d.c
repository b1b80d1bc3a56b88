/* @section pool_2d needs pool_common */
/* MAX_POOL_2D and AVERAGE_POOL_2D (reference_integer_ops::MaxPool and AveragePool) over the
 * taps inside the image; the average is rounded half away from zero. */
static void es_pool_2d(const es_window *p, int average, const void *input_data,
                       void *output_data) {
  ES_POOL_LOOP(int8_t, -128)
}
