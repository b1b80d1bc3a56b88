"""validate: passes the session's converted run, fails a broken one, bounds typed by kind."""

import json
from dataclasses import replace

import numpy as np
import pytest

from edgeship.errors import UserInputError
from edgeship.records import ConvertRecord
from edgeship.runtime.parity import ValidateConfig, fine_tuned_artifacts, validate_run
from edgeship.runtime.parity_checks import (
    Check,
    Tolerances,
    explain_onnx_saturation,
    float_checks,
    int8_checks,
    quanta_histogram,
    task_checks,
    task_metrics,
)
from tests.helpers import run_cli

LIMIT = 300


def break_input_scale(tflite_path, factor=255.0):
    """Rewrite the recorded input scale: the model still loads and runs, on wrong inputs.

    The default records 1.0 instead of 1/255, as if the model took raw 0..255 pixels.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite_path.read_bytes(), 0))
    subgraph = model.subgraphs[0]
    quantization = subgraph.tensors[subgraph.inputs[0]].quantization
    quantization.scale = [float(quantization.scale[0]) * factor]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    tflite_path.write_bytes(bytes(builder.Output()))


def test_validate_passes_the_converted_run(run_copy):
    report = validate_run(ValidateConfig(run_dir=str(run_copy), limit=LIMIT))
    assert report.passed, [check.describe() for check in report.failures]
    payload = json.loads((run_copy / "parity.json").read_text())
    pairs = {(row["artifact"], row["backend"]) for row in payload["pairs"]}
    assert {("model.keras", "keras"), ("model_int8.tflite", "litert"),
            ("model_int8.tflite", "litert-ref"), ("model_int8.tflite", "tflm"),
            ("model_float.tflite", "tflm"), ("model.onnx", "onnxruntime"),
            ("model_int8.onnx", "onnxruntime")} <= pairs
    assert payload["dataset"]["images"] == LIMIT and payload["dataset"]["split"] == "test"
    assert {"avx2", "avx512", "vnni", "int8_pair_sums"} <= set(payload["cpu"])
    assert not any("saturate" in note for note in payload["notes"])
    kinds = {check["kind"] for row in (payload["pairs"] + payload["integer_comparisons"]
                                       + list(payload["per_op"].values()))
             for check in row.get("checks", [])}
    # End-to-end element fractions are reported; int8 vs int8 is decided op by op and by task.
    assert kinds == {"float vs float", "float vs int8", "int8 vs int8 (task)",
                     "int8 per op (identical inputs)", "int8 rewrite vs its source"}
    # the phone file (convert --xnnpack exact) runs on XNNPACK only, identical to its source
    assert {pair for pair in pairs if pair[0] == "model_int8_xnnpack.tflite"} == {
        ("model_int8_xnnpack.tflite", "litert")}
    (rewrite,) = [check for row in payload["pairs"] for check in row.get("checks", [])
                  if check["kind"] == "int8 rewrite vs its source"]
    assert rewrite["passed"] and rewrite["value"] == 0
    ops = payload["per_op"]["model_int8.tflite"]["ops"]
    assert {op["runtime"] for op in ops} == {"litert-ref", "litert", "tflm"}
    assert all(op["verdict"] == "bit-exact" for op in ops if op["runtime"] == "litert-ref")
    assert all(op["verdict"] in ("bit-exact", "rounding") for op in ops)
    assert {op["op"] for op in ops} >= {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"}
    by_pair = {(row["artifact"], row["backend"]): row for row in payload["pairs"]}
    # Same inputs, same float graph: the float artifacts match Keras to float rounding.
    assert by_pair[("model.onnx", "onnxruntime")]["max_abs_error"] < 1e-5
    assert by_pair[("model_int8.tflite", "tflm")]["agreement"] >= 0.98
    integer = {row["backend"]: row["histogram"] for row in payload["integer_comparisons"]}
    assert integer["tflm"]["exact"] >= 0.995 * integer["tflm"]["elements"]
    markdown = (run_copy / "parity.md").read_text()
    assert markdown.startswith("# Parity: PASSED")
    assert "Backends run: keras, litert, litert-ref, onnxruntime, tflm." in markdown
    manifest = json.loads((run_copy / "manifest.json").read_text())
    assert manifest["validate"]["passed"] is True and "parity.json" in manifest["artifacts"]
    # Every pair's top-1 per image, for report.html (which runs no model itself).
    assert "predictions.npz" in manifest["artifacts"]
    with np.load(run_copy / "predictions.npz") as stored:
        stored_pairs = list(zip(stored["artifacts"].tolist(), stored["backends"].tolist()))
        assert stored_pairs == [(row["artifact"], row["backend"]) for row in payload["pairs"]]
        assert stored["top1"].shape == (len(stored_pairs), LIMIT)
        labels = stored["labels"]
        for row, top1 in zip(payload["pairs"], stored["top1"]):
            assert np.mean(top1 == labels) == pytest.approx(row["accuracy"])
        reference = stored["top1"][int(stored["reference"])]
        changed = stored["changed_indices"]
        assert len(stored["changed_images"]) == len(changed)
        assert all((stored["top1"][:, changed] != reference[changed]).any(axis=0))


def test_validate_fails_a_model_with_a_wrong_input_scale(run_copy):
    break_input_scale(run_copy / "model_int8.tflite")
    result = run_cli("validate", run_copy, "--limit", LIMIT, "--backends", "keras,litert-ref,tflm")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    failure = next(line for line in result.stderr.splitlines()
                   if "model_int8.tflite on litert-ref vs model.keras on keras: top-1 agreement"
                   in line)
    assert "bound >= 0.95 (FAILED)" in failure
    agreement = float(failure.split("top-1 agreement = ")[1].split(",")[0])
    assert agreement < 0.5  # garbage, not a marginal miss
    payload = json.loads((run_copy / "parity.json").read_text())
    assert payload["passed"] is False
    assert any("top-1 agreement" in failure for failure in payload["failures"])
    assert (run_copy / "parity.md").read_text().startswith("# Parity: FAILED")


def test_int8_onnx_divergence_names_the_saturating_ops(artifacts_dir, mnist5k, tmp_path):
    from edgeship.convert.onnx import OnnxQuantization, quantize_onnx

    full_range = tmp_path / "model_int8.onnx"
    full_range.write_bytes(quantize_onnx((artifacts_dir / "model.onnx").read_bytes(),
                                         mnist5k.x_train[:100], OnnxQuantization(reduce_range=False)))
    checks = [Check("model_int8.onnx on onnxruntime vs model.keras on keras", "float vs int8",
                    "top-1 agreement", 0.96, 0.98, ">=", False),
              Check("model_int8.onnx on onnxruntime vs model.keras on keras", "float vs int8",
                    "accuracy drop (points)", 0.5, 2.0, "<=", True)]
    notes = []
    avx2 = {"avx2": True, "vnni": False, "int8_pair_sums": "saturating-int16"}
    failed, passed = explain_onnx_saturation(full_range, checks, avx2, notes)
    assert "cause: 16-bit pair-sum saturation in lenet5/c1/BiasAdd (Conv)" in failed.describe()
    assert "Gemm" in failed.cause and passed.cause == ""
    assert "5 op(s) can saturate" in notes[0] and "no VNNI" in notes[0]
    vnni = {"avx2": True, "vnni": True, "int8_pair_sums": "exact-int32"}
    failed, _ = explain_onnx_saturation(full_range, checks, vnni, [])
    assert failed.cause.startswith("not pair-sum saturation")
    notes = []
    delivered = explain_onnx_saturation(artifacts_dir / "model_int8.onnx", checks, avx2, notes)
    assert delivered == checks and notes == []


def test_missing_artifacts_are_skipped_with_a_note(run_copy):
    (run_copy / "model_int8.onnx").unlink()
    report = validate_run(ValidateConfig(run_dir=str(run_copy), limit=50,
                                         backends=("keras", "onnxruntime")))
    assert report.passed
    assert "model_int8.onnx is not in the run directory: skipped" in report.payload["notes"]
    assert {row["artifact"] for row in report.payload["pairs"]} == {"model.keras", "model.onnx"}


def test_validate_gpu_without_gpu_exits_2(artifacts_dir):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    result = run_cli("validate", artifacts_dir, "--backends", "onnxruntime", "--device", "gpu",
                     "--limit", 10)
    assert result.returncode == 2
    assert "--device gpu needs onnxruntime-gpu and a CUDA GPU" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_bad_input_exits_2(tmp_path):
    result = run_cli("validate", tmp_path, "--backends", "onnxruntime")
    assert result.returncode == 2 and "has no manifest.json" in result.stderr
    result = run_cli("validate", tmp_path, "--backends", "tensorrt")
    assert result.returncode == 2 and "unknown backend 'tensorrt'" in result.stderr


def test_validate_run_without_artifacts_is_bad_input(tmp_path, artifacts_dir):
    (tmp_path / "manifest.json").write_text((artifacts_dir / "manifest.json").read_text())
    with pytest.raises(UserInputError, match="has no artifact"):
        validate_run(ValidateConfig(run_dir=str(tmp_path), limit=5))


def test_quanta_histogram_counts_each_distance():
    reference = np.array([[0, 10, -128, 127]], np.int8)
    candidate = np.array([[0, 11, -126, 120]], np.int8)
    histogram = quanta_histogram(candidate, reference)
    assert histogram == {"elements": 4, "exact": 1, "off_by_1": 1, "off_by_2": 1,
                         "off_by_3_or_more": 1, "max": 7,
                         "differences": {"0": 1, "1": 1, "2": 1, "7": 1}}


def test_int8_bounds_are_typed_by_kernels():
    """End-to-end element fractions are bound only when a bound is set (reported otherwise)."""
    strict = Tolerances(reference_min_exact=1.0, cross_min_fraction=0.98,
                        max_forbidden_fraction=0.0)
    set_bounds = Tolerances(reference_min_exact=0.99, cross_min_fraction=0.98,
                            max_forbidden_fraction=0.01)
    zeros = np.zeros((1, 1000), int)
    one_off = quanta_histogram(np.array([[1] + [0] * 999]), zeros)
    assert int8_checks("x", one_off, True, Tolerances()) == []
    assert int8_checks("x", one_off, False, Tolerances()) == []
    assert all(check.passed for check in int8_checks("x", one_off, True, set_bounds))
    failed = [check for check in int8_checks("x", one_off, True, strict) if not check.passed]
    assert [check.metric for check in failed] == ["fraction exact"]
    # Reference kernels: 1.5% of elements off by one is too many; across implementations, fine.
    ten_off = quanta_histogram(np.array([[1] * 15 + [0] * 985]), zeros)
    assert not all(check.passed for check in int8_checks("x", ten_off, True, set_bounds))
    assert all(check.passed for check in int8_checks("x", ten_off, False, set_bounds))
    # Across implementations: 3% of elements 2 quanta off breaks the 98% within 1 quantum.
    two_off = quanta_histogram(np.array([[2] * 30 + [1] * 970]), zeros)
    results = {check.metric: check.passed for check in int8_checks("x", two_off, False, strict)}
    assert results == {"fraction within 1 quantum": False, "fraction 3+ quanta off": True}
    # One element 3+ quanta off: tolerated at 0.1% by default, not in the strict reading;
    # fifteen of them (1.5%) exceed the default 1% on both kinds.
    three_off = quanta_histogram(np.array([[9] + [0] * 999]), zeros)
    assert not all(check.passed for check in int8_checks("x", three_off, False, strict))
    assert all(check.passed for check in int8_checks("x", three_off, False, set_bounds))
    many_off = quanta_histogram(np.array([[9] * 15 + [0] * 985]), zeros)
    expected = {True: ["fraction exact", "fraction 3+ quanta off"],
                False: ["fraction 3+ quanta off"]}
    for reference_kernels in (True, False):
        failed = [check.metric for check in int8_checks("x", many_off, reference_kernels,
                                                         set_bounds) if not check.passed]
        assert failed == expected[reference_kernels]


def test_float_and_task_bounds():
    reference = np.array([[0.2, 0.8], [0.9, 0.1]], np.float32)
    (close,) = float_checks("x", reference + 5e-6, reference, Tolerances())
    (far,) = float_checks("x", reference + 5e-5, reference, Tolerances())
    assert close.passed and not far.passed and far.value > 1
    labels = np.array([1, 0])
    swapped = reference[:, ::-1].copy()
    metrics = task_metrics(swapped, reference, labels)
    assert metrics["agreement"] == 0 and metrics["accuracy"] == 0 and metrics["drop"] == 1
    assert metrics["max_abs_error"] == pytest.approx(0.8)
    checks = task_checks("x", metrics, Tolerances())
    assert [check.passed for check in checks] == [False, False]
    assert checks[1].value == pytest.approx(100) and checks[1].bound == 2.0
    assert task_metrics(reference, reference, labels)["cosine"] == pytest.approx(1)


def test_fine_tuned_int8_is_bound_by_drop_only():
    files = {"int8_tflite": "model_int8.tflite", "ptq_int8_tflite": "model_ptq_int8.tflite"}
    convert = ConvertRecord(options={"qat_epochs": 1, "prune_sparsity": None}, files=files)
    assert fine_tuned_artifacts(convert) == {"model_int8.tflite"}
    convert = replace(convert, options={"qat_epochs": 0, "prune_sparsity": None})
    assert fine_tuned_artifacts(convert) == set()
    assert fine_tuned_artifacts(None) == set()
    metrics = {"agreement": 0.9, "drop": -0.01}
    (check,) = task_checks("x", metrics, Tolerances(), fine_tuned=True)
    assert check.metric == "accuracy drop (points)" and check.passed
    assert not all(check.passed for check in task_checks("x", metrics, Tolerances()))


def test_a_rewrite_of_a_qat_file_is_bound_as_its_source(qat_converted_run, tmp_path):
    """model_int8_xnnpack.tflite of a fine-tuned model_int8.tflite: the same reference (the
    fine-tuned float model) and the same bounds as its source, plus its exactness check."""
    import shutil

    run = shutil.copytree(qat_converted_run.out_dir, tmp_path / "run")
    manifest = json.loads((run / "manifest.json").read_text())
    if "model_int8.tflite" not in manifest["convert"]["fine_tuned_files"]:
        pytest.fail("the session's QAT file was not delivered; this test needs it delivered")
    assert "model_int8_xnnpack.tflite" in manifest["convert"]["fine_tuned_files"]
    report = validate_run(ValidateConfig(run_dir=str(run), backends=("keras", "litert"),
                                         limit=300))
    assert report.passed, [check.describe() for check in report.failures]
    pairs = {(row["artifact"], row["backend"]): row for row in report.payload["pairs"]}
    source = pairs["model_int8.tflite", "litert"]
    rewrite = pairs["model_int8_xnnpack.tflite", "litert"]
    assert source["reference"] == rewrite["reference"] == "model_finetuned_float.tflite on litert"

    def bounds(row):
        return {(check["metric"], check["bound"], check["comparison"].split(" vs ", 1)[1])
                for check in row["checks"]}

    assert bounds(rewrite) - bounds(source) == {
        ("raw outputs that differ", 0, "model_int8.tflite on litert")}
    assert ("top-1 agreement", 0.95, "model_finetuned_float.tflite on litert") in bounds(source)
    assert ("accuracy drop (points)", 2.0, "model.keras on keras") in bounds(source)
    assert not any(check["metric"] == "top-1 agreement" and "model.keras" in check["comparison"]
                   for check in rewrite["checks"])
    reference = pairs["model_finetuned_float.tflite", "litert"]
    assert "checks" not in reference and "fine-tuned files' float reference" in reference["bounds"]
    text = (run / "parity.md").read_text()
    assert "| bound against | bounds |" in text
    assert "| `model_int8_xnnpack.tflite` | litert | int8 |" in text


def test_an_older_manifest_derives_the_rewrite_of_a_fine_tuned_file():
    convert = ConvertRecord.from_dict({
        "options": {}, "fine_tuned_files": ["model_int8.tflite"],
        "files": {"int8_tflite": "model_int8.tflite",
                  "xnnpack_int8_tflite": "model_int8_xnnpack.tflite"}})
    assert fine_tuned_artifacts(convert) == {"model_int8.tflite", "model_int8_xnnpack.tflite"}
    convert = replace(convert, fine_tuned_files=("model_finetuned_int8.tflite",))
    assert fine_tuned_artifacts(convert) == {"model_finetuned_int8.tflite"}
