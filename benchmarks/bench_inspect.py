"""`edgeship inspect` on the zoo and on the MLPerf Tiny reference models; writes docs/results.md.

Per op (edgeship.runtime.op_parity): every op of the int8 .tflite cut into a one-op model, fed
the reference kernels' (litert-ref) own int8 inputs for that op, and run on each runtime:
litert (XNNPACK), tflm (TFLite Micro), c (edgeship's generated C, compiled on the host).
Per layer (edgeship.runtime.inspect.layer_errors): each int8 tensor against the float .tflite's,
timed on the zoo models only, as the MLPerf files come without a float twin.

Zoo models are trained as bench_codegen trains them (2 epochs, 512 images) and run on real
test images. The MLPerf image models take sklearn digits resized (the only images offline, not
their domain); KWS (MFCC) and AD (spectrogram features) have no offline data and take seeded
random int8 inputs over the input's full range.

    python benchmarks/bench_inspect.py [--images 16]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeship  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.bench_codegen import MODELS as ZOO_MODELS
from benchmarks.bench_codegen import train_zoo_model
from benchmarks.results_doc import machine_line, publish_section
from edgeship.reports import markdown_table

RUNTIMES = ("litert", "tflm", "c")
VERDICTS = ("bit-exact", "rounding", "divergent", "not covered")
MLPERF_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
# file stem -> (label, image size to resize digits to; None: no offline data, random inputs)
MLPERF_MODELS = {
    "kws_ref_model": ("MLPerf KWS (DS-CNN)", None),
    "vww_96_int8": ("MLPerf VWW (MobileNetV1 0.25)", (96, 96)),
    "pretrainedResnet_quant": ("MLPerf IC (ResNet-8)", (32, 32)),
    "ad01_int8": ("MLPerf AD (FC autoencoder)", None),
}
RANDOM_SEED = 0


def export_twins(name: str, dataset, folder: Path) -> tuple[Path, Path]:
    """The trained zoo model as float and full-int8 .tflite files."""
    from edgeship.convert.tflite import export_tflite

    model = train_zoo_model(name, dataset)
    float_path, int8_path = folder / f"{name}_float.tflite", folder / f"{name}_int8.tflite"
    float_path.write_bytes(export_tflite(model))
    int8_path.write_bytes(export_tflite(model, representative_samples=dataset.x_train[:64]))
    return float_path, int8_path


def mlperf_inputs(path: Path, image_size: tuple[int, int] | None, count: int
                  ) -> tuple[np.ndarray, str]:
    """Raw int8 inputs for an MLPerf file and a note on where they come from.

    Digits (in [0, 1]) are scaled onto the input's full quantized range (0..255 for the
    ResNet, whose input scale is 1; 0..1 for VWW), then quantized with the file's own scale.
    """
    from edgeship.runtime.backends import open_backend
    from edgeship.train.datasets import DatasetSpec, load_dataset

    with open_backend("litert-ref", path) as backend:
        info = backend.inputs()[0]
        if image_size is None:
            shape = (count, *(abs(side) for side in info.shape[1:]))
            generator = np.random.default_rng(RANDOM_SEED)
            raw = generator.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)
            return raw, f"random int8 (seed {RANDOM_SEED}, full range)"
        dataset = load_dataset(DatasetSpec(name="digits", image_size=image_size, channels=3))
        input_max = (127 - info.zero_point) * info.scale
        raw = backend.quantize_input(dataset.x_test[:count] * input_max)
    return raw, f"digits {image_size[0]}x{image_size[1]}x3 (real, not its domain)"


def measure_ops(int8_path: Path, raw: np.ndarray) -> dict:
    """per_op_parity on every runtime, timed, with its per-runtime summary."""
    from tensorflow.lite.tools import flatbuffer_utils

    from edgeship.runtime.op_parity import REFERENCE_BACKEND, per_op_parity

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(int8_path.read_bytes()))
    started = time.perf_counter()
    results = per_op_parity(int8_path, raw, RUNTIMES)
    seconds = time.perf_counter() - started
    counts = {runtime: {verdict: 0 for verdict in VERDICTS}
              for runtime in (REFERENCE_BACKEND, *RUNTIMES)}
    largest = {runtime: 0 for runtime in counts}
    for result in results:
        counts[result.runtime][result.verdict] += 1
        largest[result.runtime] = max(largest[result.runtime], result.max_quanta)
    return {"ops": len(model.subgraphs[0].operators),
            "checked": len({result.index for result in results}),
            "reference": counts[REFERENCE_BACKEND], "counts": counts, "max_quanta": largest,
            "seconds": seconds, "images": len(raw),
            "divergent": [result.describe() for result in results if result.failed],
            "not_covered": [(result.runtime, result.cause, f"op {result.index} {result.op}")
                            for result in results if result.verdict == "not covered"],
            "rounding": [(result.runtime, result.op, result.cause) for result in results
                         if result.verdict == "rounding"],
            "reference_failures": [result.describe() for result in results
                                   if result.runtime == REFERENCE_BACKEND
                                   and result.verdict != "bit-exact"]}


def measure_layers(int8_path: Path, float_path: Path, images: np.ndarray) -> dict:
    """layer_errors timed, with the worst layer it found."""
    from edgeship.runtime.inspect import layer_errors

    started = time.perf_counter()
    layers = layer_errors(int8_path, float_path, images)
    seconds = time.perf_counter() - started
    worst = min(layers, key=lambda layer: layer.sqnr_db)
    return {"seconds": seconds, "layers": len(layers),
            "worst": f"op {worst.index} {worst.op}, {worst.sqnr_db:.1f} dB"}


def render(rows: list[dict], skipped: list[str], images: int) -> str:
    header = ["model", "inputs", "ops (checked)"]
    for runtime in RUNTIMES:
        header += [f"{runtime} exact / round / div / n.c.", f"{runtime} max q"]
    header += ["per-op s"]
    table = []
    for row in rows:
        cells = [row["model"], row["inputs"], f"{row['ops']} ({row['checked']})"]
        for runtime in RUNTIMES:
            counts = row["counts"][runtime]
            cells += [" / ".join(str(counts[verdict]) for verdict in VERDICTS),
                      str(row["max_quanta"][runtime])]
        table.append(cells + [f"{row['seconds']:.1f}"])
    timing = [[row["model"], str(row["images"]), f"{row['layer']['seconds']:.1f}",
               str(row["layer"]["layers"]), row["layer"]["worst"], f"{row['seconds']:.1f}",
               f"{row['layer']['seconds'] + row['seconds']:.1f}"]
              for row in rows if row.get("layer")]
    timing += [[row["model"], str(row["images"]), "n/a (no float twin)", "", "",
                f"{row['seconds']:.1f}", f"{row['seconds']:.1f}"]
               for row in rows if not row.get("layer")]
    reference_exact = all(row["reference"]["bit-exact"] == row["checked"] for row in rows)
    divergent = [f"- {row['model']}: {line}" for row in rows for line in row["divergent"]]
    uncovered: dict[tuple[str, str], dict[str, list[str]]] = {}
    for row in rows:
        for runtime, cause, op in row["not_covered"]:
            uncovered.setdefault((runtime, cause), {}).setdefault(row["model"], []).append(op)
    uncovered_lines = [f"- {runtime}, {cause}: " + "; ".join(
        f"{model} {', '.join(ops)}" for model, ops in by_model.items())
        for (runtime, cause), by_model in uncovered.items()]
    rounding: dict[tuple[str, str, str], list[str]] = {}
    for row in rows:
        for key in row["rounding"]:
            models = rounding.setdefault(key, [])
            if row["model"] not in models:
                models.append(row["model"])
    rounding_lines = [f"- {runtime} {op}: {cause or 'no known cause'} ({', '.join(models)})"
                      for (runtime, op, cause), models in sorted(rounding.items())]
    reference_failures = [f"- {row['model']}: {line}" for row in rows
                          for line in row["reference_failures"]]
    lines = [
        "## Inspect: per-op runtime parity and per-layer error",
        "",
        (f"`python benchmarks/bench_inspect.py --images {images}`. {machine_line()} Every op of "
         "each int8 .tflite cut into a one-op model and fed the reference kernels' (litert-ref) "
         "own int8 inputs for it; each runtime's output compared with the reference's in quanta "
         "(edgeship.runtime.op_parity): bit-exact; rounding (at most 1 quantum, mean within "
         "0.25); divergent (anything more); not covered (the runtime cannot run that one-op "
         "model). litert = ai-edge-litert with XNNPACK, tflm = TFLite Micro, c = edgeship's "
         "generated C compiled on the host. Zoo models trained as in the codegen section (2 "
         "epochs, 512 images; lenet5, simple_cnn, keras_cnn, dscnn on mnist5k; mobilenet_v2 "
         "alpha 0.35 on digits at 32x32x3), on their own test images. MLPerf Tiny reference "
         "files unchanged: the image models take sklearn digits resized and scaled onto the "
         "input's range (real images, not CIFAR-10 or person photos); KWS and AD have no "
         "offline data and take seeded random int8 over the input's full range, so their "
         "inner ops see unrealistic activations. Ops (checked): ops in the file (ops with an "
         "activation input and one output). Per-op s: one per_op_parity call for all three "
         "runtimes (the generated C is compiled once per op)."),
        "",
        markdown_table(header, table).rstrip(),
        "",
        ("The reference kernels reproduced every op's tensor from its one-op model bit for bit "
         "on every model." if reference_exact else
         "The one-op model did not reproduce the reference kernels' own tensor for:"),
        *reference_failures,
        "",
        "### Divergent ops",
        "",
        *(divergent or ["None."]),
        "",
        "### Not covered, by runtime and reason",
        "",
        *(uncovered_lines or ["None."]),
        "",
        "### Rounding differences and their known causes",
        "",
        *(rounding_lines or ["None."]),
        "",
        "### How long inspect takes",
        "",
        ("Seconds on this machine, same images: per layer = `layer_errors` (int8 tensors under "
         "the reference kernels against the float .tflite's, worst SQNR shown); per op = "
         "`per_op_parity` on litert, tflm and c. The MLPerf files have no float twin, so per "
         "layer does not apply to them."),
        "",
        markdown_table(["model", "images", "per-layer s", "layers", "worst layer",
                        "per-op s", "total s"], timing).rstrip(),
        "",
    ]
    if skipped:
        lines += ["Skipped: " + "; ".join(skipped) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/results.md")
    args = parser.parse_args(argv)
    from edgeship.runtime.backends import open_backend
    from edgeship.train.datasets import DatasetSpec, load_dataset

    datasets = {"mnist5k": load_dataset(DatasetSpec(name="mnist5k", seed=0)),
                "digits": load_dataset(DatasetSpec(name="digits", image_size=(32, 32),
                                                   channels=3))}
    rows, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="bench_inspect_") as folder:
        for name in ZOO_MODELS:
            dataset = datasets["digits" if name == "mobilenet_v2" else "mnist5k"]
            float_path, int8_path = export_twins(name, dataset, Path(folder))
            images = np.ascontiguousarray(dataset.x_test[:args.images])
            with open_backend("litert-ref", int8_path) as backend:
                raw = backend.quantize_input(images)
            row = {"model": name, "inputs": f"{dataset.spec.name} test (real)",
                   **measure_ops(int8_path, raw),
                   "layer": measure_layers(int8_path, float_path, images)}
            print({key: row[key] for key in ("model", "counts", "seconds", "layer")}, flush=True)
            rows.append(row)
    for stem, (label, image_size) in MLPERF_MODELS.items():
        path = MLPERF_FOLDER / f"{stem}.tflite"
        if not path.is_file():
            print(f"skipping {label}: {path} not found", flush=True)
            skipped.append(f"{label} ({path.name} not found beside the checkout)")
            continue
        raw, inputs = mlperf_inputs(path, image_size, args.images)
        row = {"model": label, "inputs": inputs, **measure_ops(path, raw)}
        print({key: row[key] for key in ("model", "counts", "seconds")}, flush=True)
        rows.append(row)
    markdown = render(rows, skipped, args.images)
    if args.no_doc:
        print(markdown)
    else:
        publish_section("inspect", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
