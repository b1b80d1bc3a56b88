"""Models saved by Keras 3 (the `keras` package TensorFlow installs) through convert and validate.

Each model is built, trained and saved by Keras 3 in a subprocess without TF_USE_LEGACY_KERAS,
which also records the saved file's outputs on the test images; the tests compare the
tf_keras rebuild with those outputs themselves rather than trusting convert's own check.
"""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from edgeship.convert import keras3
from edgeship.convert.run import ConvertConfig, run_convert
from edgeship.convert.tflite import tensor_types_by_op, weight_sparsity
from edgeship.errors import UserInputError
from tests.helpers import run_cli

KERAS3_TRAINER = r'''
import os
import sys

os.environ.pop("TF_USE_LEGACY_KERAS", None)
import keras
import numpy as np
from keras import layers

kind, data_path, model_path, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
data = np.load(data_path)
keras.utils.set_random_seed(0)
inputs = keras.Input((28, 28, 1), name="image")
if kind == "sequential":
    model = keras.Sequential([
        keras.Input((28, 28, 1)), layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(), layers.Flatten(),
        layers.Dropout(0.2), layers.Dense(10, activation="softmax")])
elif kind == "functional":  # a residual Add around BatchNorm'd convolutions
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    branch = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    branch = layers.BatchNormalization(momentum=0.9)(branch)
    branch = layers.ReLU(6.0)(branch)
    branch = layers.Conv2D(16, 1, use_bias=False)(branch)
    branch = layers.BatchNormalization(momentum=0.9)(branch)
    x = layers.Add()([x, branch])
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.1)(x)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x))
elif kind == "preprocessing":  # every other rebuildable layer type, preprocessing included
    x = layers.Rescaling(2.0, offset=-1.0)(inputs)
    x = layers.Normalization(mean=-0.8, variance=0.36)(x)
    x = layers.ZeroPadding2D(1)(x)
    x = layers.SeparableConv2D(8, 3, activation="relu")(x)
    x = layers.AveragePooling2D(2)(x)
    left = layers.Conv2D(8, 3, padding="same", activation="relu6")(x)
    right = layers.Activation("relu")(layers.BatchNormalization()(layers.Conv2D(4, 1)(x)))
    x = layers.Concatenate()([left, right])
    x = layers.MaxPooling2D()(x)
    x = layers.Reshape((7 * 7, 12))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(10)(x)
    model = keras.Model(inputs, layers.Softmax()(x))
elif kind == "unsupported":  # LayerNormalization is not among the rebuildable layers
    x = layers.Conv2D(8, 3, activation="relu")(inputs)
    x = layers.LayerNormalization(name="odd_norm")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x))
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=32, verbose=0)
model.save(model_path)
loaded = keras.saving.load_model(model_path, compile=False)
outputs = keras.ops.convert_to_numpy(loaded(data["x_test"], training=False))
np.save(model_path + ".outputs.npy", outputs)
print(keras.__version__, float(np.mean(outputs.argmax(1) == data["y_test"])))
'''


@pytest.fixture(scope="module")
def mnist5k_npz(tmp_path_factory, mnist5k):
    path = tmp_path_factory.mktemp("keras3_data") / "mnist5k.npz"
    np.savez(path, x_train=mnist5k.x_train, y_train=mnist5k.y_train, x_test=mnist5k.x_test,
             y_test=mnist5k.y_test)
    return path


def save_keras3_model(kind: str, folder, data_path, epochs: int = 3):
    """Build, train and save a model with Keras 3 in a process that never sees tf_keras."""
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / "user_keras3_model.keras"
    environment = {key: value for key, value in os.environ.items()
                   if key != "TF_USE_LEGACY_KERAS"}
    completed = subprocess.run(
        [sys.executable, "-c", KERAS3_TRAINER, kind, str(data_path), str(model_path), str(epochs)],
        check=False, capture_output=True, text=True, env=environment, cwd=folder,
        timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    version, accuracy = completed.stdout.split()[-2:]
    assert int(version.split(".")[0]) >= 3
    return model_path, np.load(f"{model_path}.outputs.npy"), float(accuracy)


def load_tf_keras(path):
    from edgeship.deps import import_tf_keras

    _, tf_keras = import_tf_keras()
    return tf_keras.models.load_model(path, compile=False)


def assert_validate_runs_on(out_dir):
    """`edgeship validate` on a Keras 3 run: the rebuild is its reference and every check on it passes.

    int8 vs int8 comparisons of one file across TFLM and LiteRT's reference kernels can be a
    few quanta apart on PTQ and QAT models alike (the tf_keras zoo's lenet5 too), which
    validate's own bounds decide; here they may only be what fails.
    """
    validated = run_cli("validate", out_dir)
    assert validated.returncode in (0, 1), validated.stderr[-3000:]
    parity = json.loads((out_dir / "parity.json").read_text())
    assert parity["reference"]["artifact"] == keras3.REBUILT_MODEL_NAME
    assert parity["reference"]["backend"] == "keras"
    pair_checks = [check for pair in parity["pairs"] for check in pair.get("checks", [])]
    assert "float vs float" in {check["kind"] for check in pair_checks}
    assert all(check["passed"] for check in pair_checks), pair_checks
    integer_failures = [check for comparison in parity["integer_comparisons"]
                        for check in comparison["checks"] if not check["passed"]]
    assert validated.returncode == (1 if integer_failures else 0)
    return parity


def assert_rebuild_equals_original(out_dir, original_outputs, images):
    rebuilt = load_tf_keras(out_dir / keras3.REBUILT_MODEL_NAME)
    outputs = rebuilt(images, training=False).numpy()
    assert np.max(np.abs(outputs - original_outputs)) <= 1e-5


@pytest.fixture(scope="module")
def functional_run(tmp_path_factory, mnist5k_npz):
    """The issue's command line on a Functional Keras 3 model with a residual Add and BN."""
    folder = tmp_path_factory.mktemp("keras3_functional")
    model_path, outputs, accuracy = save_keras3_model("functional", folder, mnist5k_npz)
    completed = run_cli("convert", model_path, "--dataset", "mnist5k", "--int8", "--qat", "1",
                        "--prune", "0.5", "--prune-epochs", "1", "--onnx",
                        "--calibration-samples", "100")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return folder, outputs, accuracy


@pytest.fixture(scope="module")
def sequential_run(tmp_path_factory, mnist5k_npz):
    folder = tmp_path_factory.mktemp("keras3_sequential")
    model_path, outputs, accuracy = save_keras3_model("sequential", folder, mnist5k_npz)
    result = run_convert(ConvertConfig(source=str(model_path), dataset=_mnist5k_spec(),
                                       int8=True, qat_epochs=1, prune_sparsity=0.5,
                                       prune_epochs=1, calibration_samples=100))
    return result, outputs, accuracy


def _mnist5k_spec():
    from edgeship.train.datasets import DatasetSpec

    return DatasetSpec(name="mnist5k", seed=0)


def test_saved_keras_version_is_read_from_the_archive(sequential_run, tmp_path):
    result, _, _ = sequential_run
    source = result.out_dir / "user_keras3_model.keras"
    with zipfile.ZipFile(source) as archive:
        recorded = json.loads(archive.read("metadata.json"))["keras_version"]
    assert keras3.saved_keras_version(source) == recorded
    assert keras3.is_keras3_file(source)
    from edgeship.deps import import_tf_keras

    _, tf_keras = import_tf_keras()
    legacy = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)])
    legacy.save(tmp_path / "legacy.keras")
    assert keras3.saved_keras_version(tmp_path / "legacy.keras").startswith("2.")
    assert not keras3.is_keras3_file(tmp_path / "legacy.keras")


def test_sequential_qat_prune(sequential_run, mnist5k):
    result, original_outputs, original_accuracy = sequential_run
    out = result.out_dir
    assert_rebuild_equals_original(out, original_outputs, mnist5k.x_test)
    rows = {row["file"]: row for row in result.report["artifacts"]}
    assert result.report["reference"] == keras3.REBUILT_MODEL_NAME
    assert rows[keras3.REBUILT_MODEL_NAME]["accuracy"] == pytest.approx(original_accuracy, abs=1e-9)
    assert original_accuracy >= 0.9
    assert rows["model_ptq_int8.tflite"]["drop_pp"] <= 1.5
    assert rows["model_int8.tflite"]["drop_pp"] <= 2.0
    for sparsity in weight_sparsity((out / "model_int8.tflite").read_bytes()).values():
        assert sparsity == pytest.approx(0.5, abs=0.01)
    entry = json.loads((out / "manifest.json").read_text())["convert"]["keras3"]
    assert entry["rebuild_check"]["passed"] and entry["rebuild_check"]["max_abs_difference"] <= 1e-5
    assert entry["fine_tuned_from"] == "rebuilt tf_keras model"
    assert entry["onnx_from"] is None
    assert_validate_runs_on(out)


def test_functional_residual_batchnorm_through_cli_and_validate(functional_run, mnist5k):
    out, original_outputs, original_accuracy = functional_run
    assert_rebuild_equals_original(out, original_outputs, mnist5k.x_test)
    report = json.loads((out / "convert_report.json").read_text())
    rows = {row["file"]: row for row in report["artifacts"]}
    assert rows[keras3.REBUILT_MODEL_NAME]["accuracy"] == pytest.approx(original_accuracy, abs=1e-9)
    assert original_accuracy >= 0.85
    assert rows["model_ptq_int8.tflite"]["drop_pp"] <= 1.5
    assert rows["model_int8.tflite"]["drop_pp"] <= 2.0
    assert rows["model_int8.tflite"]["sparsity"] >= 0.45
    assert rows["model.onnx"]["agreement"] >= 0.999
    assert rows["model_int8.onnx"]["drop_pp"] <= 1.5
    operators = tensor_types_by_op((out / "model_int8.tflite").read_bytes())
    assert "ADD" in {op["op"] for op in operators}
    assert all(set(op["dtypes"]) <= {"int8", "int32"} for op in operators)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["convert"]["reference"] == keras3.REBUILT_MODEL_NAME
    assert keras3.REBUILT_MODEL_NAME in manifest["artifacts"]
    assert manifest["convert"]["keras3"]["onnx_from"] == "rebuilt tf_keras model"
    assert "## Keras 3 source" in (out / "convert_report.md").read_text()

    parity = assert_validate_runs_on(out)
    pairs = {(pair["artifact"], pair["backend"]) for pair in parity["pairs"]}
    assert {("model_float.tflite", "litert"), ("model.onnx", "onnxruntime"),
            ("model_int8.tflite", "tflm"), ("model_int8.onnx", "onnxruntime")} <= pairs


@pytest.mark.slow
def test_preprocessing_layers_rebuild_and_post_training_int8(tmp_path, mnist5k_npz, mnist5k):
    """Rescaling, Normalization and the other layer types rebuild exactly; PTQ goes direct."""
    model_path, original_outputs, _ = save_keras3_model("preprocessing", tmp_path, mnist5k_npz,
                                                        epochs=1)
    export = keras3.export_with_keras3(model_path, mnist5k.x_test[:64])
    rebuild = keras3.rebuild_verified(export, required=True)
    classes = {type(layer).__name__ for layer in rebuild.model.layers}
    assert {"Rescaling", "Normalization", "ZeroPadding2D", "SeparableConv2D", "Concatenate",
            "Reshape", "Softmax", "AveragePooling2D"} <= classes
    outputs = rebuild.model(mnist5k.x_test, training=False).numpy()
    assert np.max(np.abs(outputs - original_outputs)) <= 1e-5

    result = run_convert(ConvertConfig(source=str(model_path), dataset=_mnist5k_spec(),
                                       int8=True, calibration_samples=100))
    rows = {row["file"]: row for row in result.report["artifacts"]}
    assert rows["model_int8.tflite"]["drop_pp"] <= 1.5
    assert rows["model_float.tflite"]["agreement"] >= 0.999
    assert result.report["keras3"]["tflite_from"].startswith("Keras 3 SavedModel")


@pytest.mark.slow  # ~30-60 s on 2 cores; the default suite keeps under 20 minutes
def test_unrebuildable_layer_is_named_and_ptq_still_works(tmp_path, mnist5k_npz):
    model_path, _, _ = save_keras3_model("unsupported", tmp_path, mnist5k_npz, epochs=1)
    failed = run_cli("convert", model_path, "--dataset", "mnist5k", "--int8", "--qat", "1")
    assert failed.returncode == 2
    assert "layer 'odd_norm' of class LayerNormalization cannot be rebuilt" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (tmp_path / "model_int8.tflite").exists()

    result = run_convert(ConvertConfig(source=str(model_path), dataset=_mnist5k_spec(),
                                       int8=True, calibration_samples=100))
    assert result.report["reference"] == "model_float.tflite"
    assert "odd_norm" in result.report["keras3"]["rebuild_error"]
    assert not (tmp_path / keras3.REBUILT_MODEL_NAME).exists()
    rows = {row["file"]: row for row in result.report["artifacts"]}
    assert rows["model_int8.tflite"]["drop_pp"] <= 1.5


def test_keras3_loader_errors_are_one_line(tmp_path):
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.10.0"}))
        archive.writestr("config.json", "{not json")
    assert keras3.is_keras3_file(broken)
    with pytest.raises(UserInputError, match="cannot load"):
        keras3.export_with_keras3(broken, np.zeros((2, 28, 28, 1), np.float32))
