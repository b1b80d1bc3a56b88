"""Same seed and inputs, two runs on the CPU: byte-identical .tflite files, identical reports.

Timings aside. model.keras is compared by hash too: Keras stamps the save time into the
archive, which edgeship's save_keras takes out (the CI run that compared only its size
failed on its gzipped size in convert_report.md, 156,969 vs 156,971 bytes).
"""

import json

from edgeship.artifacts import sha256_file

TIMED_FILES = ("bench.json", "report.html", "report.md")  # latencies and run times inside


def _normalised(path, run_dir):
    """A JSON report with the run folder's path replaced."""
    text = path.read_text().replace(str(run_dir.resolve()), "RUN").replace(str(run_dir), "RUN")
    payload = json.loads(text)
    payload.pop("environment", None)  # the machine, same for both runs; holds no result
    return payload


def test_two_runs_give_identical_tflite_files_and_reports(clean_pipeline_runs):
    first, second = clean_pipeline_runs
    assert first.returncode == 0, first.stderr[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    tflite = sorted(path.name for path in first.out.glob("*.tflite"))
    assert tflite == ["model_float.tflite", "model_int8.tflite", "model_int8_xnnpack.tflite"]
    for name in tflite:
        assert (first.out / name).read_bytes() == (second.out / name).read_bytes(), name
    for name in ("model.keras", "model.onnx", "model_int8.onnx"):
        assert sha256_file(first.out / name) == sha256_file(second.out / name), name
    for name in ("convert_report.json", "history.json", "parity.json"):
        assert _normalised(first.out / name, first.out) == _normalised(second.out / name,
                                                                       second.out), name
    for name in ("convert_report.md", "parity.md"):
        assert ((first.out / name).read_text().replace(str(first.out), "RUN")
                == (second.out / name).read_text().replace(str(second.out), "RUN")), name
    firmware = sorted(path.relative_to(first.out) for path in (first.out / "firmware").rglob("*")
                      if path.is_file())
    assert firmware, "the embed stage wrote no firmware sources"
    for relative in firmware:  # model_footprint.json names the model's path
        assert ((first.out / relative).read_bytes().replace(bytes(first.out), b"RUN")
                == (second.out / relative).read_bytes().replace(bytes(second.out), b"RUN")), relative
