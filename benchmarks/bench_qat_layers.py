"""QAT against post-training int8, layer by layer, on the quick start's run; writes docs/results.md.

Issue 28's check: the README's main command trains lenet5 on mnist5k (5 epochs) and converts
with `--qat 1`. The QAT int8 file is measured against the float model it was quantized from
(model_finetuned_float.tflite), the post-training file against model_float.tflite, both on the
same test images (edgeship.layer_error.layer_errors: each op's int8 output dequantized
against the float op's, SQNR in dB, errors propagated through the int8 model as it runs).
Side by side, in one run, on one trained model:

- `mse` (what convert does): QAT fine-tunes under least-squared-error weight ranges
  (edgeship.convert.qat.mse_weight_ranges);
- `min/max`: the same fine-tune under tfmot's own weight ranges (the largest magnitude), the
  behaviour before, run here by switching mse_weight_ranges off;

each with convert's default `--weight-granularity auto` (per-tensor on this model) and with
`per-channel`. Then lenet5 trained with seeds OTHER_SEEDS, each converted both ways (auto
granularity): which layers fall below moves with the seed.

    python benchmarks/bench_qat_layers.py [--no-doc]
"""

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeship  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from benchmarks.results_doc import machine_line, publish_section
from edgeship.reports import markdown_table

IMAGE_COUNTS = (100, 1000)  # inspect's default, and the whole mnist5k test split
GRANULARITIES = ("auto", "per-channel")
# Training seeds: 0 is the README's command; the others show how much of a per-layer
# difference is the fine-tune's luck (auto granularity, 100 images, no per-op table).
OTHER_SEEDS = (1, 2, 3)


def _train(work: Path, seed: int = 0) -> Path:
    from edgeship.cli import main

    run = work / f"trained_{seed}"
    code = main(["train", "--model", "lenet5", "--dataset", "mnist5k", "--epochs", "5",
                 "--seed", str(seed), "--out", str(run)], quiet=True)
    if code != 0:
        raise SystemExit(f"train exited {code}")
    return run


def _convert(trained: Path, folder: Path, granularity: str, ranges: str) -> Path:
    from edgeship.cli import main
    from edgeship.convert import qat

    shutil.copytree(trained, folder)
    switch = (contextlib.nullcontext if ranges == "min/max" else qat.mse_weight_ranges)
    original = qat.mse_weight_ranges
    qat.mse_weight_ranges = switch
    try:
        code = main(["convert", str(folder), "--int8", "--qat", "1",
                     "--weight-granularity", granularity], quiet=True)
    finally:
        qat.mse_weight_ranges = original
    if code != 0:
        raise SystemExit(f"convert exited {code}")
    return folder


def _compare(run: Path, images) -> list[tuple[str, float, float]]:
    """(op, QAT file's SQNR, post-training file's SQNR) per op, in graph order."""
    import json

    from edgeship.layer_error import layer_errors

    manifest = json.loads((run / "manifest.json").read_text())["convert"]
    tuned = run / manifest["fine_tuned_files"][0]
    references = manifest["float_references"]
    post = run / next(name for name in ("model_int8.tflite", "model_ptq_int8.tflite")
                      if references.get(name) == "model_float.tflite")
    qat = {error.index: error for error in layer_errors(
        tuned, run / "model_finetuned_float.tflite", images)}
    ptq = {error.index: error for error in layer_errors(post, run / "model_float.tflite", images)}
    return [(f"#{index} {qat[index].op}", qat[index].sqnr_db, ptq[index].sqnr_db)
            for index in sorted(qat)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/results.md")
    args = parser.parse_args(argv)
    from edgeship.run_dir import RunDir
    from edgeship.runtime.parity import load_test_split

    started = time.perf_counter()
    rows, verdicts, seeds = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-qat-layers-") as work:
        trained = _train(Path(work))
        for granularity in GRANULARITIES:
            for ranges in ("mse", "min/max"):
                name = f"{granularity}-{ranges.replace('/', '')}"
                run = _convert(trained, Path(work) / name, granularity, ranges)
                for count in IMAGE_COUNTS:
                    images, _, _ = load_test_split(RunDir(run), None, count)
                    layers = _compare(run, images[:])
                    worst = min(qat - ptq for _, qat, ptq in layers)
                    below = [op for op, qat, ptq in layers if qat < ptq]
                    for op, qat, ptq in layers:
                        rows.append([granularity, ranges, str(count), op, f"{qat:.2f}",
                                     f"{ptq:.2f}", f"{qat - ptq:+.2f}"])
                    verdicts.append(
                        f"- {granularity}, {ranges} weight ranges, {count} images: "
                        + ("every layer at or above post-training int8's (smallest margin "
                           f"{worst:+.2f} dB)" if not below else
                           f"{len(below)} layer(s) below post-training int8's ({', '.join(below)};"
                           f" worst {worst:+.2f} dB)"))
                    print(verdicts[-1], flush=True)
        for seed in OTHER_SEEDS:
            trained = _train(Path(work), seed)
            for ranges in ("mse", "min/max"):
                run = _convert(trained, Path(work) / f"seed{seed}-{ranges.replace('/', '')}",
                               "auto", ranges)
                images, _, _ = load_test_split(RunDir(run), None, IMAGE_COUNTS[0])
                layers = _compare(run, images[:])
                below = [f"{op} {qat - ptq:+.2f}" for op, qat, ptq in layers if qat < ptq]
                seeds.append([str(seed), ranges, str(len(layers) - len(below)),
                              str(len(below)), "; ".join(below) or "-"])
                print(seeds[-1], flush=True)
    table = markdown_table(["granularity", "QAT weight ranges", "test images", "op",
                            "QAT vs fine-tuned float (dB)", "post-training vs model_float (dB)",
                            "difference (dB)"], rows)
    markdown = "\n".join([
        "## QAT against post-training int8, per layer (`bench_qat_layers`)", "",
        f"`python benchmarks/bench_qat_layers.py`. {machine_line()} lenet5 trained on mnist5k "
        "for 5 epochs (the README's main command), then `edgeship convert RUN --int8 --qat 1` "
        "four times from the same trained model: convert's weight ranges (`mse`: least "
        "squared error, convert/qat.py) and tfmot's own (`min/max`: the largest magnitude, "
        "the behaviour before), each with `--weight-granularity auto` (per-tensor here) and "
        "`per-channel`. Each op's SQNR is the int8 file's output against its float reference "
        "on the first N test images (the QAT file against model_finetuned_float.tflite, the "
        "post-training file against model_float.tflite), as `edgeship inspect` measures it.",
        "", *verdicts, "",
        "With `per-channel`, the logits FULLY_CONNECTED stays below post-training int8's: "
        "TFLite's post-training int8 quantizes FULLY_CONNECTED per output channel, while tfmot "
        "fake-quantizes Dense kernels per tensor in every scheme, and TensorFlow's converter "
        "rejects a per-channel Dense range from QAT (`'tfl.transpose' op has mismatched "
        "quantized axes of input and output`, tried), so the QAT file's FULLY_CONNECTED "
        "weights are per tensor. `auto`, the default, is per-tensor on both files here.",
        "", table, "",
        f"Other training seeds (`edgeship train ... --seed N`, then the same convert, auto "
        f"granularity, {IMAGE_COUNTS[0]} test images): layers at or above post-training "
        "int8's and those below, by how much (dB). Which layers fall below moves with the "
        "seed: the comparison is of two files quantized from two different float models, "
        "and the fine-tune changes each layer's activation statistics as well as its weights.",
        "", markdown_table(["seed", "QAT weight ranges", "layers at or above", "below",
                            "below by"], seeds), "",
        f"Run time {(time.perf_counter() - started) / 60:.1f} min.", ""])
    if args.no_doc:
        print(markdown)
    else:
        publish_section("qat_layers", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
