"""Int8 weight granularity: `auto` measures per-channel and per-tensor and applies its rule."""

import json
import shutil

import numpy as np
import pytest

from edgeship.convert.granularity import (
    Candidate,
    GranularityChoice,
    _search_mix,
    choose_fine_tuned,
    class_probabilities,
    looks_like_probabilities,
    output_error,
    selection_indices,
    splice_per_tensor_layers,
    weighted_layers,
    within_tolerance,
)
from edgeship.convert.run import ConvertConfig, run_convert
from edgeship.convert.tflite import open_interpreter, tensor_types_by_op, weight_scale_counts
from tests.helpers import quantize_by_hand, run_cli


def _probabilities(path, images):
    """Independent recomputation: a bare interpreter loop, dequantized by hand."""
    interpreter = open_interpreter(path.read_bytes())
    detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for image in images:
        interpreter.set_tensor(detail_in["index"], quantize_by_hand(detail_in, image))
        interpreter.invoke()
        row = interpreter.get_tensor(detail_out["index"])[0].astype(np.float64)
        if detail_out["dtype"] != np.float32:
            scale, zero_point = detail_out["quantization"]
            row = (row - zero_point) * scale
        rows.append(row)
    return np.asarray(rows)


def _output_channels(path):
    """Output channels of each tensor: dimension 0, or 3 for a depthwise kernel [1, H, W, C]."""
    interpreter = open_interpreter(path.read_bytes(), reference_kernels=True)
    return {detail["name"]: int(detail["shape"][3] if len(detail["shape"]) == 4
                                and detail["shape"][0] == 1 else detail["shape"][0])
            for detail in interpreter.get_tensor_details()}


def _expected_choice(candidates: dict) -> str:
    """The `auto` rule applied to the recorded numbers."""
    channel, tensor = candidates["per-channel"], candidates["per-tensor"]
    if tensor["bytes"] < channel["bytes"] and within_tolerance(tensor["output_error"],
                                                              channel["output_error"]):
        return "per-tensor"
    mixed = candidates.get("mixed")
    if mixed is not None:
        assert mixed["per_tensor_layers"] and mixed["bytes"] < channel["bytes"]
        assert within_tolerance(mixed["output_error"], channel["output_error"])
        return "mixed"
    return "per-channel"


def _check_auto_choice(out, report, train_images, int8_name="model_int8.tflite"):
    """The chosen file is the recorded candidate, and its recorded measurement recomputes."""
    choice = report["weight_granularity"]
    candidates = {entry["granularity"]: entry for entry in choice["candidates"]}
    assert choice["requested"] == "auto"
    assert {"per-channel", "per-tensor"} <= set(candidates) <= {"per-channel", "per-tensor", "mixed"}
    expected = _expected_choice(candidates)
    assert choice["chosen"] == expected
    assert choice["mix_searched"] == (expected != "per-tensor")
    int8_path = out / int8_name
    assert int8_path.stat().st_size == candidates[expected]["bytes"]
    counts = weight_scale_counts(int8_path.read_bytes())
    channels = _output_channels(int8_path)
    assert sorted(counts) == sorted(choice["layers"])
    per_tensor = {"per-tensor": set(counts), "per-channel": set(),
                  "mixed": set(candidates.get("mixed", {}).get("per_tensor_layers", []))}[expected]
    for name, count in counts.items():
        assert count == (1 if name in per_tensor else channels[name]), name
    images = train_images[selection_indices(len(train_images), seed=0)]
    assert choice["selection_images"] == len(images) == 1000
    reference = _probabilities(out / "model_float.tflite", images)
    assert looks_like_probabilities(reference)
    chosen = _probabilities(int8_path, images)
    assert output_error(chosen, reference) == pytest.approx(
        candidates[expected]["output_error"], abs=1e-5)
    assert int(np.sum(chosen.argmax(1) != reference.argmax(1))) == \
        candidates[expected]["disagreements"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["convert"]["weight_granularity"]["chosen"] == expected
    assert (f"Post-training int8 weights: **{expected}**, auto: "
            in (out / "convert_report.md").read_text())
    return expected, candidates


def test_auto_measures_both_and_applies_its_rule(converted_run, mnist5k):
    _, candidates = _check_auto_choice(converted_run.out_dir, converted_run.report,
                                       mnist5k.x_train)
    channel, tensor = candidates["per-channel"], candidates["per-tensor"]
    # lenet5 has 214 output channels in CONV/FC layers: 24 bytes each (weight and bias scale
    # and zero point) less the per-tensor entries.
    assert channel["bytes"] - tensor["bytes"] > 4000
    assert 0 < channel["output_error"] < 0.05 and 0 < tensor["output_error"] < 0.05


@pytest.fixture(scope="module")
def lenet5_both(trained_run, mnist5k):
    """The session lenet5 converted per-channel and per-tensor with one calibration."""
    import tf_keras

    from edgeship.convert.tflite import export_tflite

    model = tf_keras.models.load_model(trained_run.run_dir / "model.keras")
    calibration = mnist5k.x_train[:100]
    return (export_tflite(model, calibration, "int8", per_tensor_weights=False),
            export_tflite(model, calibration, "int8", per_tensor_weights=True),
            export_tflite(model, mnist5k.x_train[100:150], "int8", per_tensor_weights=True))


def _int8_outputs(data, images):
    interpreter = open_interpreter(data, reference_kernels=True)
    detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = detail_in["quantization"]
    rows = []
    for image in images:
        interpreter.set_tensor(detail_in["index"], np.clip(
            np.round(image[np.newaxis] / scale) + zero_point, -128, 127).astype(np.int8))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(detail_out["index"])[0].copy())
    return np.asarray(rows)


def test_splice_takes_exactly_the_named_layers(lenet5_both, mnist5k):
    per_channel, per_tensor, _ = lenet5_both
    layers = weighted_layers(per_channel)
    assert len(layers) == 5 and layers == weighted_layers(per_tensor)
    images = mnist5k.x_test[:40]
    # None spliced: the per-channel file's computation; all: the per-tensor file's, bit for bit.
    np.testing.assert_array_equal(
        _int8_outputs(splice_per_tensor_layers(per_channel, per_tensor, ()), images),
        _int8_outputs(per_channel, images))
    every = splice_per_tensor_layers(per_channel, per_tensor, set(layers))
    np.testing.assert_array_equal(_int8_outputs(every, images), _int8_outputs(per_tensor, images))
    assert set(weight_scale_counts(every).values()) == {1}
    first = splice_per_tensor_layers(per_channel, per_tensor, {layers[0]})
    counts, channel_counts = weight_scale_counts(first), weight_scale_counts(per_channel)
    assert counts[layers[0]] == 1
    assert all(counts[name] == channel_counts[name] > 1 for name in layers[1:])
    # One layer's weight and bias entries: 24 bytes per output channel, less one of each.
    assert len(per_channel) - len(first) == pytest.approx(24 * (channel_counts[layers[0]] - 1),
                                                          abs=16)


def test_splice_refuses_files_of_different_calibrations(lenet5_both):
    per_channel, _, other_calibration = lenet5_both
    with pytest.raises(ValueError, match="differs between the two int8 files"):
        splice_per_tensor_layers(per_channel, other_calibration, ())
    with pytest.raises(ValueError, match="no weighted layer named nope"):
        splice_per_tensor_layers(per_channel, lenet5_both[1], {"nope"})


def test_mix_search_keeps_the_costly_layer_per_channel(lenet5_both):
    per_channel, per_tensor, _ = lenet5_both
    layers = weighted_layers(per_channel)
    costly = layers[1]
    penalty = {name: (0.004 if name == costly else 0.00002) for name in layers}

    def measure(granularity, data, per_tensor_layers=()):
        error = 0.01 + sum(penalty[name] for name in per_tensor_layers)
        return Candidate(granularity, len(data), error, 0, tuple(per_tensor_layers))

    channel = measure("per-channel", per_channel)
    searched, mixed, data = _search_mix(per_channel, per_tensor, layers, channel, 0.10, measure)
    assert searched
    assert mixed.per_tensor_layers == tuple(name for name in layers if name != costly)
    assert weight_scale_counts(data)[costly] > 1
    assert len(data) == mixed.bytes < channel.bytes
    # A bound nothing but per-channel meets: no mix.
    searched, mixed, data = _search_mix(per_channel, per_tensor, layers, channel, 0.0, measure)
    assert searched and mixed is None and data is None


def _with_scaled_weight(data: bytes, layer: str, factor: float) -> bytes:
    """A file whose named weight tensor dequantizes `factor` times larger: a wrecked layer."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    for tensor in model.subgraphs[0].tensors:
        if tensor.name.decode() == layer:
            tensor.quantization.scale = np.asarray(tensor.quantization.scale) * factor
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def test_fine_tuned_granularity_is_measured_on_the_fine_tuned_files(
        lenet5_both, trained_run, mnist5k, tmp_path):
    """Post-training per-tensor does not carry over: a per-tensor fine-tune that breaks loses."""
    per_channel, per_tensor, _ = lenet5_both
    shutil.copy(trained_run.run_dir / "model.keras", tmp_path / "model.keras")
    import tf_keras

    from edgeship.convert.tflite import export_tflite

    float_bytes = export_tflite(tf_keras.models.load_model(tmp_path / "model.keras"))
    wrecked = _with_scaled_weight(per_tensor, weighted_layers(per_tensor)[1], 8.0)
    trained = []

    def train_and_export(files):
        def run(per_tensor_weights):
            trained.append(per_tensor_weights)
            return files[per_tensor_weights], float_bytes
        return run

    post_training = GranularityChoice(requested="auto", chosen="per-tensor")
    choice, data, reference = choose_fine_tuned(
        "auto", post_training, train_and_export({False: per_channel, True: wrecked}),
        mnist5k.x_train, seed=0)
    assert trained == [False, True] and reference == float_bytes
    assert (choice.chosen, choice.measured_on, data) == ("per-channel", "fine-tuned", per_channel)
    channel, tensor = choice.candidates
    assert tensor.output_error > 3 * channel.output_error
    assert "beyond" in choice.reason()
    # The same measurement with the healthy per-tensor file follows the rule.
    trained.clear()
    choice, data, _ = choose_fine_tuned(
        "auto", post_training, train_and_export({False: per_channel, True: per_tensor}),
        mnist5k.x_train, seed=0)
    channel, tensor = choice.candidates
    expected = ("per-tensor" if within_tolerance(tensor.output_error, channel.output_error)
                else "per-channel")
    assert choice.chosen == expected and data == {"per-channel": per_channel,
                                                  "per-tensor": per_tensor}[expected]
    # After a mixed or per-channel post-training choice only per-channel is trained.
    trained.clear()
    choice, data, _ = choose_fine_tuned(
        "auto", GranularityChoice(requested="auto", chosen="mixed"),
        train_and_export({False: per_channel, True: wrecked}), mnist5k.x_train, seed=0)
    assert trained == [False] and choice.chosen == "per-channel" and data == per_channel
    assert "post-training int8 is mixed" in choice.reason()


@pytest.mark.slow  # ~30-60 s on 2 cores; the default suite keeps under 20 minutes
def test_dscnn_auto_mixes_granularity_by_measurement(tmp_path, mnist5k):
    """A depthwise-separable model, where per-tensor weights cost the most fidelity."""
    from edgeship.train.fit import TrainConfig, train

    train(TrainConfig(model="dscnn", dataset=mnist5k.spec, out=str(tmp_path), epochs=2),
          dataset=mnist5k)
    result = run_convert(ConvertConfig(source=str(tmp_path), int8=True, qat_epochs=1,
                                       calibration_samples=200))
    expected, candidates = _check_auto_choice(tmp_path, result.report, mnist5k.x_train,
                                              "model_ptq_int8.tflite")
    assert candidates["per-channel"]["bytes"] - candidates["per-tensor"]["bytes"] > 10000
    rows = {row["file"]: row for row in result.report["artifacts"]}
    assert rows["model_ptq_int8.tflite"]["drop_pp"] <= 1.0
    choice = result.report["weight_granularity"]
    tuned_choice = result.report["fine_tuned_weight_granularity"]
    assert tuned_choice["measured_on"] == "fine-tuned"
    assert result.report["delivery"]["delivered"] == "fine-tuned"
    assert rows["model_int8.tflite"]["drop_pp"] <= 1.0
    qat_counts = weight_scale_counts((tmp_path / "model_int8.tflite").read_bytes())
    conv_counts = [count for name, count in qat_counts.items()
                   if "Conv2D" in name or "depthwise" in name]
    text = (tmp_path / "convert_report.md").read_text()
    if expected == "mixed":
        kept = set(choice["layers"]) - set(candidates["mixed"]["per_tensor_layers"])
        assert all(f"`{name}`" in text for name in kept)
    if expected != "per-tensor":
        # QAT trains one scheme for the whole model: tfmot's default, conv weights per channel.
        assert tuned_choice["chosen"] == "per-channel" and not tuned_choice["candidates"]
        assert "Fine-tuned int8 weights: **per-channel**" in text
        assert len(conv_counts) == 9 and min(conv_counts) == 64
    else:
        # Both fine-tunes trained and measured; the file follows the measured choice.
        assert {c["granularity"] for c in tuned_choice["candidates"]} == {"per-channel",
                                                                          "per-tensor"}
        assert len(conv_counts) == 9
        assert (max(conv_counts) == 1) == (tuned_choice["chosen"] == "per-tensor")


@pytest.mark.parametrize("granularity", ["per-channel", "per-tensor"])
def test_forced_granularity(tmp_path, trained_run, converted_run, granularity):
    result = run_convert(ConvertConfig(source=str(trained_run.run_dir), int8=True,
                                       weight_granularity=granularity, calibration_samples=50,
                                       out=str(tmp_path)))
    path = result.artifacts["int8_tflite"]
    counts = weight_scale_counts(path.read_bytes())
    assert len(counts) == 5
    channels = _output_channels(path)
    for name, count in counts.items():
        assert count == (channels[name] if granularity == "per-channel" else 1), name
    choice = result.report["weight_granularity"]
    assert (choice["requested"], choice["chosen"], choice["candidates"]) == (
        granularity, granularity, [])
    # Sizes follow the structure, not the calibration: the same bytes auto measured.
    measured = {entry["granularity"]: entry["bytes"]
                for entry in converted_run.report["weight_granularity"]["candidates"]}
    assert path.stat().st_size == measured[granularity]
    rows = {row["file"]: row for row in result.report["artifacts"]}
    assert rows["model_int8.tflite"]["drop_pp"] <= 1.5


def test_prune_and_qat_follow_per_tensor_without_requantize_ops(tmp_path, trained_run):
    shutil.copytree(trained_run.run_dir, tmp_path / "run")
    result = run_convert(ConvertConfig(source=str(tmp_path / "run"), int8=True, qat_epochs=1,
                                       prune_sparsity=0.5, prune_epochs=1,
                                       weight_granularity="per-tensor", calibration_samples=50))
    qat_bytes = result.artifacts["int8_tflite"].read_bytes()
    assert set(weight_scale_counts(qat_bytes).values()) == {1}
    rows = {row["file"]: row for row in result.report["artifacts"]}
    assert rows["model_int8.tflite"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    # Average pools keep their input's range under QAT too: the same ops as post-training
    # int8, no int8 -> int8 QUANTIZE after each pool.
    ptq_ops = [op["op"] for op in tensor_types_by_op(result.artifacts["ptq_int8_tflite"].read_bytes())]
    assert [op["op"] for op in tensor_types_by_op(qat_bytes)] == ptq_ops
    assert "QUANTIZE" not in ptq_ops


def test_rule_and_probabilities():
    assert within_tolerance(0.0110, 0.0100) and not within_tolerance(0.0111, 0.0100)
    logits = np.array([[2.0, 1.0, -1.0], [0.0, 0.0, 0.0]])
    assert not looks_like_probabilities(logits)
    probabilities = class_probabilities(logits, already_probabilities=False)
    assert looks_like_probabilities(probabilities)
    assert probabilities[1] == pytest.approx([1 / 3] * 3)
    assert output_error(probabilities, probabilities) == 0
    assert output_error(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == 1
    assert not np.array_equal(selection_indices(4000, 0), selection_indices(4000, 1))
    assert len(set(selection_indices(4000, 0))) == 1000


def test_an_unknown_granularity_is_refused_before_any_work(tmp_path):
    result = run_cli("convert", str(tmp_path), "--int8", "--weight-granularity", "per-row")
    assert result.returncode == 2
    assert "invalid choice: 'per-row'" in result.stderr
    from edgeship.pipeline_config import config_from_sources

    with pytest.raises(ValueError, match="weight granularity must be one of auto, per-channel"):
        config_from_sources({"convert": {"weight_granularity": "per-row"}}, {})
