"""convert --activations: a small wine model (raw features, Normalization inside) loses accuracy
in int8 activations; auto moves the worst layers to int16 and recovers most of it, the report
names the layers, and the mixed file validates on litert, litert-ref and tflm."""

import json

import numpy as np
import pytest

from benchmarks.bench_activations import tabular_case
from edgeship.run_dir import ArtifactKind

pytest.importorskip("sklearn")
pytest.importorskip("ai_edge_quantizer")


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    return tabular_case("wine", epochs=60)


@pytest.fixture(scope="module")
def auto_run(wine, tmp_path_factory):
    import edgeship

    model, data = wine
    out = tmp_path_factory.mktemp("auto")
    return out, edgeship.api.convert(model, data=data, out=out, activations="auto",
                                     calibration_samples=len(data[0][0]))


def test_auto_recovers_most_of_the_int8_drop_with_a_few_int16_layers(auto_run):
    out, result = auto_run
    choice = result.report["activations"]
    accuracy = choice["accuracy"]
    int8_drop = accuracy["float"] - accuracy["int8"]
    assert int8_drop > 0.05  # raw features: int8 input quantization loses real accuracy
    assert choice["delivered"] == ArtifactKind.MIXED_TFLITE.file_name
    assert (out / ArtifactKind.MIXED_TFLITE.file_name).is_file()
    assert accuracy["float"] - accuracy["mixed"] < 0.5 * int8_drop  # most of it recovered
    ranking = [layer["output"] for layer in choice["ranking"]]
    assert 0 < len(choice["int16_layers"]) < len(ranking)  # a mix, not the whole model
    assert choice["steps"][-1]["recovered_pp"] > 0
    assert set(choice["footprint"]) == {"int8", "mixed", "int16"}
    assert choice["footprint"]["int16"]["arena_bytes"] > choice["footprint"]["int8"]["arena_bytes"]
    scores = {row["file"]: row for row in result.report["artifacts"]}
    assert scores["model_mixed.tflite"]["drop_pp"] < scores["model_int8.tflite"]["drop_pp"]
    markdown = (out / "convert_report.md").read_text()
    assert "## Activations: int8 / int16" in markdown
    for name in choice["int16_layers"]:
        assert f"`{name}`" in markdown
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["convert"]["activations"]["int16_layers"] == choice["int16_layers"]


def test_mixed_model_validates_on_litert_reference_kernels_and_tflm(auto_run):
    import edgeship

    out, _ = auto_run
    result = edgeship.validate(out, backends="keras,litert,litert-ref,tflm")
    payload = result.report if hasattr(result, "report") else result.payload
    pairs = {(row["artifact"], row["backend"]): row for row in payload["pairs"]}
    for backend in ("litert", "litert-ref", "tflm"):
        assert pairs[("model_mixed.tflite", backend)]["precision"] == "mixed"
    ops = payload["per_op"]["model_mixed.tflite"]["ops"]
    assert {op["runtime"] for op in ops} >= {"tflm", "litert"}
    assert not [op for op in ops if op["verdict"] == "divergent"]
    assert payload["passed"], payload["failures"]


def test_int16_converts_the_whole_model_with_int16_io(wine, tmp_path):
    import edgeship
    from edgeship.runtime.backends import open_backend

    model, data = wine
    result = edgeship.api.convert(model, data=data, out=tmp_path, activations="int16",
                                  calibration_samples=len(data[0][0]))
    path = tmp_path / ArtifactKind.INT16_TFLITE.file_name
    choice = result.report["activations"]
    assert choice["delivered"] == path.name and choice["accuracy"]["int16"] > choice["accuracy"]["int8"]
    with open_backend("tflm", path) as backend:
        assert backend.inputs()[0].dtype == "int16" and backend.outputs()[0].dtype == "int16"
        outputs = backend.infer(data[1][0][:10])
    assert np.allclose(outputs.sum(axis=1), 1.0, atol=0.01)  # dequantized int16 softmax
