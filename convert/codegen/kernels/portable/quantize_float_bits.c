/* @section quantize_float_bits needs common */
/* The float32 scale of a QUANTIZE from float or a DEQUANTIZE to float, passed as its IEEE 754
 * bits (an integer literal, so the value is exact whatever the compiler's float parsing). */
static inline float es_float_from_bits(uint32_t bits) {
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}
