"""int8 ONNX recipes on a CPU without VNNI: accuracy against float, here and under emulation.

Usage: python benchmarks/bench_onnx_recipes.py [--out runs/bench_onnx_recipes]
Trains lenet5 on mnist5k (3 epochs, seed 0, as the test suite's session model), converts it
with `edgeship convert --int8 --onnx` (200 calibration images), re-quantizes model.onnx with
each recipe of benchmarks/bench_runtime.py on the same calibration images, then runs every
int8 ONNX on the 1,000 test images with ONNX Runtime on this CPU and under
`qemu-x86_64 -cpu Haswell` (AVX2 without VNNI: ORT's saturating u8 x s8 kernels), against
the float model. model_int8.tflite (LiteRT, this CPU) is the bar. Writes the `onnx-recipes`
section of docs/results.md.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.bench_runtime import RECIPES, exact_without_vnni
from benchmarks.results_doc import machine_line, publish_section
from edgeship.convert.onnx import quantize_onnx
from edgeship.convert.run import ConvertConfig, run_convert
from edgeship.cpu_features import cpu_features
from edgeship.reports import markdown_table
from edgeship.runtime.backends import open_backend
from edgeship.runtime.emulated_cpu import run_onnx_emulated
from edgeship.train.datasets import DatasetSpec, class_balanced_indices, load_dataset
from edgeship.train.fit import TrainConfig, train

CALIBRATION_SAMPLES = 200


def agreement_cells(outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> list[str]:
    """Top-1 agreement with float, max |int8 - float| and top-1 accuracy."""
    return [f"{np.mean(outputs.argmax(1) == reference.argmax(1)):.3f}",
            f"{np.abs(outputs - reference).max():.3f}",
            f"{np.mean(outputs.argmax(1) == labels):.3f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_onnx_recipes")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    dataset = load_dataset(DatasetSpec(name="mnist5k", seed=0))
    train(TrainConfig(model="lenet5", dataset=dataset.spec, out=str(out), epochs=3, seed=0),
          dataset=dataset)
    run_convert(ConvertConfig(source=str(out), int8=True, onnx=True,
                              calibration_samples=CALIBRATION_SAMPLES))
    calibration = dataset.x_train[class_balanced_indices(dataset.y_train, CALIBRATION_SAMPLES, 0)]
    images = np.ascontiguousarray(dataset.x_test, np.float32)
    labels = dataset.y_test
    float_onnx = (out / "model.onnx").read_bytes()
    paths = {}
    for index, recipe in enumerate(RECIPES):
        paths[recipe.name] = out / f"model_int8_recipe{index}.onnx"
        paths[recipe.name].write_bytes(quantize_onnx(float_onnx, calibration, recipe.quantization))
    with open_backend("onnxruntime", out / "model.onnx") as backend:
        reference = backend.infer(images)
    here = {}
    for name, path in paths.items():
        with open_backend("onnxruntime", path) as backend:
            here[name] = backend.infer(images)
    emulated = run_onnx_emulated(list(paths.values()), images)
    with open_backend("litert", out / "model_int8.tflite") as backend:
        tflite = backend.infer(images)

    here_cpu = cpu_features()
    here_label = f"this CPU ({'VNNI' if here_cpu['vnni'] else 'no VNNI'})"
    rows = []
    for recipe in RECIPES:
        path = paths[recipe.name]
        same = np.array_equal(emulated.outputs[path], here[recipe.name])
        rows.append([recipe.name, exact_without_vnni(path),
                     *agreement_cells(here[recipe.name], reference, labels),
                     *agreement_cells(emulated.outputs[path], reference, labels),
                     "yes" if same else "no"])
    rows.append(["model_int8.tflite (LiteRT, XNNPACK)", "n/a",
                 *agreement_cells(tflite, reference, labels), "", "", "", ""])
    float_accuracy = np.mean(reference.argmax(1) == labels)
    emulated_flags = emulated.features
    markdown = "\n".join([
        "## int8 ONNX recipes on CPUs with and without VNNI", "",
        (f"`python benchmarks/bench_onnx_recipes.py`. {machine_line()} lenet5 trained 3 epochs "
         f"on mnist5k (seed 0), float top-1 {float_accuracy:.3f} on the {len(images):,} test "
         f"images; each recipe calibrated on the same {CALIBRATION_SAMPLES} class-balanced "
         "training images. Columns per CPU: top-1 agreement with the float model, max "
         "|int8 - float| over all outputs (softmax probabilities), top-1 accuracy. The "
         f"emulated CPU is `qemu-x86_64 -cpu {emulated.cpu_model}`; inside it CPUID reports "
         f"avx2={emulated_flags['avx2']}, avx512={emulated_flags['avx512']}, "
         f"vnni={emulated_flags['vnni']}, so ONNX Runtime runs its saturating u8 x s8 "
         "(vpmaddubsw) kernels there. 'exact without VNNI' is proved from the file "
         "(edgeship.onnx_saturation); 'same outputs' compares the two CPUs bit for bit."), "",
        markdown_table(["recipe", "exact without VNNI", f"{here_label}: agreement", "max err",
                        "accuracy", "AVX2 (emulated): agreement", "max err", "accuracy",
                        "same outputs"], rows),
    ])
    publish_section("onnx-recipes", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
