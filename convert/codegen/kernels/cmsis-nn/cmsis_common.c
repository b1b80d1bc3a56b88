/* CMSIS-NN kernel variant: thin wrappers that turn edgeship's generation-time parameters into
 * CMSIS-NN's structs and call Arm's kernels (https://github.com/ARM-software/CMSIS-NN), which
 * are bit-exact with TFLite Micro's reference kernels. Compile with -I<CMSIS-NN>/Include and
 * the CMSIS-NN sources listed in NAME_cmsis_nn.mk. Scratch buffers live in the static
 * activation buffer, placed by the memory plan; their sizes are CMSIS-NN's
 * arm_*_get_buffer_size for cores without Helium (plain C and the DSP extension).
 */

/* @section cmsis_common needs common */
#include "arm_nnfunctions.h"

#if defined(ARM_MATH_MVEI)
#error "edgeship's cmsis-nn kernels size their scratch for cores without Helium (MVE); use --kernels portable for Cortex-M55/M85"
#endif
