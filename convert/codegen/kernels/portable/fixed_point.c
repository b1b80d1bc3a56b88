/* @section fixed_point needs common */
/* gemmlowp's fixed-point logistic and tanh (fixedpoint.h) on int32 values with a given number
 * of integer bits, for the int8 LOGISTIC and TANH kernels (reference_integer_ops::Logistic and
 * Tanh). A Qm.n value has m integer bits and n = 31 - m fractional bits. Sums that gemmlowp
 * lets wrap are done in uint32 so the C has no signed overflow. */

/* SaturatingRoundingMultiplyByPOT for a positive exponent: x * 2^exponent, saturated. */
static inline int32_t es_fp_shift_left(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) {
    return INT32_MAX;
  }
  if (x < -threshold) {
    return INT32_MIN;
  }
  return (int32_t)((uint32_t)x << exponent);
}

static inline int32_t es_fp_add(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t es_fp_sub(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: a Taylor expansion around -1/8. */
static inline int32_t es_fp_exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;    /* exp(-1/8) */
  const int32_t constant_1_over_3 = 715827883; /* 1/3 */
  const int32_t x = es_fp_add(a, 1 << 28);     /* a + 1/8 */
  const int32_t x2 = es_high_mul(x, x);
  const int32_t x3 = es_high_mul(x2, x);
  const int32_t x4 = es_high_mul(x2, x2);
  const int32_t x4_over_4 = es_shift_round(x4, 2);
  const int32_t poly =
      es_shift_round(es_fp_add(es_high_mul(es_fp_add(x4_over_4, x3), constant_1_over_3), x2), 1);
  return es_fp_add(constant_term, es_high_mul(constant_term, es_fp_add(x, poly)));
}

/* exp(a) for a <= 0 with integer_bits (at most 5) integer bits; Q0.31 out. The input is split
 * into a remainder in [-1/4, 0) and a sum of powers of two whose exponentials multiply in. */
static inline int32_t es_fp_exp_negative(int32_t a, int integer_bits) {
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                         39332535,   720401,     242}; /* exp(-2^(k-2)) */
  const int fractional_bits = 31 - integer_bits;
  const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
  const int32_t a_mod_quarter_minus_one_quarter = es_fp_sub(a & (one_quarter - 1), one_quarter);
  const int32_t rescaled = integer_bits > 0
                               ? es_fp_shift_left(a_mod_quarter_minus_one_quarter, integer_bits)
                               : a_mod_quarter_minus_one_quarter;
  const int32_t remainder = es_fp_sub(a_mod_quarter_minus_one_quarter, a);
  int32_t result = es_fp_exp_quarter(rescaled);
  int k;
  for (k = 0; k < 7 && k - 2 < integer_bits; ++k) {
    if (remainder & ((int32_t)1 << (fractional_bits + k - 2))) {
      result = es_high_mul(result, multipliers[k]);
    }
  }
  return a == 0 ? INT32_MAX : result;
}

/* Newton-Raphson for 1 / (1 + a / 2^31) in Q2.29, a in [0, 1) as Q0.31. */
static inline int32_t es_fp_reciprocal_q2(int32_t a) {
  const int64_t sum = (int64_t)a + INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  const int32_t constant_48_over_17 = 1515870810;      /* Q2.29 */
  const int32_t constant_neg_32_over_17 = -1010580540; /* Q2.29 */
  int32_t x = es_fp_add(constant_48_over_17, es_high_mul(half_denominator, constant_neg_32_over_17));
  int i;
  for (i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = es_high_mul(half_denominator, x);
    const int32_t one_minus = es_fp_sub((int32_t)1 << 29, half_denominator_times_x);
    x = es_fp_add(x, es_fp_shift_left(es_high_mul(x, one_minus), 2));
  }
  return x;
}

/* gemmlowp::logistic of a Qm.n value (m = integer_bits); Q0.31 out. */
static inline int32_t es_fp_logistic(int32_t a, int integer_bits) {
  const int32_t magnitude = a > 0 ? a : -a;
  /* one_over_one_plus_x_for_x_in_0_1: the Q2.29 reciprocal halved, back to Q0.31. */
  const int32_t positive =
      es_fp_shift_left(es_fp_reciprocal_q2(es_fp_exp_negative(-magnitude, integer_bits)), 1);
  if (a == 0) {
    return (int32_t)1 << 30;
  }
  return a > 0 ? positive : es_fp_sub(INT32_MAX, positive);
}

/* gemmlowp::tanh of a Qm.n value (m = integer_bits); Q0.31 out: for x < 0,
 * -tanh(x) = (1 - exp(2x)) / (1 + exp(2x)). */
static inline int32_t es_fp_tanh(int32_t a, int integer_bits) {
  const int32_t negative = a < 0 ? a : -a;
  /* exp of 2 * negative: the same raw value read with one more integer bit. */
  const int32_t reciprocal = es_fp_reciprocal_q2(es_fp_exp_negative(negative, integer_bits + 1));
  const int32_t t = es_fp_shift_left(es_fp_sub(reciprocal, (int32_t)1 << 29), 2);
  if (a == 0) {
    return 0;
  }
  return a < 0 ? -t : t;
}
