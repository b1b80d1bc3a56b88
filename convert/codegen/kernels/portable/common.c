/* int8 kernels for edgeship codegen: TFLite's reference arithmetic, in plain C99.
 *
 * Every kernel reproduces the integer arithmetic of TFLite's reference kernels
 * (tensorflow/lite/kernels/internal/reference/integer_ops/ and reference/softmax.h, with
 * gemmlowp's fixed-point helpers) so its int8 outputs equal TFLite's and TFLite Micro's bit
 * for bit. Constant work (requantization multipliers, padding, activation ranges) is done at
 * generation time; kernels only loop. No float, no malloc.
 *
 * One file per kernel family (kernels/portable/FAMILY.c); the generator copies only the ones a
 * model needs into NAME.c, as static functions. A line "@section NAME [needs OTHER...]"
 * names the file's section and the sections it needs; text above that line is not copied.
 */

/* @section common */
#include <stdint.h>
#include <string.h>

/* gemmlowp's SaturatingRoundingDoublingHighMul: (a * b * 2) >> 32, rounded to nearest. */
static inline int32_t es_high_mul(int32_t a, int32_t b) {
  int64_t product;
  int64_t nudge;
  if (a == b && a == INT32_MIN) {
    return INT32_MAX;
  }
  product = (int64_t)a * (int64_t)b;
  nudge = product >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)((product + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp's RoundingDivideByPOT: x / 2^exponent, ties away from zero. */
static inline int32_t es_shift_round(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite's MultiplyByQuantizedMultiplier (double rounding): x * multiplier * 2^shift. */
static inline int32_t es_requantize(int32_t x, int32_t multiplier, int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
  return es_shift_round(es_high_mul(shifted, multiplier), right_shift);
}

static inline int32_t es_clamp(int32_t value, int32_t low, int32_t high) {
  return value < low ? low : (value > high ? high : value);
}

/* Shapes, strides and padding of a convolution or pooling, fixed at generation time. */
typedef struct {
  int32_t in_h, in_w, in_c;
  int32_t out_h, out_w, out_c;
  int32_t k_h, k_w;
  int32_t stride_h, stride_w;
  int32_t pad_h, pad_w;
  int32_t dil_h, dil_w;
  int32_t input_offset, output_offset;
  int32_t act_min, act_max;
} es_window;
