"""benchmarks/bench_web.py: the phone demo's float and int8 models timed in headless Chromium.

The browser test runs the benchmark's own timing function on the session's tiny converted
model with a few rounds, on LiteRT.js and on onnxruntime-web; the others check its parsing of ORT-web's profiler output, its verdict
and the WASM instruction count on small inputs.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_web import (
    INT8_KERNELS,
    LAYOUT_OPS,
    build_bench_site,
    kernels_run,
    node_events,
    profile_by_part,
    time_in_browser,
    verdict,
    wasm_instruction_counts,
)


def _event(name: str, op_type: str, duration: float) -> str:
    return json.dumps({"cat": "Node", "name": f"{name}_kernel_time", "dur": duration,
                       "args": {"op_name": op_type}}) + ","


def test_profile_events_become_kernels_and_parts():
    lines = ["[", json.dumps({"cat": "Session", "name": "model_run", "dur": 900}) + ","]
    for run in range(4):
        lines += [_event("m/dw1/depthwise", "QLinearConv", 300 if run else 5000),
                  _event("m/pw1/Conv2D", "QLinearConv", 100),
                  _event("m/dense/MatMul", "QGemm", 0 if run % 2 else 100),
                  _event("Transpose", "Transpose", 0)]
    lines.append("]")
    events = node_events(lines)
    assert len(events) == 16
    assert kernels_run(events) == {"QLinearConv": 2, "QGemm": 1, "Transpose": 1}
    parts = profile_by_part(events, skip=1)
    assert parts == {"conv": 100.0, "depthwise conv": 300.0, "dense": pytest.approx(100 / 3),
                     "rest": 0.0}


def test_verdict_says_yes_or_no_only_when_the_ratios_agree():
    faster = {"ratio": 0.7, "min_ratio": 0.8, "round_ratios": [0.6, 0.7, 0.9]}
    slower = {"ratio": 1.4, "min_ratio": 1.1, "round_ratios": [1.2, 1.5, 1.0]}
    mixed = {"ratio": 0.95, "min_ratio": 1.05, "round_ratios": [0.9, 1.0, 1.1]}
    assert verdict(faster) == "yes"
    assert verdict(slower) == "**no**"
    assert verdict(mixed).startswith("unclear")


def test_wasm_instruction_counts_read_simd_opcodes(tmp_path):
    wasm = tmp_path / "tiny.wasm"
    # i32x4.dot_i16x8_s twice, f32x4.mul once, one relaxed-SIMD op (0x105), filler bytes.
    wasm.write_bytes(b"\0asm\x01\0\0\0" + b"\xfd\xba\x01" * 2 + b"\x20\x00\xfd\xe6\x01"
                     + b"\xfd\x85\x02" + b"\x0b")
    assert wasm_instruction_counts(wasm) == {"i32x4.dot_i16x8_s": 2, "f32x4.mul": 1,
                                             "relaxed SIMD": 1}


@pytest.mark.parametrize("runtime", ["litert", "onnx"])
def test_float_and_int8_timed_through_the_page_in_headless_chromium(
        converted_run, browser_tools, tmp_path, runtime):
    site = build_bench_site(Path(converted_run.out_dir), tmp_path / "site", runtime)
    result = time_in_browser(site, browser_tools, rounds=2, runs=40, block=10, warmup=20)

    for kind in ("float", "int8"):
        assert result[kind]["run"]["blocks"] == 4
        assert 0 < result[kind]["run"]["min_ms"] <= result[kind]["run"]["p50_ms"]
        assert result[kind]["run"]["p50_ms"] <= result[kind]["run"]["p90_ms"]
        assert result[kind]["wall"]["p50_ms"] > 0
    assert result["ratio"] == pytest.approx(
        result["int8"]["run"]["p50_ms"] / result["float"]["run"]["p50_ms"])
    assert len(result["round_ratios"]) == 2
    assert result["agreement"] >= 0.8
    assert result["timed_images"] == 40 and result["images"] == 20
    assert result["runtime"] == runtime and result["cross_origin_isolated"] is False
    config = json.loads((site / "config.json").read_text())
    assert result["runtime_version"] == config["runtime"]["version"]
    if runtime == "litert":
        assert result["files"] == {"float": "model_float.tflite",
                                   "int8": "model_int8_xnnpack.tflite"}
        assert len(result["wasm_files"]) == 1
        assert result["wasm_files"][0].startswith("/vendor/litertjs/wasm/litert_wasm_")
        assert result["kernels"] == {"float": {}, "int8": {}}
        return
    assert result["files"] == {"float": "model.onnx", "int8": "model_int8.onnx"}
    assert result["wasm"]["numThreads"] == 1 and result["wasm"]["proxy"] is False
    assert result["wasm_files"] == ["/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm"]
    assert all(sum(result["profile_us"][kind].values()) > 0 for kind in ("float", "int8"))
    assert "QLinearConv" in result["kernels"]["int8"]
    assert "QLinearConv" not in result["kernels"]["float"]
    assert set(result["kernels"]["int8"]) <= INT8_KERNELS | LAYOUT_OPS


def test_single_op_models_hold_one_op_each_with_its_weights(converted_run):
    from benchmarks.bench_web import single_op_models
    from edgeship.tflite_graph import read_graph

    source = (Path(converted_run.out_dir) / "model_int8_xnnpack.tflite").read_bytes()
    graph = read_graph(source)
    models = single_op_models(source)
    assert [op for op, _ in models] == [op for op in graph.op_names()]
    for (op, model_bytes), original in zip(models, graph.operators, strict=True):
        single = read_graph(model_bytes)
        assert single.op_names() == [op]
        assert [single.tensors[index].name for index in single.operators[0].outputs] == \
            [graph.tensors[original.outputs[0]].name]
        weights = [graph.tensors[index] for index in original.inputs
                   if index >= 0 and graph.tensors[index].data is not None]
        kept = {tensor.name: tensor for tensor in single.tensors}
        for weight in weights:
            np.testing.assert_array_equal(kept[weight.name].data, weight.data)
