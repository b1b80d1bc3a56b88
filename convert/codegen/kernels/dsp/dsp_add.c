/* ADD of two same-shape int8 tensors (reference_integer_ops::AddElementwise), bit-exact.
 * TFLite rescales each input (offset, << 20, one requantization), sums, and requantizes the
 * sum. An int8 input has 256 values, so each input's rescaling is a table of 256 int32
 * computed at generation time (dsp_variant._add: the reference arithmetic, indexed by the
 * input byte as unsigned); what is left per element is two table reads, one add and
 * es_dsp_requantize (the output offset in its words when it fits them, else added; with a
 * ReLU-family activation, `positive`, es_dsp_requantize_positive on doubled words). Four
 * elements per step: one word of each input at one index, the four results saturated and
 * packed (es_dsp_saturate4), clamped to the fused activation's range together unless the
 * range is all of int8 (`clamp` is a constant in each copy of the loop), and stored as one
 * word; a tail of size % 4 elements goes one at a time. With `staged` (scratch in SRAM,
 * dsp_variant.ADD_STAGE_ELEMENTS elements or more) the two tables are first copied there:
 * their reads are random, and from flash most would miss the flash cache. */
/* @section dsp_add needs common dsp_common */
static inline int32_t es_dsp_add_one(uint32_t byte1, uint32_t byte2, const int32_t *table1,
                                     const int32_t *table2, const int32_t *requant,
                                     int32_t output_offset, const int positive) {
  return es_dsp_requantize_mode(table1[byte1] + table2[byte2], requant, positive) +
         output_offset;
}

static inline __attribute__((always_inline)) int32_t es_dsp_add_words(
    const int8_t *input1, const int8_t *input2, int32_t size, const int32_t *table1,
    const int32_t *table2, const int32_t *requant, int32_t output_offset, uint32_t lows,
    uint32_t highs, const int clamp, const int positive, int8_t *output) {
  int32_t i;
  for (i = 0; i + 4 <= size; i += 4) {
    const uint32_t a = es_word(input1 + i), b = es_word(input2 + i);
    uint32_t packed = es_dsp_saturate4(
        es_dsp_add_one(a & 0xFFu, b & 0xFFu, table1, table2, requant, output_offset, positive),
        es_dsp_add_one((a >> 8) & 0xFFu, (b >> 8) & 0xFFu, table1, table2, requant,
                       output_offset, positive),
        es_dsp_add_one((a >> 16) & 0xFFu, (b >> 16) & 0xFFu, table1, table2, requant,
                       output_offset, positive),
        es_dsp_add_one(a >> 24, b >> 24, table1, table2, requant, output_offset, positive));
    if (clamp) {
      packed = es_min8(es_max8(packed, lows), highs);
    }
    es_store_word(output + i, packed);
  }
  return i;
}

static void es_dsp_add(int32_t size, const int8_t *input1, const int8_t *input2,
                       const int32_t *table1, const int32_t *table2, const int32_t *requant,
                       int32_t output_offset, int32_t act_min, int32_t act_max,
                       int positive, int8_t *staged, int8_t *output) {
  const uint32_t lows = es_dsp_bytes(act_min), highs = es_dsp_bytes(act_max);
  int32_t i;
  if (staged) {
    es_dsp_stage(staged, table1, 4 * 256);
    es_dsp_stage(staged + 4 * 256, table2, 4 * 256);
    table1 = (const int32_t *)(void *)staged;
    table2 = (const int32_t *)(void *)(staged + 4 * 256);
  }
#define ES_DSP_ADD_WORDS(clamp_, positive_)                                                  \
  es_dsp_add_words(input1, input2, size, table1, table2, requant, output_offset, lows, highs, \
                   clamp_, positive_, output)
  switch ((act_min > -128 || act_max < 127 ? 1 : 0) | (positive ? 2 : 0)) {
    case 0: i = ES_DSP_ADD_WORDS(0, 0); break;
    case 1: i = ES_DSP_ADD_WORDS(1, 0); break;
    case 2: i = ES_DSP_ADD_WORDS(0, 1); break;
    default: i = ES_DSP_ADD_WORDS(1, 1); break;
  }
#undef ES_DSP_ADD_WORDS
  for (; i < size; ++i) {
    const int32_t value = es_dsp_add_one((uint8_t)input1[i], (uint8_t)input2[i], table1, table2,
                                         requant, output_offset, positive);
    output[i] = (int8_t)es_clamp(value, act_min, act_max);
  }
}
