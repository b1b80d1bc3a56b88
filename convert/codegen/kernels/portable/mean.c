/* @section mean needs mean_loop */
/* MEAN and SUM int8 -> int8 (mean_loop.c). */
static void es_mean(const int32_t dims[4], const int8_t reduce[4], const void *input_data,
                    int32_t zero_point_sum, int32_t multiplier, int32_t shift,
                    int32_t output_offset, void *output_data) {
  ES_MEAN_LOOP(int8_t, -128, 127)
}
