"""Int8 weight granularity: `auto` measures per-channel and per-tensor and applies its rule."""

import json
import shutil

import numpy as np
import pytest

from edgeship.convert.granularity import (
    class_probabilities, looks_like_probabilities, output_error, selection_indices,
    within_tolerance)
from edgeship.convert.run import ConvertConfig, run_convert
from edgeship.convert.tflite import open_interpreter, tensor_types_by_op, weight_scale_counts
from tests.conftest import run_cli


def _probabilities(path, images):
    """Independent recomputation: a bare interpreter loop, dequantized by hand."""
    interpreter = open_interpreter(path.read_bytes())
    detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for image in images:
        value = image[np.newaxis]
        if detail_in["dtype"] != np.float32:
            scale, zero_point = detail_in["quantization"]
            value = np.clip(np.round(value / scale) + zero_point, -128, 127)
        interpreter.set_tensor(detail_in["index"], value.astype(detail_in["dtype"]))
        interpreter.invoke()
        row = interpreter.get_tensor(detail_out["index"])[0].astype(np.float64)
        if detail_out["dtype"] != np.float32:
            scale, zero_point = detail_out["quantization"]
            row = (row - zero_point) * scale
        rows.append(row)
    return np.asarray(rows)


def _output_channels(path):
    interpreter = open_interpreter(path.read_bytes(), reference_kernels=True)
    return {detail["name"]: int(detail["shape"][0]) for detail in interpreter.get_tensor_details()}


def test_auto_measures_both_and_applies_its_rule(converted_run, mnist5k):
    out = converted_run.out_dir
    choice = converted_run.report["weight_granularity"]
    candidates = {entry["granularity"]: entry for entry in choice["candidates"]}
    assert choice["requested"] == "auto" and set(candidates) == {"per-channel", "per-tensor"}
    channel, tensor = candidates["per-channel"], candidates["per-tensor"]
    # lenet5 has 214 output channels in CONV/FC layers: 24 bytes each (weight and bias scale
    # and zero point) less the per-tensor entries.
    assert channel["bytes"] - tensor["bytes"] > 4000
    expected = ("per-tensor" if within_tolerance(tensor["output_error"], channel["output_error"])
                else "per-channel")
    assert choice["chosen"] == expected
    int8_path = out / "model_int8.tflite"
    assert int8_path.stat().st_size == candidates[expected]["bytes"]
    counts = weight_scale_counts(int8_path.read_bytes())
    if expected == "per-tensor":
        assert set(counts.values()) == {1}
    else:
        assert max(counts.values()) > 1
    # The recorded measurement of the chosen file, recomputed on the same training images.
    images = mnist5k.x_train[selection_indices(len(mnist5k.x_train), seed=0)]
    assert choice["selection_images"] == len(images) == 1000
    reference = _probabilities(out / "model_float.tflite", images)
    assert looks_like_probabilities(reference)
    chosen = _probabilities(int8_path, images)
    assert output_error(chosen, reference) == pytest.approx(
        candidates[expected]["output_error"], abs=1e-5)
    assert int(np.sum(chosen.argmax(1) != reference.argmax(1))) == \
        candidates[expected]["disagreements"]
    assert 0 < channel["output_error"] < 0.05 and 0 < tensor["output_error"] < 0.05
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["convert"]["weight_granularity"]["chosen"] == expected
    assert f"Int8 weights: **{expected}**, auto: " in (out / "convert_report.md").read_text()


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
    from edgeship.pipeline import config_from_sources

    with pytest.raises(ValueError, match="weight granularity must be one of auto, per-channel"):
        config_from_sources({"weight_granularity": "per-row"}, {})
