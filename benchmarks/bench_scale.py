"""Folder datasets bigger than memory: input-pipeline rate, dscnn epoch time and peak RSS.

Usage: nice -n 10 python benchmarks/bench_scale.py [--sizes 10000,100000] [--work DIR]
Generates N 96x96 RGB JPEGs in 4 classes (made here, in a temporary folder, never shipped),
then for each N: images/s of the in-memory loader (`load_dataset`, PIL one image at a time
into one float32 array) and of the streaming pipeline (train/stream.py: tf.data over the file
list, decode in worker processes, batches of 32, prefetch; first pass and from the uint8
cache); and one dscnn epoch in a child process whose peak RSS (the process and its decode
workers, summed, sampled every 0.2 s) is recorded, streamed and, where it fits (N = 10,000),
in memory with the same seed. Writes the `scale` section of docs/results.md.
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
TRAIN_CHILD = """
import json, sys
from edgeship.train.datasets import DatasetSpec
from edgeship.train.fit import TrainConfig, train
spec = DatasetSpec(name="folder:" + sys.argv[1], image_size=(96, 96), channels=3, seed=0)
result = train(TrainConfig(model="dscnn", dataset=spec, out=sys.argv[2], epochs=1, seed=0,
                           streaming=sys.argv[3]))
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
    from edgeship.train.stream import open_dataset, tf_batch_reader

    from edgeship.deps import import_tf_keras

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


def train_child(folder: Path, out: Path, streaming: str) -> dict:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    output, peak, _ = run_measured([sys.executable, "-c", TRAIN_CHILD, str(folder), str(out),
                                    streaming], env)
    result = json.loads([line for line in output.splitlines() if line.startswith("RESULT ")][-1][7:])
    return result | {"peak_rss_gb": peak / 1e9}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--memory-limit", type=int, default=10000,
                        help="largest N also run through the in-memory path")
    parser.add_argument("--work", default=None, help="folder for images and runs (default: a temp dir)")
    parser.add_argument("--print-only", action="store_true",
                        help="print the section without writing docs/results.md (smoke runs)")
    args = parser.parse_args()
    from edgeship.train.datasets import DatasetSpec

    work = Path(args.work or tempfile.mkdtemp(prefix="edgeship_bench_scale_"))
    rows = []
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
        for streaming in (("off", "on") if fits else ("on",)):
            result = train_child(folder, work / f"run_{count}_{streaming}", streaming)
            print(f"N={count} streaming={streaming}: {result}", flush=True)
            rows.append([f"{count:,}", "streamed" if streaming == "on" else "in memory",
                         f"{memory_rate:.0f}" if memory_rate and streaming == "off" else "",
                         f"{first_pass:.0f} / {cached:.0f}" if streaming == "on" else "",
                         f"{result['seconds']:.0f}", f"{result['peak_rss_gb']:.2f}",
                         f"{result['accuracy']:.4f}", "pending"])
            shutil.rmtree(work / f"run_{count}_{streaming}", ignore_errors=True)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    markdown = "\n".join([
        "## Scale: folder datasets bigger than memory", "",
        (f"`nice -n 10 python benchmarks/bench_scale.py --sizes {args.sizes}`. {machine_line()} "
         "The machine was shared with other jobs while this ran, so rates and times are lower "
         "bounds. Generated 96x96 RGB JPEGs, 4 classes, 80/20 stratified split (seed 0); dscnn, "
         "one epoch, batch 32, seed 0, run in a child process. Loader rates count every image of "
         "the folder (in memory: `load_dataset`, PIL one image at a time into one float32 array, "
         "split and scaled) or of the training split (streamed: the training tf.data pipeline, "
         "batches of 32, decoded in one worker process per core; first pass / from the uint8 "
         "cache). Peak RSS: the training process and its decode workers, summed, sampled every "
         "0.2 s. `validate` peak RSS is pending: runtime/parity.py still loads the whole test "
         "split until it reads `edgeship.train.stream.iter_test_batches`."), "",
        markdown_table(["images", "path", "in-memory loader img/s", "streamed img/s (first / cached)",
                        "epoch seconds (fit + validation)", "train peak RSS GB", "test accuracy",
                        "validate peak RSS"], rows),
    ])
    if args.print_only:
        print(markdown)
    else:
        publish_section("scale", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
