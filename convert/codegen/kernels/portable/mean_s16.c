/* @section mean_s16 needs mean_loop */
/* MEAN and SUM int16 -> int16: the int8 kernel's loop clamped to the int16 range. */
static void es_mean_s16(const int32_t dims[4], const int8_t reduce[4], const void *input_data,
                        int32_t zero_point_sum, int32_t multiplier, int32_t shift,
                        int32_t output_offset, void *output_data) {
  ES_MEAN_LOOP(int16_t, -32768, 32767)
}
