/* int8 kernels for edgeship codegen: TFLite's reference arithmetic, in plain C99.
 *
 * Every kernel reproduces the integer arithmetic of TFLite's reference kernels
 * (tensorflow/lite/kernels/internal/reference/integer_ops/ and reference/softmax.h, with
 * gemmlowp's fixed-point helpers) so its int8 outputs equal TFLite's and TFLite Micro's bit
 * for bit. Constant work (requantization multipliers, padding, activation ranges) is done at
 * generation time; kernels only loop. No float, no malloc.
 *
 * The generator copies only the sections a model needs into NAME.c, as static functions.
 * A line "@section NAME [needs OTHER...]" starts a section; the file ends the last one.
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

/* @section conv_2d needs common */
/* CONV_2D, per-channel weights [out_c][k_h][k_w][in_c] (reference_integer_ops::ConvPerChannel).
 * folded_bias[c] = bias[c] + input_offset * sum(weights of c): for windows that lie wholly
 * inside the image the sum of (x + input_offset) * w equals sum(x * w) + that constant, exactly
 * in integers; windows that touch the padding skip the outside taps as the reference does. */
static int es_window_inside(const es_window *p, int32_t in_y0, int32_t in_x0) {
  return in_y0 >= 0 && in_x0 >= 0 && in_y0 + (p->k_h - 1) * p->dil_h < p->in_h &&
         in_x0 + (p->k_w - 1) * p->dil_w < p->in_w;
}

static int8_t es_conv_finish(const es_window *p, int32_t acc, int32_t multiplier, int shift) {
  acc = es_requantize(acc, multiplier, shift) + p->output_offset;
  return (int8_t)es_clamp(acc, p->act_min, p->act_max);
}

/* Windows wholly inside the image, dilation 1 along x: each filter row meets one contiguous
 * run of k_w * in_c input bytes. Computes `pixels` (1 or 2) neighbouring outputs, four
 * channels at a time, so every byte loaded feeds several multiply-adds. */
static void es_conv_inside(const es_window *p, const int8_t *input, const int8_t *weights,
                           const int32_t *folded_bias, const int32_t *multiplier,
                           const int8_t *shift, int32_t in_y0, int32_t in_x0, int pixels,
                           int8_t *out) {
  const int32_t row_size = p->k_w * p->in_c;
  const int32_t filter_size = p->k_h * row_size;
  const int32_t second = pixels > 1 ? p->stride_w * p->in_c : 0;
  int8_t *out_second = out + (pixels > 1 ? p->out_c : 0);
  const int32_t blocked = p->out_c - p->out_c % 4;
  int32_t out_c, k_y, c;
  for (out_c = 0; out_c < blocked; out_c += 4) {
    const int8_t *filter = weights + (size_t)out_c * (size_t)filter_size;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    for (k_y = 0; k_y < p->k_h; ++k_y) {
      const int8_t *in_a = input + ((in_y0 + k_y * p->dil_h) * p->in_w + in_x0) * p->in_c;
      const int8_t *in_b = in_a + second;
      const int8_t *f0 = filter + k_y * row_size;
      const int8_t *f1 = f0 + filter_size;
      const int8_t *f2 = f1 + filter_size;
      const int8_t *f3 = f2 + filter_size;
      for (c = 0; c < row_size; ++c) {
        const int32_t va = in_a[c], vb = in_b[c];
        const int32_t w0 = f0[c], w1 = f1[c], w2 = f2[c], w3 = f3[c];
        a0 += va * w0;
        a1 += va * w1;
        a2 += va * w2;
        a3 += va * w3;
        b0 += vb * w0;
        b1 += vb * w1;
        b2 += vb * w2;
        b3 += vb * w3;
      }
    }
    out[out_c] = es_conv_finish(p, a0 + folded_bias[out_c], multiplier[out_c], shift[out_c]);
    out[out_c + 1] =
        es_conv_finish(p, a1 + folded_bias[out_c + 1], multiplier[out_c + 1], shift[out_c + 1]);
    out[out_c + 2] =
        es_conv_finish(p, a2 + folded_bias[out_c + 2], multiplier[out_c + 2], shift[out_c + 2]);
    out[out_c + 3] =
        es_conv_finish(p, a3 + folded_bias[out_c + 3], multiplier[out_c + 3], shift[out_c + 3]);
    if (pixels > 1) {
      out_second[out_c] =
          es_conv_finish(p, b0 + folded_bias[out_c], multiplier[out_c], shift[out_c]);
      out_second[out_c + 1] = es_conv_finish(p, b1 + folded_bias[out_c + 1],
                                             multiplier[out_c + 1], shift[out_c + 1]);
      out_second[out_c + 2] = es_conv_finish(p, b2 + folded_bias[out_c + 2],
                                             multiplier[out_c + 2], shift[out_c + 2]);
      out_second[out_c + 3] = es_conv_finish(p, b3 + folded_bias[out_c + 3],
                                             multiplier[out_c + 3], shift[out_c + 3]);
    }
  }
  for (out_c = blocked; out_c < p->out_c; ++out_c) {
    const int8_t *filter = weights + (size_t)out_c * (size_t)filter_size;
    int32_t a = 0, b = 0;
    for (k_y = 0; k_y < p->k_h; ++k_y) {
      const int8_t *in_a = input + ((in_y0 + k_y * p->dil_h) * p->in_w + in_x0) * p->in_c;
      const int8_t *in_b = in_a + second;
      const int8_t *f = filter + k_y * row_size;
      for (c = 0; c < row_size; ++c) {
        a += in_a[c] * f[c];
        b += in_b[c] * f[c];
      }
    }
    out[out_c] = es_conv_finish(p, a + folded_bias[out_c], multiplier[out_c], shift[out_c]);
    if (pixels > 1) {
      out_second[out_c] =
          es_conv_finish(p, b + folded_bias[out_c], multiplier[out_c], shift[out_c]);
    }
  }
}

/* Windows touching the padding (or dilated along x): the reference loop, outside taps skipped. */
static void es_conv_border(const es_window *p, const int8_t *input, const int8_t *weights,
                           const int32_t *bias, const int32_t *multiplier, const int8_t *shift,
                           int32_t in_y0, int32_t in_x0, int8_t *out) {
  int32_t out_c, k_y, k_x, c;
  for (out_c = 0; out_c < p->out_c; ++out_c) {
    const int8_t *filter = weights + out_c * p->k_h * p->k_w * p->in_c;
    int32_t acc = bias ? bias[out_c] : 0;
    for (k_y = 0; k_y < p->k_h; ++k_y) {
      const int32_t in_y = in_y0 + k_y * p->dil_h;
      if (in_y < 0 || in_y >= p->in_h) {
        continue;
      }
      for (k_x = 0; k_x < p->k_w; ++k_x) {
        const int32_t in_x = in_x0 + k_x * p->dil_w;
        const int8_t *in_px;
        const int8_t *filter_px;
        if (in_x < 0 || in_x >= p->in_w) {
          continue;
        }
        in_px = input + (in_y * p->in_w + in_x) * p->in_c;
        filter_px = filter + (k_y * p->k_w + k_x) * p->in_c;
        for (c = 0; c < p->in_c; ++c) {
          acc += ((int32_t)in_px[c] + p->input_offset) * (int32_t)filter_px[c];
        }
      }
    }
    out[out_c] = es_conv_finish(p, acc, multiplier[out_c], shift[out_c]);
  }
}

static void es_conv_2d(const es_window *p, const int8_t *input, const int8_t *weights,
                       const int32_t *bias, const int32_t *folded_bias,
                       const int32_t *multiplier, const int8_t *shift, int8_t *output) {
  int32_t out_y, out_x;
  for (out_y = 0; out_y < p->out_h; ++out_y) {
    const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
    for (out_x = 0; out_x < p->out_w; ++out_x) {
      const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
      int8_t *out = output + (out_y * p->out_w + out_x) * p->out_c;
      if (p->dil_w == 1 && es_window_inside(p, in_y0, in_x0)) {
        const int pair = out_x + 1 < p->out_w && es_window_inside(p, in_y0, in_x0 + p->stride_w);
        es_conv_inside(p, input, weights, folded_bias, multiplier, shift, in_y0, in_x0,
                       pair ? 2 : 1, out);
        out_x += pair;
      } else {
        es_conv_border(p, input, weights, bias, multiplier, shift, in_y0, in_x0, out);
      }
    }
  }
}

/* @section depthwise_conv_2d needs common */
/* DEPTHWISE_CONV_2D, weights [k_h][k_w][out_c] with out_c = in_c * depth_multiplier
 * (reference_integer_ops::DepthwiseConvPerChannel); folded_bias as in CONV_2D. Windows wholly
 * inside the image with depth multiplier 1 run four channels at a time. */
static int8_t es_depthwise_finish(const es_window *p, int32_t acc, int32_t multiplier,
                                  int shift) {
  acc = es_requantize(acc, multiplier, shift) + p->output_offset;
  return (int8_t)es_clamp(acc, p->act_min, p->act_max);
}

static void es_depthwise_inside(const es_window *p, const int8_t *input, const int8_t *weights,
                                const int32_t *folded_bias, const int32_t *multiplier,
                                const int8_t *shift, int32_t in_y0, int32_t in_x0,
                                int8_t *out) {
  const int32_t row_stride = p->dil_h * p->in_w * p->in_c;
  const int32_t tap_stride = p->dil_w * p->in_c;
  const int8_t *origin = input + (in_y0 * p->in_w + in_x0) * p->in_c;
  const int32_t blocked = p->out_c - p->out_c % 4;
  int32_t c, k_y, k_x;
  for (c = 0; c < blocked; c += 4) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const int8_t *in_row = origin + c;
    const int8_t *filter = weights + c;
    for (k_y = 0; k_y < p->k_h; ++k_y) {
      const int8_t *in_tap = in_row;
      for (k_x = 0; k_x < p->k_w; ++k_x) {
        a0 += in_tap[0] * filter[0];
        a1 += in_tap[1] * filter[1];
        a2 += in_tap[2] * filter[2];
        a3 += in_tap[3] * filter[3];
        in_tap += tap_stride;
        filter += p->out_c;
      }
      in_row += row_stride;
    }
    out[c] = es_depthwise_finish(p, a0 + folded_bias[c], multiplier[c], shift[c]);
    out[c + 1] = es_depthwise_finish(p, a1 + folded_bias[c + 1], multiplier[c + 1], shift[c + 1]);
    out[c + 2] = es_depthwise_finish(p, a2 + folded_bias[c + 2], multiplier[c + 2], shift[c + 2]);
    out[c + 3] = es_depthwise_finish(p, a3 + folded_bias[c + 3], multiplier[c + 3], shift[c + 3]);
  }
  for (c = blocked; c < p->out_c; ++c) {
    int32_t acc = 0;
    for (k_y = 0; k_y < p->k_h; ++k_y) {
      for (k_x = 0; k_x < p->k_w; ++k_x) {
        acc += origin[k_y * row_stride + k_x * tap_stride + c] *
               weights[(k_y * p->k_w + k_x) * p->out_c + c];
      }
    }
    out[c] = es_depthwise_finish(p, acc + folded_bias[c], multiplier[c], shift[c]);
  }
}

static void es_depthwise_conv_2d(const es_window *p, int32_t depth_multiplier,
                                 const int8_t *input, const int8_t *weights,
                                 const int32_t *bias, const int32_t *folded_bias,
                                 const int32_t *multiplier, const int8_t *shift,
                                 int8_t *output) {
  int32_t out_y, out_x, in_c, m, k_y, k_x;
  for (out_y = 0; out_y < p->out_h; ++out_y) {
    const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
    for (out_x = 0; out_x < p->out_w; ++out_x) {
      const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
      const int inside = in_y0 >= 0 && in_x0 >= 0 &&
                         in_y0 + (p->k_h - 1) * p->dil_h < p->in_h &&
                         in_x0 + (p->k_w - 1) * p->dil_w < p->in_w;
      int8_t *out = output + (out_y * p->out_w + out_x) * p->out_c;
      if (inside && depth_multiplier == 1) {
        es_depthwise_inside(p, input, weights, folded_bias, multiplier, shift, in_y0, in_x0,
                            out);
        continue;
      }
      for (in_c = 0; in_c < p->in_c; ++in_c) {
        for (m = 0; m < depth_multiplier; ++m) {
          const int32_t out_c = in_c * depth_multiplier + m;
          int32_t acc = 0;
          for (k_y = 0; k_y < p->k_h; ++k_y) {
            const int32_t in_y = in_y0 + k_y * p->dil_h;
            if (in_y < 0 || in_y >= p->in_h) {
              continue;
            }
            for (k_x = 0; k_x < p->k_w; ++k_x) {
              const int32_t in_x = in_x0 + k_x * p->dil_w;
              if (in_x < 0 || in_x >= p->in_w) {
                continue;
              }
              acc += ((int32_t)input[(in_y * p->in_w + in_x) * p->in_c + in_c] +
                      p->input_offset) *
                     (int32_t)weights[(k_y * p->k_w + k_x) * p->out_c + out_c];
            }
          }
          if (bias) {
            acc += bias[out_c];
          }
          out[out_c] = es_depthwise_finish(p, acc, multiplier[out_c], shift[out_c]);
        }
      }
    }
  }
}

/* @section fully_connected needs common */
/* FULLY_CONNECTED, weights [units][depth] (reference_integer_ops::FullyConnected); weights are
 * symmetric (zero point 0), so folded_bias[u] = bias[u] + input_offset * sum(weights of u). */
static void es_fully_connected(int32_t batches, int32_t depth, int32_t units,
                               const int8_t *input, const int8_t *weights,
                               const int32_t *folded_bias, const int32_t *multiplier,
                               const int8_t *shift, int per_channel, int32_t output_offset,
                               int32_t act_min, int32_t act_max, int8_t *output) {
  int32_t batch, unit, d;
  for (batch = 0; batch < batches; ++batch) {
    const int8_t *in = input + batch * depth;
    for (unit = 0; unit < units; ++unit) {
      const int8_t *row = weights + unit * depth;
      const int32_t channel = per_channel ? unit : 0;
      int32_t acc = 0;
      for (d = 0; d < depth; ++d) {
        acc += (int32_t)in[d] * (int32_t)row[d];
      }
      acc += folded_bias[unit];
      acc = es_requantize(acc, multiplier[channel], shift[channel]) + output_offset;
      output[batch * units + unit] = (int8_t)es_clamp(acc, act_min, act_max);
    }
  }
}

/* @section pool_2d needs common */
/* MAX_POOL_2D and AVERAGE_POOL_2D (reference_integer_ops::MaxPool and AveragePool) over the
 * taps inside the image; the average is rounded half away from zero. */
static void es_pool_2d(const es_window *p, int average, const int8_t *input, int8_t *output) {
  int32_t out_y, out_x, c, k_y, k_x;
  for (out_y = 0; out_y < p->out_h; ++out_y) {
    const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
    const int32_t y_start = in_y0 < 0 ? -in_y0 : 0;
    const int32_t y_end = p->in_h - in_y0 < p->k_h ? p->in_h - in_y0 : p->k_h;
    for (out_x = 0; out_x < p->out_w; ++out_x) {
      const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
      const int32_t x_start = in_x0 < 0 ? -in_x0 : 0;
      const int32_t x_end = p->in_w - in_x0 < p->k_w ? p->in_w - in_x0 : p->k_w;
      const int32_t count = (y_end - y_start) * (x_end - x_start);
      for (c = 0; c < p->in_c; ++c) {
        int32_t result = average ? 0 : -128;
        for (k_y = y_start; k_y < y_end; ++k_y) {
          for (k_x = x_start; k_x < x_end; ++k_x) {
            const int32_t value = input[((in_y0 + k_y) * p->in_w + in_x0 + k_x) * p->in_c + c];
            if (average) {
              result += value;
            } else if (value > result) {
              result = value;
            }
          }
        }
        if (average && count > 0) {
          result = result > 0 ? (result + count / 2) / count : (result - count / 2) / count;
        }
        output[(out_y * p->out_w + out_x) * p->out_c + c] =
            (int8_t)es_clamp(result, p->act_min, p->act_max);
      }
    }
  }
}

/* @section add needs common */
/* ADD of two same-shape tensors (reference_integer_ops::AddElementwise): both inputs are
 * rescaled to a common scale with 20 bits of headroom, summed, then requantized. */
typedef struct {
  int32_t input1_offset, input2_offset, output_offset;
  int32_t left_shift;
  int32_t input1_multiplier, input2_multiplier, output_multiplier;
  int32_t input1_shift, input2_shift, output_shift;
  int32_t act_min, act_max;
} es_add_params;

static void es_add(const es_add_params *p, int32_t size, const int8_t *input1,
                   const int8_t *input2, int8_t *output) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t shifted1 = (int32_t)((uint32_t)(input1[i] + p->input1_offset) << p->left_shift);
    const int32_t shifted2 = (int32_t)((uint32_t)(input2[i] + p->input2_offset) << p->left_shift);
    const int32_t scaled1 = es_requantize(shifted1, p->input1_multiplier, p->input1_shift);
    const int32_t scaled2 = es_requantize(shifted2, p->input2_multiplier, p->input2_shift);
    const int32_t sum = scaled1 + scaled2;
    const int32_t result =
        es_requantize(sum, p->output_multiplier, p->output_shift) + p->output_offset;
    output[i] = (int8_t)es_clamp(result, p->act_min, p->act_max);
  }
}

/* @section quantize needs common */
/* QUANTIZE int8 -> int8 (reference_ops::Requantize, as TFLite Micro's quantize kernel calls
 * it): (x - input zero point) times input_scale / output_scale, plus the output zero point. */
static void es_quantize(int32_t size, const int8_t *input, int32_t input_offset,
                        int32_t multiplier, int shift, int32_t output_offset, int8_t *output) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t result =
        es_requantize(input[i] + input_offset, multiplier, shift) + output_offset;
    output[i] = (int8_t)es_clamp(result, -128, 127);
  }
}

/* @section mean needs common */
/* MEAN over any of the 4 axes (reference_ops::QuantizedMeanOrSum): the integer sum of the
 * reduced elements, minus count * input zero point, times a multiplier that folds in
 * 1 / count. dims are the 4-D input dims; reduce[a] is 1 for a reduced axis. */
static void es_mean(const int32_t dims[4], const int8_t reduce[4], const int8_t *input,
                    int32_t zero_point_sum, int32_t multiplier, int32_t shift,
                    int32_t output_offset, int8_t *output) {
  int32_t out_dims[4];
  int32_t index[4];
  int32_t a;
  int32_t out_index = 0;
  for (a = 0; a < 4; ++a) {
    out_dims[a] = reduce[a] ? 1 : dims[a];
  }
  for (index[0] = 0; index[0] < out_dims[0]; ++index[0]) {
    for (index[1] = 0; index[1] < out_dims[1]; ++index[1]) {
      for (index[2] = 0; index[2] < out_dims[2]; ++index[2]) {
        for (index[3] = 0; index[3] < out_dims[3]; ++index[3]) {
          int32_t r0, r1, r2, r3;
          int32_t sum = 0;
          int32_t result;
          for (r0 = 0; r0 < (reduce[0] ? dims[0] : 1); ++r0) {
            for (r1 = 0; r1 < (reduce[1] ? dims[1] : 1); ++r1) {
              for (r2 = 0; r2 < (reduce[2] ? dims[2] : 1); ++r2) {
                for (r3 = 0; r3 < (reduce[3] ? dims[3] : 1); ++r3) {
                  const int32_t i0 = reduce[0] ? r0 : index[0];
                  const int32_t i1 = reduce[1] ? r1 : index[1];
                  const int32_t i2 = reduce[2] ? r2 : index[2];
                  const int32_t i3 = reduce[3] ? r3 : index[3];
                  sum += input[((i0 * dims[1] + i1) * dims[2] + i2) * dims[3] + i3];
                }
              }
            }
          }
          result = es_requantize(sum - zero_point_sum, multiplier, shift) + output_offset;
          output[out_index++] = (int8_t)es_clamp(result, -128, 127);
        }
      }
    }
  }
}

/* @section pad needs common */
/* PAD of a 4-D tensor with the output zero point (reference_ops::Pad). */
static void es_pad(const int32_t in_dims[4], const int32_t before[4], const int32_t after[4],
                   int8_t pad_value, const int8_t *input, int8_t *output) {
  const int32_t out_dims[4] = {
      in_dims[0] + before[0] + after[0], in_dims[1] + before[1] + after[1],
      in_dims[2] + before[2] + after[2], in_dims[3] + before[3] + after[3]};
  int32_t b, y, x;
  int8_t *out = output;
  for (b = 0; b < out_dims[0]; ++b) {
    for (y = 0; y < out_dims[1]; ++y) {
      for (x = 0; x < out_dims[2]; ++x) {
        const int32_t in_b = b - before[0];
        const int32_t in_y = y - before[1];
        const int32_t in_x = x - before[2];
        if (in_b < 0 || in_b >= in_dims[0] || in_y < 0 || in_y >= in_dims[1] || in_x < 0 ||
            in_x >= in_dims[2]) {
          memset(out, pad_value, (size_t)out_dims[3]);
        } else {
          memset(out, pad_value, (size_t)before[3]);
          memcpy(out + before[3],
                 input + ((in_b * in_dims[1] + in_y) * in_dims[2] + in_x) * in_dims[3],
                 (size_t)in_dims[3]);
          memset(out + before[3] + in_dims[3], pad_value, (size_t)after[3]);
        }
        out += out_dims[3];
      }
    }
  }
}

/* @section softmax needs common */
/* SOFTMAX int8 -> int8 (reference_ops::Softmax with gemmlowp fixed point): differences to the
 * row maximum are scaled to Q5.26, exponentiated in Q0.31, summed in Q12.19 and normalised by
 * a fixed-point reciprocal. */
static int32_t es_saturating_shift_left(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) {
    return INT32_MAX;
  }
  if (x < -threshold) {
    return INT32_MIN;
  }
  return (int32_t)((uint32_t)x << exponent);
}

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
  int32_t result = es_exp_quarter(es_saturating_shift_left(a_mod_quarter_minus_one_quarter, 5));
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
    x = x + es_saturating_shift_left(es_high_mul(x, one_minus), 2);
  }
  return es_saturating_shift_left(x, 1);
}

static void es_softmax(int32_t rows, int32_t depth, int32_t input_multiplier,
                       int32_t input_left_shift, int32_t diff_min, const int8_t *input,
                       int8_t *output) {
  int32_t row, c;
  for (row = 0; row < rows; ++row) {
    const int8_t *in = input + row * depth;
    int8_t *out = output + row * depth;
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
    exponent = num_bits_over_unit + 31 - 8;
    for (c = 0; c < depth; ++c) {
      const int32_t diff = in[c] - max_in_row;
      if (diff >= diff_min) {
        const int32_t scaled = es_high_mul(diff * (1 << input_left_shift), input_multiplier);
        const int32_t exp_value = es_exp_negative(scaled);
        const int32_t unsaturated =
            es_shift_round(es_high_mul(shifted_scale, exp_value), exponent);
        out[c] = (int8_t)es_clamp(unsaturated - 128, -128, 127);
      } else {
        out[c] = -128;
      }
    }
  }
}
