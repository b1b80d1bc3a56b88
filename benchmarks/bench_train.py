"""Batch-norm statistics after short from-scratch training: Keras' running averages vs population.

Usage: python benchmarks/bench_train.py [--epochs 3] [--out runs/bench_train]
Trains the zoo's batch-norm models (dscnn at 28x28, mobilenet_v2 alpha 0.35 at 32x32) on
mnist5k with the same seed twice, `--batch-norm-statistics running` and `population` (the
default), and writes the `train` section of docs/results.md: test accuracy (inference mode),
validation accuracy after the first epoch, the last epoch's training-mode accuracy, and the
training wall time.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_doc import machine_line, publish_section
from edgeship.reports import markdown_table
from edgeship.train.datasets import DatasetSpec, load_dataset
from edgeship.train.fit import BATCH_NORM_SAMPLES, TrainConfig, train

MODELS = (("dscnn", None), ("mobilenet_v2", (32, 32)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="runs/bench_train")
    args = parser.parse_args()
    rows = []
    for model, image_size in MODELS:
        spec = DatasetSpec(name="mnist5k", image_size=image_size, seed=0)
        dataset = load_dataset(spec)
        for statistics in ("running", "population"):
            out = Path(args.out) / f"{model}_{statistics}"
            shutil.rmtree(out, ignore_errors=True)
            result = train(TrainConfig(model=model, dataset=spec, out=str(out), epochs=args.epochs,
                                       batch_norm_statistics=statistics), dataset=dataset)
            history = json.loads((out / "history.json").read_text())
            size = "x".join(str(side) for side in dataset.input_shape[:2])
            rows.append([f"{model} ({size})", statistics, f"{result.test_accuracy:.3f}",
                         f"{history['val_accuracy'][0]:.3f}", f"{history['accuracy'][-1]:.3f}",
                         f"{result.seconds:.1f}"])
            print(rows[-1], flush=True)
    markdown = "\n".join([
        "## Train: batch-norm statistics after short from-scratch runs", "",
        (f"`python benchmarks/bench_train.py`. {machine_line()} mnist5k (4,000 training images, "
         f"10% held out for validation, 1,000 test images), {args.epochs} epochs, batch 32, "
         "Adam 2e-3, seed 0; the two rows of a model are seeded runs with identical training (same "
         "training-mode accuracy), differing only in the moving statistics inference uses. "
         "`running`: Keras' moving "
         "averages (momentum 0.99 for both models, starting at mean 0 and variance 1); "
         f"`population` (default): recomputed from {BATCH_NORM_SAMPLES:,} training images before "
         "each validation pass and at each epoch's end."), "",
        markdown_table(["model", "statistics", "test accuracy", "val accuracy, epoch 1",
                        "train accuracy, last epoch (training mode)", "train seconds"], rows),
    ])
    publish_section("train", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
