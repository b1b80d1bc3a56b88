"""codegen of the arithmetic, reduction and activation ops converters emit in vision, audio and
sensor models: bit-exact with TFLite Micro.

Tiny untrained Keras models, each converted whole to int8 (int8 I/O) by the TFLite converter
and built once per session: one op alone on the model input for every activation, so that one
input holding each of the 256 int8 values covers the op's whole table; ADD with a per-channel
constant and of two broadcast activations, MAXIMUM, MINIMUM and SQUARED_DIFFERENCE chained
(int8, and int16 16x8); REDUCE_MAX, SUM and ARG_MAX; int16 LOGISTIC and TANH over inputs
spread across the int16 range.
"""

import shutil

import numpy as np
import pytest

from edgeship.convert.codegen import CodegenConfig, generate_c, lower_graph, read_graph
from edgeship.convert.codegen.quant import (
    logistic_tanh_int16_parameters,
    logistic_tanh_parameters,
    sigmoid_table_uint16,
)
from edgeship.errors import UserInputError
from edgeship.runtime.backends import open_backend

needs_host_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                   reason="no host C compiler")

SHAPE = (4, 4, 16)  # 256 values: one input can hold every int8 value
CHANNELS = SHAPE[-1]


def _keras_models(tensorflow, keras) -> dict[str, tuple[object, bool]]:
    """name -> (Keras model, int16): the op each name tests is in its ops (see EXPECTED_OPS)."""
    layers = keras.layers

    def alone(layer, int16: bool = False):
        inputs = keras.Input(SHAPE, batch_size=1)
        return keras.Model(inputs, layer(inputs)), int16

    def lambda_layer(function):
        return layers.Lambda(function)

    ramp = tensorflow.constant(np.linspace(-2.0, 2.5, CHANNELS, dtype=np.float32))

    def arithmetic(inputs):
        shifted = inputs + ramp  # ADD of a per-channel constant (a folded batch norm)
        summed = tensorflow.reduce_sum(inputs, axis=-1, keepdims=True) / 8.0  # [1, 4, 4, 1]
        total = shifted + summed  # ADD of two activations, broadcast over channels
        peak = tensorflow.reduce_max(inputs, axis=[1, 2], keepdims=True)  # [1, 1, 1, 16]
        spread = tensorflow.math.squared_difference(total, peak)
        return tensorflow.minimum(tensorflow.maximum(spread, ramp * 4.0), 30.0)

    def arithmetic16(inputs):  # int16 has no REDUCE_MAX or SUM kernel in TFLite Micro
        spread = tensorflow.math.squared_difference(inputs + ramp, inputs * 0.5)
        return tensorflow.minimum(tensorflow.maximum(spread, ramp * 4.0), 30.0)

    prelu_alpha = keras.initializers.RandomUniform(-0.5, 0.8, seed=1)
    return {
        "logistic": alone(layers.Activation("sigmoid")),
        "tanh": alone(layers.Activation("tanh")),
        "hard_swish": alone(lambda_layer(lambda x: x * tensorflow.nn.relu6(x + 3.0) / 6.0)),
        "leaky_relu": alone(layers.LeakyReLU(0.2)),
        "prelu": alone(layers.PReLU(alpha_initializer=prelu_alpha, shared_axes=[1, 2])),
        "relu": alone(layers.ReLU()),
        "relu6": alone(layers.ReLU(6.0)),
        "arithmetic": alone(lambda_layer(arithmetic)),
        "arithmetic16": alone(lambda_layer(arithmetic16), int16=True),
        "reduce_max": alone(layers.GlobalMaxPooling2D()),
        "sum": alone(lambda_layer(lambda x: tensorflow.reduce_sum(x, axis=[1, 2]))),
        "arg_max": alone(lambda_layer(
            lambda x: tensorflow.argmax(x, axis=-1, output_type=tensorflow.int32))),
        "logistic16": alone(layers.Activation("sigmoid"), int16=True),
        "tanh16": alone(layers.Activation("tanh"), int16=True),
        "leaky_relu16": alone(layers.LeakyReLU(0.2), int16=True),
    }


EXPECTED_OPS = {
    "logistic": ["LOGISTIC"], "tanh": ["TANH"], "hard_swish": ["HARD_SWISH"],
    "leaky_relu": ["LEAKY_RELU"], "prelu": ["PRELU"], "relu": ["RELU"], "relu6": ["RELU6"],
    "arithmetic": ["REDUCE_MAX", "SUM", "MUL", "ADD", "ADD", "SQUARED_DIFFERENCE", "MAXIMUM",
                   "MINIMUM"],
    "arithmetic16": ["MUL", "ADD", "SQUARED_DIFFERENCE", "MAXIMUM", "QUANTIZE", "MINIMUM"],
    "reduce_max": ["REDUCE_MAX"], "sum": ["SUM"], "arg_max": ["ARG_MAX"],
    "logistic16": ["LOGISTIC"], "tanh16": ["TANH"], "leaky_relu16": ["LEAKY_RELU"],
}


def _convert(tensorflow, model, samples: np.ndarray, int16: bool) -> bytes:
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
    return converter.convert()


@pytest.fixture(scope="session")
def math_models(tmp_path_factory) -> dict:
    from edgeship.deps import import_tf_keras

    tensorflow, keras = import_tf_keras()
    tensorflow.random.set_seed(0)
    folder = tmp_path_factory.mktemp("codegen_math")
    # Calibration spread over about [-9, 9]: the ops' interesting ranges (logistic and tanh
    # saturate past the input radius) fall inside the int8 input's range.
    samples = (np.random.default_rng(0).normal(size=(32, *SHAPE)) * 3).astype(np.float32)
    paths = {}
    for name, (model, int16) in _keras_models(tensorflow, keras).items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(_convert(tensorflow, model, samples, int16))
    return paths


def _raw_inputs(dtype: str, count: int) -> np.ndarray:
    """int8: every value once in the first input (shuffled), then random ones; int16: the
    whole range in even steps, then random values."""
    rng = np.random.default_rng(1)
    size = int(np.prod(SHAPE))
    bounds = np.iinfo(dtype)
    if dtype == "int8":
        first = rng.permutation(np.arange(-128, 128))
    else:
        first = np.linspace(bounds.min, bounds.max, size).round()
    rest = rng.integers(bounds.min, bounds.max + 1, (count - 1, size))
    return np.concatenate([first[None], rest]).astype(dtype).reshape(count, *SHAPE)


def _assert_bit_exact(path, count: int = 40) -> np.ndarray:
    """The generated C equals TFLite Micro bit for bit; the outputs vary (something tested)."""
    with open_backend("tflm", path) as backend:
        dtype = np.dtype(backend.inputs()[0].dtype).name
        raw = _raw_inputs(dtype, count)
        expected = np.asarray(backend.infer_raw(raw)).reshape(count, -1)
    with open_backend("c", path) as backend:
        generated = np.asarray(backend.infer_raw(raw)).reshape(count, -1)
    assert generated.dtype == expected.dtype
    np.testing.assert_array_equal(generated, expected, err_msg=path.name)
    assert len(np.unique(expected)) > 3, f"{path.name}: outputs too uniform to test anything"
    return expected


def _kernels(path) -> list[str]:
    return [op.kernel for op in lower_graph(read_graph(path.read_bytes()))]


def test_models_hold_the_ops_under_test(math_models):
    for name, path in math_models.items():
        assert read_graph(path.read_bytes()).op_names() == EXPECTED_OPS[name], name


@needs_host_cc
@pytest.mark.parametrize("name", ["logistic", "tanh", "hard_swish", "leaky_relu", "prelu",
                                  "relu", "relu6"])
def test_int8_activation_is_bit_exact_over_every_input_value(math_models, name):
    outputs = _assert_bit_exact(math_models[name])
    # The first input holds all 256 values, so every output the op can make appears.
    assert len(np.unique(outputs[0])) > 16


@needs_host_cc
def test_relu_requantizes_and_relu6_clamps_in_the_input_scale(math_models):
    relu = read_graph(math_models["relu"].read_bytes())
    source, target = relu.tensors[relu.inputs[0]], relu.tensors[relu.outputs[0]]
    assert (source.scale, source.zero_point) != (target.scale, target.zero_point)
    assert _kernels(math_models["relu"]) == ["relu"]
    assert _kernels(math_models["relu6"]) == ["relu6"]


@needs_host_cc
def test_broadcast_add_maximum_minimum_and_squared_difference(math_models):
    path = math_models["arithmetic"]
    graph = read_graph(path.read_bytes())
    lowered = lower_graph(graph)
    constant_add, activation_add = (op for op in lowered if op.name == "ADD")
    assert constant_add.kernel == "add_broadcast" and len(constant_add.inputs) == 1
    assert constant_add.constants[0].values.size == CHANNELS  # a per-channel constant
    assert activation_add.kernel == "add_broadcast" and len(activation_add.inputs) == 2
    assert len({graph.tensors[index].shape for index in activation_add.inputs}) == 2
    assert [op.kernel for op in lowered if op.name in ("SQUARED_DIFFERENCE", "MAXIMUM",
                                                      "MINIMUM")] == [
        "squared_difference", "maximum", "minimum"]
    _assert_bit_exact(path)


@needs_host_cc
def test_int16_broadcast_add_maximum_minimum_and_squared_difference(math_models):
    path = math_models["arithmetic16"]
    assert _kernels(path) == ["mul_s16", "add_s16", "squared_difference_s16", "maximum_s16",
                              "quantize_s16_s16", "minimum_s16"]
    _assert_bit_exact(path)


@needs_host_cc
@pytest.mark.parametrize("name", ["reduce_max", "sum"])
def test_reductions_are_bit_exact(math_models, name):
    assert _kernels(math_models[name]) == [{"reduce_max": "reduce_max_min", "sum": "mean"}[name]]
    _assert_bit_exact(math_models[name])


@needs_host_cc
def test_arg_max_writes_int32_indices(math_models):
    path = math_models["arg_max"]
    assert _kernels(path) == ["arg_max_min"]
    indices = _assert_bit_exact(path)
    assert indices.dtype == np.int32 and indices.min() >= 0 and indices.max() < CHANNELS


@needs_host_cc
def test_int16_leaky_relu_is_bit_exact(math_models):
    assert _kernels(math_models["leaky_relu16"]) == ["leaky_relu_s16"]
    outputs = _assert_bit_exact(math_models["leaky_relu16"])
    assert outputs.min() < 0 < outputs.max() and len(np.unique(outputs[0])) > 100


@needs_host_cc
@pytest.mark.parametrize("name", ["logistic16", "tanh16"])
def test_int16_logistic_and_tanh_are_bit_exact(math_models, name):
    assert _kernels(math_models[name]) == [name.replace("16", "_s16")]
    outputs = _assert_bit_exact(math_models[name])
    assert len(np.unique(outputs[0])) > 100  # the ramp over the int16 range, saturated at the ends


def test_sigmoid_table_follows_tflite_common_h():
    table = sigmoid_table_uint16()
    assert table.shape == (256,) and table[0] == 32768 and table[-1] == 65535
    assert list(table[1:6]) == [33451, 34133, 34813, 35493, 36169]  # TFLite's first entries
    assert np.all(np.diff(table) >= 0)


def test_logistic_parameters_follow_tflite_prepare():
    # scale 1/16: 2^-4 * 2^27 = 2^23 = 0.5 * 2^24 -> multiplier 2^30, shift 24,
    # radius floor(15 * 2^27 / 2^24) = 120.
    assert logistic_tanh_parameters(1 / 16) == (1 << 30, 24, 120)
    # int16: a power-of-two scale 2^-12 takes the exact 3 << 0 path; 0.001 is rescaled.
    assert logistic_tanh_int16_parameters(2.0 ** -12, (0,)) == (3, 0)
    multiplier, shift = logistic_tanh_int16_parameters(0.001, (0,))
    assert 16383 < multiplier <= 32767 and multiplier == int(0.001 * 4096 * 3 * 2 ** shift)


def test_relu_n1_to_1_is_refused_by_name(math_models, tmp_path):
    """TFLite Micro has no RELU_N1_TO_1 kernel, so codegen has none: named as unsupported."""
    from edgeship.tflite_graph import builtin_codes, read_model, write_model

    model = read_model(math_models["relu"].read_bytes())
    model.operatorCodes[0].builtinCode = builtin_codes()["RELU_N1_TO_1"]
    model.operatorCodes[0].deprecatedBuiltinCode = builtin_codes()["RELU_N1_TO_1"]
    path = tmp_path / "relu_n1_to_1.tflite"
    path.write_bytes(write_model(model))
    with pytest.raises(UserInputError, match="does not support op.s. RELU_N1_TO_1"):
        generate_c(CodegenConfig(model=str(path), out=str(tmp_path / "out")))
