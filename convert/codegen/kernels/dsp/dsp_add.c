/* ADD of two same-shape int8 tensors (reference_integer_ops::AddElementwise), bit-exact.
 * TFLite rescales each input (offset, << 20, one requantization), sums, and requantizes the
 * sum. An int8 input has 256 values, so each input's rescaling is a table of 256 int32
 * computed at generation time (dsp_variant._add: the reference arithmetic, indexed by the
 * input byte as unsigned); what is left per element is two table reads, one add and
 * es_dsp_requantize. Four elements per step: one word of each input, the four results
 * saturated and clamped to the fused activation's range together (es_dsp_pack4) and stored
 * as one word; a tail of size % 4 elements goes one at a time. With `staged` (scratch in
 * SRAM, dsp_variant.ADD_STAGE_ELEMENTS elements or more) the two tables are first copied
 * there: their reads are random, and from flash most would miss the flash cache. */
/* @section dsp_add needs common dsp_common */
static inline int32_t es_dsp_add_one(uint32_t byte1, uint32_t byte2, const int32_t *table1,
                                     const int32_t *table2, const int32_t *requant,
                                     int32_t output_offset) {
  return es_dsp_requantize(table1[byte1] + table2[byte2], requant) + output_offset;
}

static void es_dsp_add(int32_t size, const int8_t *input1, const int8_t *input2,
                       const int32_t *table1, const int32_t *table2, const int32_t *requant,
                       int32_t output_offset, int32_t act_min, int32_t act_max,
                       int8_t *staged, int8_t *output) {
  const uint32_t lows = es_dsp_bytes(act_min), highs = es_dsp_bytes(act_max);
  int32_t i;
  if (staged) {
    es_dsp_stage(staged, table1, 4 * 256);
    es_dsp_stage(staged + 4 * 256, table2, 4 * 256);
    table1 = (const int32_t *)(void *)staged;
    table2 = (const int32_t *)(void *)(staged + 4 * 256);
  }
  for (i = 0; i + 4 <= size; i += 4) {
    const uint32_t a = es_word(input1 + i), b = es_word(input2 + i);
    es_store_word(output + i,
                  es_dsp_pack4(
                      es_dsp_add_one(a & 0xFFu, b & 0xFFu, table1, table2, requant, output_offset),
                      es_dsp_add_one((a >> 8) & 0xFFu, (b >> 8) & 0xFFu, table1, table2, requant,
                                     output_offset),
                      es_dsp_add_one((a >> 16) & 0xFFu, (b >> 16) & 0xFFu, table1, table2,
                                     requant, output_offset),
                      es_dsp_add_one(a >> 24, b >> 24, table1, table2, requant, output_offset),
                      lows, highs));
  }
  for (; i < size; ++i) {
    const int32_t value = es_dsp_add_one((uint8_t)input1[i], (uint8_t)input2[i], table1, table2,
                                         requant, output_offset);
    output[i] = (int8_t)es_clamp(value, act_min, act_max);
  }
}
