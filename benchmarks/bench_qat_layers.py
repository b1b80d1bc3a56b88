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
granularity): which layers fall below moves with the seed. Last, the README's command (seed 0)
in fresh processes on other numeric paths of TensorFlow: one core (--threads pins the per-op
thread count, so this should equal the two-core run) and oneDNN capped at AVX2 and at AVX
(ONEDNN_MAX_CPU_ISA: the kernels a CPU without AVX-512 runs).

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
# The README's command in fresh processes on other TensorFlow numeric paths: (label, extra
# environment, CPUs the process may use (None: all)).
CPU_PATHS = (("one core", {}, 1), ("oneDNN AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, None),
             ("oneDNN AVX", {"ONEDNN_MAX_CPU_ISA": "AVX"}, None))


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


def _train_and_convert_elsewhere(folder: Path, environment: dict, cpus: int | None) -> Path:
    """train + convert --qat 1 (auto) as the README runs them, each in a fresh process."""
    import os
    import subprocess

    pin = None
    if cpus:
        allowed = sorted(os.sched_getaffinity(0))[:cpus]
        pin = lambda: os.sched_setaffinity(0, allowed)  # noqa: E731
    for argv in (["train", "--model", "lenet5", "--dataset", "mnist5k", "--epochs", "5",
                  "--seed", "0", "--out", str(folder)],
                 ["convert", str(folder), "--int8", "--qat", "1"]):
        completed = subprocess.run([sys.executable, "-m", "edgeship.cli", *argv],
                                   env={**os.environ, **environment}, preexec_fn=pin,
                                   capture_output=True, text=True, timeout=1800)
        if completed.returncode != 0:
            raise SystemExit(f"{argv[0]} exited {completed.returncode}: "
                             f"{completed.stderr[-500:]}")
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
    rows, verdicts, seeds, paths = [], [], [], []
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
        for label, environment, cpus in CPU_PATHS:
            run = _train_and_convert_elsewhere(Path(work) / label.replace(" ", "_"),
                                               environment, cpus)
            images, _, _ = load_test_split(RunDir(run), None, IMAGE_COUNTS[0])
            layers = _compare(run, images[:])
            below = [f"{op} {qat - ptq:+.2f}" for op, qat, ptq in layers if qat < ptq]
            identical = ((run / "model_int8.tflite").read_bytes()
                         == (Path(work) / "auto-mse" / "model_int8.tflite").read_bytes())
            paths.append([label, "yes" if identical else "no", str(len(layers) - len(below)),
                          str(len(below)), "; ".join(below) or "-"])
            print(paths[-1], flush=True)
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
        "The README's command (seed 0, auto granularity, mse weight ranges) again, train and "
        "convert each in a fresh process, on other numeric paths of TensorFlow: one core (the "
        "per-op thread count is pinned by `--threads`, default 2, so the files should be "
        "the ones above) and oneDNN's kernels capped at AVX2 and at AVX (`ONEDNN_MAX_CPU_ISA`, "
        "what a CPU without AVX-512 runs: other float rounding, so other trained weights).",
        "", markdown_table(["numeric path", "model_int8.tflite identical to the run above",
                            "layers at or above", "below", "below by"], paths), "",
        f"Run time {(time.perf_counter() - started) / 60:.1f} min.", ""])
    if args.no_doc:
        print(markdown)
    else:
        publish_section("qat_layers", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
