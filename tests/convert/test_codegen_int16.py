"""codegen of int16-activation (16x8) and mixed int8/int16 models: bit-exact with TFLite Micro.

Tiny untrained models made here: a Keras Normalization in front of dense layers (SUB and MUL
with constants, broadcast over rows), converted whole 16x8 by the TFLite converter (int16
I/O; int64 and int32 biases) and mixed by ai-edge-quantizer (normalization and the first
dense layer int16, the rest int8, QUANTIZE ops between; an int16 -> int16 QUANTIZE appended); SUB and MUL of two activations with
broadcasting and ADD in int8 and int16; 16x8 convolutions and pooling; int16 SOFTMAX (TFLite's
tables); int16 MEAN (global average pooling, 1-D and 2-D, and over channels) and SUM, each the
model's output; and an op neither TFLite Micro nor codegen runs in int16 (REDUCE_MAX), refused
by name.
"""

import ctypes
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeship.c_backend import compile_generated
from edgeship.convert.codegen import CodegenConfig, generate_c, lower_graph, read_graph
from edgeship.errors import UserInputError
from edgeship.runtime.backends import open_backend
from edgeship.runtime.backends.c import compile_shared_library

needs_host_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                   reason="no host C compiler")
needs_profile = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None
    or any(importlib.util.find_spec(name) is None for name in ("unicorn", "capstone", "elftools")),
    reason="needs arm-none-eabi-gcc, unicorn, capstone and pyelftools (scripts/setup.sh)")

ROWS, FEATURES = 4, 6


def _features(count: int) -> np.ndarray:
    """Unnormalized tabular features: columns scaled from 0.1 to 1000 with offsets."""
    rng = np.random.default_rng(0)
    scales = np.array([1, 10, 100, 1000, 0.1, 5], np.float32)
    return (rng.normal(size=(count, ROWS, FEATURES)) * scales
            + np.arange(FEATURES) * 10).astype(np.float32)


def _normalized_dense(keras, softmax: bool):
    samples = _features(64)
    normalization = keras.layers.Normalization(axis=-1, name="normalization")
    normalization.adapt(samples)
    layers = [keras.Input((ROWS, FEATURES)), normalization, keras.layers.Flatten(),
              keras.layers.Dense(8, activation="relu", name="fc1"), keras.layers.Dense(3)]
    return keras.Sequential(layers + ([keras.layers.Softmax()] if softmax else [])), samples


def _convert(tensorflow, model, samples, int16: bool, int32_bias: bool = False) -> bytes:
    converter = tensorflow.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tensorflow.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([samples[i:i + 1]] for i in range(len(samples)))
    ops = tensorflow.lite.OpsSet
    if int16:
        converter.target_spec.supported_ops = [
            ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = converter.inference_output_type = tensorflow.int16
    else:
        converter.target_spec.supported_ops = [ops.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tensorflow.int8
    if int32_bias:
        converter._experimental_full_integer_quantization_bias_type = tensorflow.int32
    return converter.convert()


def _mixed(float_path: Path, samples: np.ndarray) -> bytes:
    """ai-edge-quantizer: int8 everywhere, int16 activations on normalization and fc1."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import qtyping, quantizer

    recipe = quantizer.Quantizer(str(float_path))
    for pattern, bits in ((".*", 8), (".*normalization.*", 16), (".*fc1.*", 16)):
        recipe.add_static_config(pattern, "*", activation_num_bits=bits, weight_num_bits=8,
                                 weight_granularity=qtyping.QuantGranularity.CHANNELWISE)
    signature = Interpreter(str(float_path)).get_signature_list()["serving_default"]
    name = next(iter(signature["inputs"]))
    calibration = recipe.calibrate(
        {"serving_default": [{name: samples[i:i + 1]} for i in range(len(samples))]})
    return recipe.quantize(calibration).quantized_model


def _append_requantize(data: bytes, ratio: float) -> bytes:
    """The model with a QUANTIZE after its output to a tensor of scale * ratio (same type):
    the requantization ai-edge-quantizer puts between int16 layers of different scales."""
    import copy

    from ai_edge_litert import schema_py_generated as schema

    from edgeship.tflite_graph import read_model, write_model

    model = read_model(data)
    subgraph = model.subgraphs[0]
    requantized = copy.deepcopy(subgraph.tensors[subgraph.outputs[0]])
    requantized.name = b"requantized"
    requantized.quantization.scale = [float(requantized.quantization.scale[0] * ratio)]
    subgraph.tensors.append(requantized)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 1
    model.operatorCodes.append(code)
    operator = schema.OperatorT()
    operator.opcodeIndex = len(model.operatorCodes) - 1
    operator.inputs, operator.outputs = [subgraph.outputs[0]], [len(subgraph.tensors) - 1]
    subgraph.operators.append(operator)
    subgraph.outputs = [len(subgraph.tensors) - 1]
    return write_model(model)


def _arithmetic(keras):
    """SUB, MUL and ADD of two activations, MUL's broadcast ([1, 6] against [4, 6])."""
    inputs = keras.Input((ROWS, FEATURES), batch_size=1)
    dense = keras.layers.Dense(FEATURES, name="dense")(inputs)
    difference = keras.layers.Subtract()([dense, inputs])
    flat = keras.layers.Flatten()(inputs)
    row = keras.layers.Reshape((1, FEATURES))(keras.layers.Dense(FEATURES)(flat))
    product = keras.layers.Lambda(lambda t: t[0] * t[1])([difference, row])
    total = keras.layers.Add()([product, inputs])
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(total)))


def _convolutions(keras, depthwise: bool):
    """Conv (3x3 stride 2 same, 2x2 dilation 2), depthwise (multiplier 2, valid), average and
    max pooling (2x2 stride 1 same: border windows are partial), dense."""
    bias = keras.initializers.RandomNormal(stddev=0.2, seed=3)
    layers = [keras.Input((9, 7, 2), batch_size=1),
              keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="relu",
                                  bias_initializer=bias),
              keras.layers.Conv2D(4, 2, dilation_rate=2, padding="same", bias_initializer=bias)]
    if depthwise:
        layers += [keras.layers.DepthwiseConv2D(3, depth_multiplier=2, bias_initializer=bias),
                   keras.layers.AveragePooling2D(2, strides=1, padding="same"),
                   keras.layers.MaxPooling2D(2, strides=1, padding="same")]
    return keras.Sequential([*layers, keras.layers.Flatten(), keras.layers.Dense(3)])


def _reduction(keras, reduce):
    """A [6, 5, 8] input reduced by `reduce` straight to the output: full-range random int16
    inputs sum up to 30 values of +-32767, and nothing after the reduction hides a quantum."""
    inputs = keras.Input((6, 5, 8), batch_size=1)
    return keras.Model(inputs, reduce(inputs))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from edgeship.deps import import_tf_keras

    tensorflow, keras = import_tf_keras()
    tensorflow.random.set_seed(0)
    folder = tmp_path_factory.mktemp("int16")
    logits, samples = _normalized_dense(keras, softmax=False)
    classifier, _ = _normalized_dense(keras, softmax=True)
    arithmetic = _arithmetic(keras)
    standard = np.random.default_rng(2).normal(size=(64, ROWS, FEATURES)).astype(np.float32)
    images = np.random.default_rng(3).normal(size=(64, 9, 7, 2)).astype(np.float32)
    maps = np.random.default_rng(4).normal(size=(64, 6, 5, 8)).astype(np.float32)
    float_path = folder / "classifier_float.tflite"
    float_path.write_bytes(tensorflow.lite.TFLiteConverter.from_keras_model(classifier).convert())
    contents = {
        "whole16": _convert(tensorflow, logits, samples, int16=True),
        "normalized_int8": _convert(tensorflow, logits, samples, int16=False),
        "requantize16": _append_requantize(
            _convert(tensorflow, logits, samples, int16=True), 0.37),
        "whole16_int32_bias": _convert(tensorflow, logits, samples, int16=True, int32_bias=True),
        "whole16_softmax": _convert(tensorflow, classifier, samples, int16=True),
        "mixed": _mixed(float_path, samples),
        "mean16": _convert(tensorflow, keras.Sequential([
            keras.Input((ROWS, FEATURES), batch_size=1), keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(3)]), standard, int16=True),
        "global_average16": _convert(tensorflow, _reduction(
            keras, keras.layers.GlobalAveragePooling2D()), maps, int16=True),
        "channel_mean16": _convert(tensorflow, _reduction(keras, keras.layers.Lambda(
            lambda t: tensorflow.reduce_mean(t, axis=-1, keepdims=True))), maps, int16=True),
        "sum16": _convert(tensorflow, _reduction(keras, keras.layers.Lambda(
            lambda t: tensorflow.reduce_sum(t, axis=1))), maps, int16=True),
        "reduce_max16": _convert(tensorflow, _reduction(keras, keras.layers.Lambda(
            lambda t: tensorflow.reduce_max(t, axis=[1, 2]))), maps, int16=True),
        "arithmetic_int8": _convert(tensorflow, arithmetic, standard, int16=False),
        "arithmetic_int16": _convert(tensorflow, arithmetic, standard, int16=True),
        "conv16": _convert(tensorflow, _convolutions(keras, True), images, int16=True),
        "conv16_int32_bias": _convert(tensorflow, _convolutions(keras, False), images,
                                      int16=True, int32_bias=True)}
    paths = {}
    for name, data in contents.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths


def _kernels(path: Path) -> list[str]:
    return [op.kernel for op in lower_graph(read_graph(path.read_bytes()))]


def _random_inputs(path: Path, count: int) -> np.ndarray:
    """Full-range random raw inputs of the model's input type."""
    with open_backend("tflm", path) as backend:
        info = backend.inputs()[0]
    dtype = np.dtype(info.dtype)
    bounds = np.iinfo(dtype)
    return np.random.default_rng(1).integers(bounds.min, bounds.max + 1,
                                             (count, *info.shape[1:])).astype(dtype)


def _assert_bit_exact(path: Path, kernels: str = "portable", count: int = 1000) -> None:
    """Rounding differences are rare (one quantum on 2 of 3,000 inputs for SUB's multipliers
    computed in float32 instead of double), so many inputs."""
    raw = _random_inputs(path, count)
    with open_backend("tflm", path) as backend:
        expected = np.asarray(backend.infer_raw(raw)).reshape(count, -1)
    backend, _ = compile_generated(path, kernels=kernels)
    try:
        outputs = np.asarray(backend.infer_raw(raw)).reshape(count, -1)
    finally:
        backend.close()
    assert outputs.dtype == expected.dtype
    np.testing.assert_array_equal(outputs, expected, err_msg=f"{path.name} ({kernels})")
    assert len(np.unique(expected)) > 3, "outputs too uniform to test anything"


@needs_host_cc
def test_whole_16x8_model_with_int16_io_is_bit_exact(models):
    assert _kernels(models["whole16"]) == ["sub_s16", "mul_s16", None, "fully_connected_s16",
                                           "fully_connected_s16"]
    _assert_bit_exact(models["whole16"])


@needs_host_cc
def test_int8_sub_and_mul_with_constant_operands_are_bit_exact(models):
    assert _kernels(models["normalized_int8"])[:2] == ["sub", "mul"]
    _assert_bit_exact(models["normalized_int8"])


@needs_host_cc
def test_int16_to_int16_requantization_is_bit_exact(models):
    assert _kernels(models["requantize16"])[-1] == "quantize_s16_s16"
    _assert_bit_exact(models["requantize16"])


@needs_host_cc
def test_16x8_fully_connected_with_int32_bias_is_bit_exact(models):
    assert _kernels(models["whole16_int32_bias"]).count("fully_connected_s16_acc32") == 2
    _assert_bit_exact(models["whole16_int32_bias"])


@needs_host_cc
@pytest.mark.parametrize("kernels", ("portable", "dsp"))
def test_mixed_int8_int16_model_is_bit_exact(models, kernels):
    assert _kernels(models["mixed"]) == [
        "quantize_s8_s16", "sub_s16", "mul_s16", "quantize_s16_s8", None, "quantize_s8_s16",
        "fully_connected_s16", "quantize_s16_s8", "fully_connected", "softmax"]
    _assert_bit_exact(models["mixed"], kernels)  # dsp: int16 families fall back to portable


@needs_host_cc
def test_sub_mul_and_add_of_activations_in_int8_and_int16(models):
    for name in ("arithmetic_int8", "arithmetic_int16"):
        graph = read_graph(models[name].read_bytes())
        lowered = lower_graph(graph)
        mul = next(op for op in lowered if op.name == "MUL")
        assert len(mul.inputs) == 2 and not mul.constants  # two activations
        shapes = {graph.tensors[index].shape for index in mul.inputs}
        assert len(shapes) == 2, shapes  # one broadcast
        assert any(op.name == "SUB" and len(op.inputs) == 2 for op in lowered)
        add = next(op for op in lowered if op.name == "ADD")
        assert add.kernel == ("add" if name == "arithmetic_int8" else "add_s16")
        _assert_bit_exact(models[name])


@needs_host_cc
def test_16x8_convolutions_and_pooling_are_bit_exact(models):
    assert _kernels(models["conv16"]) == ["conv_2d_s16"] * 3 + [
        "pool_2d_s16", "pool_2d_s16", None, "fully_connected_s16"]
    assert _kernels(models["conv16_int32_bias"]) == ["conv_2d_s16_acc32"] * 2 + [
        None, "fully_connected_s16_acc32"]
    for name in ("conv16", "conv16_int32_bias"):
        _assert_bit_exact(models[name])


@needs_host_cc
def test_int16_softmax_tables_are_bit_exact(models):
    assert _kernels(models["whole16_softmax"])[-1] == "softmax_s16"
    _assert_bit_exact(models["whole16_softmax"])


@needs_host_cc
def test_int16_mean_and_sum_are_bit_exact(models):
    """TFLite Micro's QuantizedMeanOrSum for int16 as for int8: int32 sums, MEAN's 1 / count
    folded into the multiplier; codegen runs the int8 kernel's loop clamped to int16."""
    graphs = {name: read_graph(models[name].read_bytes()) for name in (
        "mean16", "global_average16", "channel_mean16", "sum16")}
    reductions = {name: [(op.name, graph.tensors[op.inputs[0]].shape,
                          graph.tensors[op.outputs[0]].shape, op.kernel)
                         for op in lower_graph(graph) if op.name in ("MEAN", "SUM")]
                  for name, graph in graphs.items()}
    assert reductions == {
        "mean16": [("MEAN", (1, ROWS, FEATURES), (1, FEATURES), "mean_s16")],
        "global_average16": [("MEAN", (1, 6, 5, 8), (1, 8), "mean_s16")],
        "channel_mean16": [("MEAN", (1, 6, 5, 8), (1, 6, 5, 1), "mean_s16")],
        "sum16": [("SUM", (1, 6, 5, 8), (1, 5, 8), "mean_s16")]}
    for name in ("global_average16", "channel_mean16", "sum16"):
        graph = graphs[name]
        reduction = graph.tensors[graph.operators[0].inputs[0]]
        output = graph.tensors[graph.outputs[0]]
        assert reduction.dtype == output.dtype == "int16"
        # MEAN requantizes for real; the converter gives SUM its input's scale.
        assert (output.scale != reduction.scale) == (name != "sum16")
        _assert_bit_exact(models[name])
    _assert_bit_exact(models["mean16"])


def test_int16_ops_without_a_kernel_are_named(models, tmp_path):
    with pytest.raises(UserInputError) as raised:
        generate_c(CodegenConfig(model=str(models["reduce_max16"]), out=str(tmp_path)))
    message = str(raised.value)
    assert "does not support op(s) REDUCE_MAX (int16 -> int16)" in message
    assert "MEAN (int16 -> int16)" in message.split("supported: ")[1]
    assert not list(tmp_path.iterdir())  # nothing written


def test_plan_sizes_int16_tensors_in_bytes(models):
    from edgeship.convert.codegen import plan_memory

    graph = read_graph(models["whole16"].read_bytes())
    plan = plan_memory(graph, lower_graph(graph))
    features = ROWS * FEATURES
    # SUB's output (int16, 2 bytes a value) and MUL's output (aliased by RESHAPE) are live
    # together; the FC outputs are smaller; the model's input and output are planned too.
    assert plan.input_bytes == 2 * features and plan.output_bytes == 2 * 3
    assert plan.sum_of_tensors == 2 * (features + features + 8) + plan.input_bytes + plan.output_bytes
    assert plan.arena_bytes >= 2 * features


@needs_host_cc
def test_int16_header_and_samples_run_on_the_host(models, tmp_path):
    from edgeship.firmware import generate_c as generate_with_samples

    path = models["whole16"]
    result = generate_with_samples(CodegenConfig(model=str(path), out=str(tmp_path),
                                                 samples=5))
    assert result.input.dtype == result.output.dtype == "int16"
    header = (tmp_path / "model.h").read_text()
    assert "int model_run(const int16_t *input, int16_t *output);" in header
    samples_header = (tmp_path / "model_samples.h").read_text()
    assert "extern const int16_t model_sample_inputs" in samples_header
    assert "extern const int16_t model_sample_outputs" in samples_header
    harness = tmp_path / "check.c"
    harness.write_text(
        '#include "model.h"\n#include "model_samples.h"\n'
        "int count_mismatches(void) {\n"
        "  int16_t output[MODEL_OUTPUT_SIZE];\n  int sample, i, wrong = 0;\n"
        "  for (sample = 0; sample < MODEL_SAMPLE_COUNT; ++sample) {\n"
        "    model_run(model_sample_inputs[sample], output);\n"
        "    for (i = 0; i < MODEL_OUTPUT_SIZE; ++i) {\n"
        "      wrong += output[i] != model_sample_outputs[sample][i];\n    }\n  }\n"
        "  return wrong;\n}\n")
    library = compile_shared_library([tmp_path / "model.c", tmp_path / "model_samples.c", harness],
                                     tmp_path / "libcheck.so")
    assert ctypes.CDLL(str(library)).count_mismatches() == 0


@needs_profile
@pytest.mark.parametrize("name", ["mixed", "whole16"])
def test_int16_models_are_bit_exact_on_emulated_cortex_m4(models, name):
    """int8 I/O (ai-edge-quantizer's mix) and int16 I/O (the whole 16x8 model) alike."""
    from edgeship.profile.run import ProfileConfig, model_input, profile_model
    from tests.helpers import matches_tflite_micro

    path = models[name]
    report = profile_model(ProfileConfig(model=str(path), target="cortex-m4"))
    graph = read_graph(path.read_bytes())
    tensor = graph.tensors[graph.inputs[0]]
    dtype = "int16" if name == "whole16" else "int8"
    input_bytes, _ = model_input(ProfileConfig(model=str(path)), tensor.size, tensor.scale,
                                 tensor.zero_point, dtype)
    assert len(input_bytes) == tensor.size * (2 if dtype == "int16" else 1)
    assert report.ram["input"] == len(input_bytes)
    assert len(set(report.output)) > 1 or name == "mixed"
    assert matches_tflite_micro(path, input_bytes, report.output)
    assert report.cycles > 0
