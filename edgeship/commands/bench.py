"""`edgeship bench`: latency percentiles, throughput and peak RSS per artifact x backend, with
an optional regression gate against a stored baseline."""

import os
from dataclasses import dataclass
from typing import ClassVar

from edgeship.commands import Command, OptionGroup
from edgeship.options import option
from edgeship.run_dir import ManifestRecord
from edgeship.runtime.bench import BenchConfig


@dataclass(frozen=True)
class BenchArguments:
    """The files measured, where the records go and the gate (BenchConfig measures)."""

    artifacts: tuple[str, ...] = option(positional=True, nargs="+", metavar="ARTIFACT",
                                        help=".tflite, .onnx or .keras files")
    json: str | None = option(None, metavar="OUT", help="write the records here")
    format: str = option("edgeship", choices=("edgeship", "gab"),
                         help="--json format: edgeship records, or github-action-benchmark's "
                         "customSmallerIsBetter")
    baseline: str | None = option(None, metavar="FILE",
                                  help="a stored --json file; exit 1 when a p50 regresses")
    max_regression: float = option(0.10, help="largest allowed p50 increase against "
                                   "--baseline (0.10 = 10%%)")


@dataclass(frozen=True)
class BenchRecord(ManifestRecord):
    """The manifest's "bench" section (the pipeline's bench stage; bench.json beside it)."""

    SECTION: ClassVar[str] = "bench"
    runs: int
    warmup: int


GROUPS = (OptionGroup(BenchArguments), OptionGroup(BenchConfig))


def build(values: dict) -> BenchConfig:
    artifacts = values["artifacts"]
    if isinstance(artifacts, (str, os.PathLike)):
        artifacts = (artifacts,)
    options = {item.name: values[item.name] for item in GROUPS[1].options()}
    for key in ("threads", "batch"):
        if isinstance(options.get(key), int):
            options[key] = (options[key],)
    return BenchConfig(artifacts=tuple(str(path) for path in artifacts), **options)


def execute(config: BenchConfig, values: dict):
    """(records, baseline comparisons, keys not in the baseline)."""
    from edgeship.runtime.bench import bench, compare_to_baseline, load_baseline

    baseline = load_baseline(values["baseline"]) if values["baseline"] else None
    records = bench(config)
    if baseline is None:
        return records, None, []
    comparisons, unmatched = compare_to_baseline(records, baseline, values["max_regression"])
    return records, comparisons, unmatched


def render(outcome, values: dict) -> int:
    from edgeship.console import error_stream
    from edgeship.runtime.bench import render_table, write_results

    records, comparisons, unmatched = outcome
    print(render_table(records))
    if values["json"]:
        print(f"wrote {write_results(values['json'], records, values['format'])}")
    if comparisons is None:
        return 0
    for comparison in comparisons:
        print(comparison.describe())
    for key in unmatched:
        print(f"{key}: not in the baseline, not gated")
    regressions = [comparison for comparison in comparisons if not comparison.passed]
    for comparison in regressions:
        print(f"edgeship bench: latency regression: {comparison.describe()}", file=error_stream())
    return 1 if regressions else 0


def result(outcome, values: dict):
    from edgeship.commands.result import Result, raise_failed
    from edgeship.runtime.bench import write_results
    from edgeship.tables import Table

    records, comparisons, _ = outcome
    if values["json"]:
        write_results(values["json"], records, values["format"])
    rows = [{"artifact": record["artifact"], "backend": record["backend"],
             "threads": record["threads"], "batch": record["batch"],
             **{f"{key}_us": record["latency_us"][key] for key in ("p50", "p90", "p99")},
             "images_per_s": record["throughput_images_per_s"]} for record in records]
    outcome = Result(Table.from_records("latency", rows, tuple(rows[0]) if rows else ()),
                     {}, {"records": records})
    regressed = [comparison.describe() for comparison in comparisons or ()
                 if not comparison.passed]
    if regressed:
        raise_failed("latency regression: " + "; ".join(regressed), outcome)
    return outcome


COMMAND = Command("bench", "latency percentiles, throughput and peak RSS per artifact x "
                  "backend; optional regression gate against a baseline", GROUPS, build,
                  execute, render, result, record=BenchRecord)
