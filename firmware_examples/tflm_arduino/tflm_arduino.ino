// Runs the model `edgeship embed` wrote into this sketch folder on every embedded sample and
// prints each prediction and the match count against TFLite Micro's outputs on the host.
// Generate the files here first (see README.md):
//   edgeship embed runs/demo/model_int8.tflite --out firmware_examples/tflm_arduino --samples 10
// With --name NAME other than "model", change the three includes and the model_ prefixes.
// Any input and output type the model has (int8, int16, uint8, float) works: model_input_t
// and model_output_t in model_model_data.h name them, and the samples are in those types.
#include <TensorFlowLite.h>

#include <string.h>

#include "model_model_data.h"
#include "model_op_resolver.h"
#include "model_samples.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
alignas(16) uint8_t tensor_arena[MODEL_TENSOR_ARENA_SIZE];
ModelOpResolver resolver;
tflite::MicroInterpreter* interpreter = nullptr;

static_assert(sizeof(model_sample_inputs[0][0]) == sizeof(model_input_t) &&
                  sizeof(model_sample_outputs[0][0]) == sizeof(model_output_t),
              "the samples were written for another model's input or output type");

int argmax(const model_output_t* values, int count) {
  int best = 0;
  for (int i = 1; i < count; ++i) {
    if (values[i] > values[best]) best = i;
  }
  return best;
}
}  // namespace

void setup() {
  Serial.begin(115200);
  while (!Serial) {
  }
  const tflite::Model* model = tflite::GetModel(g_model_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    Serial.println("model schema version does not match this TFLite Micro");
    return;
  }
  if (model_register_ops(resolver) != kTfLiteOk) {
    Serial.println("registering the model's ops failed");
    return;
  }
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena,
                                                     MODEL_TENSOR_ARENA_SIZE);
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    Serial.println("AllocateTensors failed: raise MODEL_TENSOR_ARENA_SIZE");
    return;
  }
  TfLiteTensor* input = interpreter->input(0);
  TfLiteTensor* output = interpreter->output(0);
  if (input->bytes != sizeof(model_sample_inputs[0]) ||
      output->bytes != sizeof(model_sample_outputs[0])) {
    Serial.println("the samples do not fit the model's tensors: regenerate them");
    return;
  }
  int matches = 0;
  for (int sample = 0; sample < MODEL_SAMPLE_COUNT; ++sample) {
    memcpy(input->data.raw, model_sample_inputs[sample], sizeof(model_sample_inputs[0]));
    if (interpreter->Invoke() != kTfLiteOk) {
      Serial.println("Invoke failed");
      return;
    }
    const bool same = memcmp(output->data.raw, model_sample_outputs[sample],
                             sizeof(model_sample_outputs[0])) == 0;
    const model_output_t* values = reinterpret_cast<const model_output_t*>(output->data.raw);
    matches += same;
    Serial.print("sample ");
    Serial.print(sample);
    Serial.print(": predicted ");
    Serial.print(g_model_labels[argmax(values, MODEL_OUTPUT_SIZE)]);
    Serial.print(", dataset label ");
    Serial.print(model_sample_labels[sample]);
    Serial.println(same ? ", outputs match" : ", OUTPUTS DIFFER");
  }
  Serial.print("arena used: ");
  Serial.print((unsigned long)interpreter->arena_used_bytes());
  Serial.print(" of ");
  Serial.println(MODEL_TENSOR_ARENA_SIZE);
  Serial.print("matches: ");
  Serial.print(matches);
  Serial.print("/");
  Serial.println(MODEL_SAMPLE_COUNT);
}

void loop() {}
