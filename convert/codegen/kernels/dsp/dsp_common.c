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
#define es_sxtb16_low(x) __sxtb16(x)
static inline uint32_t es_sxtb16_high(uint32_t x) {
  uint32_t result;
  __asm("sxtb16 %0, %1, ror #8" : "=r"(result) : "r"(x));
  return result;
}
#define es_smlad(a, b, acc) __smlad((a), (b), (acc))
#define es_smlabb(a, b, acc) __smlabb((a), (b), (acc))
#define es_smlatt(a, b, acc) __smlatt((a), (b), (acc))
#define es_sadd16(a, b) __sadd16((a), (b))
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
static inline uint32_t es_sadd16(uint32_t a, uint32_t b) {
  return es_halves(es_low16(a) + es_low16(b), es_high16(a) + es_high16(b));
}
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
