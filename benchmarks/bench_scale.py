"""Folder datasets bigger than memory: input-pipeline rate, dscnn epoch time and peak RSS.

Usage: nice -n 10 python benchmarks/bench_scale.py [--sizes 10000,100000] [--work DIR]
Generates N 96x96 RGB JPEGs in 4 classes (made here, in a temporary folder, never shipped),
then for each N: images/s of the in-memory loader (`load_dataset`, PIL one image at a time
into one float32 array) and of the streaming pipeline (train/stream.py: tf.data over the file
list, decode in worker processes, batches of 32, prefetch; first pass and from the uint8
cache); and one dscnn epoch (width 16) in a child process whose peak RSS (the process and
its decode workers, summed, sampled every 0.2 s) is recorded, streamed and, where it fits
(N = 10,000), in memory with the same seed; each streamed run is then converted
(`edgeship convert --int8`) and validated (`edgeship validate --backends keras,litert`, every
test image) in measured child processes too. Writes the `scale` section of docs/results.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_doc import machine_line, publish_section
from edgeship.reports import markdown_table

SIDE = 96
CLASSES = 4
WIDTH = 16  # dscnn's separable-block channels: 64 (the default) would not fit the time here
VALIDATE_BACKENDS = "keras,litert"
TRAIN_CHILD = """
import json, sys
from edgeship.train.datasets import DatasetSpec
from edgeship.train.fit import TrainConfig, train
from edgeship.train.models import ModelOptions
spec = DatasetSpec(name="folder:" + sys.argv[1], image_size=(96, 96), channels=3, seed=0)
result = train(TrainConfig(model="dscnn", dataset=spec, out=sys.argv[2], epochs=1, seed=0,
                           streaming=sys.argv[3], model_options=ModelOptions(width=int(sys.argv[4]))))
print("RESULT " + json.dumps({"accuracy": result.test_accuracy, "seconds": result.seconds}))
"""


def generate_folder(root: Path, count: int, seed: int = 0) -> Path:
    """count JPEGs, class k brighter in channel k % 3 with a class-sized square, plus noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in range(CLASSES):
        (root / f"class_{label}").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        label = index % CLASSES
        pixels = rng.integers(0, 140, (SIDE, SIDE, 3))
        pixels[..., label % 3] += 60
        side = 16 + 12 * label
        top, left = rng.integers(0, SIDE - side, 2)
        pixels[top:top + side, left:left + side] += 50
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            root / f"class_{label}" / f"{index:06d}.jpg", quality=90)
    return root


def tree_rss_bytes(pid: int) -> int:
    """Resident set of a process and all its descendants (Linux /proc)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_measured(command: list[str], env: dict) -> tuple[str, int, float]:
    """Run command; return its output, peak summed RSS of its process tree, and wall seconds."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    peak = [0]

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{output[-3000:]}")
    return output, peak[0], time.perf_counter() - started


def in_memory_rate(spec) -> float:
    from edgeship.train.datasets import load_dataset

    started = time.perf_counter()
    dataset = load_dataset(spec)
    count = len(dataset.y_train) + len(dataset.y_test)
    del dataset
    return count / (time.perf_counter() - started)


def streaming_rates(spec, cache_folder: Path) -> tuple[float, float]:
    """images/s through the training tf.data pipeline (batches of 32): first pass, then cached."""
    import numpy as np

    from edgeship.deps import import_tf_keras
    from edgeship.train.stream import open_dataset, tf_batch_reader

    tf, _ = import_tf_keras()
    dataset = open_dataset(spec, streaming="on")
    rows = np.arange(len(dataset.y_train))
    rates = []
    for cached in (False, True):
        if cached:
            dataset.source.build_cache(cache_folder)  # decoded in the first pass's place
        data = (tf.data.Dataset.from_tensor_slices((rows, dataset.y_train))
                .shuffle(len(rows), seed=0).batch(32)
                .map(tf_batch_reader(tf, dataset.read_train, dataset.input_shape),
                     num_parallel_calls=2, deterministic=True).prefetch(2))
        started = time.perf_counter()
        seen = sum(int(images.shape[0]) for images, _ in data)
        rates.append(seen / (time.perf_counter() - started))
    dataset.close()
    return rates[0], rates[1]


def child_env() -> dict:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("EDGESHIP_STREAMING", None)  # later stages follow the run's own streamed flag
    return env


def train_child(folder: Path, out: Path, streaming: str, width: int = WIDTH) -> dict:
    output, peak, _ = run_measured([sys.executable, "-c", TRAIN_CHILD, str(folder), str(out),
                                    streaming, str(width)], child_env())
    result = json.loads([line for line in output.splitlines() if line.startswith("RESULT ")][-1][7:])
    return result | {"peak_rss_gb": peak / 1e9}


def later_stages(run: Path) -> dict:
    """Peak RSS and seconds of `edgeship convert --int8` and `edgeship validate` on a run."""
    edgeship = [sys.executable, "-m", "edgeship.cli"]
    _, convert_peak, convert_seconds = run_measured([*edgeship, "convert", str(run), "--int8"],
                                                    child_env())
    _, validate_peak, validate_seconds = run_measured(
        [*edgeship, "validate", str(run), "--backends", VALIDATE_BACKENDS], child_env())
    parity = json.loads((run / "parity.json").read_text())
    return {"convert_rss_gb": convert_peak / 1e9, "convert_seconds": convert_seconds,
            "validate_rss_gb": validate_peak / 1e9, "validate_seconds": validate_seconds,
            "validate_images": parity["dataset"]["images"], "validate_passed": parity["passed"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--memory-limit", type=int, default=10000,
                        help="largest N also run through the in-memory path")
    parser.add_argument("--work", default=None, help="folder for images and runs (default: a temp dir)")
    parser.add_argument("--width", type=int, default=WIDTH,
                        help="dscnn width (64 is the model's default); a width other than 16 "
                             "writes its own section, scale_width_W")
    parser.add_argument("--print-only", action="store_true",
                        help="print the section without writing docs/results.md (smoke runs)")
    args = parser.parse_args()
    from edgeship.train.datasets import DatasetSpec

    work = Path(args.work or tempfile.mkdtemp(prefix="edgeship_bench_scale_"))
    rows, findings = [], []
    for count in (int(size) for size in args.sizes.split(",")):
        folder = work / f"images_{count}"
        if not folder.is_dir():
            started = time.perf_counter()
            generate_folder(folder, count)
            print(f"generated {count} images in {time.perf_counter() - started:.0f} s", flush=True)
        spec = DatasetSpec(name=f"folder:{folder}", image_size=(SIDE, SIDE), channels=3, seed=0)
        fits = count <= args.memory_limit
        memory_rate = in_memory_rate(spec) if fits else None
        first_pass, cached = streaming_rates(spec, work / f"cache_{count}")
        shutil.rmtree(work / f"cache_{count}", ignore_errors=True)
        print(f"N={count}: in-memory {memory_rate} img/s, streamed {first_pass:.0f} img/s, "
              f"cached {cached:.0f} img/s", flush=True)
        if memory_rate:
            verdict = "meets" if first_pass >= 2 * memory_rate else "does not meet"
            findings.append(
                f"N = {count:,}: the streamed first pass decodes {first_pass / memory_rate:.1f}x "
                f"the in-memory loader's rate ({first_pass:.0f} vs {memory_rate:.0f} img/s), which "
                f"{verdict} the 2x target on this shared {os.cpu_count()}-core machine; read from "
                f"the uint8 cache it is {cached / memory_rate:.1f}x.")
        for streaming in (("off", "on") if fits else ("on",)):
            run = work / f"run_{count}_{streaming}"
            result = train_child(folder, run, streaming, args.width)
            print(f"N={count} streaming={streaming}: {result}", flush=True)
            stages = later_stages(run) if streaming == "on" else None
            print(f"N={count} streaming={streaming} convert/validate: {stages}", flush=True)
            rows.append([f"{count:,}", "streamed" if streaming == "on" else "in memory",
                         f"{memory_rate:.0f}" if memory_rate and streaming == "off" else "",
                         f"{first_pass:.0f} / {cached:.0f}" if streaming == "on" else "",
                         f"{result['seconds']:.0f}", f"{result['peak_rss_gb']:.2f}",
                         f"{result['accuracy']:.4f}",
                         f"{stages['convert_rss_gb']:.2f} ({stages['convert_seconds']:.0f} s)"
                         if stages else "",
                         f"{stages['validate_rss_gb']:.2f} ({stages['validate_seconds']:.0f} s, "
                         f"{stages['validate_images']:,} images, "
                         f"{'passed' if stages['validate_passed'] else 'failed'})"
                         if stages else ""])
            shutil.rmtree(run, ignore_errors=True)
            if stages:
                peaks = {"train": result["peak_rss_gb"], "validate": stages["validate_rss_gb"]}
                findings.append(f"N = {count:,} streamed: peak RSS " + ", ".join(
                    f"{stage} {peak:.2f} GB ({'within' if peak <= 3 else 'above'} the 3 GB target)"
                    for stage, peak in peaks.items()) + ".")
    streamed_peaks = [(row[0], float(row[5])) for row in rows if row[1] == "streamed"]
    if len(streamed_peaks) >= 2:
        (first, low), (last, high) = streamed_peaks[0], streamed_peaks[-1]
        findings.append(f"Streamed training's peak RSS from {first} to {last} images: "
                        f"{low:.2f} -> {high:.2f} GB ({(high / low - 1) * 100:+.1f}%; the "
                        "bound is 5%).")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    markdown = "\n".join([
        f"## Scale: folder datasets bigger than memory (dscnn width {args.width})", "",
        (f"`nice -n 10 python benchmarks/bench_scale.py --sizes {args.sizes} --width "
         f"{args.width}`. {machine_line()} "
         "The machine was shared with other jobs while this ran, so rates and times are lower "
         "bounds. Generated 96x96 RGB JPEGs, 4 classes, 80/20 stratified split (seed 0); dscnn "
         f"with width {args.width}" + (" (the default 64 would not fit this shared machine's "
                                       "time for 100,000 images)" if args.width == WIDTH else
                                       "") + ", one epoch, batch 32, seed 0, run in a child process. Loader rates "
         "count every image of "
         "the folder (in memory: `load_dataset`, PIL one image at a time into one float32 array, "
         "split and scaled) or of the training split (streamed: the training tf.data pipeline, "
         "batches of 32, decoded in one worker process per core; first pass / from the uint8 "
         "cache). Peak RSS: the training process and its decode workers, summed, sampled every "
         "0.2 s. Each streamed run is then converted (`edgeship convert RUN --int8`) and "
         f"validated (`edgeship validate RUN --backends {VALIDATE_BACKENDS}`, every test image, "
         "read 1,024 at a time from the test split decoded once into RUN/dataset_cache), each "
         "in its own measured child process."), "",
        markdown_table(["images", "path", "in-memory loader img/s", "streamed img/s (first / cached)",
                        "epoch seconds (fit + validation)", "train peak RSS GB", "test accuracy",
                        "convert peak RSS GB", "validate peak RSS GB"], rows),
        "", *[f"- {finding}" for finding in findings],
    ])
    if args.print_only:
        print(markdown)
    else:
        publish_section("scale" if args.width == WIDTH else f"scale_width_{args.width}",
                        markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
