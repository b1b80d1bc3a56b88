"""Fine-tuned int8 on a model unlike the zoo's: batch norm after a depthwise conv, a residual add.

The model is the one issue 14 reported: with the granularity measured on the post-training
file carried over to QAT, its fine-tuned int8 file lost 50 points and convert exited 0.
"""

import json

import numpy as np
import pytest

from edgeship.convert.run import ConvertConfig, run_convert
from tests.convert.test_convert import _accuracy_of_tflite
from tests.helpers import run_cli_in_process


def build_residual_depthwise_model(input_shape, num_classes, seed=0):
    """Conv+BN+ReLU6, a DepthwiseConv+BN+ReLU6 branch joined by Add, pools, dropout, softmax."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    image = keras.Input(input_shape)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(image)
    x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=0.9)(x))
    branch = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    branch = layers.ReLU(6.0)(layers.BatchNormalization(momentum=0.9)(branch))
    x = layers.MaxPooling2D(2)(layers.Add()([x, branch]))
    x = layers.Conv2D(32, 3, padding="same", use_bias=False)(x)
    x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=0.9)(x))
    x = layers.Dropout(0.2)(layers.Flatten()(layers.MaxPooling2D(2)(x)))
    return keras.Model(image, layers.Dense(num_classes, activation="softmax")(x))


@pytest.fixture(scope="module")
def residual_model(tmp_path_factory, mnist5k):
    """The model trained 2 epochs on mnist5k and saved as a user's .keras file."""
    model = build_residual_depthwise_model(mnist5k.input_shape, mnist5k.num_classes)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(mnist5k.x_train, mnist5k.y_train, epochs=2, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("residual") / "user.keras"
    model.save(path)
    accuracy = model.evaluate(mnist5k.x_test, mnist5k.y_test, verbose=0)[1]
    assert accuracy > 0.9, "the fixture model must be worth quantizing"
    return path


def test_qat_with_default_granularity_stays_within_a_point(tmp_path, residual_model, mnist5k):
    result = run_cli_in_process("convert", residual_model, "--dataset", "mnist5k", "--int8",
                                "--qat", "1", "--onnx", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "convert_report.json").read_text())
    rows = {row["file"]: row for row in report["artifacts"]}
    assert rows["model_int8.tflite"]["drop_pp"] <= 1.0
    assert rows["model_int8.onnx"]["drop_pp"] <= 1.0
    # Recomputed outside edgeship's runtime code: the delivered file is what the report says.
    predicted = _accuracy_of_tflite(tmp_path / "model_int8.tflite", mnist5k.x_test,
                                    mnist5k.y_test)
    assert np.mean(predicted == mnist5k.y_test) == pytest.approx(
        rows["model_int8.tflite"]["accuracy"], abs=1e-9)
    # The fine-tuned granularity is measured on the fine-tuned model, not carried over.
    assert report["fine_tuned_weight_granularity"]["measured_on"] == "fine-tuned"
    delivered = report["delivery"]["delivered"]
    other = report["delivery"]["kept"]["file"]
    assert set(report["delivered_granularity"]) == {"model_int8.tflite", other}
    text = (tmp_path / "convert_report.md").read_text()
    assert f"Delivered `model_int8.tflite`: the {delivered} file" in text
    assert "weight granularity (read from the file)" in text


@pytest.mark.slow  # ~30-60 s on 2 cores; the default suite keeps under 20 minutes
def test_a_losing_fine_tune_does_not_replace_post_training(tmp_path, residual_model, mnist5k):
    """A learning rate that wrecks the fine-tune: the post-training file is what ships."""
    result = run_cli_in_process("convert", residual_model, "--dataset", "mnist5k", "--int8",
                                "--qat", "1", "--qat-learning-rate", "0.05", "--max-drop", "1",
                                "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model_int8.tflite is the post-training file" in result.stderr
    assert "kept as model_finetuned_int8.tflite" in result.stderr
    report = json.loads((tmp_path / "convert_report.json").read_text())
    delivery = report["delivery"]
    assert delivery["delivered"] == "post-training"
    assert delivery["accuracy"]["fine-tuned"] < delivery["accuracy"]["post-training"]
    rows = {row["file"]: row for row in report["artifacts"]}
    assert rows["model_finetuned_int8.tflite"]["drop_pp"] > 1.0  # the gate ignores the loser
    assert rows["model_int8.tflite"]["drop_pp"] <= 1.0
    assert not (tmp_path / "model_ptq_int8.tflite").exists()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["convert"]["rejected_files"] == ["model_finetuned_int8.tflite"]
    assert manifest["convert"]["fine_tuned_files"] == ["model_finetuned_int8.tflite"]
    assert manifest["convert"]["delivery"]["reason"] == delivery["reason"]
    # The delivered file is the post-training conversion: the same weights as the float model.
    ptq = run_convert(ConvertConfig(source=str(residual_model), dataset=mnist5k.spec, int8=True,
                                    out=str(tmp_path / "ptq")))
    assert (tmp_path / "model_int8.tflite").read_bytes() == ptq.artifacts["int8_tflite"].read_bytes()
    # validate does not fail the run on the file that is not shipped.
    validate = run_cli_in_process("validate", tmp_path, "--backends", "keras,litert-ref",
                                  "--limit", "200")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert not any(row["artifact"] == "model_finetuned_int8.tflite" for row in parity["pairs"])


def test_qat_drop_is_split_into_fine_tuning_and_quantization(qat_converted_run, mnist5k):
    """model_finetuned_float.tflite holds the weights the fine-tuned int8 file was quantized
    from; the report splits that file's drop against it, and the gate stays on the total."""
    from edgeship.tflite_graph import read_graph

    out = qat_converted_run.out_dir
    report = json.loads((out / "convert_report.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    tuned_name = manifest["convert"]["fine_tuned_files"][0]
    rows = {row["file"]: row for row in report["artifacts"]}
    tuned, tuned_float = rows[tuned_name], rows["model_finetuned_float.tflite"]
    assert tuned["float_reference"] == "model_finetuned_float.tflite"
    assert tuned["fine_tuning_pp"] == pytest.approx(tuned_float["drop_pp"], abs=1e-9)
    assert tuned["fine_tuning_pp"] + tuned["quantization_pp"] == pytest.approx(tuned["drop_pp"])
    # The fine-tuned float model's accuracy, recomputed outside edgeship's runtime code.
    predicted = _accuracy_of_tflite(out / "model_finetuned_float.tflite", mnist5k.x_test,
                                    mnist5k.y_test)
    assert np.mean(predicted == mnist5k.y_test) == pytest.approx(tuned_float["accuracy"])
    post = rows[next(name for name in ("model_ptq_int8.tflite", "model_int8.tflite")
                     if name != tuned_name)]
    assert post["float_reference"] == "model_float.tflite" and post["fine_tuning_pp"] is None
    # Same weights: the int8 file's first convolution dequantizes to the fine-tuned float
    # kernel within half a quantum, not to the kernel from before the fine-tune.
    def first_kernel(path):
        graph = read_graph(path.read_bytes())
        op = next(op for op in graph.operators if op.name == "CONV_2D")
        return graph.tensors[op.inputs[1]]

    weights = first_kernel(out / tuned_name)
    dequantized = (weights.data.astype(np.float64) - weights.zero_point) * weights.scale
    tuned_kernel = first_kernel(out / "model_finetuned_float.tflite").data
    trained_kernel = first_kernel(out / "model_float.tflite").data
    assert np.abs(dequantized - tuned_kernel).max() <= weights.scale / 2 + 1e-6
    assert np.abs(dequantized - trained_kernel).max() > weights.scale
    text = (out / "convert_report.md").read_text()
    assert "| fine-tuning (pp) | quantization (pp) | float reference |" in text
    assert f"| `{tuned_name}` | litert |" in text and "`model_finetuned_float.tflite` |" in text


def _grid_error(weights, limit, axis=None):
    """Squared error of weights on the symmetric int8 grid of range limit (clipped beyond)."""
    step = np.asarray(limit, np.float64) / 127.0
    if axis is not None:
        step = step.reshape([1] * (weights.ndim - 1) + [-1])
    grid = np.clip(np.round(weights / step), -127, 127) * step
    return float(np.sum((grid - weights) ** 2))


def test_mse_weight_range_clips_outliers_to_the_least_squared_error():
    """QAT's weight ranges (convert/qat.py mse_weight_range): one outlier no longer sets the
    grid of the whole tensor; without outliers the range stays the largest magnitude."""
    import tensorflow as tf

    from edgeship.convert.qat import WEIGHT_RANGE_RATIOS, mse_weight_range

    rng = np.random.default_rng(0)
    weights = rng.normal(0.0, 0.05, size=(5, 5, 16, 120))
    weights.flat[7] = 0.5  # 10x the spread: lenet5's c5 had its largest weight 8x its RMS
    limit = float(mse_weight_range(tf.constant(weights, tf.float32), per_channel=False))
    largest = float(np.abs(weights).max())
    assert limit < 0.8 * largest
    errors = {ratio: _grid_error(weights, ratio * largest) for ratio in WEIGHT_RANGE_RATIOS}
    assert _grid_error(weights, limit) <= min(errors.values()) * (1 + 1e-4)
    assert _grid_error(weights, limit) < 0.85 * _grid_error(weights, largest)  # measured 0.80
    # per channel: each channel's own search; an even spread keeps its largest magnitude
    even = np.tile(np.linspace(-1.0, 1.0, 255)[:, None], (1, 3)) * np.array([1.0, 2.0, 3.0])
    limits = mse_weight_range(tf.constant(even, tf.float32), per_channel=True).numpy()
    np.testing.assert_allclose(limits, [1.0, 2.0, 3.0], rtol=1e-6)


def test_qat_file_weights_sit_on_mse_grids_of_the_fine_tuned_weights(qat_converted_run):
    """Every weight tensor of the QAT int8 file is quantized at least as closely to the
    fine-tuned float weights as the min/max grid would (issue 28: QAT's layers at least as
    good as post-training int8's against their own float reference)."""
    from edgeship.tflite_graph import align_ops, graph_ops, read_graph

    out = qat_converted_run.out_dir
    convert = json.loads((out / "manifest.json").read_text())["convert"]
    tuned = (out / convert["fine_tuned_files"][0]).read_bytes()
    tuned_float = (out / "model_finetuned_float.tflite").read_bytes()
    int8_graph, float_graph = read_graph(tuned), read_graph(tuned_float)
    int8_ops = graph_ops(tuned)
    same_op = align_ops(int8_ops, graph_ops(tuned_float))
    checked = 0
    for op in int8_ops:
        if op.op not in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D"):
            continue
        quantized = int8_graph.tensors[int8_graph.operators[op.index].inputs[1]]
        reference = float_graph.tensors[float_graph.operators[same_op[op.index].index].inputs[1]]
        weights = np.asarray(reference.data, np.float64)
        scale = np.asarray(quantized.scales, np.float64)
        levels = np.asarray(quantized.data, np.float64)
        if scale.size > 1:  # per channel along the first (output) axis
            scale = scale.reshape([-1] + [1] * (weights.ndim - 1))
        file_error = float(np.sum((levels * scale - weights) ** 2))
        min_max_error = _grid_error(weights, np.abs(weights).max())
        assert file_error <= min_max_error * 1.01, (op, file_error, min_max_error)
        checked += 1
    assert checked == 5


# Ops whose output range tfmot learns (a Conv/Dense activation, the logits before softmax);
# pools and reshapes share their input's range and softmax's is fixed.
LEARNED_RANGE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def test_qat_activation_ranges_are_the_fine_tuned_weights_own(qat_converted_run, mnist5k):
    """Each activation range of the QAT int8 file is the min/max of the fine-tuned float
    model's activation on convert's calibration images: post-training calibration's rule, on
    the weights the file holds (issue 28: tfmot's moving averages trailed the fine-tune, and
    the logits' range clipped them, 4 dB below post-training int8)."""
    from edgeship.layer_error import capture_reference_tensors
    from edgeship.tflite_graph import align_ops, graph_ops, read_graph
    from edgeship.train.datasets import class_balanced_indices

    out = qat_converted_run.out_dir
    convert = json.loads((out / "manifest.json").read_text())["convert"]
    tuned = (out / convert["fine_tuned_files"][0]).read_bytes()
    tuned_float = (out / "model_finetuned_float.tflite").read_bytes()
    options = convert["options"]
    calibration = mnist5k.x_train[class_balanced_indices(
        mnist5k.y_train, options["calibration_samples"], options["seed"])]
    activations = capture_reference_tensors(tuned_float, np.asarray(calibration, np.float32))
    tensors = read_graph(tuned).tensors
    int8_ops = graph_ops(tuned)
    same_op = align_ops(int8_ops, graph_ops(tuned_float))
    checked = []
    for op in int8_ops:
        if op.op not in LEARNED_RANGE_OPS:
            continue
        value = activations[same_op[op.index].output_tensor]
        low, high = min(float(value.min()), 0.0), max(float(value.max()), 0.0)
        tensor = tensors[op.output_tensor]
        scale, zero_point = tensor.scale, tensor.zero_point
        # The converter nudges the range so that zero is a level: up to a quantum off.
        assert abs((-128 - zero_point) * scale - low) <= scale, (op, low, zero_point, scale)
        assert abs((127 - zero_point) * scale - high) <= scale, (op, high, zero_point, scale)
        checked.append(op.op)
    assert checked.count("FULLY_CONNECTED") == 2 and checked.count("CONV_2D") == 3, checked


@pytest.mark.parametrize("delivered", ["fine-tuned", "post-training"])
def test_int16_and_mixed_files_take_the_reference_of_the_weights_they_hold(tmp_path, delivered):
    """--activations with --qat: the int16 or mixed file is quantized from the float file
    model_int8.tflite came from, so after a delivered fine-tune it is measured against
    model_finetuned_float.tflite, like model_int8.tflite and its XNNPACK rewrite (issue 28)."""
    from edgeship.convert.finetune import Delivery
    from edgeship.convert.run import _fine_tuned_files, _float_references

    names = ["model_float.tflite", "model_finetuned_float.tflite", "model_int8.tflite",
             "model_int8_xnnpack.tflite", "model_mixed.tflite", "model_int16.tflite",
             "model_ptq_int8.tflite", "model_finetuned_int8.tflite", "model.onnx",
             "model_int8.onnx"]
    written = {name: tmp_path / name for name in names}
    delivery = Delivery(delivered=delivered, fine_tune="QAT 1 epoch", selection_images=100,
                        selection_seed=0, accuracy={"post-training": 0.9, "fine-tuned": 0.91})
    references = _float_references(written, _fine_tuned_files(delivery, written))
    tuned = "model_finetuned_float.tflite"
    if delivered == "fine-tuned":
        expected = {"model_int8.tflite": tuned, "model_int8_xnnpack.tflite": tuned,
                    "model_mixed.tflite": tuned, "model_int16.tflite": tuned,
                    "model_ptq_int8.tflite": "model_float.tflite"}
    else:
        expected = {"model_int8.tflite": "model_float.tflite",
                    "model_int8_xnnpack.tflite": "model_float.tflite",
                    "model_mixed.tflite": "model_float.tflite",
                    "model_int16.tflite": "model_float.tflite",
                    "model_finetuned_int8.tflite": tuned}
    for name, reference in expected.items():
        assert references[name] == reference, name
    assert references["model_int8.onnx"] == "model.onnx"
