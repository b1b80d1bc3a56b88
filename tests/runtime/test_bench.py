"""bench: statistics against a fake backend with known sleeps, the baseline gate, the CLI."""

import json
import time

import numpy as np
import pytest

from edgeship.errors import UserInputError
from edgeship.runtime.backends import Backend, TensorInfo
from edgeship.runtime.bench import (
    BenchConfig,
    bench,
    compare_to_baseline,
    gab_entries,
    latency_statistics,
    load_baseline,
    measure,
)
from tests.helpers import run_cli


class SleepingBackend(Backend):
    """Sleeps a scripted duration per call: first call, warm-up and timed runs are known."""

    def __init__(self, sleeps_s, open_sleep_s=0.0):
        time.sleep(open_sleep_s)
        self._sleeps = iter(sleeps_s)
        self._inputs = [TensorInfo("x", (-1, 2, 2, 1), "int8", scale=0.5, zero_point=0)]
        self._outputs = [TensorInfo("y", (-1, 3), "int8", scale=0.5, zero_point=0)]
        self.seen = []
        self.closed = False

    def infer_raw(self, batch):
        self.seen.append(batch)
        time.sleep(next(self._sleeps))
        return np.zeros((len(batch), 3), np.int8)

    def close(self):
        self.closed = True


def test_latency_statistics_are_exact():
    samples_ns = np.array([1000, 2000, 3000, 4000, 100000])
    stats = latency_statistics(samples_ns)
    assert stats["min"] == 1 and stats["max"] == 100 and stats["mean"] == 22
    assert stats["p50"] == 3 and stats["p90"] == pytest.approx(61.6)
    assert stats["std"] == pytest.approx(np.std([1, 2, 3, 4, 100]))


def test_measure_times_only_the_inference_call():
    # first call 30 ms, 2 warm-up runs of 20 ms, then 10 timed runs: 6 x 2 ms and 4 x 8 ms.
    sleeps = [0.030, 0.020, 0.020] + [0.002] * 6 + [0.008] * 4
    backends = []

    def open_sleeping():
        backends.append(SleepingBackend(sleeps, open_sleep_s=0.05))
        return backends[0]

    result = measure(open_sleeping, batch=4, runs=10, warmup=2)
    (backend,) = backends
    assert backend.closed and len(backend.seen) == 13
    # The prepared input is quantized once and the same array is passed to every call.
    assert backend.seen[0].dtype == np.int8 and backend.seen[0].shape == (4, 2, 2, 1)
    assert all(batch is backend.seen[0] for batch in backend.seen)
    # Upper bounds leave room for a loaded machine's sleep overshoot (CI measured 0.67 ms on a
    # 2 ms sleep) and still tell the phases apart: load 50 ms, first call 30, warm-up 20,
    # timed runs 2 and 8.
    assert 50 <= result.load_ms < 100
    assert 30_000 <= result.first_inference_us < 45_000
    latency = result.latency_us
    assert 2000 <= latency["min"] < 5000
    assert 2000 <= latency["p50"] < 5000  # 6 of 10 runs sleep 2 ms
    assert 8000 <= latency["p90"] < 14_000 and 8000 <= latency["max"] < 14_000
    assert 4400 <= latency["mean"] < 6500  # (6*2 + 4*8) / 10 = 4.4 ms; with the 30 ms first call: 6.7
    assert result.throughput == pytest.approx(4 * 1e6 / latency["mean"])
    assert result.peak_rss_bytes > 10 * 2**20


def _record(artifact, p50, backend="litert", threads=1, batch=1):
    return {"artifact": artifact, "backend": backend, "threads": threads, "batch": batch,
            "device": "cpu", "runs": 100, "latency_us": {"p50": p50, "p90": p50, "p99": p50,
                                                         "std": 1.0}}


def test_baseline_gate_passes_and_fails_when_it_should(tmp_path):
    baseline_path = tmp_path / "baseline.json"
    baseline_path.write_text(json.dumps({"records": [_record("a.tflite", 100.0),
                                                     _record("b.onnx", 200.0, "onnxruntime")]}))
    baseline = load_baseline(baseline_path)
    comparisons, unmatched = compare_to_baseline(
        [_record("a.tflite", 109.0), _record("b.onnx", 150.0, "onnxruntime"),
         _record("a.tflite", 50.0, batch=8)], baseline, max_regression=0.10)
    assert [comparison.passed for comparison in comparisons] == [True, True]
    assert unmatched == ["a.tflite litert threads=1 batch=8 cpu"]
    comparisons, _ = compare_to_baseline([_record("a.tflite", 111.0)], baseline, 0.10)
    assert not comparisons[0].passed and comparisons[0].ratio == pytest.approx(1.11)
    assert "+11.0%" in comparisons[0].describe()
    # A gab-format file is a valid baseline too.
    gab_path = tmp_path / "gab.json"
    gab_path.write_text(json.dumps(gab_entries([_record("a.tflite", 100.0)])))
    assert load_baseline(gab_path) == {"a.tflite litert threads=1 batch=1 cpu": 100.0}
    with pytest.raises(UserInputError, match="no record for any"):
        compare_to_baseline([_record("c.tflite", 1.0)], baseline, 0.10)


def test_bench_records_every_artifact_backend_threads_batch(artifacts_dir):
    records = bench(BenchConfig(
        artifacts=(str(artifacts_dir / "model_int8.tflite"), str(artifacts_dir / "model.onnx")),
        backends=("litert", "tflm", "onnxruntime"), runs=20, warmup=2, batch=(1, 4)))
    keys = [(record["artifact"], record["backend"], record["batch"]) for record in records]
    assert keys == [("model_int8.tflite", "litert", 1), ("model_int8.tflite", "litert", 4),
                    ("model_int8.tflite", "tflm", 1), ("model_int8.tflite", "tflm", 4),
                    ("model.onnx", "onnxruntime", 1), ("model.onnx", "onnxruntime", 4)]
    for record in records:
        latency = record["latency_us"]
        assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"]
        assert latency["p99"] <= latency["max"]
        assert record["throughput_images_per_s"] > 0 and record["load_ms"] > 0
        assert len(record["sha256"]) == 64
    assert records[2]["details"]["arena"]["total_bytes"] > 0


def test_bench_cli_json_baseline_and_gab(artifacts_dir, tmp_path):
    artifact = artifacts_dir / "model_int8.tflite"
    result = run_cli("bench", artifact, "--runs", 50, "--warmup", 5, "--json", tmp_path / "b.json")
    assert result.returncode == 0, result.stderr
    assert "| p50 us |" in result.stdout and "model_int8.tflite | litert | 1 | 1 |" in result.stdout
    document = json.loads((tmp_path / "b.json").read_text())
    assert document["environment"]["cores"] >= 1 and "ai-edge-litert" in \
        document["environment"]["versions"]
    assert {"avx2", "avx512", "vnni", "int8_pair_sums"} <= set(document["cpu"])
    (record,) = document["records"]
    # A generous bound passes on a re-run; a baseline 100x faster than reality fails.
    result = run_cli("bench", artifact, "--runs", 50, "--baseline", tmp_path / "b.json",
                     "--max-regression", 3.0, "--json", tmp_path / "gab.json", "--format", "gab")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((tmp_path / "gab.json").read_text())
    assert entry["unit"] == "us" and entry["name"] == "model_int8.tflite litert threads=1 batch=1 cpu"
    record["latency_us"]["p50"] /= 100
    (tmp_path / "fast.json").write_text(json.dumps(document))
    result = run_cli("bench", artifact, "--runs", 50, "--baseline", tmp_path / "fast.json")
    assert result.returncode == 1
    assert "latency regression: model_int8.tflite litert threads=1 batch=1 cpu" in result.stderr


def test_bench_bad_input_exits_2(artifacts_dir, tmp_path):
    result = run_cli("bench", tmp_path / "missing.tflite")
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = run_cli("bench", artifacts_dir / "model.onnx", "--backend", "litert")
    assert result.returncode == 2 and "litert cannot open .onnx files" in result.stderr
    result = run_cli("bench", artifacts_dir / "model.onnx", "--runs", 0)
    assert result.returncode == 2 and "runs must be >= 1" in result.stderr
    result = run_cli("bench", artifacts_dir / "model.onnx", "--device", "gpu")
    assert result.returncode == 2 and "--device gpu" in result.stderr


def test_bench_alternates_the_measurements_in_rounds(artifacts_dir, monkeypatch):
    import edgeship.runtime.bench as bench_module

    calls = []
    real_open, real_timed = bench_module.OpenMeasurement.__init__, bench_module.OpenMeasurement.timed

    def logged_open(self, open_function, *rest):
        calls.append(("open", open_function.args[1].name))
        real_open(self, open_function, *rest)

    def logged_timed(self, runs):
        calls.append((self.backend.artifact_path.name, runs))
        real_timed(self, runs)

    monkeypatch.setattr(bench_module.OpenMeasurement, "__init__", logged_open)
    monkeypatch.setattr(bench_module.OpenMeasurement, "timed", logged_timed)
    files = (artifacts_dir / "model_float.tflite", artifacts_dir / "model_int8.tflite")
    records = bench(BenchConfig(artifacts=tuple(map(str, files)), backends=("litert",),
                                runs=10, warmup=1, rounds=3))
    # each file opened once; then float, int8, float, int8, ...: each round its share of 10
    names = ("model_float.tflite", "model_int8.tflite")
    assert calls == [("open", names[0]), (names[0], 4), ("open", names[1]), (names[1], 4),
                     (names[0], 3), (names[1], 3), (names[0], 3), (names[1], 3)]
    assert [record["runs"] for record in records] == [10, 10]
    assert all(record["latency_us"]["min"] <= record["latency_us"]["p50"]
               <= record["latency_us"]["max"] and record["load_ms"] > 0 for record in records)
