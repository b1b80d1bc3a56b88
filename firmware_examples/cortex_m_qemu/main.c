/* Runs the C that `edgeship codegen` generated on every embedded sample image and checks
 * its outputs against the ones TFLite Micro computed on the host, byte for byte: "10/10 match".
 * Any input and output type the model has (int8, int16, uint8, float) works: NAME.h names
 * them NAME_input_t and NAME_output_t. Output goes to the board's UART 0 (QEMU prints it on
 * stdout); the exit status is 0 when every sample matches. MODEL_NAME, MODEL_HEADER and
 * SAMPLES_HEADER come from the Makefile. */
#include <stdint.h>
#include <string.h>

#include MODEL_HEADER
#include SAMPLES_HEADER

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define MODEL_RUN CAT(MODEL_NAME, _run)
#define MODEL_LABELS CAT(MODEL_NAME, _labels)
#define MODEL_OUTPUT_T CAT(MODEL_NAME, _output_t)
#define SAMPLE_INPUTS CAT(MODEL_NAME, _sample_inputs)
#define SAMPLE_OUTPUTS CAT(MODEL_NAME, _sample_outputs)
#define SAMPLE_LABELS CAT(MODEL_NAME, _sample_labels)

#define SAMPLE_COUNT ((int)(sizeof(SAMPLE_LABELS) / sizeof(SAMPLE_LABELS[0])))
#define OUTPUT_SIZE ((int)(sizeof(SAMPLE_OUTPUTS[0]) / sizeof(SAMPLE_OUTPUTS[0][0])))
#define STACK_PAINT 0xA5u

/* CMSDK APB UART 0 of the board; the Makefile passes its address (and the board's names). */
#ifndef UART0_BASE
#define UART0_BASE 0x40004000u
#define BOARD_CORE "Cortex-M4"
#define BOARD_MACHINE "mps2-an386"
#endif
#define UART0_DATA (*(volatile uint32_t *)(UART0_BASE + 0x0u))
#define UART0_STATE (*(volatile uint32_t *)(UART0_BASE + 0x4u))
#define UART0_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x8u))
#define UART0_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10u))

extern uint8_t __stack_limit;

/* The samples were written for this model's output type (the input's is checked by the call:
 * NAME_run takes a pointer to NAME_input_t). */
typedef char output_type_matches_samples[sizeof(SAMPLE_OUTPUTS[0][0]) == sizeof(MODEL_OUTPUT_T)
                                         ? 1 : -1];

static void print(const char *text) {
  for (; *text; ++text) {
    while (UART0_STATE & 1u) {
    }
    UART0_DATA = (uint32_t)(uint8_t)*text;
  }
}

static void print_int(long value) {
  char digits[24];
  int length = 0;
  unsigned long magnitude = value < 0 ? (unsigned long)-value : (unsigned long)value;
  do {
    digits[length++] = (char)('0' + magnitude % 10);
    magnitude /= 10;
  } while (magnitude);
  if (value < 0) {
    digits[length++] = '-';
  }
  while (length) {
    char one[2] = {digits[--length], 0};
    print(one);
  }
}

static int argmax(const MODEL_OUTPUT_T *values, int count) {
  int best = 0, index;
  for (index = 1; index < count; ++index) {
    if (values[index] > values[best]) {
      best = index;
    }
  }
  return best;
}

static uintptr_t stack_pointer(void) {
  uintptr_t sp;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  return sp;
}

/* Fills the free stack below `top` with a pattern, so the deepest byte a call touched can be
 * found afterwards. */
static void paint_stack(uintptr_t top) {
  volatile uint8_t *byte;
  for (byte = &__stack_limit; (uintptr_t)byte < top; ++byte) {
    *byte = STACK_PAINT;
  }
}

static long stack_used(uintptr_t top) {
  const volatile uint8_t *byte = &__stack_limit;
  while ((uintptr_t)byte < top && *byte == STACK_PAINT) {
    ++byte;
  }
  return (long)(top - (uintptr_t)byte);
}

int main(void) {
  MODEL_OUTPUT_T output[OUTPUT_SIZE];
  int sample, matches = 0;
  long stack = 0;
  UART0_BAUDDIV = 16;
  UART0_CTRL = 1;
  print("edgeship codegen on " BOARD_CORE " (QEMU " BOARD_MACHINE ")\n");
  for (sample = 0; sample < SAMPLE_COUNT; ++sample) {
    const uintptr_t top = stack_pointer() - 32;
    long used;
    int predicted, expected, same;
    paint_stack(top);
    MODEL_RUN(SAMPLE_INPUTS[sample], output);
    used = stack_used(top);
    stack = used > stack ? used : stack;
    predicted = argmax(output, OUTPUT_SIZE);
    expected = argmax(SAMPLE_OUTPUTS[sample], OUTPUT_SIZE);
    same = memcmp(output, SAMPLE_OUTPUTS[sample], sizeof(output)) == 0;
    matches += same;
    print("sample ");
    print_int(sample);
    print(": predicted ");
    print(MODEL_LABELS[predicted]);
    print(" (TFLite Micro: ");
    print(MODEL_LABELS[expected]);
    print(", dataset label ");
    print_int(SAMPLE_LABELS[sample]);
    print(same ? ") outputs match\n" : ") OUTPUTS DIFFER\n");
  }
  print("stack used by the model: ");
  print_int(stack);
  print(" bytes\n");
  print("matches: ");
  print_int(matches);
  print("/");
  print_int(SAMPLE_COUNT);
  print("\n");
  return matches == SAMPLE_COUNT ? 0 : 1;
}
