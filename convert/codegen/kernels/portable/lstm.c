/* @section lstm needs logistic_s16 tanh_s16 */
/* UNIDIRECTIONAL_SEQUENCE_LSTM, int8 activations and weights, int16 cell state, int32 biases
 * (TFLite Micro's lstm_eval.h, 8x8->16): per time step, each gate (input, forget, cell,
 * output) is two fully connected layers, on the input and on the previous hidden state, each
 * requantized to int16 at 2^-12 (Q3.12) and clamped, added with saturation, then sigmoid (or
 * the model's activation for the cell gate) to Q0.15; the cell state c = f * c + i * g
 * (int16, cell scale), clipped when the model says so; the hidden state h = o * tanh(c),
 * requantized to int8, is the step's output and the next step's recurrent input.
 *
 * Input offsets are folded into the biases at generation time (bias - zero point * sum of
 * each row's weights; TFLite Micro adds them per MAC: the same integers). The hidden and cell
 * state persist across invokes, as TFLite Micro's variable tensors do; NAME_reset() sets
 * them back to zero (the hidden state to its zero point). Register plan: none, plain loops;
 * the MACs are those of eight fully connected layers per step. The gates' requantization
 * (multiplier, shift) pairs come as arrays of 8: the input side of gates i, f, g, o, then
 * the recurrent side. */
typedef struct {
  int32_t batches, time_steps, input_dim, state_dim, time_major;
  int32_t cell_gate_tanh; /* the cell gate's activation: 1 tanh, 0 sigmoid */
  int32_t forget_multiplier, forget_shift;             /* f * c -> cell scale */
  int32_t update_multiplier, update_shift;             /* i * g -> cell scale */
  int32_t hidden_multiplier, hidden_shift, hidden_zero_point; /* o * tanh(c) -> int8 */
  int32_t cell_tanh_multiplier, cell_tanh_shift;       /* tanh of the cell state */
  int32_t cell_clip;                                   /* quantized; 0: no clipping */
} es_lstm_params;

/* One gate for `rows` rows: int16 pre-activations into out, then the activation in place. */
static void es_lstm_gate(const es_lstm_params *p, const int32_t *multipliers,
                         const int32_t *shifts, int32_t gate, int32_t rows,
                         const int8_t *input, const int8_t *hidden,
                         const int8_t *input_weights, const int32_t *input_bias,
                         const int8_t *recurrent_weights, const int32_t *recurrent_bias,
                         const uint16_t *table, int32_t tanh_gate, int16_t *out) {
  const int32_t in_dim = p->input_dim;
  const int32_t state = p->state_dim;
  int32_t r, j, k;
  for (r = 0; r < rows; ++r) {
    const int8_t *x = input + r * in_dim;
    const int8_t *h = hidden + r * state;
    for (j = 0; j < state; ++j) {
      const int8_t *wx = input_weights + ((int32_t)gate * state + j) * in_dim;
      const int8_t *wh = recurrent_weights + ((int32_t)gate * state + j) * state;
      int32_t acc = input_bias[gate * state + j];
      int32_t from_input, from_hidden;
      for (k = 0; k < in_dim; ++k) {
        acc += (int32_t)wx[k] * (int32_t)x[k];
      }
      from_input = es_clamp(es_requantize(acc, multipliers[gate], shifts[gate]), -32768, 32767);
      acc = recurrent_bias[gate * state + j];
      for (k = 0; k < state; ++k) {
        acc += (int32_t)wh[k] * (int32_t)h[k];
      }
      from_hidden = es_clamp(es_requantize(acc, multipliers[4 + gate],
                                           shifts[4 + gate]), -32768, 32767);
      out[r * state + j] = (int16_t)es_clamp(from_input + from_hidden, -32768, 32767);
    }
  }
  /* Both activations read Q3.12: 3 << 0 is TFLite's power-of-two input multiplier. */
  if (tanh_gate) {
    es_tanh_s16(rows * state, 3, 0, table, out, out);
  } else {
    es_logistic_s16(rows * state, 3, 0, table, out, out);
  }
}

/* One step over `rows` rows (the batch when time-major, else one sequence). */
static void es_lstm_step(const es_lstm_params *p, const int32_t *multipliers,
                         const int32_t *shifts, int32_t rows, const int8_t *input,
                         int8_t *hidden, int16_t *cell, int8_t *output,
                         const int8_t *input_weights, const int32_t *input_bias,
                         const int8_t *recurrent_weights, const int32_t *recurrent_bias,
                         const uint16_t *table, int16_t *scratch) {
  const int32_t count = rows * p->state_dim;
  int16_t *input_gate = scratch;
  int16_t *forget_gate = scratch + count;
  int16_t *cell_gate = scratch + 2 * count;
  int16_t *output_gate = scratch + 3 * count;
  int32_t n, gate;
  /* Every gate reads the previous hidden state: all four before the state changes. */
  for (gate = 0; gate < 4; ++gate) {
    es_lstm_gate(p, multipliers, shifts, gate, rows, input, hidden, input_weights,
                 input_bias, recurrent_weights, recurrent_bias, table,
                 gate == 2 ? p->cell_gate_tanh : 0, scratch + gate * count);
  }
  for (n = 0; n < count; ++n) {
    const int32_t kept = es_clamp(es_requantize((int32_t)forget_gate[n] * cell[n],
                                                p->forget_multiplier, p->forget_shift),
                                  -32768, 32767);
    const int32_t added = es_clamp(es_requantize((int32_t)input_gate[n] * cell_gate[n],
                                                 p->update_multiplier, p->update_shift),
                                   -32768, 32767);
    int32_t value = es_clamp(kept + added, -32768, 32767);
    if (p->cell_clip > 0) {
      value = es_clamp(value, -p->cell_clip, p->cell_clip);
    }
    cell[n] = (int16_t)value;
  }
  es_tanh_s16(count, p->cell_tanh_multiplier, p->cell_tanh_shift, table, cell, forget_gate);
  for (n = 0; n < count; ++n) {
    const int32_t value = es_requantize((int32_t)forget_gate[n] * output_gate[n],
                                        p->hidden_multiplier, p->hidden_shift)
                          + p->hidden_zero_point;
    hidden[n] = (int8_t)es_clamp(value, -128, 127);
  }
  memcpy(output, hidden, (size_t)count);
}

static void es_lstm(const es_lstm_params *p, const int32_t *multipliers,
                    const int32_t *shifts, const int8_t *input_weights,
                    const int32_t *input_bias, const int8_t *recurrent_weights,
                    const int32_t *recurrent_bias, const uint16_t *table, int8_t *hidden,
                    int16_t *cell, void *scratch, const void *input_data, void *output_data) {
  const int8_t *input = (const int8_t *)input_data;
  int8_t *output = (int8_t *)output_data;
  int32_t b, t;
  if (p->time_major) {
    for (t = 0; t < p->time_steps; ++t) {
      es_lstm_step(p, multipliers, shifts, p->batches,
                   input + t * p->batches * p->input_dim, hidden, cell,
                   output + t * p->batches * p->state_dim, input_weights, input_bias,
                   recurrent_weights, recurrent_bias, table, (int16_t *)scratch);
    }
    return;
  }
  for (b = 0; b < p->batches; ++b) {
    for (t = 0; t < p->time_steps; ++t) {
      const int32_t step = b * p->time_steps + t;
      es_lstm_step(p, multipliers, shifts, 1, input + step * p->input_dim,
                   hidden + b * p->state_dim, cell + b * p->state_dim,
                   output + step * p->state_dim, input_weights, input_bias,
                   recurrent_weights, recurrent_bias, table, (int16_t *)scratch);
    }
  }
}
