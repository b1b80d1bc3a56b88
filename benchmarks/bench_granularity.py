"""Int8 weight granularity on the zoo's batch-norm models: per-channel, per-tensor and auto.

Usage: python benchmarks/bench_granularity.py [--epochs 3] [--workdir runs/bench_granularity]
Trains dscnn (mnist5k 28x28) and mobilenet_v2 alpha 0.35 (mnist5k 32x32) with the same seed,
converts each to post-training int8 three times (`--weight-granularity per-channel`,
`per-tensor` and `auto`), and writes the `granularity` section of docs/results.md: each file's
bytes and test-split drop, and auto's own measurement (output error and top-1 disagreements on
1,000 training images for every candidate it tried, including a per-layer mix).
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_doc import machine_line, publish_section
from edgeship.convert.run import ConvertConfig, run_convert
from edgeship.reports import markdown_table
from edgeship.train.datasets import DatasetSpec
from edgeship.train.fit import TrainConfig, train

MODELS = (("dscnn", None), ("mobilenet_v2", (32, 32)))
GRANULARITIES = ("per-channel", "per-tensor", "auto")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workdir", default="runs/bench_granularity")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    files, measured = [], []
    for model, image_size in MODELS:
        trained = train(TrainConfig(model=model, epochs=args.epochs, seed=0,
                                    dataset=DatasetSpec(name="mnist5k", image_size=image_size),
                                    out=str(workdir / model / "trained")))
        for granularity in GRANULARITIES:
            out = workdir / model / granularity
            shutil.copytree(trained.run_dir, out)
            started = time.perf_counter()
            report = run_convert(ConvertConfig(source=str(out), int8=True, onnx=False,
                                               weight_granularity=granularity)).report
            seconds = time.perf_counter() - started
            rows = {row["file"]: row for row in report["artifacts"]}
            float_row, int8_row = rows["model_float.tflite"], rows["model_int8.tflite"]
            choice = report["weight_granularity"]
            files.append([model, granularity, choice["chosen"], f"{int8_row['bytes']:,}",
                          f"{int8_row['bytes'] / float_row['bytes']:.3f}",
                          f"{float_row['accuracy'] * 100:.1f}%",
                          f"{int8_row['drop_pp']:+.1f}", f"{seconds:.1f}"])
            if granularity == "auto":
                for candidate in choice["candidates"]:
                    label = candidate["granularity"]
                    if label == "mixed":
                        label = (f"mixed ({len(candidate['per_tensor_layers'])} of "
                                 f"{choice['weighted_layers']} layers per-tensor)")
                    measured.append([model, label, f"{candidate['bytes']:,}",
                                     f"{candidate['output_error']:.5f}",
                                     str(candidate["disagreements"]),
                                     "yes" if candidate["granularity"] == choice["chosen"]
                                     else ""])
                kept = sorted(set(choice["layers"]) - set(next(
                    (c["per_tensor_layers"] for c in choice["candidates"]
                     if c["granularity"] == "mixed"), choice["layers"])))
                if choice["chosen"] == "mixed":
                    measured.append([model, f"kept per-channel: {', '.join(kept)}", "", "", "", ""])
            print(files[-1], flush=True)
    markdown = "\n".join([
        "## Int8 weight granularity on batch-norm models", "",
        f"`python benchmarks/bench_granularity.py --epochs {args.epochs}`. {machine_line()} "
        f"Models trained {args.epochs} epochs (seed 0) on mnist5k; post-training int8 with 500 "
        "calibration images; drop against the float Keras model on the 1,000-image test split "
        "(1 image = 0.1 pp), int8 run in ai_edge_litert. `auto` measures per-channel and "
        "per-tensor on 1,000 training images (output error: mean total-variation distance of "
        "the class probabilities from the float TFLite's) and keeps per-tensor when its error is "
        "within 10% of per-channel's; otherwise it measures each layer alone as per-tensor, "
        "ranks layers by error added per byte saved, and keeps the largest ranked set whose "
        "measured error is within the same bound. Convert seconds include auto's measurements.",
        "",
        markdown_table(["model", "asked", "weights", "int8 bytes", "× float", "float top-1",
                        "int8 drop (pp)", "convert s"], files),
        "auto's measurement:", "",
        markdown_table(["model", "candidate", "bytes", "output error",
                        "top-1 disagreements (of 1,000)", "chosen"], measured),
    ])
    publish_section("granularity", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
