"""`edgeship tune` against the unconstrained default dscnn and against random search.

Usage: python benchmarks/bench_tune.py [--trials 30] [--epochs 5] [--out runs/bench_tune]
    [--max-ram 16KB --max-flash 64KB --max-ms 20] [--pruner median|none] [--full-space]

1. The default dscnn (width 64), trained `--epochs` on mnist5k, converted to int8 and profiled
   on cortex-m4: its int8 test accuracy and whether it meets the budget (it should not).
2. `edgeship tune` (TPE, constrained multi-objective) with `--trials` and seed 0, over
   BENCH_SPACE (the default space without QAT and with one pruning level: both only cost
   fine-tuning time at this budget; `--full-space` searches the default space).
3. The same search with Optuna's random sampler, same trial count, seed and space, in the same
   study storage (another study name).
Writes the `tune` section of docs/results.md: the best model meeting every budget of each
search (test accuracy, ms, RAM, flash), its gap to the default, the trial where it was first
found, and the wall time per discarded candidate. The front's full pipeline is skipped here.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results_doc import machine_line, publish_section
from edgeship.reports import markdown_table

# dsp kernels only: on a core with the DSP extension they are the fastest variant on every
# model measured (docs/results.md "mcu"), and a kernel variant changes no accuracy, so
# searching it spends trials retraining identical models
BENCH_SPACE = {"prune_sparsities": [0.0, 0.5], "qat_epochs": [0], "kernels": ["dsp"]}


def default_dscnn(out: Path, epochs: int, target: str) -> dict:
    """The unconstrained default: `edgeship pipeline --model dscnn` minus validate/bench."""
    from edgeship.convert.run import ConvertConfig, run_convert
    from edgeship.profile.run import ProfileConfig, profile_model
    from edgeship.train.datasets import DatasetSpec
    from edgeship.train.fit import TrainConfig, train

    run_dir = out / "default_dscnn"
    train(TrainConfig(model="dscnn", dataset=DatasetSpec("mnist5k"), out=str(run_dir),
                      epochs=epochs))
    converted = run_convert(ConvertConfig(source=str(run_dir), xnnpack="off"))
    accuracy = next(row["accuracy"] for row in converted.report["artifacts"]
                    if row["file"] == "model_int8.tflite")
    report = profile_model(ProfileConfig(model=str(run_dir / "model_int8.tflite"),
                                         target=target))
    return {"accuracy": accuracy, "ms": report.to_dict()["total"]["ms"],
            "ram": report.ram["total"], "flash": report.flash["total"]}


def search(args, sampler: str, storage: str) -> dict:
    import edgeship
    from edgeship.errors import CheckFailedError

    out = Path(args.out) / sampler
    started = time.perf_counter()
    try:
        report = edgeship.tune(dataset="mnist5k", out=out, target=args.target,
                               max_ram=args.max_ram, max_flash=args.max_flash,
                               max_ms=args.max_ms, trials=args.trials, epochs=args.epochs,
                               sampler=sampler, seed=0, storage=storage, pruner=args.pruner,
                               study_name=f"bench-{sampler}", front_pipeline=False,
                               space=None if args.full_space else BENCH_SPACE).report
    except CheckFailedError as error:
        report = error.result.report
    seconds = time.perf_counter() - started
    meeting = [record for record in report["trials"] if record["status"] == "trained"
               and not record["exceeded"]]
    best = max(meeting, key=lambda record: record["measured"]["validation_accuracy"],
               default=None)
    return {"sampler": sampler, "report": report, "best": best, "seconds": seconds,
            "first_meeting": min((record["trial"] for record in meeting), default=None)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=5,
                        help="epochs of the default dscnn and of each trial (edgeship train's "
                        "default)")
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--max-ram", default="16KB")
    parser.add_argument("--max-flash", default="64KB")
    parser.add_argument("--max-ms", type=float, default=20.0)
    parser.add_argument("--out", default="runs/bench_tune")
    parser.add_argument("--pruner", default="median", choices=("median", "none"))
    parser.add_argument("--section", default="tune",
                        help="docs/results.md section to write (one per budget)")
    parser.add_argument("--full-space", action="store_true",
                        help="search the default space instead of BENCH_SPACE")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    default = default_dscnn(out, args.epochs, args.target)
    storage = f"sqlite:///{(out / 'studies.db').resolve()}"  # both searches, one storage
    results = [search(args, sampler, storage) for sampler in ("tpe", "random")]
    rows = [{"model": "default dscnn (width 64), unconstrained", "test accuracy": default["accuracy"],
             "gap to default (pp)": 0.0, "ms": round(default["ms"], 2), "RAM B": default["ram"],
             "flash B": default["flash"], "found at trial": "-", "trained": "-", "pruned": "-",
             "discarded": "-",
             "s per discarded (mean / max)": "-", "wall s": "-"}]
    for result in results:
        best, report = result["best"], result["report"]
        per = report["seconds_per_discarded_candidate"]
        measured = best["measured"] if best else {}
        rows.append({
            "model": f"{result['sampler']}: " + (best["candidate"] if best else "none met the budget"),
            "test accuracy": measured.get("accuracy"),
            "gap to default (pp)": (round((measured["accuracy"] - default["accuracy"]) * 100, 2)
                                    if best else None),
            "ms": round(measured["ms"], 2) if best else None, "RAM B": measured.get("ram"),
            "flash B": measured.get("flash"), "found at trial": best["trial"] if best else None,
            "trained": report["counts"]["trained"], "pruned": report["counts"]["pruned"],
            "discarded": report["counts"]["discarded"],
            "s per discarded (mean / max)": f"{per['mean']} / {per['max']}",
            "wall s": round(result["seconds"])})
    from edgeship.tune_space import SearchSpace

    space = SearchSpace().to_dict() | ({} if args.full_space else BENCH_SPACE)
    (out / "bench_tune.json").write_text(json.dumps({"default": default, "rows": rows,
                                                     "space": space}, indent=1, default=str))
    budget = f"RAM {args.max_ram}, flash {args.max_flash}, {args.max_ms:g} ms"
    meets = (default["ram"] <= _bytes(args.max_ram) and default["flash"] <= _bytes(args.max_flash)
             and default["ms"] <= args.max_ms)
    markdown = "\n".join([
        f"## Tune: the most accurate model within a Cortex-M4 budget of {args.max_ram} RAM, "
        f"{args.max_flash} flash, {args.max_ms:g} ms (mnist5k)", "",
        (f"`python benchmarks/bench_tune.py --trials {args.trials} --epochs {args.epochs}"
         f" --max-ram {args.max_ram} --max-flash {args.max_flash} --max-ms {args.max_ms:g}"
         f"{'' if args.section == 'tune' else ' --section ' + args.section}"
         f"{' --pruner none' if args.pruner == 'none' else ''}"
         f"{' --full-space' if args.full_space else ''}`. {machine_line()}"), "",
        (f"Budget on {args.target} (120 MHz): {budget}; the default dscnn "
        f"{'meets' if meets else 'does not meet'} it. Each search ran {args.trials} trials "
        f"with seed 0 in one SQLite storage over the space {_space_text(space)}; every trial "
        f"trained up to {args.epochs} epochs (as the default)"
        + (", stopped early when its validation accuracy after an epoch was below the median "
           "of the trained trials' (pruned)" if args.pruner == "median" else "")
        + ". A trial with the parameters of an earlier one reuses its result (counted as a "
        "trial). Searches rank by int8 accuracy on the training split's validation hold-out; "
        "the table gives the int8 test accuracy of the best model meeting every budget. ms, "
        "RAM and flash are `edgeship profile`'s (cycles estimated from Arm's timings). "
        "'s per discarded' is the wall time of the cheap check of a candidate discarded "
        "before training (0 when a Keras lower bound or an earlier trial's identical graph "
        "decided it)."), "",
        markdown_table(list(rows[0]), [[_cell(row[key]) for key in rows[0]] for row in rows]), ""])
    if args.trials < 30:
        markdown += (f"\nRun with {args.trials} trials instead of the target's 30 (time on a "
                     "shared 2-core machine); the front's full pipeline was skipped.\n")
    publish_section(args.section, markdown)
    return 0


def _space_text(space: dict) -> str:
    return "; ".join(f"{name} {', '.join(map(str, values)) or '-'}"
                     for name, values in space.items())


def _cell(value) -> str:
    """A table cell: numbers with thousands separators, missing values as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}" if value < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _bytes(text: str) -> int:
    from edgeship.tune_space import parse_bytes

    return parse_bytes(text)


if __name__ == "__main__":
    sys.exit(main())
