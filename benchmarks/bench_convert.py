"""Convert targets on mnist5k / lenet5 (5 epochs): accuracy drop and size of each int8 path,
and the same paths on a model unlike the zoo's (batch norm after a depthwise conv, a residual
add: the model of issue 14), with which int8 file convert delivered and its granularity.

Usage: python benchmarks/bench_convert.py [--epochs 5] [--workdir runs/bench_convert]
Writes the `convert` section of docs/results.md.
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeship  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.results_doc import machine_line, publish_section
from edgeship.convert.run import ConvertConfig, run_convert
from edgeship.reports import markdown_table
from edgeship.train.datasets import DatasetSpec
from edgeship.train.fit import TrainConfig, train

VARIANTS = {
    "post-training int8": dict(),
    "post-training int8, per-channel weights": dict(weight_granularity="per-channel"),
    "QAT 1 epoch, int8": dict(qat_epochs=1),
    "prune 0.75 + QAT 1 epoch, int8": dict(qat_epochs=1, prune_sparsity=0.75),
}
TARGETS = {
    "post-training int8": 1.0,
    "post-training int8, per-channel weights": 1.0,
    "QAT 1 epoch, int8": 0.3,
    "prune 0.75 + QAT 1 epoch, int8": 1.0,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workdir", default="runs/bench_convert")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    trained = train(TrainConfig(model="lenet5", dataset=DatasetSpec(name="mnist5k"),
                                out=str(workdir / "trained"), epochs=args.epochs, seed=0))
    rows, checks = [], []
    float_bytes = float_gz = auto_choice = None
    for label, options in VARIANTS.items():
        out = workdir / label.replace(",", "").replace(" ", "_").replace("+", "and")
        shutil.copytree(trained.run_dir, out)
        started = time.perf_counter()
        report = run_convert(ConvertConfig(source=str(out), int8=True, onnx=False, **options)).report
        seconds = time.perf_counter() - started
        by_file = {row["file"]: row for row in report["artifacts"]}
        choice = report["weight_granularity"]
        if label == "post-training int8":
            auto_choice = choice
        float_row, int8_row = by_file["model_float.tflite"], by_file["model_int8.tflite"]
        float_bytes, float_gz = float_row["bytes"], float_row["gzipped_bytes"]
        rows.append([label, f"{by_file['model.keras']['accuracy'] * 100:.2f}%",
                     f"{int8_row['accuracy'] * 100:.2f}%", f"{int8_row['drop_pp']:+.2f}",
                     f"{TARGETS[label]:.1f}", "yes" if int8_row["drop_pp"] <= TARGETS[label] else "NO",
                     f"{int8_row['agreement'] * 100:.1f}%", f"{int8_row['bytes']:,}",
                     f"{int8_row['bytes'] / float_bytes:.3f}",
                     f"{int8_row['gzipped_bytes'] / float_gz:.3f}",
                     f"{(int8_row['sparsity'] or 0) * 100:.1f}%",
                     f"{choice['chosen']} ({choice['requested']})", f"{seconds:.0f} s"])
        if label == "post-training int8":
            checks.append(["int8 bytes ≤ 0.27 × float bytes",
                           f"{int8_row['bytes'] / float_bytes:.3f}",
                           "yes" if int8_row["bytes"] <= 0.27 * float_bytes else "NO"])
        if label.startswith("prune"):
            checks.append(["prune 0.75 + int8 gzipped ≤ 0.12 × float gzipped",
                           f"{int8_row['gzipped_bytes'] / float_gz:.3f}",
                           "yes" if int8_row["gzipped_bytes"] <= 0.12 * float_gz else "NO"])
            checks.append(["sparsity in the int8 file ≥ 0.74", f"{int8_row['sparsity']:.3f}",
                           "yes" if int8_row["sparsity"] >= 0.74 else "NO"])
    candidates = {c["granularity"]: c["bytes"] for c in auto_choice["candidates"]}
    channel_overhead = candidates["per-channel"] - candidates["per-tensor"]
    buffer_bytes = _buffer_bytes(workdir / "post-training_int8" / "model_int8.tflite")
    markdown = "\n".join([
        "## Convert: accuracy drop and size (lenet5, mnist5k)", "",
        f"`python benchmarks/bench_convert.py --epochs {args.epochs}`. {machine_line()} "
        f"lenet5 trained {args.epochs} epochs (seed 0) on mnist5k; drops against the float Keras "
        f"model on the 1,000-image test split (1 image = 0.1 pp); int8 run in ai_edge_litert. "
        f"Float TFLite: {float_bytes:,} bytes, {float_gz:,} gzipped.", "",
        markdown_table(["variant", "float top-1", "int8 top-1", "drop (pp)", "target (pp)", "met",
                        "agreement", "int8 bytes", "× float", "gz × float", "sparsity",
                        "weights (asked)", "convert"], rows),
        markdown_table(["size target (default options)", "measured", "met"], checks),
        f"Where the bytes go: one byte per weight and four per bias ({buffer_bytes:,} bytes of "
        f"buffers in the post-training file, a {buffer_bytes / float_bytes:.3f} floor), plus, "
        "for every per-channel weight tensor and its int32 bias, a float32 scale and an int64 "
        "zero point per output channel (TFLite's schema): 24 bytes a channel, "
        f"{channel_overhead:,} bytes on lenet5 (per-channel minus per-tensor file), which puts "
        "TFLite's default per-channel file above 0.27. `--weight-granularity "
        "auto` (the default) converts both ways and keeps per-tensor weights when their class "
        "probabilities stay as close to the float model's as per-channel's (mean total-variation "
        "distance within 10%) on 1,000 training images, never the test split. Its measurement "
        "for the post-training row:", "",
        markdown_table(["candidate", "bytes", "output error", "top-1 disagreements (of "
                        f"{auto_choice['selection_images']})"],
                       [[c["granularity"], f"{c['bytes']:,}", f"{c['output_error']:.5f}",
                         str(c["disagreements"])] for c in auto_choice["candidates"]]),
        f"Chosen: {auto_choice['chosen']}. QAT does not inherit it: with `auto` it trains "
        "per-channel, and per-tensor too when post-training was per-tensor, and applies the same "
        "rule to the two fine-tuned files; the fine-tuned file ships only when it scores at "
        "least as well as the post-training one on the same 1,000 training images. edgeship's "
        "QAT leaves average pools on their input's range, so the QAT file has no requantize op "
        "after each pool (stock tfmot adds two on lenet5).", "",
        _residual_section(workdir / "residual", args.epochs),
    ])
    publish_section("convert", markdown)
    return 0


RESIDUAL_VARIANTS = {
    "post-training int8": dict(),
    "QAT 1 epoch": dict(qat_epochs=1),
    "QAT 1 epoch, per-tensor forced": dict(qat_epochs=1, weight_granularity="per-tensor"),
    "QAT 1 epoch, learning rate 0.05": dict(qat_epochs=1, qat_learning_rate=0.05),
}


def _residual_section(workdir: Path, epochs: int) -> str:
    """The int8 paths on a Conv+BN, DepthwiseConv+BN residual model saved as a user's file."""
    from edgeship.train.datasets import load_dataset
    from tests.convert.test_finetune import build_residual_depthwise_model

    dataset = load_dataset(DatasetSpec(name="mnist5k"))
    model = build_residual_depthwise_model(dataset.input_shape, dataset.num_classes)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(dataset.x_train, dataset.y_train, epochs=epochs, batch_size=32, verbose=0)
    workdir.mkdir(parents=True, exist_ok=True)
    model.save(workdir / "user.keras")
    rows = []
    for label, options in RESIDUAL_VARIANTS.items():
        out = workdir / label.replace(",", "").replace(" ", "_")
        started = time.perf_counter()
        report = run_convert(ConvertConfig(source=str(workdir / "user.keras"), int8=True,
                                           dataset=dataset.spec, out=str(out), **options)).report
        seconds = time.perf_counter() - started
        by_file = {row["file"]: row for row in report["artifacts"]}
        delivery = report.get("delivery")
        other = delivery["kept"]["file"] if delivery else None
        rows.append([label, f"{by_file['user.keras']['accuracy'] * 100:.2f}%",
                     f"{by_file['model_int8.tflite']['accuracy'] * 100:.2f}%",
                     f"{by_file['model_int8.tflite']['drop_pp']:+.2f}",
                     "yes" if by_file["model_int8.tflite"]["drop_pp"] <= 1.0 else "NO",
                     delivery["delivered"] if delivery else "post-training",
                     report["delivered_granularity"]["model_int8.tflite"],
                     f"`{other}` {by_file[other]['drop_pp']:+.2f}" if other else "—",
                     f"{by_file['model_int8.tflite']['bytes']:,}", f"{seconds:.0f} s"])
    return "\n".join([
        "### A model unlike the zoo's: batch norm after a depthwise conv, a residual add", "",
        f"Conv2D+BN+ReLU6, a DepthwiseConv2D+BN+ReLU6 branch joined by Add, max pools, dropout, "
        f"dense softmax (tests/convert/test_finetune.py), trained {epochs} epochs on mnist5k and "
        "converted as a user's .keras file. Delivered: which file convert ships as "
        "model_int8.tflite; granularity read from that file; the other file and its drop.", "",
        markdown_table(["variant", "float top-1", "int8 top-1", "drop (pp)", "≤ 1 pp",
                        "delivered", "granularity", "kept beside (drop)", "bytes", "convert"],
                       rows)])


def _buffer_bytes(path: Path) -> int:
    """Bytes of constant data (weights, biases, metadata) in a .tflite flatbuffer."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    return sum(len(buffer.data) for buffer in model.buffers if buffer.data is not None)


if __name__ == "__main__":
    sys.exit(main())
