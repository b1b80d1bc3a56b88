/* Bare-metal harness of `edgeship profile`: vector table, .data copy and .bss clear, one call
 * of the generated model, then a stop address. The emulator writes the input into
 * edgeship_input before reset, paints the stack, and reads edgeship_output after the stop;
 * edgeship_op_boundary marks where each op starts (the generated C calls it through
 * EDGESHIP_OP_HOOK), so the emulator attributes every instruction to an op. */
#include <stdint.h>

#include "model.h"

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __stack_top;

/* The model's I/O element types (int8_t, int16_t, uint8_t or float), defined by the build from
 * the model. */
#ifndef EDGESHIP_INPUT_T
#define EDGESHIP_INPUT_T int8_t
#endif
#ifndef EDGESHIP_OUTPUT_T
#define EDGESHIP_OUTPUT_T int8_t
#endif

/* Not cleared at start-up: the emulator fills the input before the program starts. */
__attribute__((section(".noinit"), aligned(4))) EDGESHIP_INPUT_T edgeship_input[MODEL_INPUT_SIZE];
__attribute__((section(".noinit"), aligned(4))) EDGESHIP_OUTPUT_T edgeship_output[MODEL_OUTPUT_SIZE];
volatile int edgeship_status;

__attribute__((noinline, used)) void edgeship_op_boundary(int index) {
  __asm__ volatile("" : : "r"(index) : "memory");
}

__attribute__((noinline, used, noreturn)) void edgeship_done(void) {
  for (;;) {
    __asm__ volatile("");
  }
}

__attribute__((noreturn)) void reset_handler(void) {
  uint32_t *source = &__data_load__, *word;
  for (word = &__data_start__; word < &__data_end__;) {
    *word++ = *source++;
  }
  for (word = &__bss_start__; word < &__bss_end__;) {
    *word++ = 0;
  }
  edgeship_status = model_run(edgeship_input, edgeship_output);
  edgeship_done();
}

__attribute__((noreturn)) static void fault_handler(void) {
  edgeship_done();
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top), reset_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler,
    fault_handler,
};
