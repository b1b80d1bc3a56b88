"""int8 vs float in the phone web demo, on both of its runtimes, in headless Chromium.

Usage: python benchmarks/bench_web.py [--run-root runs/bench_int8_speed] [--models ...]
       [--runtimes litert,onnx] [--rounds 200] [--runs 4000] [--block 20] [--warmup 2000]
       [--out runs/bench_web] [--no-publish]
For each zoo model, reads RUN_ROOT/MODEL (made as benchmarks/bench_int8_speed.py makes it when
missing) and, for each runtime, builds the phone demo's site for it (`edgeship serve-demo
--runtime R`'s build_site: LiteRT.js with model_int8_xnnpack.tflite and model_float.tflite,
or onnxruntime-web with model_int8.onnx and model.onnx), serves it on 127.0.0.1 and drives the
page in headless Chromium (playwright-core from node, benchmarks/bench_web_driver.mjs). Both
files get their own instance from the page's own `Classifier.load` (classifier.js, one thread)
and every image goes through `Classifier.classify`, the call the page's drawing pad makes; the
inputs are the site's real test images, the same for both files. Float and int8 alternate in
rounds inside one page. Writes the `web_int8_speed` section of docs/results.md: ms per image
(p50 and p90 over blocks of images), the int8/float ratio per runtime, which runtime and file
a phone should use per model and why, and for onnxruntime-web the kernels it ran for each
file and its profiler's time per part of the model, with the reasons.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_int8_speed import MODELS, prepare_run
from benchmarks.results_doc import machine_line, publish_section
from edgeship.artifacts import write_bytes_atomic, write_json_atomic
from edgeship.errors import MissingDependencyError
from edgeship.reports import markdown_table

DRIVER = Path(__file__).with_name("bench_web_driver.mjs")
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
RUNTIMES = ("litert", "onnx")
RUNTIME_NAMES = {"litert": "LiteRT.js", "onnx": "onnxruntime-web"}
# The run files bench_int8_speed's prepare_run makes; both runtimes' models are among them.
RUN_FILES = ("model_float.tflite", "model_int8_xnnpack.tflite", "model.onnx", "model_int8.onnx")
# The site's config.json keys of the two files timed against each other.
SITE_MODELS = {"float": "reference_model", "int8": "model"}
DRIVER_TIMEOUT_S = 1800
PROFILE_RUNS = 400
PROFILE_SKIP = 20
OP_RUNS = 300  # runs per single-op LiteRT.js model, timed in one clock span
LITERT_PARTS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise conv",
                "FULLY_CONNECTED": "dense"}
CONV_OPS = frozenset({"Conv", "FusedConv", "QLinearConv", "NhwcFusedConv", "NchwcConv"})
DENSE_OPS = frozenset({"Gemm", "FusedGemm", "QGemm", "MatMul", "QLinearMatMul"})
TARGET = 0.8  # issue 32's int8/float target for the faster runtime of each model
# ONNX Runtime's int8 kernels (com.microsoft and ONNX QLinear ops) a QDQ graph is fused into.
INT8_KERNELS = frozenset({"QLinearConv", "QGemm", "QLinearMatMul", "QLinearAveragePool",
                          "QLinearGlobalAveragePool", "QLinearAdd", "QLinearMul", "QLinearSoftmax",
                          "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat", "NhwcMaxPool",
                          "QuantizeLinear", "DequantizeLinear",
                          # edgeship's int8 ONNX folds a 2x2 max pool into a ReduceMax over
                          # uint8 data (convert/onnx_speed.py): a max, on 8-bit values
                          "ReduceMax"})
LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


def find_browser_tools() -> tuple[str, str]:
    """(node, chromium) paths, or MissingDependencyError naming what to install."""
    from edgeship.runtime.serve_demo import PHONE_WEB_DIR

    node = shutil.which("node")
    if node is None:
        raise MissingDependencyError("Node.js is not installed: the benchmark drives Chromium "
                                     "with playwright-core from node")
    if not (PHONE_WEB_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        raise MissingDependencyError(f"playwright-core is not installed: run `npm ci` in "
                                     f"{PHONE_WEB_DIR}")
    chromium = next((path for path in CHROMIUM_PATHS if Path(path).is_file()), None)
    if chromium is None:
        raise MissingDependencyError("Chromium is not installed (apt-get install chromium)")
    return node, chromium


def build_bench_site(run_dir: Path, site_dir: Path, runtime: str) -> Path:
    """The phone demo's site for run_dir in runtime: its int8 model and the float reference."""
    from edgeship.runtime.serve_demo import ServeDemoConfig, build_site

    build = build_site(ServeDemoConfig(run_dir=str(run_dir), runtime=runtime, out=str(site_dir)))
    config = json.loads((build.site_dir / "config.json").read_text())
    if "reference_model" not in config:
        raise RuntimeError(f"{run_dir} has no float model for {runtime} to compare with")
    return build.site_dir


def single_op_models(tflite_bytes: bytes) -> list[tuple[str, bytes]]:
    """(builtin op name, model) per op with one output: the op alone, its non-constant inputs as
    the graph's inputs, its output as the graph's output, batch fixed for LiteRT.js.

    Constants (weights, biases, shapes) stay in the op's model. A single op's time includes one
    run call's fixed cost, so the sums compare float and int8 per part, not whole latencies.
    """
    from edgeship.runtime.web_runtimes import with_static_batch
    from edgeship.tflite_graph import op_names, read_model, write_model

    model = read_model(tflite_bytes)
    graph = model.subgraphs[0]
    names = op_names(model)
    cut = []
    for index, op in enumerate(graph.operators):
        outputs = [int(tensor) for tensor in op.outputs]
        inputs = [int(tensor) for tensor in op.inputs if tensor >= 0]
        variable = [tensor for tensor in inputs
                    if model.buffers[graph.tensors[tensor].buffer].data is None]
        if len(outputs) != 1 or not variable:
            continue
        single = read_model(tflite_bytes)
        single_graph = single.subgraphs[0]
        used = sorted(set(inputs) | set(outputs))
        remap = {old: new for new, old in enumerate(used)}
        single_graph.tensors = [single_graph.tensors[old] for old in used]
        kept = single_graph.operators[index]
        kept.inputs = np.asarray([remap[int(tensor)] if tensor >= 0 else -1
                                  for tensor in kept.inputs], np.int32)
        kept.outputs = np.asarray([remap[outputs[0]]], np.int32)
        kept.intermediates = None
        single_graph.operators = [kept]
        single_graph.inputs = np.asarray([remap[tensor] for tensor in dict.fromkeys(variable)],
                                         np.int32)
        single_graph.outputs = np.asarray([remap[outputs[0]]], np.int32)
        single.signatureDefs = None
        cut.append((names[index], with_static_batch(write_model(single))))
    return cut


def write_op_models(run_dir: Path, site_dir: Path) -> dict[str, list[str]]:
    """The site's float and int8 .tflite cut into one model per op, under site_dir/bench_ops;
    their URLs (relative to the page) and op names by kind."""
    config = json.loads((site_dir / "config.json").read_text())
    urls: dict[str, list[str]] = {}
    ops: dict[str, list[str]] = {}
    for kind, key in SITE_MODELS.items():
        models = single_op_models((run_dir / config[key]["name"]).read_bytes())
        urls[kind], ops[kind] = [], []
        for index, (op, model_bytes) in enumerate(models):
            relative = f"bench_ops/{kind}/{index:03d}_{op.lower()}.tflite"
            write_bytes_atomic(site_dir / relative, model_bytes)
            urls[kind].append(relative)
            ops[kind].append(op)
    return {"urls": urls, "ops": ops}


def percentiles(samples: list[float]) -> dict:
    """p50, p90 and the fastest of a file's block samples (per-image means), in ms."""
    values = np.asarray(samples, np.float64)
    return {"p50_ms": float(np.percentile(values, 50)), "p90_ms": float(np.percentile(values, 90)),
            "min_ms": float(values.min()), "blocks": len(values)}


def run_page(site_dir: Path, tools: tuple[str, str], rounds: int, runs: int, block: int,
             warmup: int, op_models: dict | None = None) -> dict:
    """Serve site_dir and drive its page with bench_web_driver.mjs; the driver's raw report.

    Args:
        site_dir: a site from build_bench_site.
        tools: (node, chromium) from find_browser_tools.
        rounds: rounds that alternate which file goes first.
        runs: timed images per file, over all rounds.
        block: images per timing sample (the page's clock has 0.1 ms steps without
            cross-origin isolation, so one image's latencyMs is too coarse to rank).
        warmup: untimed images per file before the rounds (V8 runs WASM in its baseline
            compiler until the optimizing one has compiled the hot functions).
        op_models: write_op_models' URLs, timed one op at a time (LiteRT.js sites).

    Raises:
        RuntimeError: the browser run failed or the page reported errors.
    """
    from edgeship.runtime.serve_demo import PHONE_WEB_DIR, start_server

    node, chromium = tools
    images = json.loads((site_dir / "test_images.json").read_text())["images"]
    if not images:
        raise RuntimeError(f"{site_dir} has no test images to time")
    with tempfile.TemporaryDirectory(prefix="bench_web_") as temp, \
            start_server(site_dir, host="127.0.0.1", port=0) as server:
        job = {"phoneWebDir": str(PHONE_WEB_DIR), "chromium": chromium,
               "url": f"http://127.0.0.1:{server.port}/",
               "models": SITE_MODELS,
               "images": [image["raw"] for image in images], "warmup": warmup,
               "rounds": rounds, "perRound": max(block, runs // rounds), "block": block,
               "profileRuns": PROFILE_RUNS, "opRuns": OP_RUNS,
               "opModels": op_models["urls"] if op_models else None}
        job_path = Path(temp) / "job.json"
        job_path.write_text(json.dumps(job))
        process = subprocess.run([node, str(DRIVER), str(job_path)], capture_output=True,
                                 text=True, timeout=DRIVER_TIMEOUT_S, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"the browser run failed: {process.stderr[-2000:]}")
    report = json.loads(process.stdout.strip().splitlines()[-1])
    problems = report["external"] + report["pageErrors"] + report["consoleErrors"]
    if problems or not report["status"].startswith("ready"):
        raise RuntimeError(f"the page reported problems: {problems or report['status']}")
    return {**report, "images": len(images), "timed_images": rounds * job["perRound"]}


def time_in_browser(site_dir: Path, tools: tuple[str, str], rounds: int, runs: int, block: int,
                    warmup: int, op_models: dict | None = None) -> dict:
    """Time the site's float and int8 models through the page's classifier.js in one page.

    Arguments as run_page's.

    Returns:
        For "float" and "int8": p50/p90/fastest block of session.run ms per image (the page's
        latencyMs, "run") and of classify() wall ms per image ("wall"); int8/float of the
        session.run p50 ("ratio"), of the fastest blocks ("min_ratio"), of whole classify()
        p50s ("wall_ratio"), and inside each round ("round_ratios"); top-1 agreement of the
        two files on the site's test images; browser, runtime and WASM facts; each file's
        block samples ("samples"); for ORT-web the kernels it ran for each file (nodes by op
        type, "kernels") and its profiled microseconds per image by part of the model
        ("profile_us"); for LiteRT.js with op_models, each op's microseconds alone
        ("op_us": kind -> [[op, us]...]).
    """
    report = run_page(site_dir, tools, rounds, runs, block, warmup, op_models)
    kinds = ("float", "int8")
    timing = {kind: {"run": percentiles(report["samples"][kind]["runMs"]),
                     "wall": percentiles(report["samples"][kind]["wallMs"])} for kind in kinds}
    samples = {kind: np.asarray(report["samples"][kind]["runMs"]) for kind in kinds}
    per_round = len(samples["float"]) // rounds
    round_ratios = [float(np.median(samples["int8"][index * per_round:(index + 1) * per_round])
                          / np.median(samples["float"][index * per_round:(index + 1) * per_round]))
                    for index in range(rounds)]
    predictions = {kind: np.asarray(report["predictions"][kind]) for kind in kinds}
    events = {kind: node_events(report.get("ortLog", {}).get(f"profile-{kind}", []))
              for kind in kinds}
    return {
        **timing, "ratio": timing["int8"]["run"]["p50_ms"] / timing["float"]["run"]["p50_ms"],
        "min_ratio": timing["int8"]["run"]["min_ms"] / timing["float"]["run"]["min_ms"],
        "wall_ratio": timing["int8"]["wall"]["p50_ms"] / timing["float"]["wall"]["p50_ms"],
        "round_ratios": round_ratios,
        "agreement": float(np.mean(predictions["float"] == predictions["int8"])),
        "images": report["images"], "timed_images": report["timed_images"],
        "browser": report["browserVersion"], "user_agent": report["userAgent"],
        "runtime": report["runtime"], "runtime_version": report["runtimeVersion"],
        "files": report["files"], "cross_origin_isolated": report["crossOriginIsolated"],
        "wasm": report.get("wasm"),
        "wasm_files": sorted(set(report["wasmFiles"])),
        "samples": {kind: samples[kind].tolist() for kind in kinds},
        "kernels": {kind: kernels_run(events[kind]) for kind in kinds},
        "profile_us": {kind: profile_by_part(events[kind]) for kind in kinds},
        "op_us": ({kind: [[op, micros] for op, micros in zip(op_models["ops"][kind],
                                                              report["opMicros"][kind])]
                   for kind in kinds} if op_models else {})}


def node_events(lines: list[str]) -> list[dict]:
    """ORT-web's profiler events for node runs, from the console lines it printed."""
    events = []
    for line in lines:
        text = line.strip().rstrip(",")
        if text.startswith("{"):
            event = json.loads(text)
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                events.append(event)
    return events


def kernels_run(events: list[dict]) -> dict[str, int]:
    """Nodes per op type that ORT-web ran."""
    op_of_node = {event["name"]: event["args"]["op_name"] for event in events}
    counts: dict[str, int] = {}
    for op_type in op_of_node.values():
        counts[op_type] = counts.get(op_type, 0) + 1
    return counts


def profile_by_part(events: list[dict], skip: int = PROFILE_SKIP) -> dict[str, float]:
    """Mean microseconds per image by part of the model: depthwise convolutions (their Keras
    layer names say "depthwise"), other convolutions, dense layers, everything else.

    Each node's first `skip` runs are left out (first-run packing); the durations have the
    page clock's 0.1 ms steps, so only means over many runs mean anything, and only for the
    larger parts.
    """
    durations: dict[str, list[float]] = {}
    part_of_node = {}
    for event in events:
        durations.setdefault(event["name"], []).append(float(event["dur"]))
        op_type = event["args"]["op_name"]
        part_of_node[event["name"]] = (
            ("depthwise conv" if "depthwise" in event["name"].lower() else "conv")
            if op_type in CONV_OPS else "dense" if op_type in DENSE_OPS else "rest")
    by_part = dict.fromkeys(("conv", "depthwise conv", "dense", "rest"), 0.0)
    for node, values in durations.items():
        by_part[part_of_node[node]] += float(np.mean(values[skip:] or values))
    return by_part


def describe_kernels(kernels: dict[str, int]) -> str:
    return ", ".join(f"{op_type} x{count}" if count > 1 else op_type
                     for op_type, count in kernels.items())


def wasm_instruction_counts(wasm_path: Path) -> dict[str, int]:
    """How often the WASM binary holds the instructions that decide int8's speed in it.

    WebAssembly SIMD instructions are 0xFD then their opcode in LEB128: i32x4.dot_i16x8_s
    (186) is the 16-bit integer dot product MLAS's int8 GEMM uses, f32x4.mul (230) the float
    multiply, and opcodes 256-275 are the relaxed-SIMD set (its int8 dot products among them).
    """
    data = wasm_path.read_bytes()
    return {"i32x4.dot_i16x8_s": data.count(b"\xfd\xba\x01"),
            "f32x4.mul": data.count(b"\xfd\xe6\x01"),
            "relaxed SIMD": sum(data.count(bytes([0xFD, 0x80 + low, 0x02])) for low in range(20))}


def verdict(result: dict) -> str:
    """Whether int8 is faster: yes or no when the p50, fastest-block and per-round ratios agree."""
    ratios = (result["ratio"], result["min_ratio"], float(np.median(result["round_ratios"])))
    if all(ratio < 1 for ratio in ratios):
        return "yes"
    if all(ratio >= 1 for ratio in ratios):
        return "**no**"
    return "unclear (the ratios disagree)"


def describe_node_overhead(result: dict) -> str:
    """'MODEL: float N nodes (T Transpose) vs int8 M (...)' from the kernels each file ran."""
    def counted(kernels: dict[str, int]) -> str:
        extra = [f"{kernels[op]} {op}" for op in ("Transpose", "QuantizeLinear", "DequantizeLinear")
                 if kernels.get(op)]
        return f"{sum(kernels.values())} nodes" + (f" ({', '.join(extra)})" if extra else "")
    return (f"{result['model']}: float {counted(result['kernels']['float'])} vs int8 "
            f"{counted(result['kernels']['int8'])}")


def describe_why(results: list[dict], instructions: dict[str, int]) -> str:
    """The measured reasons, in a paragraph under the table."""
    slower = [result for result in results if verdict(result) != "yes"]
    faster = [result["model"] for result in results if verdict(result) == "yes"]
    float_nodes = {f"{op} ({result['model']})" for result in results
                   for op in result["kernels"]["int8"] if op not in INT8_KERNELS | LAYOUT_OPS}
    fallback = (f"float nodes in the int8 files: {', '.join(sorted(float_nodes))}" if float_nodes
                else "no node of an int8 file runs a float kernel (every one is an int8 kernel "
                     "of ORT-web's CPU provider or a layout op on 8-bit data), so a missing "
                     "int8 kernel is not the cause")
    growth = "; ".join(describe_growth(result) for result in slower)
    return (
        f"int8 is faster in the browser for {', '.join(faster) or 'no model'}; not (or not "
        f"clearly) for {', '.join(result['model'] for result in slower) or 'none'}. "
        f"{fallback[0].upper()}{fallback[1:]}. Where the int8 time goes up (profile table, "
        f"largest increase first): {growth or 'nowhere'}. From ONNX Runtime's source: the int8 "
        "depthwise convolution (onnxruntime/core/mlas/lib/qdwconv.cpp, MlasConvDepthwiseKernel) "
        "has hand-written SSE2, NEON and LoongArch vector loops and none for WebAssembly, so "
        "ORT-web runs its portable C loop (vectorized only as far as the compiler manages); the "
        "int8 GEMM under the other QLinearConv and "
        "QGemm nodes is MLAS's WASM SIMD128 kernel (qgemm_kernel_wasmsimd.cpp, "
        "MLAS_GEMM_U8X8_KERNEL_WASMSIMD: u8 activations and s8 weights widened to int16, "
        "i32x4.dot_i16x8_s), 8 multiplies per 128-bit instruction against 4 for the float "
        "kernel's f32x4, so it can at most halve the multiply instructions; the relaxed-SIMD int8 "
        "dot-product kernel (qgemm_kernel_wasmrelaxedsimd.cpp) is not in the shipped binary "
        f"({first_wasm(results)} holds {instructions['i32x4.dot_i16x8_s']} i32x4.dot_i16x8_s, "
        f"{instructions['f32x4.mul']} f32x4.mul and {instructions['relaxed SIMD']} relaxed-SIMD "
        "instructions). Each int8 file also runs more nodes than its float twin: "
        f"{'; '.join(describe_node_overhead(result) for result in results)}. The benchmark "
        "reads whatever the run directories hold, so a conversion change shows up on a re-run.")


def describe_growth(result: dict) -> str:
    """'MODEL: PART F -> I us, ...' for the parts whose profiled time int8 raises most."""
    float_us, int8_us = result["profile_us"]["float"], result["profile_us"]["int8"]
    parts = sorted(float_us, key=lambda part: float_us[part] - int8_us[part])
    grown = [f"{part} {float_us[part]:.0f} -> {int8_us[part]:.0f} us" for part in parts
             if int8_us[part] > float_us[part]]
    return f"{result['model']}: {', '.join(grown[:2]) or 'no part'}"


def profile_table(results: list[dict]) -> str:
    parts = ("conv", "depthwise conv", "dense", "rest")
    rows = []
    for result in results:
        float_us, int8_us = result["profile_us"]["float"], result["profile_us"]["int8"]
        rows.append([result["model"],
                     *(f"{float_us[part]:.0f} / {int8_us[part]:.0f}" for part in parts),
                     f"{sum(float_us.values()):.0f} / {sum(int8_us.values()):.0f}"])
    return markdown_table(["model", *(f"{part} us float / int8" for part in parts),
                           "all nodes us float / int8"], rows)


def first_wasm(results: list[dict]) -> str:
    return Path(results[0]["wasm_files"][0]).name if results[0]["wasm_files"] else "the WASM file"


def litert_parts(op_us: list[list]) -> dict[str, float]:
    """Single-op microseconds summed by part of the model (conv, depthwise conv, dense, rest)."""
    parts = dict.fromkeys(("conv", "depthwise conv", "dense", "rest"), 0.0)
    for op, micros in op_us:
        parts[LITERT_PARTS.get(op, "rest")] += micros
    return parts


def litert_profile_table(results: list[dict]) -> str:
    rows = []
    for result in results:
        float_parts, int8_parts = (litert_parts(result["op_us"][kind]) for kind in ("float", "int8"))
        floor = min(micros for kind in ("float", "int8") for _, micros in result["op_us"][kind])
        rows.append([result["model"],
                     *(f"{float_parts[part]:.1f} / {int8_parts[part]:.1f}" for part in float_parts),
                     f"{sum(float_parts.values()):.1f} / {sum(int8_parts.values()):.1f}",
                     f"{len(result['op_us']['float'])} / {len(result['op_us']['int8'])}",
                     f"{floor:.1f}",
                     (f"{result['float']['run']['p50_ms'] * 1000:.0f} / "
                      f"{result['int8']['run']['p50_ms'] * 1000:.0f}")])
    return markdown_table(["model", *(f"{part} us float / int8" for part in
                                      ("conv", "depthwise conv", "dense", "rest")),
                           "all ops us float / int8", "ops float / int8",
                           "cheapest op us", "whole model p50 us float / int8"], rows)


def describe_litert_why(result: dict) -> str:
    """Why LiteRT.js' int8 file misses the target, from its single-op times."""
    float_parts, int8_parts = (litert_parts(result["op_us"][kind]) for kind in ("float", "int8"))
    floor = min(micros for kind in ("float", "int8") for _, micros in result["op_us"][kind])
    ops = {kind: len(result["op_us"][kind]) for kind in ("float", "int8")}
    fixed = {kind: ops[kind] * floor for kind in ops}
    not_faster = [f"{part} {float_parts[part]:.1f} -> {int8_parts[part]:.1f} us"
                  for part in float_parts
                  if int8_parts[part] > 0.8 * float_parts[part] and float_parts[part] + int8_parts[part] > 0]
    total_float, total_int8 = sum(float_parts.values()), sum(int8_parts.values())
    extra = [op for op, _ in result["op_us"]["int8"]]
    for op, _ in result["op_us"]["float"]:
        if op in extra:
            extra.remove(op)
    return (f"{result['model']}: the ops alone sum to {total_float:.1f} us float and "
            f"{total_int8:.1f} us int8 ({total_int8 / total_float:.2f}x); the cheapest op takes "
            f"{floor:.1f} us, about one run call's fixed cost, so {ops['float']} float and "
            f"{ops['int8']} int8 ops carry some {fixed['float']:.0f} and {fixed['int8']:.0f} us "
            "that int8 cannot shrink"
            + (f" (the int8 file runs {', '.join(extra)} besides)" if extra else "")
            + "; parts where int8 saves less than 20%: "
            + (", ".join(not_faster) if not_faster else "none"))


def recommendation(model_results: list[dict]) -> list[str]:
    """[model, phone should run, its int8 / float, meets, why] from one model's runtimes."""
    by_int8 = sorted(model_results, key=lambda result: result["int8"]["run"]["p50_ms"])
    best = by_int8[0]
    fastest_float = min(model_results, key=lambda result: result["float"]["run"]["p50_ms"])
    name = RUNTIME_NAMES[best["runtime"]]
    others = "; ".join(f"{RUNTIME_NAMES[result['runtime']]} int8 "
                       f"{result['int8']['run']['p50_ms']:.3f} ms, float "
                       f"{result['float']['run']['p50_ms']:.3f} ms" for result in by_int8[1:])
    why = (f"its int8 file is the fastest of the four files here "
           f"({best['int8']['run']['p50_ms']:.3f} ms p50"
           + (f"; {others}" if others else "") + ")")
    if fastest_float["float"]["run"]["p50_ms"] < best["int8"]["run"]["p50_ms"]:
        why += (f", but {RUNTIME_NAMES[fastest_float['runtime']]}'s float "
                f"{fastest_float['files']['float']} is faster still: int8 buys size, not speed")
    ratio = best["ratio"]
    return [best["model"], f"{name}, {best['files']['int8']}", f"{ratio:.2f}",
            "yes" if ratio <= TARGET else f"**no** (+{ratio - TARGET:.2f})", why]


def render_section(results: list[dict], args: argparse.Namespace,
                   instructions: dict[str, int] | None) -> str:
    rows = []
    for result in results:
        ratio = result["ratio"]
        quartiles = np.percentile(result["round_ratios"], [25, 50, 75])
        rows.append([
            result["model"], RUNTIME_NAMES[result["runtime"]],
            f"{result['files']['float']} / {result['files']['int8']}",
            f"{result['float']['run']['p50_ms']:.3f} ({result['float']['run']['p90_ms']:.3f})",
            f"{result['int8']['run']['p50_ms']:.3f} ({result['int8']['run']['p90_ms']:.3f})",
            f"{ratio:.2f}", f"{result['min_ratio']:.2f}",
            f"{quartiles[1]:.2f} ({quartiles[0]:.2f}-{quartiles[2]:.2f})",
            f"{result['wall_ratio']:.2f}", verdict(result),
            f"{result['agreement']:.0%} of {result['images']}",
            f"{result['load'][0]:.1f} / {result['load'][1]:.1f}"])
    models = list(dict.fromkeys(result["model"] for result in results))
    picks = [recommendation([result for result in results if result["model"] == model])
             for model in models]
    onnx = [result for result in results if result["runtime"] == "onnx"]
    first = results[0]
    versions = ", ".join(dict.fromkeys(
        f"{RUNTIME_NAMES[result['runtime']]} {result['runtime_version']}" for result in results))
    wasm_files = ", ".join(sorted({name for result in results for name in result["wasm_files"]}))
    parts = [
        "## int8 vs float in the phone web demo (LiteRT.js and onnxruntime-web in Chromium)", "",
        (f"`python benchmarks/bench_web.py --runtimes {args.runtimes} --rounds {args.rounds} "
         f"--runs {args.runs} --block {args.block} --warmup {args.warmup}`. {machine_line()} "
         f"Headless Chromium {first['browser']}; {versions}. Each runtime as the page runs it "
         "(`edgeship serve-demo --runtime litert|onnx`): one thread, WebAssembly SIMD128 "
         "(LiteRT.js: XNNPACK's kernels, `accelerator: \"wasm\"`, the loader picks its "
         "relaxed-SIMD build where the browser has relaxed SIMD; onnxruntime-web: its WASM "
         "backend, graphOptimizationLevel all, proxy off). WebAssembly files loaded: "
         f"{wasm_files}. The page is not cross-origin isolated (crossOriginIsolated "
         f"{str(first['cross_origin_isolated']).lower()}), as `edgeship serve-demo` serves it, so "
         "neither runtime's threaded build can run and none was measured. "
         f"The run directories are {args.run_root}/MODEL (`benchmarks/bench_int8_speed.py`'s: one "
         "epoch on mnist5k, mobilenet_v2 at 32x32, edgeship's default `convert --int8 --onnx`). "
         "Each model's site is built by `edgeship serve-demo`'s build_site for each runtime; the "
         "int8 file and the float file beside it get their own instance from the page's own "
         "`Classifier.load` (classifier.js) and every image goes through `Classifier.classify`, "
         f"the call the drawing pad makes, on the site's {first['images']} real test images (the "
         f"same for both files). {args.warmup} warm-up images per file, then "
         f"{first['timed_images']} timed images per file in {args.rounds} rounds in one page, "
         "each round one file then the other, the order alternating. The page's clock has 0.1 ms "
         "steps (no cross-origin isolation), so a sample is the mean over a block of "
         f"{args.block} images of the page's own latencyMs (the runtime's run call only): ms per "
         "image are p50 (p90) over the blocks. `fastest` is the ratio of the two files' fastest "
         "blocks, `per round` the median (interquartile range) of the ratio inside each round, "
         "`classify()` the ratio of whole classify() calls' wall time (preprocessing, int8 "
         "quantization of the input for LiteRT.js, tensors, run, argmax). This machine's 2 cores "
         "are shared with other jobs (`load` is the 1-minute load average before / after each "
         "model and runtime), so block times spread; `int8 faster` says yes or no only when the "
         "three ratios agree."), "",
        markdown_table(["model", "runtime", "files (float / int8)", "float ms p50 (p90)",
                        "int8 ms p50 (p90)", "int8 / float p50", "fastest", "per round",
                        "classify()", "int8 faster", "top-1 agreement", "load"], rows),
        "",
        (f"Which runtime and file a phone should use, per model: the runtime whose int8 file has "
         f"the lowest p50 above, its int8 / float ratio within that runtime, and whether it meets "
         f"issue 32's target (int8 p50 <= {TARGET} x float p50)."), "",
        markdown_table(["model", "phone should run", "int8 / float", f"meets <= {TARGET}",
                        "why"], picks),
    ]
    missed = [pick[0] for pick in picks if not pick[3].startswith("yes")]
    parts += ["", ("Target met for every model measured." if not missed else
                   f"Target missed for {', '.join(missed)}: see the per-op profiles below and "
                   "the reasons under them.")]
    litert = [result for result in results if result["runtime"] == "litert" and result["op_us"]]
    if litert:
        parts += ["", (f"LiteRT.js per-op profile (its JavaScript API has no profiler): each op of "
                       "each file cut into a model of its own (the op, its weights, its "
                       "activation inputs as the model's inputs), run in the same page on zero "
                       f"inputs, {OP_RUNS} runs timed in one clock span after 20 untimed ones, "
                       "float and int8 alternating per op; microseconds per run summed by part "
                       "of the model. Every single-op run pays one run call's fixed cost, so the "
                       "sums exceed the whole model's time; `cheapest op` estimates that cost."),
                  "", litert_profile_table(litert), "",
                  "Where LiteRT.js' int8 file misses the target: " + "; ".join(
                      describe_litert_why(result) for result in litert
                      if result["model"] in missed) + "."
                  if any(result["model"] in missed for result in litert) else ""]
    if onnx and instructions is not None:
        parts += ["", (f"onnxruntime-web's kernels and profile: microseconds per image by part of "
                       f"the model, float / int8, from ORT-web's profiler in a session of each "
                       f"file, both run on the same {PROFILE_RUNS} images after the rounds, one "
                       f"file then the other, the order alternating (each node's first "
                       f"{PROFILE_SKIP} runs left out; depthwise convolutions are the convolution "
                       "nodes whose Keras layer names say so; `rest` is pooling, softmax, "
                       "quantize/dequantize and layout nodes). Profiling adds time per node and "
                       "its clock has 0.1 ms steps, so these are means to compare parts, not "
                       "latencies. LiteRT.js has no profiler in its JavaScript API."), "",
                  profile_table(onnx), "",
                  markdown_table(["model", "float kernels (ORT-web)", "int8 kernels (ORT-web)"],
                                 [[result["model"], describe_kernels(result["kernels"]["float"]),
                                   describe_kernels(result["kernels"]["int8"])]
                                  for result in onnx]), "",
                  describe_why(onnx, instructions)]
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-root", default="runs/bench_int8_speed",
                        help="folder of run directories, one per model (made when missing)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runtimes", default=",".join(RUNTIMES),
                        help="the page's runtimes to time (litert, onnx)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--runs", type=int, default=4000, help="timed images per file")
    parser.add_argument("--block", type=int, default=20, help="images per timing sample")
    parser.add_argument("--warmup", type=int, default=2000, help="untimed images per file")
    parser.add_argument("--out", default="runs/bench_web")
    parser.add_argument("--no-publish", action="store_true", help="print, do not write docs/")
    args = parser.parse_args()
    try:
        tools = find_browser_tools()
    except MissingDependencyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results = []
    for model in args.models.split(","):
        run_dir = Path(args.run_root) / model
        if not all((run_dir / name).is_file() for name in RUN_FILES):
            prepare_run(model, run_dir)
        for runtime in args.runtimes.split(","):
            site_dir = build_bench_site(run_dir, Path(args.out) / model / runtime, runtime)
            op_models = write_op_models(run_dir, site_dir) if runtime == "litert" else None
            load_before = os.getloadavg()[0]
            timed = time_in_browser(site_dir, tools, args.rounds, args.runs, args.block,
                                    args.warmup, op_models)
            result = {"model": model, **timed, "load": (load_before, os.getloadavg()[0])}
            if runtime == "onnx":
                result["wasm_path"] = str(site_dir / result["wasm_files"][0].lstrip("/"))
            results.append(result)
            print(json.dumps({key: value for key, value in result.items() if key != "samples"}),
                  flush=True)
    onnx = [result for result in results if result["runtime"] == "onnx"]
    instructions = wasm_instruction_counts(Path(onnx[0]["wasm_path"])) if onnx else None
    write_json_atomic(Path(args.out) / "results.json",
                      {"results": results, "wasm_instructions": instructions})
    markdown = render_section(results, args, instructions)
    if args.no_publish:
        print(markdown)
    else:
        publish_section("web_int8_speed", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
