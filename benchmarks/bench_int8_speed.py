"""int8 vs float latency on the phone runtimes, with what each runtime ran where.

Usage: python benchmarks/bench_int8_speed.py [--runs 2000] [--out runs/bench_int8_speed] [--models ...]
Trains each zoo model one epoch on mnist5k (mobilenet_v2 at 32x32; latency does not depend on
the weights' values), converts it with edgeship's defaults (`--int8 --onnx`), then times
model_float.tflite against model_int8.tflite, model_int8_xnnpack.tflite (the default phone
file) and the `--xnnpack rounding` variants on LiteRT (XNNPACK), and model.onnx against
model_int8.onnx on ONNX Runtime, batch 1, one thread, the files of a runtime alternating in
rounds inside one process so all see the same machine load. Writes the `int8_speed`
section of docs/results.md: p50 of each, the int8/float ratio against the targets of issue 19
(<= 0.7 on XNNPACK, <= 0.8 on ONNX Runtime), and the delegation columns (XNNPACK partitions
and the ops it left outside; ONNX Runtime's nodes in int8 kernels and in float).
"""

import argparse
import json
import multiprocessing
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_doc import machine_line, publish_section
from edgeship.reports import markdown_table
from edgeship.runtime.bench import BenchConfig, bench, describe_execution
from edgeship.train.datasets import DatasetSpec

MODELS = ("lenet5", "simple_cnn", "keras_cnn", "dscnn", "mobilenet_v2")
IMAGE_SIZE = {"mobilenet_v2": (32, 32)}
TARGETS = {"litert": 0.7, "onnxruntime": 0.8}
FLOAT_FILES = {"litert": "model_float.tflite", "onnxruntime": "model.onnx"}
ROUNDING = "model_int8_xnnpack_rounding.tflite"   # convert --xnnpack rounding's file
FLOAT_SOFTMAX = "model_int8_xnnpack_rounding_float_softmax.tflite"
# The int8 files timed against each runtime's float file, with what each one is.
VARIANTS = {
    "litert": (("model_int8.tflite", "model_int8.tflite (the MCU file)"),
               ("model_int8_xnnpack.tflite", "model_int8_xnnpack.tflite (default, exact)"),
               (ROUNDING, "--xnnpack rounding"),
               (FLOAT_SOFTMAX, "--xnnpack rounding + float softmax output")),
    "onnxruntime": (("model_int8.onnx", "model_int8.onnx"),),
}


def prepare_run(model: str, out: Path) -> Path:
    """Train one epoch (once), convert with the defaults (`--int8 --onnx`), and write the
    result-changing variants beside: `--xnnpack rounding`'s file and its float-softmax form."""
    from edgeship.artifacts import write_bytes_atomic
    from edgeship.convert.run import ConvertConfig, run_convert
    from edgeship.convert.xnnpack import float_softmax_output, rewrite_for_xnnpack
    from edgeship.train.fit import TrainConfig, train

    if not (out / "model.keras").is_file():
        spec = DatasetSpec(name="mnist5k", seed=0, image_size=IMAGE_SIZE.get(model))
        train(TrainConfig(model=model, dataset=spec, out=str(out), epochs=1, seed=0))
    run_convert(ConvertConfig(source=str(out), int8=True, onnx=True, seed=0))
    int8 = (out / "model_int8.tflite").read_bytes()
    if not (out / "model_int8_xnnpack.tflite").is_file():  # no exact rewrite applies
        write_bytes_atomic(out / "model_int8_xnnpack.tflite", int8)
    rounding, _ = rewrite_for_xnnpack(int8, "rounding")
    write_bytes_atomic(out / ROUNDING, rounding)
    write_bytes_atomic(out / FLOAT_SOFTMAX, float_softmax_output(rounding))
    return out


def rewrites_of(run_dir: Path) -> dict[str, list[str]]:
    """What each XNNPACK mode changed in this model (from convert/xnnpack.py)."""
    from edgeship.convert.xnnpack import rewrite_for_xnnpack

    int8 = (run_dir / "model_int8.tflite").read_bytes()
    return {mode: [rewrite.became for rewrite in rewrite_for_xnnpack(int8, mode)[1]]
            for mode in ("exact", "rounding")}


def compare(run_dir: Path, backend: str, runs: int, rounds: int) -> list[dict]:
    """p50 of the float file and each int8 variant on one backend, in alternating rounds.

    Returns:
        One record per int8 variant: float and int8 p50 (medians of the rounds' p50s), their
        ratio, and both files' execution summaries (delegation or kernel precision).
    """
    names = (FLOAT_FILES[backend],) + tuple(name for name, _ in VARIANTS[backend])
    p50s = {name: [] for name in names}
    execution = {}
    for _ in range(rounds):
        for name in names:
            (record,) = bench(BenchConfig(artifacts=(str(run_dir / name),), backends=(backend,),
                                          runs=runs // rounds, warmup=50))
            p50s[name].append(record["latency_us"]["p50"])
            execution[name] = record["execution"]
    float_p50s = np.array(p50s[FLOAT_FILES[backend]])
    results = []
    for name, label in VARIANTS[backend]:
        # The machine's speed drifts between rounds by up to 1.6x (a shared VM): the ratio is
        # the median of the per-round ratios, each of two files timed back to back.
        ratio = float(np.median(np.array(p50s[name]) / float_p50s))
        results.append({"backend": backend, "variant": label,
                        "float_p50_us": float(np.median(float_p50s)),
                        "int8_p50_us": float(np.median(p50s[name])), "ratio": ratio,
                        "float_execution": execution[FLOAT_FILES[backend]],
                        "int8_execution": execution[name]})
    return results


def ort_profile(path: Path, runs: int = 300) -> dict[str, float]:
    """ONNX Runtime's own per-node profile: mean us per inference by op type (batch 1, 1 thread)."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgeship-ort-profile-") as work:
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(work) / "profile")
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=["CPUExecutionProvider"])
        (feed,) = session.get_inputs()
        shape = [side if isinstance(side, int) and side > 0 else 1 for side in feed.shape]
        image = np.random.default_rng(0).random(shape, dtype=np.float32)
        for _ in range(runs):
            session.run(None, {feed.name: image})
        events = json.loads(Path(session.end_profiling()).read_text())
    by_type: dict[str, float] = {}
    for event in events:
        op_type = (event.get("args") or {}).get("op_name")
        if event.get("cat") == "Node" and op_type and event["name"].endswith("_kernel_time"):
            by_type[op_type] = by_type.get(op_type, 0.0) + event["dur"] / runs
    return dict(sorted(by_type.items(), key=lambda item: -item[1]))


def _top(profile: dict[str, float], count: int = 4) -> str:
    return ", ".join(f"{op} {us:.1f}" for op, us in list(profile.items())[:count])


def _count(items: list[str]) -> str:
    counts = {item: items.count(item) for item in items}
    return ", ".join(f"{item} x{count}" if count > 1 else item for item, count in counts.items())


def render_section(results: list[dict], runs: int, rounds: int) -> str:
    rows = []
    for result in results:
        target = TARGETS[result["backend"]]
        rewrites = ""
        if result["backend"] == "litert" and not result["variant"].startswith("model_int8.tflite"):
            mode = "rounding" if "rounding" in result["variant"] else "exact"
            rewrites = _count(result["rewrites"][mode]) or "none applies"
        rows.append([result["model"], result["backend"], result["variant"], rewrites,
                     f"{result['float_p50_us']:.1f}", f"{result['int8_p50_us']:.1f}",
                     f"{result['ratio']:.2f}", f"<= {target}",
                     "yes" if result["ratio"] <= target else f"**no** (+{result['ratio'] - target:.2f})",
                     describe_execution(result["float_execution"]),
                     describe_execution(result["int8_execution"])])
    return "\n".join([
        "## int8 vs float latency on XNNPACK and ONNX Runtime, with delegation", "",
        (f"`python benchmarks/bench_int8_speed.py`. {machine_line()} Zoo models trained one epoch "
         "on mnist5k (mobilenet_v2 alpha 0.35 at 32x32) and converted with edgeship's defaults "
         "(`--int8 --onnx`). Batch 1, one thread, random inputs; "
         f"{runs} timed runs per file in {rounds} rounds that alternate the float file and every "
         "int8 variant; p50 is the median of the rounds' p50s, and int8 / float the median of "
         "the rounds' ratios (this shared machine's speed drifts between rounds). LiteRT runs its default kernels "
         "(XNNPACK delegate); ONNX Runtime the CPU provider at ORT_ENABLE_ALL. Delegation: "
         "XNNPACK's partitions, the ops it took and the ops left to LiteRT's own kernels (from "
         "the interpreter's node list after delegation); for ONNX Runtime the nodes of its "
         "optimized graph in int8 kernels, in float, and the Q/DQ conversions."), "",
        ("The LiteRT int8 variants (edgeship/convert/xnnpack.py): `model_int8.tflite` is the "
         "file a microcontroller runs; `model_int8_xnnpack.tflite` is what convert delivers for "
         "phones by default (`--xnnpack exact`: rewrites whose int8 results are identical on "
         "every runtime, tested bit for bit on LiteRT's reference and XNNPACK kernels and TFLite "
         "Micro; where none applies it is model_int8.tflite itself); `--xnnpack rounding` also "
         "runs int8 AVERAGE_POOL_2D as a DEPTHWISE_CONV_2D that XNNPACK takes (outputs can "
         "differ by one quantum where a window's mean is exactly half-way); `+ float softmax "
         "output` is that file with `float_softmax_output` (int8 logits dequantized, float "
         "SOFTMAX: the output becomes float32 probabilities). `rewrites` names what each mode "
         "changed in the model (SPACE_TO_DEPTH + CONV_2D [+ DEPTH_TO_SPACE]: a convolution "
         "reading one or two channels, which XNNPACK's int8 kernels pad to four)."), "",
        markdown_table(["model", "runtime", "int8 file", "rewrites", "float p50 us",
                        "int8 p50 us", "int8 / float", "target", "meets",
                        "float: delegation / kernels", "int8: delegation / kernels"], rows),
        "", *misses(results),
    ])


def misses(results: list[dict]) -> list[str]:
    """Why each default file that misses its target misses it, from this run's columns."""
    lines = []
    by_key = {(r["model"], r["backend"], r["variant"]): r for r in results}
    for result in results:
        default = (result["backend"] == "onnxruntime"
                   or result["variant"].startswith("model_int8_xnnpack.tflite"))
        target = TARGETS[result["backend"]]
        if not default or result["ratio"] <= target:
            continue
        head = (f"- {result['model']} on {result['backend']}: {result['ratio']:.2f} with the "
                f"default file ({result['ratio'] - target:+.2f} over {target}). ")
        if result["backend"] == "litert":
            outside = (result["int8_execution"] or {}).get("outside") or {}
            rounding = by_key[(result["model"], "litert", "--xnnpack rounding")]
            softmax = by_key[(result["model"], "litert",
                              "--xnnpack rounding + float softmax output")]
            head += ("Left outside XNNPACK: " + ", ".join(f"{op} x{n}" for op, n in outside.items())
                     + f" (no int8 kernel in XNNPACK, no exact rewrite); `--xnnpack rounding` "
                     f"{rounding['ratio']:.2f}, with a float softmax output "
                     f"{softmax['ratio']:.2f}." if outside else
                     "Everything runs in XNNPACK; its int8 kernels are not faster enough on these "
                     f"layer sizes on this CPU (`--xnnpack rounding` {rounding['ratio']:.2f}, "
                     f"with a float softmax output {softmax['ratio']:.2f}).")
        else:
            profile = result["profile"]
            head += (f"ONNX Runtime's per-node profile (us per inference, by op type; "
                     f"{sum(profile['int8'].values()):.1f} int8 vs "
                     f"{sum(profile['float'].values()):.1f} float in all nodes, profiled): int8 "
                     f"{_top(profile['int8'])}; float {_top(profile['float'])}.")
        lines.append(head)
    return ["Where a default file misses its target:", "", *lines] if lines else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--out", default="runs/bench_int8_speed")
    parser.add_argument("--no-publish", action="store_true", help="print, do not write docs/")
    args = parser.parse_args()
    models = args.models.split(",")
    # Training and converting import TensorFlow, whose idle thread pools measurably slowed
    # the timings that followed in the same process: prepare in a child process.
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        pool.starmap(prepare_run, [(model, Path(args.out) / model) for model in models])
    results = []
    for model in models:
        run_dir = Path(args.out) / model
        rewrites = rewrites_of(run_dir)
        for backend in VARIANTS:
            for result in compare(run_dir, backend, args.runs, args.rounds):
                result = {"model": model, "rewrites": rewrites, **result}
                if backend == "onnxruntime":
                    result["profile"] = {"float": ort_profile(run_dir / FLOAT_FILES[backend]),
                                         "int8": ort_profile(run_dir / "model_int8.onnx")}
                results.append(result)
                print(json.dumps(result), flush=True)
    if "tensorflow" in sys.modules:
        raise SystemExit("the timing process imported TensorFlow (it slows the timings)")
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
