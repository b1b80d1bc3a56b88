"""int8 vs float ONNX in the phone web demo: onnxruntime-web (WASM) in headless Chromium.

Usage: python benchmarks/bench_web.py [--run-root runs/bench_int8_speed] [--models ...]
       [--rounds 200] [--runs 4000] [--block 20] [--warmup 2000] [--out runs/bench_web]
       [--no-publish]
For each zoo model, reads RUN_ROOT/MODEL (made as benchmarks/bench_int8_speed.py makes it when
missing), builds the phone demo's site for it (`edgeship serve-demo`'s build_site), adds the
run's float model.onnx beside the page's model_int8.onnx, serves it on 127.0.0.1 and drives the
page in headless Chromium (playwright-core from node, benchmarks/bench_web_driver.mjs). Both
files get a session from the page's own `Classifier.load` (classifier.js: WASM backend with the
page's thread count) and every image goes through `Classifier.classify`, the call the page's
drawing pad makes; the inputs are the site's real test images, the same for both files. Float
and int8 alternate in rounds inside one page. Writes the `web_int8_speed` section of
docs/results.md: ms per image (p50 and p90 over blocks of images), the int8/float ratio,
whether int8 is faster, the kernels ORT-web ran for each file and its profiler's time per part
of the model (depthwise and other convolutions, dense layers, the rest), with the reasons.
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
from edgeship.artifacts import write_json_atomic, write_with
from edgeship.errors import MissingDependencyError
from edgeship.reports import markdown_table

DRIVER = Path(__file__).with_name("bench_web_driver.mjs")
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
FLOAT_MODEL = "model.onnx"
INT8_MODEL = "model_int8.onnx"
# Where the float model goes inside the site (the page itself only knows its model_int8.onnx).
SITE_FLOAT_MODEL = f"bench/{FLOAT_MODEL}"
DRIVER_TIMEOUT_S = 1800
PROFILE_RUNS = 400
PROFILE_SKIP = 20
CONV_OPS = frozenset({"Conv", "FusedConv", "QLinearConv", "NhwcFusedConv", "NchwcConv"})
DENSE_OPS = frozenset({"Gemm", "FusedGemm", "QGemm", "MatMul", "QLinearMatMul"})
TARGET = 0.8  # issue 19's int8/float target for ONNX Runtime
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


def build_bench_site(run_dir: Path, site_dir: Path) -> Path:
    """The phone demo's site for run_dir, with the run's float ONNX added at SITE_FLOAT_MODEL."""
    from edgeship.runtime.serve_demo import ServeDemoConfig, build_site

    build = build_site(ServeDemoConfig(run_dir=str(run_dir), out=str(site_dir)))
    source = run_dir / FLOAT_MODEL
    write_with(build.site_dir / SITE_FLOAT_MODEL,
               lambda temp_path: shutil.copyfile(source, temp_path))
    return build.site_dir


def percentiles(samples: list[float]) -> dict:
    """p50, p90 and the fastest of a file's block samples (per-image means), in ms."""
    values = np.asarray(samples, np.float64)
    return {"p50_ms": float(np.percentile(values, 50)), "p90_ms": float(np.percentile(values, 90)),
            "min_ms": float(values.min()), "blocks": len(values)}


def run_page(site_dir: Path, tools: tuple[str, str], rounds: int, runs: int, block: int,
             warmup: int) -> dict:
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

    Raises:
        RuntimeError: the browser run failed or the page reported errors.
    """
    from edgeship.runtime.serve_demo import PHONE_WEB_DIR, start_server

    node, chromium = tools
    images = json.loads((site_dir / "test_images.json").read_text())["images"]
    if not images:
        raise RuntimeError(f"{site_dir} has no test images to time")
    config = json.loads((site_dir / "config.json").read_text())
    with tempfile.TemporaryDirectory(prefix="bench_web_") as temp, \
            start_server(site_dir, host="127.0.0.1", port=0) as server:
        job = {"phoneWebDir": str(PHONE_WEB_DIR), "chromium": chromium,
               "url": f"http://127.0.0.1:{server.port}/",
               "models": {"float": SITE_FLOAT_MODEL, "int8": config["model"]["file"]},
               "images": [image["raw"] for image in images], "warmup": warmup,
               "rounds": rounds, "perRound": max(block, runs // rounds), "block": block,
               "profileRuns": PROFILE_RUNS}
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
                    warmup: int) -> dict:
    """Time the site's float and int8 ONNX through the page's classifier.js in one Chromium page.

    Arguments as run_page's.

    Returns:
        For "float" and "int8": p50/p90/fastest block of session.run ms per image (the page's
        latencyMs, "run") and of classify() wall ms per image ("wall"); int8/float of the
        session.run p50 ("ratio"), of the fastest blocks ("min_ratio"), of whole classify()
        p50s ("wall_ratio"), and inside each round ("round_ratios"); top-1 agreement of the
        two files on the site's test images; browser, ORT-web and WASM facts; each file's
        block samples ("samples"), the kernels ORT-web ran for it (nodes by op type,
        "kernels") and its profiled microseconds per image by part of the model ("profile_us").
    """
    report = run_page(site_dir, tools, rounds, runs, block, warmup)
    kinds = ("float", "int8")
    timing = {kind: {"run": percentiles(report["samples"][kind]["runMs"]),
                     "wall": percentiles(report["samples"][kind]["wallMs"])} for kind in kinds}
    samples = {kind: np.asarray(report["samples"][kind]["runMs"]) for kind in kinds}
    per_round = len(samples["float"]) // rounds
    round_ratios = [float(np.median(samples["int8"][index * per_round:(index + 1) * per_round])
                          / np.median(samples["float"][index * per_round:(index + 1) * per_round]))
                    for index in range(rounds)]
    predictions = {kind: np.asarray(report["predictions"][kind]) for kind in kinds}
    events = {kind: node_events(report["ortLog"].get(f"profile-{kind}", [])) for kind in kinds}
    return {
        **timing, "ratio": timing["int8"]["run"]["p50_ms"] / timing["float"]["run"]["p50_ms"],
        "min_ratio": timing["int8"]["run"]["min_ms"] / timing["float"]["run"]["min_ms"],
        "wall_ratio": timing["int8"]["wall"]["p50_ms"] / timing["float"]["wall"]["p50_ms"],
        "round_ratios": round_ratios,
        "agreement": float(np.mean(predictions["float"] == predictions["int8"])),
        "images": report["images"], "timed_images": report["timed_images"],
        "browser": report["browserVersion"], "user_agent": report["userAgent"],
        "ort_web": report["ortVersion"], "wasm": report["wasm"],
        "wasm_files": sorted(set(report["wasmFiles"])),
        "samples": {kind: samples[kind].tolist() for kind in kinds},
        "kernels": {kind: kernels_run(events[kind]) for kind in kinds},
        "profile_us": {kind: profile_by_part(events[kind]) for kind in kinds}}


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


def render_section(results: list[dict], args: argparse.Namespace,
                   instructions: dict[str, int]) -> str:
    rows = []
    for result in results:
        ratio = result["ratio"]
        quartiles = np.percentile(result["round_ratios"], [25, 50, 75])
        rows.append([
            result["model"],
            f"{result['float']['run']['p50_ms']:.3f} ({result['float']['run']['p90_ms']:.3f})",
            f"{result['int8']['run']['p50_ms']:.3f} ({result['int8']['run']['p90_ms']:.3f})",
            f"{ratio:.2f}", f"{result['min_ratio']:.2f}",
            f"{quartiles[1]:.2f} ({quartiles[0]:.2f}-{quartiles[2]:.2f})",
            f"{result['wall_ratio']:.2f}", verdict(result),
            "yes" if ratio <= TARGET else f"**no** (+{ratio - TARGET:.2f})",
            f"{result['agreement']:.0%} of {result['images']}",
            f"{result['load'][0]:.1f} / {result['load'][1]:.1f}",
            describe_kernels(result["kernels"]["float"]),
            describe_kernels(result["kernels"]["int8"])])
    first = results[0]
    wasm = first["wasm"]
    return "\n".join([
        "## int8 vs float in the phone web demo (onnxruntime-web in Chromium)", "",
        (f"`python benchmarks/bench_web.py --rounds {args.rounds} --runs {args.runs} --block "
         f"{args.block} --warmup {args.warmup}`. {machine_line()} Headless Chromium "
         f"{first['browser']}, onnxruntime-web {first['ort_web']}, WASM backend with the page's "
         f"settings: {wasm['numThreads']} thread, proxy {str(wasm['proxy']).lower()}, "
         "graphOptimizationLevel all, SIMD128 (the file loaded is "
         f"{', '.join(first['wasm_files'])}; ORT-web ships no build without SIMD); the page is "
         "not cross-origin isolated (SharedArrayBuffer "
         f"{'on' if wasm['sharedArrayBuffer'] else 'off'}), as `edgeship serve-demo` serves it. "
         f"The run directories are {args.run_root}/MODEL (`benchmarks/bench_int8_speed.py`'s: one "
         "epoch on mnist5k, mobilenet_v2 at 32x32, edgeship's default `convert --int8 --onnx`). "
         "Each model's phone demo site is built by `edgeship serve-demo`'s build_site, with the "
         "run's model.onnx added beside its model_int8.onnx; both files get a session from the "
         "page's own `Classifier.load` (classifier.js) and every image goes through "
         "`Classifier.classify`, the call the drawing pad makes, on the site's "
         f"{first['images']} real test images (the same for both files). {args.warmup} warm-up "
         "images per file (V8 first runs WASM from its baseline compiler), then "
         f"{first['timed_images']} timed images per file in {args.rounds} rounds in one page, "
         "each round one file then the other, the order alternating. The page's clock has 0.1 ms "
         "steps (no cross-origin isolation), so a sample is the mean over a block of "
         f"{args.block} images of the page's own latencyMs (session.run only): ms per image are "
         "p50 (p90) over the blocks. `fastest` is the ratio of the two files' fastest blocks, "
         "`per round` the median (interquartile range) of the ratio inside each round, "
         "`classify()` the ratio of whole classify() calls' wall time (float32 preprocessing, "
         "tensor, run, argmax). This machine's 2 cores are shared with other jobs (`load` is the "
         "1-minute load average before / after each model), so block times spread; `int8 "
         "faster` says yes or no only when the three ratios agree. The `meets` column applies "
         f"issue 19's ONNX Runtime target (int8 / float <= {TARGET}) to the web runtime. Kernels: "
         "the nodes ORT-web ran for each file, by op type (its profiler's events from a profiled "
         "session of each file after the rounds)."),
        "",
        markdown_table(["model", "float ms p50 (p90)", "int8 ms p50 (p90)", "int8 / float p50",
                        "fastest", "per round", "classify()", "int8 faster",
                        f"meets <= {TARGET}", "top-1 agreement", "load", "float kernels",
                        "int8 kernels"], rows),
        (f"Profile: microseconds per image by part of the model, float / int8, from ORT-web's "
         f"profiler in a session of each file, both run on the same {PROFILE_RUNS} images after "
         "the rounds, one file then the other, the order alternating "
         f"(each node's first {PROFILE_SKIP} runs left out; depthwise convolutions are the "
         "convolution nodes whose Keras layer names say so; `rest` is pooling, softmax, "
         "quantize/dequantize and layout nodes). Profiling adds time per node and its clock has "
         "0.1 ms steps, so these are means to compare parts, not latencies."), "",
        profile_table(results),
        describe_why(results, instructions),
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-root", default="runs/bench_int8_speed",
                        help="folder of run directories, one per model (made when missing)")
    parser.add_argument("--models", default=",".join(MODELS))
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
        if not all((run_dir / name).is_file() for name in (FLOAT_MODEL, INT8_MODEL)):
            prepare_run(model, run_dir)
        site_dir = build_bench_site(run_dir, Path(args.out) / model / "site")
        load_before = os.getloadavg()[0]
        timed = time_in_browser(site_dir, tools, args.rounds, args.runs, args.block, args.warmup)
        result = {"model": model, **timed, "load": (load_before, os.getloadavg()[0])}
        results.append(result)
        print(json.dumps({key: value for key, value in result.items() if key != "samples"}),
              flush=True)
    instructions = wasm_instruction_counts(site_dir / results[0]["wasm_files"][0].lstrip("/"))
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
