"""Footprint and speed of `edgeship codegen` against TensorFlow Lite Micro; writes docs/results.md.

For each zoo model (lenet5, simple_cnn, keras_cnn, dscnn on mnist5k 28x28x1; mobilenet_v2
alpha 0.35 on digits resized to 32x32x3), trained a few steps and converted to full int8:
- Flash and RAM of the generated C for a Cortex-M4: `arm-none-eabi-size` of NAME.o compiled
  -O2 (text includes the const weights; bss is the activation buffer), and the stack the model
  used, measured in QEMU by the cortex_m_qemu example (which also checks 10/10 samples).
- TFLite Micro's arena for the same model (its recording allocator, after one invoke).
- Host latency: the generated C compiled -O2 (called through ctypes) against
  tflite_micro's `invoke()` on the same images, interleaved rounds, median per image.

Targets (issue 7): activation RAM <= 0.75 x TFLM arena; host latency <= 0.5 x TFLM invoke.

    python benchmarks/bench_codegen.py [--rounds 7] [--images 20]
"""

import argparse
import ctypes
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.results_doc import machine_line, update_results_section
from edgeship.artifacts import write_json_atomic
from edgeship.reports import environment, markdown_table

MODELS = ("lenet5", "simple_cnn", "keras_cnn", "dscnn", "mobilenet_v2")
QEMU_EXAMPLE = REPO / "firmware_examples" / "cortex_m_qemu"
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft", "-std=c99", "-O2",
             "-ffunction-sections", "-fdata-sections"]
RAM_TARGET = 0.75
SPEED_TARGET = 0.5


def train_zoo_model(name: str, dataset):
    """The zoo model trained 2 epochs on 512 images (batch norm from the last batch)."""
    from edgeship.train.models import ModelOptions, build_model

    model = build_model(name, dataset.input_shape, dataset.num_classes, ModelOptions(alpha=0.35),
                        seed=0)
    for layer in model.layers:
        if hasattr(layer, "moving_mean"):
            layer.momentum = 0.0
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(dataset.x_train[:512], dataset.y_train[:512], batch_size=32, epochs=2, verbose=0)
    return model


def build_int8_model(name: str, dataset, folder: Path) -> Path:
    """The zoo model trained a few steps, full int8 with 64 calibration images."""
    from edgeship.convert.tflite import export_tflite

    model = train_zoo_model(name, dataset)
    path = folder / f"{name}_int8.tflite"
    path.write_bytes(export_tflite(model, representative_samples=dataset.x_train[:64]))
    return path


def arm_size(source: Path, build: Path) -> dict:
    """Berkeley sizes of the generated NAME.c compiled for a Cortex-M4."""
    obj = build / "model_size.o"
    subprocess.run(["arm-none-eabi-gcc", *ARM_FLAGS, "-c", str(source), "-o", str(obj)],
                   check=True)
    line = subprocess.run(["arm-none-eabi-size", str(obj)], check=True, capture_output=True,
                          text=True).stdout.splitlines()[1].split()
    return {"text": int(line[0]), "data": int(line[1]), "bss": int(line[2])}


def qemu_stack_and_matches(generated: Path, build: Path) -> tuple[int, str]:
    completed = subprocess.run(["make", "-C", str(QEMU_EXAMPLE), "run", f"GENERATED={generated}",
                                f"BUILD={build}"], check=False, capture_output=True, text=True,
                               timeout=600)
    stack = re.search(r"stack used by the model: (\d+) bytes", completed.stdout)
    matches = re.search(r"matches: (\d+/\d+)", completed.stdout)
    if completed.returncode != 0 or not stack or not matches:
        raise RuntimeError(f"QEMU run failed:\n{completed.stdout[-2000:]}{completed.stderr[-2000:]}")
    return int(stack.group(1)), matches.group(1)


def host_latency(model_path: Path, library: Path, raw: np.ndarray, rounds: int) -> dict:
    """Per-image times, C call and tflite_micro invoke() alternating image by image, so both
    see the same machine load; medians and minimums over all rounds and images."""
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model_path.read_bytes(), arena_size=8 << 20)
    run = ctypes.CDLL(str(library)).model_run
    run.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
    output = np.zeros(4096, np.int8)
    flat = [np.ascontiguousarray(image.reshape(-1)) for image in raw]
    c_times, tflm_times = [], []
    for _ in range(rounds):
        for image, image_flat in zip(raw, flat):
            interpreter.set_input(image[np.newaxis], 0)
            started = time.perf_counter_ns()
            interpreter.invoke()
            tflm_times.append((time.perf_counter_ns() - started) / 1000)
            started = time.perf_counter_ns()
            run(image_flat.ctypes.data, output.ctypes.data)
            c_times.append((time.perf_counter_ns() - started) / 1000)
    return {"c_us": statistics.median(c_times), "tflm_us": statistics.median(tflm_times),
            "c_min_us": min(c_times), "tflm_min_us": min(tflm_times)}


def measure(name: str, model_path: Path, images: np.ndarray, labels: np.ndarray, work: Path,
            rounds: int) -> dict:
    from edgeship.firmware import CodegenConfig, generate_c
    from edgeship.runtime.backends import open_backend
    from edgeship.runtime.backends.c import compile_shared_library

    generated = work / f"{name}_c"
    result = generate_c(CodegenConfig(model=str(model_path), out=str(generated), samples=10),
                        sample_images=images[:10], sample_labels=labels[:10])
    build = work / f"{name}_build"
    build.mkdir()
    sizes = arm_size(generated / "model.c", build)
    stack, matches = qemu_stack_and_matches(generated, build)
    with open_backend("tflm", model_path) as tflm:
        arena = tflm.arena_usage()
        raw = tflm.quantize_input(images)
    library = compile_shared_library([generated / "model.c"], build / "libmodel.so", "-O2")
    speed = host_latency(model_path, library, raw, rounds)
    io_bytes = result.input.size + result.output.size
    return {"model": name, "ops": len(result.ops), "flash": sizes["text"] + sizes["data"],
            "weights": result.weight_bytes, "activation_bytes": sizes["bss"],
            "planned_bytes": result.arena_bytes, "all_tensors_bytes": result.sum_of_tensors,
            "io_bytes": io_bytes, "stack_bytes": stack, "qemu_matches": matches,
            "tflm_arena_bytes": arena["total_bytes"], "tflm_arena_head": arena.get("head_bytes"),
            "ram_ratio": (sizes["bss"] + io_bytes) / arena["total_bytes"], **speed,
            "speed_ratio": speed["c_us"] / speed["tflm_us"]}


def render(rows: list[dict], rounds: int, images: int) -> str:
    footprint = [[row["model"], row["ops"], f"{row['flash']:,}", f"{row['weights']:,}",
                  f"{row['activation_bytes']:,}", f"{row['io_bytes']:,}",
                  f"{row['stack_bytes']:,}", f"{row['all_tensors_bytes']:,}",
                  f"{row['tflm_arena_bytes']:,}", f"{row['ram_ratio']:.2f}",
                  "met" if row["ram_ratio"] <= RAM_TARGET else "NOT met", row["qemu_matches"]]
                 for row in rows]
    speed = [[row["model"], f"{row['c_us']:.1f}", f"{row['tflm_us']:.1f}",
              f"{row['speed_ratio']:.2f}", f"{row['c_min_us'] / row['tflm_min_us']:.2f}",
              "met" if row["speed_ratio"] <= SPEED_TARGET else "NOT met"] for row in rows]
    return "\n".join([
        "## Codegen: generated C vs TensorFlow Lite Micro",
        "",
        (f"`python benchmarks/bench_codegen.py`. {machine_line()} Zoo models trained 2 epochs on "
        "512 images (lenet5, simple_cnn, keras_cnn, dscnn: mnist5k 28x28x1; mobilenet_v2 alpha "
        "0.35: digits at 32x32x3), full int8 with 64 calibration images."),
        "",
        "### Footprint on a Cortex-M4",
        "",
        (f"`arm-none-eabi-gcc {' '.join(ARM_FLAGS)}` on the generated NAME.c; flash = text + "
        "data (code and const weights), activations = bss (the planned buffer), I/O = the "
        "caller's int8 input and output buffers, stack = the deepest stack byte the model "
        "touched in QEMU (mps2-an386), where every model also ran its 10 embedded samples. "
        "TFLM arena = TFLite Micro's recording allocator total on the host (activations, "
        "input and output included, plus its tensor and node metadata). RAM ratio = "
        f"(activations + I/O) / TFLM arena; target ≤ {RAM_TARGET}."),
        "",
        markdown_table(["model", "ops", "flash B", "weights B", "activations B", "I/O B",
                        "stack B", "all tensors B", "TFLM arena B", "RAM ratio", "target",
                        "QEMU samples"], footprint).rstrip(),
        "",
        "### Host latency",
        "",
        (f"Microseconds per image, median of {rounds} rounds x {images} test images, the two "
        "runtimes alternating image by image: the generated C compiled `-O2` and called "
        "through ctypes (call overhead included) against `tflite_micro` "
        "`Interpreter.invoke()` alone (reference kernels). Ratio = C median / TFLM median, "
        f"target ≤ {SPEED_TARGET}; the min ratio (fastest call of each) is a cross-check "
        "against load from other processes."),
        "",
        markdown_table(["model", "C us", "TFLM invoke us", "ratio", "min ratio", "target"],
                       speed).rstrip(),
        ""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" /
                        "codegen.json")
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/results.md")
    args = parser.parse_args(argv)
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm", "make"):
        if shutil.which(tool) is None:
            print(f"bench_codegen needs {tool} (scripts/setup.sh installs it)", file=sys.stderr)
            return 2
    from edgeship.train.datasets import DatasetSpec, load_dataset

    datasets = {"mnist5k": load_dataset(DatasetSpec(name="mnist5k", seed=0)),
                "digits": load_dataset(DatasetSpec(name="digits", image_size=(32, 32),
                                                   channels=3))}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_codegen_") as folder:
        work = Path(folder)
        for name in MODELS:
            dataset = datasets["digits" if name == "mobilenet_v2" else "mnist5k"]
            model_path = build_int8_model(name, dataset, work)
            images = np.ascontiguousarray(dataset.x_test[:args.images])
            row = measure(name, model_path, images, dataset.y_test[:args.images], work,
                          args.rounds)
            print(row, flush=True)
            rows.append(row)
    write_json_atomic(args.json, {"environment": environment(), "rows": rows})
    if not args.no_doc:
        update_results_section("codegen", render(rows, args.rounds, args.images))
    return 0


if __name__ == "__main__":
    sys.exit(main())
