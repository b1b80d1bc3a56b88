/* edgeship's dsp kernels: int8 kernels for Cortex-M cores with the DSP extension (M4, M7,
 * M33...), bit-exact with TFLite Micro. Two 16-bit multiply-adds per instruction (SMLAD) on
 * bytes sign-extended in pairs (SXTB16); weights re-laid out at generation time
 * (edgeship.convert.codegen.kernels.dsp_variant) so the inner loops are pure dot products.
 * Compiled for a core without the extension (the x86 host in tests) each intrinsic is the
 * plain C below, which computes the same integers. */
/* @section dsp_common needs common linear_common */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
/* Bytes 0 and 2 (low) and bytes 1 and 3 (high) of a word, sign-extended to halfwords. */
static inline uint32_t es_sxtb16_low(uint32_t x) { return (uint32_t)__sxtb16(x); }
static inline uint32_t es_sxtb16_high(uint32_t x) {
  uint32_t result;
  __asm("sxtb16 %0, %1, ror #8" : "=r"(result) : "r"(x));
  return result;
}
#define es_smlad(a, b, acc) __smlad((a), (b), (acc))
#define es_smlabb(a, b, acc) __smlabb((a), (b), (acc))
#define es_smlatt(a, b, acc) __smlatt((a), (b), (acc))
#define es_smlabt(a, b, acc) __smlabt((a), (b), (acc))
#define es_smlatb(a, b, acc) __smlatb((a), (b), (acc))
#define es_sadd16(a, b) __sadd16((a), (b))
#define es_ssat8(x) __ssat((x), 8)
/* Bytewise signed max and min of two words (SSUB8 sets the GE flags SEL reads). */
static inline uint32_t es_max8(uint32_t a, uint32_t b) {
  (void)__ssub8(a, b);
  return __sel(a, b);
}
static inline uint32_t es_min8(uint32_t a, uint32_t b) {
  (void)__ssub8(b, a);
  return __sel(a, b);
}
#else
static inline int32_t es_low16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x & 0xFFFFu); }
static inline int32_t es_high16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x >> 16); }
static inline uint32_t es_halves(int32_t low, int32_t high) {
  return ((uint32_t)low & 0xFFFFu) | ((uint32_t)high << 16);
}
static inline uint32_t es_sxtb16_low(uint32_t x) {
  return es_halves((int8_t)(uint8_t)(x & 0xFFu), (int8_t)(uint8_t)((x >> 16) & 0xFFu));
}
static inline uint32_t es_sxtb16_high(uint32_t x) { return es_sxtb16_low(x >> 8); }
static inline int32_t es_smlad(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(es_low16(a) * es_low16(b)) +
                   (uint32_t)(es_high16(a) * es_high16(b)));
}
static inline int32_t es_smlabb(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(es_low16(a) * es_low16(b)));
}
static inline int32_t es_smlatt(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(es_high16(a) * es_high16(b)));
}
static inline int32_t es_smlabt(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(es_low16(a) * es_high16(b)));
}
static inline int32_t es_smlatb(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(es_high16(a) * es_low16(b)));
}
static inline uint32_t es_sadd16(uint32_t a, uint32_t b) {
  return es_halves(es_low16(a) + es_low16(b), es_high16(a) + es_high16(b));
}
static inline int32_t es_ssat8(int32_t x) { return es_clamp(x, -128, 127); }
static inline uint32_t es_bytewise(uint32_t a, uint32_t b, int maximum) {
  uint32_t result = 0;
  int byte;
  for (byte = 0; byte < 32; byte += 8) {
    const int32_t x = (int8_t)(uint8_t)(a >> byte), y = (int8_t)(uint8_t)(b >> byte);
    result |= (uint32_t)(uint8_t)((maximum ? x > y : x < y) ? x : y) << byte;
  }
  return result;
}
static inline uint32_t es_max8(uint32_t a, uint32_t b) { return es_bytewise(a, b, 1); }
static inline uint32_t es_min8(uint32_t a, uint32_t b) { return es_bytewise(a, b, 0); }
#endif

/* Four bytes as one little-endian word: one (unaligned-capable) LDR. The builtin, because
 * freestanding builds (-ffreestanding) would otherwise call memcpy. */
#if defined(__GNUC__)
#define es_copy_word(destination, source) __builtin_memcpy((destination), (source), 4)
#else
#define es_copy_word(destination, source) memcpy((destination), (source), 4)
#endif
static inline uint32_t es_word(const int8_t *bytes) {
  uint32_t word;
  es_copy_word(&word, bytes);
  return word;
}
/* acc + the four products of a word of bytes already sign-extended in pairs (low: bytes 0
 * and 2, high: bytes 1 and 3) and a word of four weight bytes. */
static inline int32_t es_dsp_dot4(int32_t acc, uint32_t low, uint32_t high, uint32_t weights) {
  return es_smlad(high, es_sxtb16_high(weights), es_smlad(low, es_sxtb16_low(weights), acc));
}

static inline void es_store_word(int8_t *bytes, uint32_t word) {
  es_copy_word(bytes, &word);
}
/* The low two bytes of a word: one STRH. */
static inline void es_store_half(int8_t *bytes, uint32_t word) {
  const uint16_t half = (uint16_t)word;
#if defined(__GNUC__)
  __builtin_memcpy(bytes, &half, 2);
#else
  memcpy(bytes, &half, 2);
#endif
}

/* TFLite's requantization (es_requantize: SaturatingRoundingDoublingHighMul, then
 * RoundingDivideByPOT by e = -shift) in one SMLAL and one shift, exact for every int32
 * accumulator x when e >= 2 and 0 <= M < 2^31 (dsp_variant.requant_table checks it at
 * generation time). Both roundings are floors of x * M / 2^31 and of that by 2^e, with
 * nudges; nested floors combine, so the result is floor((x * M + K) / 2^(31 + e)) with
 * K = 2^30 + 2^(30 + e) - [v < 0] * 2^31 (v the high multiply's result, negative exactly
 * when x < 0 unless v = 0, where both nudges give 0). For e >= 2, K's low word is 2^30
 * (2^30 + 2^31 when x < 0, with a borrow from the high word) and its high word 2^(e - 2)
 * (minus 1 when x < 0); |x * M + K| < 2^63, and dividing by 2^(31 + e) is the high word
 * shifted right by e - 1. q holds {M, 2^(e - 2), e - 1} for one channel. */
static inline int32_t es_dsp_requantize(int32_t x, const int32_t *q) {
  const uint32_t low = 0x40000000u | ((uint32_t)x & 0x80000000u);
  const int32_t high = q[1] + (x >> 31);
  const int64_t sum = (int64_t)(((uint64_t)(uint32_t)high << 32) | low) + (int64_t)x * q[0];
  return (int32_t)(sum >> 32) >> q[2];
}

/* The requantization of layers whose activation clamps everything below the output zero
 * point (ReLU, ReLU6: act_min >= the output offset), on words held doubled ({M, 2h, e}, doubled_requant_words): one SMMLAR on the doubled accumulator,
 * the sign term of es_dsp_requantize dropped. Exact for x >= 0; for x < 0 it gives at most
 * the output offset (the rounding term adds less than 1/2 + 2^-(1 + e) to a negative value
 * before the floor), as the exact result does, and the activation clamp (or SSAT at -128)
 * maps both to act_min. 4 instructions a value where es_dsp_requantize takes 6. */
static inline int32_t es_dsp_requantize_positive(int32_t x, const int32_t *q) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
  int32_t top;
  __asm("smmlar %0, %1, %2, %3" : "=r"(top) : "r"(x + x), "r"(q[0]), "r"(q[1]));
  return top >> q[2];
#else
  const int64_t high = (int64_t)q[1] * 4294967296LL;
  return (int32_t)((high + (int64_t)(x + x) * q[0] + 0x80000000LL) >> 32) >> q[2];
#endif
}

/* es_dsp_requantize_positive where `positive` (a constant at each call), else es_dsp_requantize. */
static inline int32_t es_dsp_requantize_mode(int32_t x, const int32_t *q, const int positive) {
  return positive ? es_dsp_requantize_positive(x, q) : es_dsp_requantize(x, q);
}

/* Four requantized values (output offset added) as four int8 bytes in one word, each
 * saturated to int8. On DSP cores each value is saturated (SSAT) and inserted with BFI: 8
 * instructions. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define ES_DSP_INSERT_BYTE(word, value, lsb) \
  __asm("bfi %0, %1, #" #lsb ", #8" : "+r"(word) : "r"(value))
static inline uint32_t es_dsp_saturate4(int32_t v0, int32_t v1, int32_t v2, int32_t v3) {
  uint32_t word = (uint8_t)__ssat(v0, 8);
  ES_DSP_INSERT_BYTE(word, __ssat(v1, 8), 8);
  ES_DSP_INSERT_BYTE(word, __ssat(v2, 8), 16);
  ES_DSP_INSERT_BYTE(word, __ssat(v3, 8), 24);
  return word;
}
/* Two values in the low halfword (the high one undefined, for a halfword store). */
static inline uint32_t es_dsp_saturate2(int32_t v0, int32_t v1) {
  uint32_t word = (uint8_t)__ssat(v0, 8);
  ES_DSP_INSERT_BYTE(word, __ssat(v1, 8), 8);
  return word;
}
#else
static inline uint32_t es_dsp_saturate2(int32_t v0, int32_t v1) {
  return (uint32_t)(uint8_t)es_ssat8(v0) | (uint32_t)(uint8_t)es_ssat8(v1) << 8;
}
static inline uint32_t es_dsp_saturate4(int32_t v0, int32_t v1, int32_t v2, int32_t v3) {
  return (uint32_t)(uint8_t)es_ssat8(v0) | (uint32_t)(uint8_t)es_ssat8(v1) << 8 |
         (uint32_t)(uint8_t)es_ssat8(v2) << 16 | (uint32_t)(uint8_t)es_ssat8(v3) << 24;
}
#endif
/* The same, clamped to the activation range: `lows` and `highs` hold act_min and act_max in
 * every byte (two bytewise SEL steps on DSP cores). */
static inline uint32_t es_dsp_pack4(int32_t v0, int32_t v1, int32_t v2, int32_t v3,
                                    uint32_t lows, uint32_t highs) {
  return es_min8(es_max8(es_dsp_saturate4(v0, v1, v2, v3), lows), highs);
}

/* Copy `bytes` bytes (a multiple of 4) four words at a time, the four loads adjacent so they
 * pipeline: constants staged from flash into SRAM scratch (dsp_variant.STAGE_BYTES). */
static inline void es_dsp_stage(void *destination, const void *source, int32_t bytes) {
  int8_t *to = (int8_t *)destination;
  const int8_t *from = (const int8_t *)source;
  int32_t i = 0;
  for (; i + 16 <= bytes; i += 16) {
    const uint32_t w0 = es_word(from + i), w1 = es_word(from + i + 4);
    const uint32_t w2 = es_word(from + i + 8), w3 = es_word(from + i + 12);
    es_store_word(to + i, w0);
    es_store_word(to + i + 4, w1);
    es_store_word(to + i + 8, w2);
    es_store_word(to + i + 12, w3);
  }
  for (; i < bytes; i += 4) {
    es_store_word(to + i, es_word(from + i));
  }
}

/* act_min or act_max in each byte of a word. */
static inline uint32_t es_dsp_bytes(int32_t value) { return 0x01010101u * (uint8_t)value; }
