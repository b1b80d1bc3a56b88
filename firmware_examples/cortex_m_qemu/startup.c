/* Start-up for the MPS2/MPS3 boards under QEMU (Cortex-M4, M7, M33, M55): vector table,
 * reset handler, and semihosting calls to end the run with main's status (QEMU exits with it).
 * The v8-M cores (M33, M55) start and stay in Secure state, so one table serves every board. */
#include <stdint.h>

extern uint32_t __bss_start__, __bss_end__, __stack_top;
extern int main(void);

#define SEMIHOSTING_SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static int semihosting_call(int operation, void *argument) {
  register int r0 __asm__("r0") = operation;
  register void *r1 __asm__("r1") = argument;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void semihosting_exit(int status) {
  uint32_t block[2];
  block[0] = ADP_STOPPED_APPLICATION_EXIT;
  block[1] = (uint32_t)status;
  semihosting_call(SEMIHOSTING_SYS_EXIT_EXTENDED, block);
  for (;;) {
  }
}

void reset_handler(void) {
  uint32_t *word;
  for (word = &__bss_start__; word < &__bss_end__; ++word) {
    *word = 0;
  }
  semihosting_exit(main());
}

static void fault_handler(void) {
  semihosting_exit(3);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top), /* initial stack pointer */
    reset_handler,
    fault_handler, /* NMI */
    fault_handler, /* HardFault */
    fault_handler, /* MemManage */
    fault_handler, /* BusFault */
    fault_handler, /* UsageFault */
    0, 0, 0, 0,
    fault_handler, /* SVCall */
    fault_handler, /* DebugMonitor */
    0,
    fault_handler, /* PendSV */
    fault_handler, /* SysTick */
};
