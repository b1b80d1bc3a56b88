"""edgeship inspect: per-layer SQNR recomputed by hand, per-op table, attribution, files."""

import json

import numpy as np
import pytest
from edgeship.runtime.inspect import sqnr_db

from tests.conftest import quantize_by_hand, run_cli_in_process


def test_sqnr_of_two_tensors():
    reference = np.array([1.0, -2.0, 3.0, 0.5])
    noisy = reference + np.array([0.1, -0.1, 0.1, 0.0])
    expected = 10 * np.log10(np.sum(reference ** 2) / 0.03)
    assert sqnr_db(reference, noisy) == pytest.approx(expected)
    assert sqnr_db(reference, reference) == float("inf")


def _tensor_by_name(path, image, name):
    """A bare preserve-all-tensors interpreter: the named tensor for one image."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    detail_in = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail_in["index"], quantize_by_hand(detail_in, image))
    interpreter.invoke()
    return {detail["name"]: (interpreter.get_tensor(detail["index"]), detail["quantization"])
            for detail in interpreter.get_tensor_details()}[name]


@pytest.fixture
def run_copy(tmp_path, converted_run):
    import shutil

    return shutil.copytree(converted_run.out_dir, tmp_path / "run")


def test_inspect_writes_the_layer_and_op_tables(run_copy, mnist5k):
    result = run_cli_in_process("inspect", run_copy, "--images", "1", "--restore", "2",
                                "--max-drop", "0")
    assert result.returncode == 0, result.stderr
    payload = json.loads((run_copy / "inspect.json").read_text())
    layers = payload["layers"]
    assert [layer["sqnr_db"] for layer in layers] == sorted(layer["sqnr_db"] for layer in layers)
    assert {layer["op"] for layer in layers} >= {"CONV_2D", "FULLY_CONNECTED"}
    assert all(layer["sqnr_db"] > 10 for layer in layers)  # a healthy post-training file
    # The first conv's SQNR, recomputed from the two files' tensors with bare interpreters.
    first = min(layers, key=lambda layer: layer["index"])
    image = mnist5k.x_test[0]
    raw, (scale, zero_point) = _tensor_by_name(run_copy / "model_int8.tflite", image,
                                               first["output"])
    float_value, _ = _tensor_by_name(run_copy / "model_float.tflite", image, first["output"])
    dequantized = (raw.astype(np.float64) - zero_point) * scale
    noise = np.sum((float_value - dequantized) ** 2)
    assert first["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(float_value ** 2) / noise),
                                             abs=1e-2)
    verdicts = {(op["runtime"], op["verdict"]) for op in payload["ops"]}
    assert ("litert-ref", "bit-exact") in verdicts
    assert not any(verdict == "divergent" for _, verdict in verdicts)
    text = (run_copy / "inspect.md").read_text()
    assert "## Per-layer quantization error" in text and "| # | op | litert-ref |" in text
    # Attribution: the two worst layers restored to float, one at a time, scored on the test
    # split; its all-int8 baseline is a post-training int8 model like the delivered one.
    attribution = payload["attribution"]
    worst = [layer["output"] for layer in layers[:2]]
    # A post-training file keeps the float model's tensor names: the restored ops are the
    # two layers with the worst SQNR.
    assert {score["variant"][len("float: "):] for score in attribution["restored"]} == set(worst)
    assert len(attribution["restored"]) == 2 and attribution["images"] == 1000
    report = json.loads((run_copy / "convert_report.json").read_text())
    delivered = next(row for row in report["artifacts"] if row["file"] == "model_int8.tflite")
    assert attribution["baseline"]["accuracy"] == pytest.approx(delivered["accuracy"], abs=0.01)
    for score in attribution["restored"]:
        assert score["recovered_pp"] == pytest.approx(
            (score["accuracy"] - attribution["baseline"]["accuracy"]) * 100, abs=1e-3)
    assert "## Attribution: one layer restored to float at a time" in text
    # Advice appears only when the delivered file loses more than --max-drop.
    assert bool(payload["advice"]) == (delivered["drop_pp"] > 0)


def test_inspect_without_int8_model_is_bad_input(tmp_path):
    result = run_cli_in_process("inspect", tmp_path)
    assert result.returncode == 2 and "model_int8.tflite" in result.stderr
    text_file = tmp_path / "notes.txt"
    text_file.write_text("x")
    result = run_cli_in_process("inspect", text_file)
    assert result.returncode == 2 and "not a .tflite" in result.stderr


def test_inspect_on_a_bare_tflite_without_a_run(tmp_path, converted_run):
    """Per-op parity on a file with no run directory: random inputs, said so; no float twin."""
    import shutil

    model = shutil.copy(converted_run.out_dir / "model_int8.tflite", tmp_path / "user.tflite")
    result = run_cli_in_process("inspect", model, "--images", "4", "--backends", "tflm")
    assert result.returncode == 0, result.stderr
    payload = json.loads((tmp_path / "user_inspect.json").read_text())
    assert payload["layers"] == [] and payload["attribution"] is None
    assert payload["dataset"]["kind"].startswith("random int8") and payload["dataset"]["images"] == 4
    tflm = [op for op in payload["ops"] if op["runtime"] == "tflm"]
    assert tflm and all(op["verdict"] in ("bit-exact", "rounding") for op in tflm)
    assert "no float twin" in (tmp_path / "user_inspect.md").read_text()
    with_data = run_cli_in_process("inspect", model, "--dataset", "mnist5k", "--images", "4",
                                   "--backends", "tflm")
    assert with_data.returncode == 0, with_data.stderr
    assert json.loads((tmp_path / "user_inspect.json").read_text())["dataset"]["kind"] == "test split"
    float_model = run_cli_in_process("inspect", converted_run.out_dir / "model_float.tflite")
    assert float_model.returncode == 2 and "full-integer" in float_model.stderr
