"""Per-op cross-runtime parity: identical int8 inputs per op, verdicts, and validate's use."""

import json

import numpy as np
import pytest

from edgeship.errors import UserInputError
from edgeship.runtime.backends import REGISTRY, BackendEntry, open_backend
from edgeship.runtime.op_parity import (
    OpParity,
    _first_line,
    classify,
    cut_single_ops,
    per_op_parity,
)
from edgeship.runtime.parity import ValidateConfig, validate_run


def test_classify_separates_rounding_from_divergence():
    reference = np.zeros(1000, np.int8)
    assert classify(reference.copy(), reference)[0] == "bit-exact"
    unbiased = reference.copy()
    unbiased[:10], unbiased[10:20] = 1, -1
    verdict, figures = classify(unbiased, reference)
    assert verdict == "rounding" and figures["max_quanta"] == 1
    assert figures["exact_fraction"] == pytest.approx(0.98)
    biased = np.ones(1000, np.int8)  # every element one quantum up: a systematic error
    assert classify(biased, reference)[0] == "divergent"
    one_far = reference.copy()
    one_far[0] = 3
    verdict, figures = classify(one_far, reference)
    assert verdict == "divergent" and figures["max_quanta"] == 3


def test_one_op_models_reproduce_the_reference_tensors(artifacts_dir, test_images):
    path = artifacts_dir / "model_int8.tflite"
    cut = cut_single_ops(path.read_bytes())
    assert [op.op for op in cut][:2] == ["CONV_2D", "AVERAGE_POOL_2D"] or len(cut) >= 5
    with open_backend("litert-ref", path) as backend:
        raw = backend.quantize_input(test_images[:8])
    results = per_op_parity(path, raw, ("tflm",))
    reference = [r for r in results if r.runtime == "litert-ref"]
    assert len(reference) == len(cut) and all(r.verdict == "bit-exact" for r in reference)
    tflm = [r for r in results if r.runtime == "tflm"]
    assert all(r.verdict in ("bit-exact", "rounding") for r in tflm)
    assert all(r.elements > 0 for r in results)


@pytest.fixture
def perturbed_backend(monkeypatch):
    monkeypatch.setitem(REGISTRY, "perturbed", BackendEntry(
        "tests.runtime.perturbed_backend", (".tflite",), default=False, int8_only=True,
        description="test: reference kernels with one op 3 quanta off"))


def test_validate_fails_a_runtime_that_gets_one_op_wrong(run_copy, perturbed_backend,
                                                         monkeypatch):
    cut = cut_single_ops((run_copy / "model_int8.tflite").read_bytes())
    target = [op for op in cut if op.op == "CONV_2D"][1]  # the second conv, mid-network
    monkeypatch.setenv("EDGESHIP_TEST_PERTURB_OP", target.output)
    report = validate_run(ValidateConfig(run_dir=str(run_copy), limit=200,
                                         backends=("keras", "litert-ref", "perturbed")))
    assert not report.passed
    (failure,) = report.failures
    assert failure.kind == "int8 per op (identical inputs)" and failure.value == 1
    assert f"op {target.index} CONV_2D ({target.output}) on perturbed: divergent" in failure.cause
    assert "max 3 quanta" in failure.cause
    payload = json.loads((run_copy / "parity.json").read_text())
    by_pair = {(row["artifact"], row["backend"]): row for row in payload["pairs"]}
    # End to end the fault is invisible: the whole model on the perturbed backend is unchanged.
    assert by_pair[("model_int8.tflite", "perturbed")]["agreement"] == by_pair[
        ("model_int8.tflite", "litert-ref")]["agreement"]
    assert "**FAILED**" in (run_copy / "parity.md").read_text()


def test_a_not_covered_op_says_why_without_figures():
    error = UserInputError(
        "compiling the generated C failed (/usr/bin/cc -std=c99 -Werror -o /tmp/edgeship_c_x/"
        "libmodel.so /tmp/edgeship_c_x/model.c):\n/tmp/edgeship_c_x/model.c:30:16: error: "
        "'es_requantize' defined but not used [-Werror=unused-function]\n   30 | static ...")
    assert _first_line(error) == ("compiling the generated C failed: model.c:30:16: error: "
                                  "'es_requantize' defined but not used [-Werror=unused-function]")
    assert _first_line(ValueError("one line\nanother")) == "one line"
    uncovered = OpParity(3, "ADD", "add", "c", "not covered", cause="takes one input")
    assert uncovered.describe() == "op 3 ADD (add) on c: not covered (takes one input)"


def test_tensors_without_names_are_cut_too(artifacts_dir):
    """The schema allows unnamed tensors (TFLite Micro's keyword_scrambled model has them);
    inspect's per-op cut named every op's output and exited 3 on them."""
    from edgeship.tflite_graph import read_model, write_model

    model = read_model((artifacts_dir / "model_int8.tflite").read_bytes())
    for tensor in model.subgraphs[0].tensors:
        tensor.name = None
    cut = cut_single_ops(write_model(model))
    named = cut_single_ops((artifacts_dir / "model_int8.tflite").read_bytes())
    assert [op.op for op in cut] == [op.op for op in named]
    assert all(op.output.startswith("tensor ") for op in cut)
