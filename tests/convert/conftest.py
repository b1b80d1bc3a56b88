"""Fixtures of the codegen and embed tests: the zoo's int8 models, built once per session.

Bit-exactness needs varied activations, not accuracy: each model is trained a few steps (with
batch-norm statistics taken from the last batch) and calibrated on real images and converted with edgeship's own export_tflite. The 28x28x1
models use mnist5k; mobilenet_v2 (alpha 0.35) takes 32x32x3, so it uses the digits dataset
resized to 32x32 RGB. `ops_model` exercises what the zoo does not: PAD, SAME pooling, a depth
multiplier of 2, a keep-dims MEAN and ADD. `qat_model` is lenet5 after quantization-aware
fine-tuning, exported as `edgeship convert --qat` does, so it holds int8 -> int8 QUANTIZE ops.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgeship.tflite_graph import op_names, read_model, write_model

CODEGEN_MODEL_NAMES = ("lenet5", "simple_cnn", "keras_cnn", "dscnn", "mobilenet_v2")
TEST_IMAGES = 30


@dataclass(frozen=True)
class Int8Model:
    name: str
    path: Path
    images: np.ndarray  # float32 test images (not used for calibration)
    labels: np.ndarray


def _fit_and_export(model, dataset, folder: Path, name: str, qat_epochs: int = 0) -> Int8Model:
    """Fit briefly and export int8; qat_epochs > 0 fine-tunes with stock tfmot QAT
    (tfmot.quantization.keras.quantize_model), as a model made outside edgeship would be."""
    from edgeship.convert.tflite import export_tflite

    for layer in model.layers:
        if hasattr(layer, "moving_mean"):
            # A few steps would leave batch-norm's moving statistics stale (degenerate int8
            # ranges); momentum 0 makes them the last batch's, consistent with the weights.
            layer.momentum = 0.0
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(dataset.x_train[:512], dataset.y_train[:512], batch_size=32, epochs=2, verbose=0)
    if qat_epochs:
        import tensorflow_model_optimization as tfmot

        model = tfmot.quantization.keras.quantize_model(model)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(dataset.x_train[:256], dataset.y_train[:256], batch_size=32,
                  epochs=qat_epochs, verbose=0)
    path = folder / f"{name}_int8.tflite"
    path.write_bytes(export_tflite(model, representative_samples=dataset.x_train[:64]))
    return Int8Model(name, path, np.ascontiguousarray(dataset.x_test[:TEST_IMAGES]),
                     dataset.y_test[:TEST_IMAGES])


@pytest.fixture(scope="session")
def digits_rgb32():
    from edgeship.train.datasets import DatasetSpec, load_dataset

    return load_dataset(DatasetSpec(name="digits", image_size=(32, 32), channels=3))


@pytest.fixture(scope="session")
def codegen_models(tmp_path_factory, mnist5k, digits_rgb32) -> dict[str, Int8Model]:
    """name -> Int8Model for the five zoo models codegen must reproduce bit for bit."""
    from edgeship.train.models import ModelOptions, build_model

    folder = tmp_path_factory.mktemp("codegen_models")
    models = {}
    for name in CODEGEN_MODEL_NAMES:
        dataset = digits_rgb32 if name == "mobilenet_v2" else mnist5k
        model = build_model(name, dataset.input_shape, dataset.num_classes,
                            ModelOptions(alpha=0.35), seed=0)
        models[name] = _fit_and_export(model, dataset, folder, name)
    return models


@pytest.fixture(scope="session")
def ops_model(tmp_path_factory, mnist5k) -> Int8Model:
    """A small model built to hit every supported op option the zoo leaves out."""
    from edgeship.deps import import_tf_keras

    _, keras = import_tf_keras()
    keras.utils.set_random_seed(1)
    layers = keras.layers
    inputs = keras.Input((28, 28, 1))
    x = layers.ZeroPadding2D(((2, 1), (0, 3)))(inputs)
    x = layers.Conv2D(8, 3, activation="relu6")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.AveragePooling2D(3, strides=1, padding="same")(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu")(x)
    branch = layers.Conv2D(16, 1, activation="relu")(x)
    x = layers.Add()([x, branch])
    x = layers.Conv2D(12, 3, strides=2, padding="same")(x)
    x = layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    return _fit_and_export(model, mnist5k, tmp_path_factory.mktemp("ops_model"), "ops")


@pytest.fixture(scope="session")
def qat_model(tmp_path_factory, mnist5k) -> Int8Model:
    """lenet5 fine-tuned one epoch with stock tfmot QAT: it learns output ranges for the
    average pools that differ from their inputs', so the converter inserts int8 -> int8
    QUANTIZE (requantize) ops. (edgeship's own QAT leaves pools on their input's range.)"""
    from edgeship.train.models import build_model

    model = build_model("lenet5", mnist5k.input_shape, mnist5k.num_classes, seed=0)
    return _fit_and_export(model, mnist5k, tmp_path_factory.mktemp("qat_model"), "lenet5_qat",
                           qat_epochs=1)


# (output scale / input scale, output zero point - input zero point) of each QUANTIZE op.
REQUANTIZATIONS = ((4.0, 3), (1 / 2.7, -5))


@pytest.fixture(scope="session")
def requantizing_model(tmp_path_factory, qat_model) -> Int8Model:
    """qat_model with its QUANTIZE outputs given far-apart scales and zero points.

    QAT's requantizations are near identity (scales within 0.01%), which hides rounding
    mistakes. A scale ratio of 1/4 makes the multiplier shift right, where double rounding
    (TFLite Micro) and single rounding differ; 2.7 shifts left and saturates large values.
    The next CONV_2D reads the new scale, so the model stays consistent.
    """
    model = read_model(qat_model.path.read_bytes())
    subgraph = model.subgraphs[0]
    quantize_ops = [op for op, name in zip(subgraph.operators, op_names(model))
                    if name == "QUANTIZE"]
    assert len(quantize_ops) == len(REQUANTIZATIONS)
    for op, (ratio, offset) in zip(quantize_ops, REQUANTIZATIONS):
        source = subgraph.tensors[op.inputs[0]].quantization
        target = subgraph.tensors[op.outputs[0]].quantization
        target.scale = [float(np.float32(source.scale[0] * ratio))]
        target.zeroPoint = [int(source.zeroPoint[0]) + offset]
    path = tmp_path_factory.mktemp("requantizing") / "requantizing.tflite"
    path.write_bytes(write_model(model))
    return Int8Model("requantizing", path, qat_model.images, qat_model.labels)


@pytest.fixture(scope="session")
def float_io_models(tmp_path_factory, mnist5k) -> dict[str, Path]:
    """A tiny int8 model exported with float32 and with uint8 input/output: io type -> path.
    Their first op is a QUANTIZE from that type to int8, which codegen does not generate."""
    from edgeship.convert.tflite import export_tflite
    from edgeship.deps import import_tf_keras

    _, keras = import_tf_keras()
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    folder = tmp_path_factory.mktemp("io_types")
    paths = {}
    for io_type in ("float32", "uint8"):
        paths[io_type] = folder / f"dense_{io_type}_io.tflite"
        paths[io_type].write_bytes(export_tflite(model, mnist5k.x_train[:32], io_type=io_type))
    return paths


@pytest.fixture(scope="session")
def unsupported_model(tmp_path_factory, mnist5k) -> Path:
    """An int8 model with a LOG_SOFTMAX op: TFLite Micro runs it, codegen does not generate it."""
    from edgeship.convert.tflite import export_tflite
    from edgeship.deps import import_tf_keras

    tf, keras = import_tf_keras()
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.Dense(10)(x)
    outputs = keras.layers.Lambda(lambda logits: tf.nn.log_softmax(logits))(x)
    model = keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("unsupported") / "log_softmax_int8.tflite"
    path.write_bytes(export_tflite(model, representative_samples=mnist5k.x_train[:32]))
    return path


def without_final_softmax(model_path: Path, out_path: Path) -> Path:
    """A copy of the model that ends at the logits (its last op, a SOFTMAX, removed).

    ai_edge_litert's BUILTIN_REF resolver computes int8 SOFTMAX from a float exp table while
    TFLite Micro uses the fixed-point reference, and the two differ by a quantum or two on
    some inputs. Up to the logits both run the same integer reference kernels, so this copy
    lets the generated C be checked bit for bit against both.
    """
    model = read_model(model_path.read_bytes())
    subgraph = model.subgraphs[0]
    last = subgraph.operators[-1]
    assert op_names(model)[-1] == "SOFTMAX"
    subgraph.operators = subgraph.operators[:-1]
    subgraph.outputs = [int(last.inputs[0])]
    out_path.write_bytes(write_model(model))
    return out_path
