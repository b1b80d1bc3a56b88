"""Runtime latency side by side: harness overhead, int8 vs float on ONNX Runtime and LiteRT.

Builds dscnn (49x10x1, 12 classes) and mobilenet_v2 (alpha 0.35, 96x96x3, 10 classes) with
random weights, exports float/int8 TFLite and float ONNX with edgeship.convert, quantizes the
ONNX model with several recipes (QDQ or QOperator, uint8 or int8 activations, per-channel or
per-tensor weights, 8- or 7-bit weights), proves from each file whether ONNX Runtime's 16-bit
pair sums can saturate on x86-64 without VNNI (edgeship.onnx_saturation), then times everything with edgeship.runtime.bench.measure in interleaved
rounds (the median p50 over rounds, so a burst of load on a shared machine hits every
variant alike). Writes its tables to docs/results.md between
`<!-- runtime:begin -->` and `<!-- runtime:end -->`, replacing only that section.

    python benchmarks/bench_runtime.py --json benchmarks/results/bench_runtime.json  # full run
    python benchmarks/bench_runtime.py --quick    # fewer runs, to try the script
    python benchmarks/bench_runtime.py --from-json benchmarks/results/bench_runtime.json
                                                  # re-render the last full run's numbers
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.results_doc import RESULTS, machine_line, update_results_section
from edgeship.artifacts import write_json_atomic
from edgeship.convert.onnx import OnnxQuantization, quantize_onnx
from edgeship.onnx_saturation import pair_sum_bounds
from edgeship.reports import environment, markdown_table
from edgeship.runtime.backends import open_backend
from edgeship.runtime.bench import measure

MODELS = {"dscnn": ((49, 10, 1), 12), "mobilenet_v2": ((96, 96, 3), 10)}
CALIBRATION_IMAGES = 64
BATCHES = (1, 32)


@dataclass(frozen=True)
class OnnxRecipe:
    """One way to make the int8 ONNX model with ORT's static quantizer."""

    name: str
    quantization: OnnxQuantization


RECIPES = (
    OnnxRecipe("QDQ u8 act, s8 weights, per-channel", OnnxQuantization(reduce_range=False)),
    OnnxRecipe("QDQ u8 act, s8 weights, per-tensor",
               OnnxQuantization(reduce_range=False, per_channel=False)),
    OnnxRecipe("QDQ s8 act, s8 weights, per-channel",
               OnnxQuantization(activation_type="int8", reduce_range=False)),
    OnnxRecipe("QDQ s8 act, s8 weights, per-tensor",
               OnnxQuantization(activation_type="int8", reduce_range=False, per_channel=False)),
    OnnxRecipe("QOperator u8 act, s8 weights, per-channel",
               OnnxQuantization(reduce_range=False, quant_format="QOperator")),
    OnnxRecipe("QDQ u8 act, s8 7-bit weights, per-channel (edgeship default)",
               OnnxQuantization()),
    OnnxRecipe("QDQ u8 act, u8 weights, per-channel",
               OnnxQuantization(weight_type="uint8", reduce_range=False)),
)


def exact_without_vnni(path: Path) -> str:
    """'yes' when no 16-bit pair sum in the file can saturate (edgeship.onnx_saturation),
    else how many quantized ops can."""
    bounds = pair_sum_bounds(path)
    risky = [bound for bound in bounds if bound.can_saturate]
    return "yes" if not risky else f"no ({len(risky)} of {len(bounds)} ops can saturate)"


def write_floor_model(path: Path, input_shape: tuple[int, ...]) -> Path:
    """A one-Relu ONNX model on the same input: ONNX Runtime's per-call cost with no compute."""
    import onnx
    from onnx import TensorProto, helper

    shape = [None, *input_shape]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["image"], ["output"])], "floor",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def build_artifacts(work: Path, model_name: str, seed: int) -> dict[str, Path]:
    """Float/int8 TFLite, float ONNX and one int8 ONNX per recipe for a random-weight model."""
    from edgeship.convert.onnx import export_onnx
    from edgeship.convert.tflite import export_tflite
    from edgeship.train.models import ModelOptions, build_model

    input_shape, classes = MODELS[model_name]
    model = build_model(model_name, input_shape, classes, ModelOptions(alpha=0.35), seed=seed)
    samples = np.random.default_rng(seed).random((CALIBRATION_IMAGES, *input_shape),
                                                 dtype=np.float32)
    paths = {"tflite float": work / f"{model_name}_float.tflite",
             "tflite int8": work / f"{model_name}_int8.tflite",
             "onnx float": work / f"{model_name}.onnx"}
    paths["tflite float"].write_bytes(export_tflite(model))
    paths["tflite int8"].write_bytes(export_tflite(model, samples))
    paths["onnx float"].write_bytes(export_onnx(model, input_shape))
    paths["onnx floor"] = write_floor_model(work / f"{model_name}_floor.onnx", input_shape)
    float_onnx = paths["onnx float"].read_bytes()
    for index, recipe in enumerate(RECIPES):
        paths[recipe.name] = work / f"{model_name}_int8_recipe{index}.onnx"
        paths[recipe.name].write_bytes(quantize_onnx(float_onnx, samples, recipe.quantization))
    return paths


def timed_p50(backend: str, path: Path, batch: int, runs: int,
              options: dict) -> tuple[float, float]:
    """(p50, min) latency per call in microseconds, through edgeship bench's own measure()."""
    result = measure(lambda: open_backend(backend, path, **options), batch=batch, runs=runs,
                     warmup=max(5, runs // 10))
    return result.latency_us["p50"], result.latency_us["min"]


def bare_litert_p50(path: Path, runs: int, seed: int = 0) -> tuple[float, float]:
    """The floor: ai_edge_litert's set_tensor/invoke/get_tensor loop, nothing else."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    output_index = interpreter.get_output_details()[0]["index"]
    raw = np.random.default_rng(seed).integers(-128, 128, size=detail["shape"]).astype(
        detail["dtype"])
    input_index = detail["index"]
    for _ in range(max(5, runs // 10)):
        interpreter.set_tensor(input_index, raw)
        interpreter.invoke()
        interpreter.get_tensor(output_index)
    samples = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    for run in range(runs):
        started = clock()
        interpreter.set_tensor(input_index, raw)
        interpreter.invoke()
        interpreter.get_tensor(output_index)
        samples[run] = clock() - started
    return float(np.percentile(samples, 50)) / 1e3, float(samples.min()) / 1e3


def median_over_rounds(jobs: dict, rounds: int) -> tuple[dict, dict]:
    """Run every job once per round, round-robin; keep each job's median p50 and lowest min."""
    results = {key: [] for key in jobs}
    for _ in range(rounds):
        for key, job in jobs.items():
            results[key].append(job())
    p50 = {key: statistics.median(value[0] for value in values) for key, values in results.items()}
    fastest = {key: min(value[1] for value in values) for key, values in results.items()}
    return p50, fastest


def runs_for(batch: int, quick: bool) -> int:
    runs = 200 if batch == 1 else 30
    return max(10, runs // 5) if quick else runs


def measure_all(paths_by_model: dict, rounds: int, quick: bool) -> tuple[dict, dict]:
    """Every variant's (median p50, lowest min) per call, keyed by (model, variant, setting,
    threads, batch)."""
    results, fastest = {}, {}
    for model_name, paths in paths_by_model.items():
        jobs = {}
        for batch in BATCHES:
            runs = runs_for(batch, quick)
            for key in ("tflite float", "tflite int8"):
                jobs[(model_name, key, "xnnpack", 1, batch)] = (
                    lambda p=paths[key], b=batch, r=runs: timed_p50("litert", p, b, r, {}))
                jobs[(model_name, key, "no-xnnpack", 1, batch)] = (
                    lambda p=paths[key], b=batch, r=runs: timed_p50(
                        "litert", p, b, r, {"xnnpack": False}))
            for key in ("onnx float",) + tuple(recipe.name for recipe in RECIPES):
                jobs[(model_name, key, "all", 1, batch)] = (
                    lambda p=paths[key], b=batch, r=runs: timed_p50("onnxruntime", p, b, r, {}))
            for key in ("onnx float", RECIPES[0].name, RECIPES[2].name):
                for level in ("disable", "basic", "extended"):
                    jobs[(model_name, key, level, 1, batch)] = (
                        lambda p=paths[key], b=batch, r=runs, lv=level: timed_p50(
                            "onnxruntime", p, b, r, {"optimization_level": lv}))
                jobs[(model_name, key, "all", 2, batch)] = (
                    lambda p=paths[key], b=batch, r=runs: timed_p50(
                        "onnxruntime", p, b, r, {"threads": 2}))
        overhead_runs = runs_for(1, quick) * 2
        floor_runs = runs_for(1, quick)
        jobs[(model_name, "onnx floor", "all", 1, 1)] = (
            lambda p=paths["onnx floor"], r=floor_runs: timed_p50("onnxruntime", p, 1, r, {}))
        jobs[(model_name, "bare litert loop", "xnnpack", 1, 1)] = (
            lambda p=paths["tflite int8"], r=overhead_runs: bare_litert_p50(p, r))
        jobs[(model_name, "tflite int8 (bench)", "xnnpack", 1, 1)] = (
            lambda p=paths["tflite int8"], r=overhead_runs: timed_p50("litert", p, 1, r, {}))
        print(f"{model_name}: {len(jobs)} measurements x {rounds} rounds", file=sys.stderr)
        p50, minimum = median_over_rounds(jobs, rounds)
        results.update(p50)
        fastest.update(minimum)
    return results, fastest


def render(results: dict, fastest: dict, exactness: dict, rounds: int, quick: bool) -> str:
    def per_image(model, key, setting, threads, batch):
        return results[(model, key, setting, threads, batch)] / batch

    lines = ["## Runtime latency (edgeship bench)", "",
             (f"`python benchmarks/bench_runtime.py{' --quick' if quick else ''}`. "
              f"{machine_line()} Random-weight models: dscnn 49x10x1 (12 classes) and "
              "mobilenet_v2 alpha 0.35 at 96x96x3 (10 classes); int8 calibrated on "
              f"{CALIBRATION_IMAGES} random images. Each figure is the median over {rounds} "
              "interleaved rounds of the p50 of `edgeship.runtime.bench.measure` "
              f"({runs_for(1, quick)} timed runs at batch 1, {runs_for(32, quick)} at batch 32), "
              "one thread unless stated, in microseconds per image."), ""]

    lines += ["### Harness overhead", "",
              ("bench's p50 on the int8 .tflite (XNNPACK, batch 1) against a bare "
              "`set_tensor`/`invoke`/`get_tensor` loop in ai_edge_litert on the same file; "
              "target ≤ 1.05x."), ""]
    rows = []
    for model in MODELS:
        bare = results[(model, "bare litert loop", "xnnpack", 1, 1)]
        harness = results[(model, "tflite int8 (bench)", "xnnpack", 1, 1)]
        rows.append([model, f"{bare:.1f}", f"{harness:.1f}", f"{harness / bare:.3f}",
                     "met" if harness / bare <= 1.05 else "**not met**"])
    lines.append(markdown_table(["model", "bare loop p50 us", "bench p50 us", "ratio",
                                 "target"], rows))

    lines += ["### int8 vs float on ONNX Runtime, by quantization recipe", "",
              ("ORT CPUExecutionProvider, graph optimization ORT_ENABLE_ALL; ratio = int8 / "
               "float per-image p50 (target ≤ 0.8). The min columns (the fastest single run "
               "over all rounds) are a cross-check that load from other processes cannot "
               "inflate. Exact without VNNI: proved from the file (edgeship.onnx_saturation): "
               "no pair of 8-bit products can overflow the saturating 16-bit sums of ORT's "
               "x86-64 kernels without VNNI (AVX2), so the file computes the same integers "
               "on every CPU; these timings come from a CPU with VNNI (see the machine line)."),
              ""]
    rows = []
    for model in MODELS:
        for batch in BATCHES:
            float_us = per_image(model, "onnx float", "all", 1, batch)
            float_min = fastest[(model, "onnx float", "all", 1, batch)]
            rows.append([model, batch, "float", f"{float_us:.1f}", "1.00", "",
                         f"{float_min / batch:.1f}", "1.00", "yes"])
            for recipe in RECIPES:
                value = per_image(model, recipe.name, "all", 1, batch)
                ratio = value / float_us
                recipe_min = fastest[(model, recipe.name, "all", 1, batch)]
                rows.append([model, batch, recipe.name, f"{value:.1f}", f"{ratio:.2f}",
                             "met" if ratio <= 0.8 else "not met", f"{recipe_min / batch:.1f}",
                             f"{recipe_min / float_min:.2f}",
                             exactness.get((model, recipe.name), "not measured")])
    lines.append(markdown_table(["model", "batch", "model", "p50 us / image", "p50 vs float",
                                 "≤ 0.8", "min us / image", "min vs float",
                                 "exact without VNNI"], rows))
    ranking = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ranked_recipes(results))
    lines += [("int8 recipes by the geometric mean of their ratio over both models and both "
               f"batch sizes, fastest first: {ranking}."), ""]
    ranked = dict(ranked_recipes(results))
    default = next(recipe.name for recipe in RECIPES
                   if recipe.quantization == OnnxQuantization())
    fastest_name = next(iter(ranked))
    fastest_exact = all(exactness.get((model, fastest_name)) == "yes" for model in MODELS)
    lines += [(f"edgeship's default ({default}): {ranked[default]:.2f}x against the fastest "
               f"recipe's {ranked[fastest_name]:.2f}x ({fastest_name}, "
               f"{'exact' if fastest_exact else 'not exact'} without VNNI)."), ""]

    lines += ["### ONNX Runtime session options", "",
              ("Graph optimization level and threads for float and the two QDQ per-channel "
              "recipes (us per image)."), ""]
    rows = []
    for model in MODELS:
        for batch in BATCHES:
            for key in ("onnx float", RECIPES[0].name, RECIPES[2].name):
                cells = [f"{per_image(model, key, level, 1, batch):.1f}"
                         for level in ("disable", "basic", "extended", "all")]
                cells.append(f"{per_image(model, key, 'all', 2, batch):.1f}")
                rows.append([model, batch, key] + cells)
    lines.append(markdown_table(["model", "batch", "model", "disable", "basic", "extended",
                                 "all", "all, 2 threads"], rows))

    lines += ["### int8 vs float on LiteRT", "",
              ("ai_edge_litert Interpreter with the default XNNPACK delegate, and without it "
              "(TFLite's builtin kernels); ratio = int8 / float with XNNPACK (target ≤ 0.7)."),
              ""]
    rows = []
    for model in MODELS:
        for batch in BATCHES:
            float_us = per_image(model, "tflite float", "xnnpack", 1, batch)
            int8_us = per_image(model, "tflite int8", "xnnpack", 1, batch)
            rows.append([model, batch, f"{float_us:.1f}", f"{int8_us:.1f}",
                         f"{int8_us / float_us:.2f}",
                         "met" if int8_us / float_us <= 0.7 else "not met",
                         f"{per_image(model, 'tflite float', 'no-xnnpack', 1, batch):.1f}",
                         f"{per_image(model, 'tflite int8', 'no-xnnpack', 1, batch):.1f}"])
    lines.append(markdown_table(["model", "batch", "float us", "int8 us", "int8 / float",
                                 "≤ 0.7", "float, no XNNPACK", "int8, no XNNPACK"], rows))
    lines.append(summary(results))
    return "\n".join(lines) + "\n"


def ratios_of(results: dict, name: str) -> list[float]:
    return [results[(model, name, "all", 1, batch)] / results[(model, "onnx float", "all", 1, batch)]
            for model in MODELS for batch in BATCHES]


def ranked_recipes(results: dict) -> list[tuple[str, float]]:
    """Recipes by the geometric mean of their int8/float ratio over models and batch sizes."""
    scored = [(recipe.name, float(np.exp(np.mean(np.log(ratios_of(results, recipe.name))))))
              for recipe in RECIPES]
    return sorted(scored, key=lambda item: item[1])


def best_recipe(results: dict) -> tuple[str, float]:
    return ranked_recipes(results)[0]


def summary(results: dict) -> str:
    """Plain sentences on which targets the measurement met, from the numbers above."""
    lines = ["### What the numbers say", ""]
    for model in MODELS:
        float_all = results[(model, "onnx float", "all", 1, 1)]
        float_extended = results[(model, "onnx float", "extended", 1, 1)]
        int8_basic = results[(model, RECIPES[0].name, "basic", 1, 1)]
        int8_extended = results[(model, RECIPES[0].name, "extended", 1, 1)]
        lines.append(f"- Graph optimization, {model} batch 1: float gains "
                     f"{float_extended / float_all:.1f}x from ORT_ENABLE_ALL over EXTENDED (the NCHWc layout transform); int8 QDQ "
                     f"gains {int8_basic / int8_extended:.1f}x from EXTENDED over BASIC (QDQ "
                     f"pairs fused into integer kernels); int8 at EXTENDED runs {int8_extended:.1f} us "
                     f"against float's {float_all:.1f} us at ALL"
                     + (", so int8 needs ALL too." if int8_extended > float_all else "."))
    for model in MODELS:
        floor = results[(model, "onnx floor", "all", 1, 1)]
        float_us = results[(model, "onnx float", "all", 1, 1)]
        lines.append(f"- ONNX Runtime's per-call floor on {model}'s input (a one-Relu model, "
                     f"batch 1) is {floor:.1f} us, {floor / float_us:.0%} of the float model's "
                     f"{float_us:.1f} us p50: int8 can only shrink the rest.")
    best_name, _ = best_recipe(results)
    for model in MODELS:
        for batch in BATCHES:
            ratio = (results[(model, best_name, "all", 1, batch)]
                     / results[(model, "onnx float", "all", 1, batch)])
            tflite_ratio = (results[(model, "tflite int8", "xnnpack", 1, batch)]
                            / results[(model, "tflite float", "xnnpack", 1, batch)])
            lines.append(f"- {model}, batch {batch}: ONNX int8 ({best_name}) / float = "
                         f"{ratio:.2f} ({'meets' if ratio <= 0.8 else 'misses'} ≤ 0.8); "
                         f"TFLite int8 / float with XNNPACK = {tflite_ratio:.2f} "
                         f"({'meets' if tflite_ratio <= 0.7 else 'misses'} ≤ 0.7).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and one round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--json", default=None, help="also write every median p50 here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from-json", default=None, metavar="FILE",
                        help="re-render the section from a --json file of an earlier run "
                        "(with the --rounds it was measured with) instead of measuring")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    if args.from_json:
        records = json.loads(Path(args.from_json).read_text())["p50_us"]
        keys = [(record["model"], record["variant"], record["setting"], record["threads"],
                 record["batch"]) for record in records]
        results = {key: record["p50_us_per_call"] for key, record in zip(keys, records)}
        fastest = {key: record["min_us_per_call"] for key, record in zip(keys, records)}
        exactness = {(record["model"], record["recipe"]): record["exact_without_vnni"]
                     for record in json.loads(Path(args.from_json).read_text()).get(
                         "exact_without_vnni", [])}
    else:
        with tempfile.TemporaryDirectory(prefix="edgeship-bench-") as work:
            paths = {}
            for model_name in MODELS:
                model_dir = Path(work) / model_name
                model_dir.mkdir()
                print(f"building {model_name}", file=sys.stderr)
                paths[model_name] = build_artifacts(model_dir, model_name, args.seed)
            exactness = {(model_name, recipe.name): exact_without_vnni(paths[model_name][recipe.name])
                         for model_name in MODELS for recipe in RECIPES}
            results, fastest = measure_all(paths, rounds, args.quick)
    section = render(results, fastest, exactness, rounds, args.quick)
    update_results_section("runtime", section, Path(args.results))
    if args.json:
        write_json_atomic(args.json, {"environment": environment(), "p50_us": [
            {"model": key[0], "variant": key[1], "setting": key[2], "threads": key[3],
             "batch": key[4], "p50_us_per_call": value, "min_us_per_call": fastest[key]}
            for key, value in results.items()], "exact_without_vnni": [
            {"model": model, "recipe": recipe, "exact_without_vnni": verdict}
            for (model, recipe), verdict in exactness.items()]})
    print(section)
    print(f"best int8 ONNX recipe: {best_recipe(results)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
