"""The report's MCU section and delegation column from hand-made run files (no model runs)."""

import json

from edgeship.report_mcu import CHART_NAME, cycles_chart, render_mcu_html, render_mcu_md
from edgeship.report_page import collect_rows

PROFILE = {
    "target": "cortex-m4", "clock_mhz": 120.0, "kernels": "dsp", "board": "NUCLEO-L4R5ZI",
    "ops": [{"index": 0, "op": "CONV_2D", "cycles": 9000.0, "ms": 0.075, "macs": 3000,
             "cycles_per_mac": 3.0, "instructions": 7000},
            {"index": 1, "op": "SOFTMAX", "cycles": 1000.0, "ms": 0.008333, "macs": 0,
             "cycles_per_mac": None, "instructions": 800}],
    "total": {"cycles": 10000.0, "ms": 0.083333, "macs": 3000, "cycles_per_mac": 3.3333,
              "instructions": 7800},
    "flash": {"text": 1200, "rodata": 3400, "data": 0, "total": 4600, "harness": 196},
    "ram": {"activations": 2048, "input": 784, "output": 10, "scratch": 64, "stack": 200,
            "total": 2248},
}
FOOTPRINT = {"model_bytes": 5000, "arena_bytes": 3000, "arena_size": 4624,
             "arena_margin": "20% + 1024 bytes: TFLite Micro's own", "ops": ["CONV_2D", "SOFTMAX"]}


def test_mcu_section_shows_the_estimate_beside_tflite_micro():
    markdown = "\n".join(render_mcu_md(FOOTPRINT, PROFILE, "report_files"))
    for text in ("## MCU", "### MCU footprint (TFLite Micro)", "| model in flash | 5,000 B |",
                 "| tensor arena, measured | 3,000 B |", "| core | cortex-m4 at 120 MHz |",
                 "| estimated cycles per inference | 10,000 |",
                 "| estimated ms at 120 MHz | 0.083 |", "| estimated cycles per MAC | 3.33 |",
                 "| flash | 4,600 B (code 1,200, weights and constants 3,400, data 0) |",
                 ("| RAM | 2,248 B (one buffer of 2,048: activations with input 784, output 10 "
                  "and scratch 64 inside; stack 200 measured) |"), f"(report_files/{CHART_NAME})", "not a measurement",
                 "| 1 | SOFTMAX | 1,000 | 0.008 | 0 | — |"):
        assert text in markdown, text
    page = render_mcu_html(FOOTPRINT, PROFILE, "data:image/png;base64,AAAA")
    assert page.startswith("<section id='mcu'><h2>MCU</h2>")
    assert f"data-name='{CHART_NAME}'" in page and "<table id='footprint'>" in page
    assert "<td>estimated cycles per inference</td><td>10,000</td>" in page
    # Before the profile stage ran (or with --no-profile): TFLite Micro's figures alone.
    alone = render_mcu_html(FOOTPRINT, {}, None)
    assert "<table id='footprint'>" in alone and "mcu-profile" not in alone
    assert render_mcu_md({}, {}, "report_files") == [] and render_mcu_html({}, {}, None) == ""


def test_cycles_chart_is_a_png():
    assert cycles_chart(PROFILE)[:4] == b"\x89PNG"


def test_delegation_column_from_bench_else_from_validate(tmp_path):
    delegation = {"delegate": "XNNPACK", "partitions": 3, "ops": 9, "delegated_ops": 6,
                  "outside": {"AVERAGE_POOL_2D": 2, "SOFTMAX": 1}}
    kernels = {"nodes": 14, "int8": {"QLinearConv": 3, "MatMulInteger": 9},
               "float": {"Softmax": 1}, "conversions": {"QuantizeLinear": 1,
                                                        "DequantizeLinear": 1}}
    pair = {"accuracy": 0.9, "drop": 0.001, "agreement": 0.99}
    (tmp_path / "parity.json").write_text(json.dumps({"pairs": [
        {**pair, "artifact": "model_int8.tflite", "backend": "litert",
         "details": {"kernels": "XNNPACK", "delegation": delegation}},
        {**pair, "artifact": "model_int8.onnx", "backend": "onnxruntime",
         "details": {"kernels": kernels}},
        {**pair, "artifact": "model_int8.tflite", "backend": "tflm",
         "details": {"kernels": "TFLite Micro"}}]}))
    bench_execution = {"kind": "delegate", **delegation, "partitions": 1, "delegated_ops": 9,
                       "outside": {}}
    (tmp_path / "bench.json").write_text(json.dumps({"records": [
        {"artifact": "model_int8.tflite", "backend": "litert", "batch": 1, "threads": 1,
         "latency_us": {"p50": 30.0}, "execution": bench_execution}]}))
    rows = {(row.artifact, row.backend): row for row in collect_rows(tmp_path)}
    # bench's record wins where it exists; validate's details fill in the rest.
    assert rows["model_int8.tflite", "litert"].execution == "XNNPACK 1 partition, 9/9 ops"
    assert rows["model_int8.tflite", "litert"].p50_us == 30.0
    assert rows["model_int8.onnx", "onnxruntime"].execution == (
        "int8 kernels 12/14 nodes; float: Softmax x1; 2 Q/DQ")
    assert rows["model_int8.onnx", "onnxruntime"].p50_us is None
    assert rows["model_int8.tflite", "tflm"].execution == ""
