// The tflm_arduino sketch as a plain C++ program against a TFLite Micro tree: runs every
// embedded sample, prints each prediction and the match count against TFLite Micro's outputs
// on the host (byte for byte), and returns 0 when all match. Any input and output type the
// model has (int8, int16, uint8, float) works: NAME_model_data.h names them NAME_input_t and
// NAME_output_t. MODEL_NAME and the include names come from CMakeLists.txt (GENERATED_DIR,
// MODEL_NAME).
#include <stdio.h>
#include <string.h>

#include MODEL_DATA_HEADER
#include OP_RESOLVER_HEADER
#include SAMPLES_HEADER
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define MODEL_DATA CAT(CAT(g_, MODEL_NAME), _model_data)
#define MODEL_LABELS CAT(CAT(g_, MODEL_NAME), _labels)
#define MODEL_INPUT_T CAT(MODEL_NAME, _input_t)
#define MODEL_OUTPUT_T CAT(MODEL_NAME, _output_t)
#define REGISTER_OPS CAT(MODEL_NAME, _register_ops)
#define SAMPLE_INPUTS CAT(MODEL_NAME, _sample_inputs)
#define SAMPLE_OUTPUTS CAT(MODEL_NAME, _sample_outputs)
#define SAMPLE_LABELS CAT(MODEL_NAME, _sample_labels)

namespace {
constexpr int kSampleCount = sizeof(SAMPLE_LABELS) / sizeof(SAMPLE_LABELS[0]);
constexpr size_t kInputBytes = sizeof(SAMPLE_INPUTS[0]);
constexpr size_t kOutputBytes = sizeof(SAMPLE_OUTPUTS[0]);
constexpr int kOutputCount = kOutputBytes / sizeof(SAMPLE_OUTPUTS[0][0]);
static_assert(sizeof(SAMPLE_INPUTS[0][0]) == sizeof(MODEL_INPUT_T) &&
                  sizeof(SAMPLE_OUTPUTS[0][0]) == sizeof(MODEL_OUTPUT_T),
              "the samples were written for another model's input or output type");
alignas(16) uint8_t tensor_arena[ARENA_SIZE];

int argmax(const MODEL_OUTPUT_T* values, int count) {
  int best = 0;
  for (int i = 1; i < count; ++i) {
    if (values[i] > values[best]) best = i;
  }
  return best;
}
}  // namespace

int main() {
  const tflite::Model* model = tflite::GetModel(MODEL_DATA);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    printf("model schema version does not match this TFLite Micro\n");
    return 2;
  }
  static OP_RESOLVER_TYPE resolver;
  if (REGISTER_OPS(resolver) != kTfLiteOk) {
    printf("registering the model's ops failed\n");
    return 2;
  }
  tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, sizeof(tensor_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    printf("AllocateTensors failed: raise the tensor arena size\n");
    return 2;
  }
  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  if (input->bytes != kInputBytes || output->bytes != kOutputBytes) {
    printf("the samples do not fit the model's tensors (input %lu bytes, samples %lu; output "
           "%lu, samples %lu): regenerate them with edgeship embed\n",
           (unsigned long)input->bytes, (unsigned long)kInputBytes,
           (unsigned long)output->bytes, (unsigned long)kOutputBytes);
    return 2;
  }
  int matches = 0;
  for (int sample = 0; sample < kSampleCount; ++sample) {
    memcpy(input->data.raw, SAMPLE_INPUTS[sample], kInputBytes);
    if (interpreter.Invoke() != kTfLiteOk) {
      printf("Invoke failed\n");
      return 2;
    }
    const bool same = memcmp(output->data.raw, SAMPLE_OUTPUTS[sample], kOutputBytes) == 0;
    matches += same;
    const MODEL_OUTPUT_T* values = reinterpret_cast<const MODEL_OUTPUT_T*>(output->data.raw);
    printf("sample %d: predicted %s, dataset label %d, %s\n", sample,
           MODEL_LABELS[argmax(values, kOutputCount)], SAMPLE_LABELS[sample],
           same ? "outputs match" : "OUTPUTS DIFFER");
  }
  printf("arena used: %lu of %lu bytes\n", (unsigned long)interpreter.arena_used_bytes(),
         (unsigned long)sizeof(tensor_arena));
  printf("matches: %d/%d\n", matches, kSampleCount);
  return matches == kSampleCount ? 0 : 1;
}
