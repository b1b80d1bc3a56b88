/* @section softmax_common needs fixed_point */
/* SOFTMAX of int8 input (reference_ops::Softmax with gemmlowp fixed point), for int8 and int16
 * outputs: differences to the row maximum are scaled to Q5.26, exponentiated in Q0.31, summed
 * in Q12.19 and normalised by a fixed-point reciprocal; the result is rounded to the output's
 * bits (8: scale 1/256, zero point -128; 16: scale 1/65536, zero point -32768). */
/* gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl, Q0.31 in and out. */
static int32_t es_exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;     /* exp(-1/8) */
  const int32_t constant_1_over_3 = 715827883;  /* 1/3 */
  const int32_t x = a + (1 << 28);              /* a + 1/8 */
  const int32_t x2 = es_high_mul(x, x);
  const int32_t x3 = es_high_mul(x2, x);
  const int32_t x4 = es_high_mul(x2, x2);
  const int32_t x4_over_4 = es_shift_round(x4, 2);
  const int32_t poly =
      es_shift_round(es_high_mul(x4_over_4 + x3, constant_1_over_3) + x2, 1);
  return constant_term + es_high_mul(constant_term, x + poly);
}

/* gemmlowp exp_on_negative_values for a Q5.26 input; returns Q0.31. */
static int32_t es_exp_negative(int32_t a) {
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                         39332535,   720401,     242};
  const int32_t one_quarter = 1 << 24;
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
  int32_t result = es_exp_quarter(es_fp_shift_left(a_mod_quarter_minus_one_quarter, 5));
  const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
  int k;
  for (k = 0; k < 7; ++k) {
    if (remainder & (1 << (24 + k))) {
      result = es_high_mul(result, multipliers[k]);
    }
  }
  return a == 0 ? INT32_MAX : result;
}

static int es_count_leading_zeros(uint32_t x) {
  int count = 0;
  if (x == 0) {
    return 32;
  }
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++count;
  }
  return count;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1 (Newton-Raphson), Q0.31 in and out. */
static int32_t es_one_over_one_plus_x(int32_t a) {
  const int64_t sum = (int64_t)a + INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  const int32_t constant_48_over_17 = 1515870810;     /* Q2.29 */
  const int32_t constant_neg_32_over_17 = -1010580540; /* Q2.29 */
  int32_t x = constant_48_over_17 + es_high_mul(half_denominator, constant_neg_32_over_17);
  int i;
  for (i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = es_high_mul(half_denominator, x);
    const int32_t one_minus = (1 << 29) - half_denominator_times_x;
    x = x + es_fp_shift_left(es_high_mul(x, one_minus), 2);
  }
  return es_fp_shift_left(x, 1);
}

static inline void es_softmax_store(void *output, int32_t index, int32_t value, int bits) {
  if (bits == 16) {
    ((int16_t *)output)[index] = (int16_t)value;
  } else {
    ((int8_t *)output)[index] = (int8_t)value;
  }
}

static void es_softmax_rows(int32_t rows, int32_t depth, int32_t input_multiplier,
                            int32_t input_left_shift, int32_t diff_min, const int8_t *input,
                            void *output_data, int output_bits) {
  const int32_t low = output_bits == 16 ? -32768 : -128;
  const int32_t high = output_bits == 16 ? 32767 : 127;
  int32_t row, c;
  for (row = 0; row < rows; ++row) {
    const int8_t *in = input + row * depth;
    int32_t max_in_row = -128;
    int32_t sum_of_exps = 0; /* Q12.19 */
    int headroom_plus_one, num_bits_over_unit, exponent;
    int32_t shifted_scale;
    for (c = 0; c < depth; ++c) {
      max_in_row = in[c] > max_in_row ? in[c] : max_in_row;
    }
    for (c = 0; c < depth; ++c) {
      const int32_t diff = in[c] - max_in_row;
      if (diff >= diff_min) {
        const int32_t scaled = es_high_mul(diff * (1 << input_left_shift), input_multiplier);
        sum_of_exps += es_shift_round(es_exp_negative(scaled), 12);
      }
    }
    headroom_plus_one = es_count_leading_zeros((uint32_t)sum_of_exps);
    num_bits_over_unit = 12 - headroom_plus_one;
    shifted_scale = es_one_over_one_plus_x(
        (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31)));
    exponent = num_bits_over_unit + 31 - output_bits;
    for (c = 0; c < depth; ++c) {
      const int32_t diff = in[c] - max_in_row;
      if (diff >= diff_min) {
        const int32_t scaled = es_high_mul(diff * (1 << input_left_shift), input_multiplier);
        const int32_t exp_value = es_exp_negative(scaled);
        const int32_t unsaturated =
            es_shift_round(es_high_mul(shifted_scale, exp_value), exponent);
        es_softmax_store(output_data, row * depth + c, es_clamp(unsaturated + low, low, high),
                         output_bits);
      } else {
        es_softmax_store(output_data, row * depth + c, low, output_bits);
      }
    }
  }
}
