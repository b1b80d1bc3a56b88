/* @section pool_2d_s16 needs pool_common */
/* 16x8 MAX_POOL_2D and AVERAGE_POOL_2D (see pool_common.c). */
static void es_pool_2d_s16(const es_window *p, int average, const void *input_data,
                           void *output_data) {
  ES_POOL_LOOP(int16_t, -32768)
}
