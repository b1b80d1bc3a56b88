"""The stage commands: train, convert, validate, inspect, bench.

Each command's flags come from its config dataclass's option fields (edgeship.options), so a
flag cannot drift from the option it sets; each run function builds the config and makes one
library call.
"""

from dataclasses import dataclass
from pathlib import Path

from edgeship.console import error_stream
from edgeship.errors import CheckFailedError
from edgeship.options import (
    add_options,
    comma_list,
    format_image_size,
    image_size,
    option,
    option_values,
)


def _test_size(text: str) -> float | int:
    value = float(text)
    return int(value) if value >= 1 else value


@dataclass(frozen=True)
class DatasetOptions:
    """The dataset flags: train/datasets.py's DatasetSpec as options (name -> --dataset, seed
    -> --split-seed); tests/edgeship/test_cli.py checks they cover every DatasetSpec field."""

    dataset: str | None = option(None, help="mnist, fashion_mnist, digits, mnist5k, "
                                 "folder:PATH or npz:PATH")
    split_seed: int = option(0, help="seed of the stratified train/test split")
    test_size: float | None = option(None, parse=_test_size,
                                     help="test fraction (<1) or count for datasets split here")
    image_size: tuple[int, int] | None = option(None, parse=image_size, format=format_image_size,
                                                metavar="HxW", help="resize images, e.g. 32 or 96x96")
    channels: int | None = option(None, choices=(1, 3), help="1 or 3 channels")

    def spec(self):
        """The DatasetSpec these flags describe."""
        from edgeship.train.datasets import DatasetSpec

        return DatasetSpec(name=self.dataset, seed=self.split_seed, test_size=self.test_size,
                           image_size=self.image_size, channels=self.channels)

    @classmethod
    def from_spec(cls, spec) -> "DatasetOptions":
        return cls(dataset=spec.name, split_seed=spec.seed, test_size=spec.test_size,
                   image_size=spec.image_size, channels=spec.channels)


def dataset_spec(args):
    """The DatasetSpec of a command's dataset flags."""
    return DatasetOptions(**option_values(args, DatasetOptions)).spec()


# --- train -----------------------------------------------------------------------------------

def add_train(subparsers) -> None:
    from edgeship.train.fit import TrainConfig
    from edgeship.train.models import ModelOptions

    parser = subparsers.add_parser("train", help="train a zoo model and write a run directory")
    add_options(parser, TrainConfig)
    add_options(parser, DatasetOptions, required=("dataset",))
    add_options(parser, ModelOptions)
    parser.set_defaults(run=run_train)


def train_config(args):
    """The TrainConfig of `edgeship train`'s flags."""
    from edgeship.train.fit import TrainConfig
    from edgeship.train.models import ModelOptions

    return TrainConfig(**option_values(args, TrainConfig), dataset=dataset_spec(args),
                       model_options=ModelOptions(**option_values(args, ModelOptions)))


def run_train(args) -> int:
    from edgeship.train.fit import train

    result = train(train_config(args))
    print(f"test accuracy: {result.test_accuracy:.4f} ({result.epochs_run} epochs, "
          f"{result.seconds:.1f} s) -> {result.run_dir}")
    return 0


# --- convert ---------------------------------------------------------------------------------

CONVERT_DEFAULTS = {"int8": False}  # `edgeship convert` exports float unless --int8 or --qat


def add_convert(subparsers) -> None:
    from edgeship.convert.run import ConvertConfig

    parser = subparsers.add_parser(
        "convert", help="prune, QAT, export int8/float TFLite and ONNX, report the accuracy drop")
    parser.add_argument("source", metavar="RUN_DIR_OR_MODEL",
                        help="run directory from `edgeship train`, or a .keras/.h5 file")
    add_options(parser, ConvertConfig, defaults=CONVERT_DEFAULTS)
    add_options(parser, DatasetOptions)
    parser.add_argument("--out", default=None, help="output directory (default: the run directory)")
    parser.set_defaults(run=run_convert)


def convert_config(args):
    """The ConvertConfig of `edgeship convert`'s flags (--qat implies --int8)."""
    from edgeship.convert.run import ConvertConfig

    values = option_values(args, ConvertConfig)
    values["int8"] = values["int8"] or values["qat_epochs"] > 0
    return ConvertConfig(source=args.source, out=args.out, **values,
                         dataset=dataset_spec(args) if args.dataset else None)


def run_convert(args) -> int:
    from edgeship.convert.run import run_convert as convert

    config = convert_config(args)
    try:
        result = convert(config)
    except CheckFailedError:
        _print_convert_report(config)
        raise
    _print_convert_report(config)
    for name, path in result.artifacts.items():
        print(f"wrote {path} ({name})")
    return 0


def _print_convert_report(config) -> None:
    source = Path(config.source)
    out = Path(config.out) if config.out else (source if source.is_dir() else source.parent)
    report = out / "convert_report.md"
    if report.is_file():
        print(report.read_text())


# --- validate --------------------------------------------------------------------------------

def add_validate(subparsers) -> None:
    from edgeship.runtime.parity import ValidateConfig
    from edgeship.runtime.parity_checks import Tolerances

    parser = subparsers.add_parser(
        "validate", help="run the test split through every artifact x backend pair and check "
        "parity; writes parity.json, parity.md and predictions.npz")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory after train + convert")
    add_options(parser, ValidateConfig)
    add_options(parser, Tolerances)
    parser.set_defaults(run=run_validate)


def validate_config(args):
    from edgeship.runtime.parity import ValidateConfig
    from edgeship.runtime.parity_checks import Tolerances

    return ValidateConfig(run_dir=args.run_dir, **option_values(args, ValidateConfig),
                          tolerances=Tolerances(**option_values(args, Tolerances)))


def run_validate(args) -> int:
    from edgeship.runtime.parity import validate_run

    report = validate_run(validate_config(args))
    print(report.markdown_path.read_text())
    print(f"wrote {report.json_path} and {report.markdown_path}")
    for check in report.failures:
        print(f"edgeship validate: parity check failed: {check.describe()}", file=error_stream())
    return 0 if report.passed else 1


# --- inspect ---------------------------------------------------------------------------------

def add_inspect(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect", help="per-layer quantization error and per-op runtime parity of a run")
    parser.add_argument("source", metavar="RUN_DIR_OR_TFLITE",
                        help="run directory after convert --int8, or a bare int8 .tflite "
                        "(per-op parity only; writes NAME_inspect.json/.md beside it)")
    add_options(parser, DatasetOptions)
    parser.add_argument("--images", type=int, default=100, metavar="N",
                        help="test images (or random inputs) to compare on")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random inputs of a bare .tflite without --dataset")
    parser.add_argument("--backends", type=comma_list, default=("litert", "tflm"),
                        metavar="LIST", help="int8 runtimes compared op by op with litert-ref")
    parser.add_argument("--restore", type=int, default=5, metavar="K",
                        help="restore the K worst layers to float one at a time and measure the "
                        "accuracy each recovers (0: off)")
    parser.add_argument("--max-drop", type=float, default=1.0, metavar="PP",
                        help="say what helps, measured, when model_int8.tflite loses more")
    parser.set_defaults(run=run_inspect)


def run_inspect(args) -> int:
    from edgeship.inspect import InspectConfig
    from edgeship.inspect import run_inspect as inspect

    source = Path(args.source)
    inspect(InspectConfig(source=args.source,
                          dataset=dataset_spec(args) if args.dataset else None,
                          images=args.images, runtimes=args.backends, restore=args.restore,
                          max_drop_pp=args.max_drop, seed=args.seed))
    stem = source / "inspect" if source.is_dir() else Path(f"{source.with_suffix('')}_inspect")
    markdown = Path(f"{stem}.md")
    print(markdown.read_text())
    print(f"wrote {stem}.json and {markdown}")
    return 0


# --- bench -----------------------------------------------------------------------------------

def add_bench(subparsers) -> None:
    from edgeship.runtime.bench import BenchConfig

    parser = subparsers.add_parser(
        "bench", help="latency percentiles, throughput and peak RSS per artifact x backend; "
        "optional regression gate against a baseline")
    parser.add_argument("artifacts", nargs="+", metavar="ARTIFACT",
                        help=".tflite, .onnx or .keras files")
    add_options(parser, BenchConfig)
    parser.add_argument("--json", default=None, metavar="OUT", help="write the records here")
    parser.add_argument("--format", default="edgeship", choices=("edgeship", "gab"),
                        help="--json format: edgeship records, or github-action-benchmark's "
                        "customSmallerIsBetter")
    parser.add_argument("--baseline", default=None, metavar="FILE",
                        help="a stored --json file; exit 1 when a p50 regresses")
    parser.add_argument("--max-regression", type=float, default=0.10,
                        help="largest allowed p50 increase against --baseline (0.10 = 10%%)")
    parser.set_defaults(run=run_bench)


def bench_config(args):
    from edgeship.runtime.bench import BenchConfig

    return BenchConfig(artifacts=tuple(args.artifacts), **option_values(args, BenchConfig))


def run_bench(args) -> int:
    from edgeship.runtime.bench import (
        bench,
        compare_to_baseline,
        load_baseline,
        render_table,
        write_results,
    )

    config = bench_config(args)
    baseline = load_baseline(args.baseline) if args.baseline else None
    records = bench(config)
    print(render_table(records))
    if args.json:
        print(f"wrote {write_results(args.json, records, args.format)}")
    if baseline is None:
        return 0
    comparisons, unmatched = compare_to_baseline(records, baseline, args.max_regression)
    for comparison in comparisons:
        print(comparison.describe())
    for key in unmatched:
        print(f"{key}: not in the baseline, not gated")
    regressions = [comparison for comparison in comparisons if not comparison.passed]
    for comparison in regressions:
        print(f"edgeship bench: latency regression: {comparison.describe()}", file=error_stream())
    return 1 if regressions else 0

