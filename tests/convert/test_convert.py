import gzip
import json
import shutil

import numpy as np
import pytest

from edgeship.artifacts import sha256_file
from edgeship.convert.run import ConvertConfig, run_convert
from edgeship.convert.tflite import (
    describe_io,
    open_interpreter,
    tensor_types_by_op,
    weight_sparsity,
)
from tests.helpers import run_cli


def _accuracy_of_tflite(path, images, labels):
    """Independent recomputation: a bare interpreter loop, no edgeship runtime code."""
    interpreter = open_interpreter(path.read_bytes())
    detail_in = interpreter.get_input_details()[0]
    detail_out = interpreter.get_output_details()[0]
    scale, zero_point = detail_in["quantization"]
    predictions = []
    for image in images:
        value = image[np.newaxis]
        if detail_in["dtype"] != np.float32:
            info = np.iinfo(detail_in["dtype"])
            value = np.clip(np.round(value / scale) + zero_point, info.min, info.max)
        interpreter.set_tensor(detail_in["index"], value.astype(detail_in["dtype"]))
        interpreter.invoke()
        predictions.append(int(np.argmax(interpreter.get_tensor(detail_out["index"])[0])))
    return np.asarray(predictions)


def test_ptq_writes_every_artifact_and_manifest(converted_run):
    out = converted_run.out_dir
    for name in ("model_float.tflite", "model_int8.tflite", "model.onnx", "model_int8.onnx",
                 "convert_report.json", "convert_report.md"):
        assert (out / name).stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    for name in ("model_int8.tflite", "model_int8.onnx", "convert_report.json"):
        assert manifest["artifacts"][name]["sha256"] == sha256_file(out / name)
    io = describe_io((out / "model_int8.tflite").read_bytes())
    recorded = manifest["convert"]["int8_io"]
    assert recorded["input"]["dtype"] == "int8" and recorded["output"]["dtype"] == "int8"
    assert recorded["input"]["scale"] == pytest.approx(io["input"].scale)
    assert recorded["input"]["zero_point"] == io["input"].zero_point
    assert recorded["output"]["scale"] == pytest.approx(io["output"].scale)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_int8_file_is_int8_end_to_end(converted_run):
    operators = tensor_types_by_op((converted_run.out_dir / "model_int8.tflite").read_bytes())
    assert {op["op"] for op in operators} >= {"CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D"}
    for op in operators:
        assert set(op["dtypes"]) <= {"int8", "int32"}, op
    assert "QUANTIZE" not in {op["op"] for op in operators}


def test_report_numbers_match_an_independent_recomputation(converted_run, mnist5k):
    out = converted_run.out_dir
    rows = {row["file"]: row for row in converted_run.report["artifacts"]}
    import tf_keras

    reference = np.argmax(tf_keras.models.load_model(out / "model.keras").predict(
        mnist5k.x_test, verbose=0), axis=1)
    predicted = _accuracy_of_tflite(out / "model_int8.tflite", mnist5k.x_test, mnist5k.y_test)
    row = rows["model_int8.tflite"]
    assert row["accuracy"] == pytest.approx(np.mean(predicted == mnist5k.y_test), abs=1e-9)
    assert row["agreement"] == pytest.approx(np.mean(predicted == reference), abs=1e-9)
    reference_accuracy = np.mean(reference == mnist5k.y_test)
    assert rows["model.keras"]["accuracy"] == pytest.approx(reference_accuracy, abs=1e-9)
    assert row["drop_pp"] == pytest.approx((reference_accuracy - row["accuracy"]) * 100, abs=1e-9)
    data = (out / "model_int8.tflite").read_bytes()
    assert row["bytes"] == len(data)
    assert row["gzipped_bytes"] == len(gzip.compress(data, compresslevel=9, mtime=0))
    label = 3
    mask = mnist5k.y_test == label
    change = (np.mean(predicted[mask] == label) - np.mean(reference[mask] == label)) * 100
    assert row["class_accuracy_change_pp"][label] == pytest.approx(change, abs=1e-3)
    # Post-training int8 keeps the accuracy and the float exports agree with Keras.
    assert row["drop_pp"] <= 1.5
    assert rows["model_float.tflite"]["agreement"] >= 0.999
    assert rows["model.onnx"]["agreement"] >= 0.999
    assert rows["model_int8.onnx"]["drop_pp"] <= 1.5
    assert row["bytes"] <= 0.3 * rows["model_float.tflite"]["bytes"]
    markdown = (out / "convert_report.md").read_text()
    assert "| `model_int8.tflite` | litert |" in markdown


@pytest.fixture(scope="module")
def pruned_qat_run(tmp_path_factory, trained_run):
    run_dir = tmp_path_factory.mktemp("pruned") / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    return run_convert(ConvertConfig(source=str(run_dir), int8=True, qat_epochs=1,
                                     prune_sparsity=0.75, prune_epochs=1,
                                     calibration_samples=100))


def test_prune_and_qat_keep_sparsity_in_the_int8_file(pruned_qat_run):
    out = pruned_qat_run.out_dir
    per_tensor = weight_sparsity((out / "model_int8.tflite").read_bytes())
    assert len(per_tensor) == 5
    for name, sparsity in per_tensor.items():
        assert sparsity == pytest.approx(0.75, abs=0.01), name
    rows = {row["file"]: row for row in pruned_qat_run.report["artifacts"]}
    assert rows["model_int8.tflite"]["sparsity"] >= 0.74
    assert rows["model_ptq_int8.tflite"]["sparsity"] < 0.1
    assert rows["model_int8.tflite"]["drop_pp"] <= 2.0
    assert rows["model_int8.tflite"]["gzipped_bytes"] < 0.6 * rows["model_ptq_int8.tflite"]["gzipped_bytes"]
    operators = tensor_types_by_op((out / "model_int8.tflite").read_bytes())
    assert all(set(op["dtypes"]) <= {"int8", "int32"} for op in operators)


def test_two_four_structured_sparsity(tmp_path, trained_run):
    shutil.copytree(trained_run.run_dir, tmp_path / "run")
    result = run_convert(ConvertConfig(source=str(tmp_path / "run"), int8=True,
                                       prune_structure="2:4", prune_epochs=1,
                                       calibration_samples=50))
    interpreter = open_interpreter(result.artifacts["int8_tflite"].read_bytes())
    checked = 0
    for op in interpreter._get_ops_details():
        if op["op_name"] not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        weights = interpreter.get_tensor(op["inputs"][1])
        if weights.shape[-1] % 4:
            continue
        blocks = weights.reshape(weights.shape[0], -1, 4)
        assert ((blocks != 0).sum(axis=-1) <= 2).all()
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("io_type", ["uint8", "float32"])
def test_io_types(tmp_path, trained_run, io_type):
    result = run_convert(ConvertConfig(source=str(trained_run.run_dir), int8=True, io_type=io_type,
                                       calibration_samples=50, out=str(tmp_path)))
    io = describe_io(result.artifacts["int8_tflite"].read_bytes())
    assert io["input"].dtype == io_type and io["output"].dtype == io_type
    rows = {row["file"]: row for row in result.report["artifacts"]}
    assert rows["model_int8.tflite"]["drop_pp"] <= 1.5


def test_bare_model_file_needs_dataset(tmp_path, trained_run):
    model = tmp_path / "mine.keras"
    shutil.copy(trained_run.run_dir / "model.keras", model)
    result = run_cli("convert", model, "--int8")
    assert result.returncode == 2
    assert "needs --dataset" in result.stderr
    result = run_cli("convert", model, "--int8", "--dataset", "mnist5k",
                     "--calibration-samples", "20")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model_int8.tflite").is_file()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["train"]["dataset"]["spec"]["name"] == "mnist5k"


def test_max_drop_gate(tmp_path, trained_run):
    shutil.copytree(trained_run.run_dir, tmp_path / "run")
    run = tmp_path / "run"
    failing = run_cli("convert", run, "--int8", "--calibration-samples", "1", "--max-drop", "0")
    report = json.loads((run / "convert_report.json").read_text())
    drop = {row["file"]: row["drop_pp"] for row in report["artifacts"]}["model_int8.tflite"]
    assert drop > 0, "calibrating on one image should cost accuracy"
    assert failing.returncode == 1
    assert "accuracy drop above --max-drop 0.0 pp: model_int8.tflite drops" in failing.stderr
    passing = run_cli("convert", run, "--int8", "--calibration-samples", "1",
                      "--max-drop", f"{drop + 0.01:.3f}")
    assert passing.returncode == 0, passing.stderr


def test_streamed_run_gives_the_in_memory_numbers(tmp_path, monkeypatch):
    """A tiny folder forced to stream through train -> convert -> validate: same numbers."""
    from edgeship.firmware import collect_samples
    from edgeship.inspect import InspectConfig, run_inspect
    from edgeship.run_dir import RunDir
    from edgeship.runtime.parity import ValidateConfig, validate_run
    from edgeship.runtime.parity_checks import Tolerances
    from edgeship.runtime.serve_demo import _test_images
    from edgeship.train.datasets import DatasetSpec
    from edgeship.train.fit import TrainConfig, train
    from tests.train.test_stream import write_image_folder

    folder = write_image_folder(tmp_path / "images", per_class=10)
    spec = DatasetSpec(name=f"folder:{folder}", image_size=(12, 12), channels=3, seed=0)
    reports = {}
    for mode in ("off", "on"):
        monkeypatch.setenv("EDGESHIP_STREAMING", mode)
        out = tmp_path / mode
        train(TrainConfig(model="dscnn", dataset=spec, out=str(out), epochs=1, batch_size=8,
                          seed=1))
        run_convert(ConvertConfig(source=str(out), int8=True, calibration_samples=12,
                                  weight_granularity="per-channel"))
        validate_run(ValidateConfig(run_dir=str(out), backends=("keras", "litert", "litert-ref"),
                                    tolerances=Tolerances(per_op_images=4)))
        reports[mode] = {name: json.loads((out / name).read_text())
                         for name in ("manifest.json", "convert_report.json", "parity.json")}
        inspected = run_inspect(InspectConfig(source=str(out), images=6, runtimes=(), restore=0))
        reports[mode]["inspect"] = [layer["sqnr_db"] for layer in inspected["layers"]]
        reports[mode]["demo"] = _test_images(RunDir(out), 5)[0]["images"]
        samples = collect_samples(out / "model_int8.tflite", 4)
        reports[mode]["samples"] = (samples.inputs.tolist(), samples.labels.tolist())
    off, on = reports["off"], reports["on"]
    assert on["manifest.json"]["train"]["dataset"]["streamed"] is True
    assert off["manifest.json"]["train"]["dataset"]["streamed"] is False
    assert list((tmp_path / "on" / "dataset_cache").glob("test_*.u8"))  # decoded once, by row
    assert not (tmp_path / "off" / "dataset_cache").exists()
    assert on["manifest.json"]["train"]["test_accuracy"] == off["manifest.json"]["train"]["test_accuracy"]
    assert [(row["file"], row["accuracy"], row["agreement"]) for row in on["convert_report.json"]["artifacts"]] \
        == [(row["file"], row["accuracy"], row["agreement"]) for row in off["convert_report.json"]["artifacts"]]
    assert on["parity.json"]["dataset"]["sha256"] == off["parity.json"]["dataset"]["sha256"]
    pairs = [[(row["artifact"], row["backend"], row["accuracy"], row["agreement"],
               row["max_abs_error"]) for row in report["parity.json"]["pairs"]] for report in (off, on)]
    assert pairs[0] == pairs[1] and len(pairs[0]) >= 5
    assert on["parity.json"]["passed"] == off["parity.json"]["passed"]
    predictions = [np.load(tmp_path / mode / "predictions.npz") for mode in ("off", "on")]
    np.testing.assert_array_equal(predictions[0]["top1"], predictions[1]["top1"])
    np.testing.assert_array_equal(predictions[0]["changed_images"], predictions[1]["changed_images"])
    for key in ("inspect", "demo", "samples"):  # inspect, serve-demo and firmware samples too
        assert on[key] == off[key] and on[key]
