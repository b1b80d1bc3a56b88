"""Zero weights cost nothing: codegen's sparse storage measured; writes docs/results.md.

A zoo model (dscnn and lenet5 on mnist5k, trained a few steps as in bench_mcu.py) and the
same model after `prune` to 0.75 sparsity are profiled on an emulated Cortex-M4 (edgeship
profile) per kernel variant: estimated cycles, flash and bit-exactness with TFLite Micro.
The MLPerf Tiny VWW model, whose weights are 82.8% zero as published, shows the flash
split: int8 weights and sparse indices vs the per-channel constants (biases, multipliers,
shifts), beside X-CUBE-AI 9.0's 42,612 B.

    python benchmarks/bench_sparse.py [--no-doc]
"""

import argparse
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_mcu import MLPERF_DIR, profile_one
from benchmarks.results_doc import machine_line, publish_section
from edgeship.convert.codegen.kernels.dsp_variant import DSP_RULE
from edgeship.convert.codegen.lowering.sparse import PORTABLE_RULE
from edgeship.reports import markdown_table

ZOO = ("dscnn", "lenet5")
VARIANTS = ("portable", "dsp")
SPARSITY = 0.75


def zoo_pair(name: str, dataset, folder: Path) -> tuple[Path, Path]:
    """The zoo model int8, and the same trained model pruned to SPARSITY then int8."""
    from benchmarks.bench_codegen import train_zoo_model
    from edgeship.convert.prune import PruneConfig, prune
    from edgeship.convert.tflite import export_tflite

    model = train_zoo_model(name, dataset)
    samples = dataset.x_train[:64]
    dense = folder / f"{name}_int8.tflite"
    dense.write_bytes(export_tflite(model, representative_samples=samples))
    pruned_model = prune(model, PruneConfig(sparsity=SPARSITY, epochs=1), dataset.x_train[:512],
                         dataset.y_train[:512])
    pruned = folder / f"{name}_pruned{int(SPARSITY * 100)}_int8.tflite"
    pruned.write_bytes(export_tflite(pruned_model, representative_samples=samples))
    return dense, pruned


def weight_split(model: Path, kernels: str) -> dict:
    """Bytes of the generated constants: weights (+ sparse indices) and per-channel ones."""
    from edgeship.convert.codegen import lower_graph, read_graph
    from edgeship.convert.codegen.kernels import kernel_variant

    lowered = kernel_variant(kernels).specialize_ops(lower_graph(read_graph(model.read_bytes())))
    split = {"weights": 0, "per_channel": 0, "sparse_layers": 0}
    for op in lowered:
        split["sparse_layers"] += bool(op.kernel and op.kernel.endswith("_sparse"))
        for constant in op.constants:
            kind = constant.name.split("_", 1)[1]
            key = "weights" if kind in ("weights", "counts", "deltas", "values") else "per_channel"
            split[key] += constant.nbytes
    return split


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/results.md")
    args = parser.parse_args(argv)
    from edgeship.train.datasets import DatasetSpec, load_dataset

    dataset = load_dataset(DatasetSpec(name="mnist5k", seed=0))
    rows, targets = [], []
    with tempfile.TemporaryDirectory(prefix="bench-sparse-") as work:
        for name in ZOO:
            dense, pruned = zoo_pair(name, dataset, Path(work))
            for kernels in VARIANTS:
                results = {}
                for label, path in (("dense", dense), (f"pruned {SPARSITY:g}", pruned)):
                    row = profile_one(path, "cortex-m4", kernels)
                    split = weight_split(path, kernels)
                    results[label] = row
                    rows.append([name, label, kernels, f"{row['total']['cycles'] / 1e6:.3f} M",
                                 f"{row['total']['cycles_per_mac']:.2f}",
                                 f"{row['flash']['total']:,}", f"{split['weights']:,}",
                                 f"{split['per_channel']:,}", str(split["sparse_layers"]),
                                 "yes" if row["bit_exact_with_tflite_micro"] else "**NO**"])
                    print(rows[-1], flush=True)
                speedup = (results["dense"]["total"]["cycles"]
                           / results[f"pruned {SPARSITY:g}"]["total"]["cycles"])
                targets.append(f"- {name} {kernels}: pruned {SPARSITY:g} runs in "
                               f"{1 / speedup:.2f}x the unpruned cycles ({speedup:.2f}x fewer; "
                               f"target >= 2x: {'met' if speedup >= 2 else 'missed'}).")
    vww = MLPERF_DIR / "vww_96_int8.tflite"
    vww_rows = []
    for kernels in VARIANTS:
        split = weight_split(vww, kernels)
        vww_rows.append([kernels, f"{split['weights']:,}", f"{split['per_channel']:,}",
                         f"{split['weights'] + split['per_channel']:,}",
                         str(split["sparse_layers"]),
                         "met" if split["weights"] <= 60 * 1024 else "missed"])
    markdown = "\n".join([
        (f"`python benchmarks/bench_sparse.py`. {machine_line()} codegen stores a conv or fully "
        "connected layer sparse when its entries (nonzeros, plus weight-0 bridges over gaps of "
        "more than 255 taps) are at most the variant's max density (portable "
        f"{PORTABLE_RULE.max_density:g}, dsp {DSP_RULE.max_density:g}; "
        "edgeship/convert/codegen/lowering/sparse.py): per output channel a uint16 count, per "
        "entry a uint8 tap delta and the int8 weight. Cycles: edgeship profile's Cortex-M4 "
        "estimate (120 MHz, zero wait states)."), "",
        f"Zoo models on mnist5k, unpruned and pruned to {SPARSITY:g} (`prune`, 1 epoch):", "",
        markdown_table(["model", "weights", "kernels", "est. cycles", "cycles/MAC", "flash B",
                        "weight B", "per-channel B", "sparse layers", "= TFLM"], rows),
        *targets, "",
        ("MLPerf Tiny VWW (82.8% of weights zero as published): weight bytes = int8 weights and "
        "sparse indices; per-channel = biases, multipliers, shifts (X-CUBE-AI 9.0 weights: "
        "42,612 B). Target: weights <= 60 KB."), "",
        markdown_table(["kernels", "weight B", "per-channel B", "all constants B",
                        "sparse layers", "<= 60 KB"], vww_rows)])
    (print if args.no_doc else partial(publish_section, "mcu_sparse"))(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
