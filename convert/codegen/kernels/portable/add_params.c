/* @section add_params needs common */
/* The rescaling constants of ADD and SUB (TFLite's ArithmeticParams); MUL uses the offsets,
 * the output multiplier and shift and the activation range. */
typedef struct {
  int32_t input1_offset, input2_offset, output_offset;
  int32_t left_shift;
  int32_t input1_multiplier, input2_multiplier, output_multiplier;
  int32_t input1_shift, input2_shift, output_shift;
  int32_t act_min, act_max;
} es_add_params;
