"""int8 vs float latency on the phone runtimes, with what each runtime ran where.

Usage: python benchmarks/bench_int8_speed.py [--runs 2000] [--out runs/bench_int8_speed] [--models ...]
Trains each zoo model one epoch on mnist5k (mobilenet_v2 at 32x32; latency does not depend on
the weights' values), converts it with edgeship's defaults (`--int8 --onnx`), then times
model_float.tflite and model_int8.tflite on LiteRT (XNNPACK) and model.onnx and
model_int8.onnx on ONNX Runtime, batch 1, one thread, float and int8 of a runtime alternating
in rounds inside one process so both see the same machine load. Writes the `int8_speed`
section of docs/results.md: p50 of each, the int8/float ratio against the targets of issue 19
(<= 0.7 on XNNPACK, <= 0.8 on ONNX Runtime), and the delegation columns (XNNPACK partitions
and the ops it left outside; ONNX Runtime's nodes in int8 kernels and in float).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_doc import machine_line, publish_section  # noqa: E402
from edgeship.reports import markdown_table  # noqa: E402
from edgeship.runtime.bench import BenchConfig, bench, describe_execution  # noqa: E402
from edgeship.train.datasets import DatasetSpec  # noqa: E402

MODELS = ("lenet5", "simple_cnn", "keras_cnn", "dscnn", "mobilenet_v2")
IMAGE_SIZE = {"mobilenet_v2": (32, 32)}
TARGETS = {"litert": 0.7, "onnxruntime": 0.8}
PAIRS = {"litert": ("model_float.tflite", "model_int8.tflite"),
         "onnxruntime": ("model.onnx", "model_int8.onnx")}
FLOAT_SOFTMAX = "model_int8_float_softmax.tflite"  # convert.xnnpack.float_softmax_output


def prepare_run(model: str, out: Path) -> Path:
    """Train one epoch and convert (int8 TFLite and ONNX) unless the run is already there."""
    from edgeship.convert.run import ConvertConfig, run_convert
    from edgeship.train.fit import TrainConfig, train

    if all((out / name).is_file() for pair in PAIRS.values() for name in pair):
        return out
    spec = DatasetSpec(name="mnist5k", seed=0, image_size=IMAGE_SIZE.get(model))
    train(TrainConfig(model=model, dataset=spec, out=str(out), epochs=1, seed=0))
    run_convert(ConvertConfig(source=str(out), int8=True, onnx=True, seed=0))
    return out


def write_float_softmax_variant(run_dir: Path) -> Path:
    """model_int8.tflite with its output softmax in float (the documented option)."""
    from edgeship.artifacts import write_bytes_atomic
    from edgeship.convert.xnnpack import float_softmax_output

    return write_bytes_atomic(run_dir / FLOAT_SOFTMAX,
                              float_softmax_output((run_dir / "model_int8.tflite").read_bytes()))


def compare(run_dir: Path, backend: str, runs: int, rounds: int) -> dict:
    """p50 of the float and int8 files on one backend, measured in alternating rounds.

    Returns:
        float and int8 p50 (median of the rounds' p50s), their ratio, and each file's
        execution summary (delegation or kernel precision).
    """
    float_name, int8_name = PAIRS[backend]
    names = (float_name, int8_name) + ((FLOAT_SOFTMAX,) if backend == "litert" else ())
    p50s = {name: [] for name in names}
    execution = {}
    for _ in range(rounds):
        for name in names:
            (record,) = bench(BenchConfig(artifacts=(str(run_dir / name),), backends=(backend,),
                                          runs=runs // rounds, warmup=50))
            p50s[name].append(record["latency_us"]["p50"])
            execution[name] = record["execution"]
    float_p50, int8_p50 = (float(np.median(p50s[name])) for name in (float_name, int8_name))
    variant = {}
    if FLOAT_SOFTMAX in p50s:
        variant_p50 = float(np.median(p50s[FLOAT_SOFTMAX]))
        variant = {"float_softmax_p50_us": variant_p50, "float_softmax_ratio": variant_p50 / float_p50,
                   "float_softmax_execution": execution[FLOAT_SOFTMAX]}
    return {"backend": backend, "float_p50_us": float_p50, "int8_p50_us": int8_p50,
            "ratio": int8_p50 / float_p50, "float_execution": execution[float_name],
            "int8_execution": execution[int8_name], **variant}


def render_section(results: list[dict], runs: int, rounds: int) -> str:
    rows = []
    for result in results:
        target = TARGETS[result["backend"]]
        rows.append([result["model"], result["backend"], f"{result['float_p50_us']:.1f}",
                     f"{result['int8_p50_us']:.1f}", f"{result['ratio']:.2f}", f"<= {target}",
                     "yes" if result["ratio"] <= target else f"**no** (+{result['ratio'] - target:.2f})",
                     describe_execution(result["float_execution"]),
                     describe_execution(result["int8_execution"])])
        if "float_softmax_ratio" in result:
            ratio = result["float_softmax_ratio"]
            rows.append([result["model"], "litert, int8 + float softmax output",
                         f"{result['float_p50_us']:.1f}", f"{result['float_softmax_p50_us']:.1f}",
                         f"{ratio:.2f}", f"<= {target}",
                         "yes" if ratio <= target else f"**no** (+{ratio - target:.2f})", "",
                         describe_execution(result["float_softmax_execution"])])
    return "\n".join([
        "## int8 vs float latency on XNNPACK and ONNX Runtime, with delegation", "",
        (f"`python benchmarks/bench_int8_speed.py`. {machine_line()} Zoo models trained one epoch "
         "on mnist5k (mobilenet_v2 alpha 0.35 at 32x32) and converted with edgeship's defaults. "
         f"Batch 1, one thread, random inputs; {runs} timed runs per file in {rounds} rounds that "
         "alternate float and int8, p50 is the median of the rounds' p50s. LiteRT runs its "
         "default kernels (XNNPACK delegate); ONNX Runtime the CPU provider at ORT_ENABLE_ALL. "
         "Delegation: XNNPACK's partitions, the ops it took and the ops left to LiteRT's own "
         "kernels (from the interpreter's node list after delegation); for ONNX Runtime the "
         "nodes of its optimized graph in int8 kernels, in float, and the Q/DQ conversions. "
         "`int8 + float softmax output` is model_int8.tflite rewritten by "
         "`edgeship.convert.xnnpack.float_softmax_output` (DEQUANTIZE of the int8 logits, "
         "float SOFTMAX: the output becomes float32 probabilities), timed in the same rounds."), "",
        markdown_table(["model", "runtime", "float p50 us", "int8 p50 us", "int8 / float",
                        "target", "meets", "float: delegation / kernels",
                        "int8: delegation / kernels"], rows),
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default="runs/bench_int8_speed")
    parser.add_argument("--no-publish", action="store_true", help="print, do not write docs/")
    args = parser.parse_args()
    results = []
    for model in args.models.split(","):
        run_dir = prepare_run(model, Path(args.out) / model)
        write_float_softmax_variant(run_dir)
        for backend in PAIRS:
            result = {"model": model, **compare(run_dir, backend, args.runs, args.rounds)}
            results.append(result)
            print(json.dumps(result), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    markdown = render_section(results, args.runs, args.rounds)
    if args.no_publish:
        print(markdown)
    else:
        publish_section("int8_speed", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
