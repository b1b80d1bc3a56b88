"""The `edgeship` command: a thin shell over one library call per command.

parse flags -> config object -> library call -> report -> exit code
(0 ok, 1 a check failed, 2 bad input, 3 an internal failure: one line naming the command and
the log file with the traceback). Heavy frameworks are imported inside the library calls, so
`edgeship --help` stays fast. Run as the `edgeship` command (console_main), the frameworks'
logs go to edgeship.log in the output folder unless --verbose (edgeship/console.py).
"""

import argparse
import os
import sys
from pathlib import Path

from edgeship import __version__
from edgeship.console import error_stream
from edgeship.convert.granularity import GRANULARITIES
from edgeship.train.fit import BATCH_NORM_STATISTICS
from edgeship.errors import CheckFailedError, EdgeshipError


def _add_dataset_flags(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--dataset", required=required,
                        help="mnist, fashion_mnist, digits, mnist5k, folder:PATH or npz:PATH")
    parser.add_argument("--image-size", type=_image_size, default=None, metavar="HxW",
                        help="resize images, e.g. 32 or 96x96")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None)
    parser.add_argument("--split-seed", type=int, default=0,
                        help="seed of the stratified train/test split")
    parser.add_argument("--test-size", type=float, default=None,
                        help="test fraction (<1) or count for datasets split here")


def _image_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(part) for part in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must look like 32 or 96x96, got {text!r}")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"image size must look like 32 or 96x96, got {text!r}")
    return tuple(parts)


def _dataset_spec(args):
    from edgeship.train.datasets import DatasetSpec

    test_size = args.test_size
    if test_size is not None and test_size >= 1:
        test_size = int(test_size)
    return DatasetSpec(name=args.dataset, seed=args.split_seed, test_size=test_size,
                       image_size=args.image_size, channels=args.channels)


# --- train -----------------------------------------------------------------------------------

def _add_train(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a zoo model and write a run directory")
    parser.add_argument("--model", required=True,
                        help="simple_cnn, keras_cnn, lenet5, mlp, dscnn or mobilenet_v2")
    _add_dataset_flags(parser, required=True)
    parser.add_argument("--out", required=True, help="run directory to write")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", action="store_true",
                        help="random shifts, rotations and zoom in the input pipeline")
    parser.add_argument("--early-stopping", type=int, default=0, metavar="PATIENCE")
    parser.add_argument("--validation-split", type=float, default=0.1)
    parser.add_argument("--strategy", default="default",
                        choices=("default", "mirrored", "multiworker"))
    parser.add_argument("--batch-norm-statistics", default="population",
                        choices=BATCH_NORM_STATISTICS,
                        help="population (default): batch-norm moving statistics recomputed from "
                             "1,024 training images before each validation and at the end; "
                             "running: Keras' moving averages as they are")
    parser.add_argument("--alpha", type=float, default=0.35, help="mobilenet_v2 width")
    parser.add_argument("--weights", default=None, help="mobilenet_v2 backbone weights file")
    parser.add_argument("--freeze", type=int, default=0,
                        help="freeze the first N backbone layers (transfer learning)")
    parser.set_defaults(run=_run_train)


def _run_train(args) -> int:
    from edgeship.train.fit import TrainConfig, train
    from edgeship.train.models import ModelOptions

    config = TrainConfig(
        model=args.model, dataset=_dataset_spec(args), out=args.out, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
        augment=args.augment, early_stopping=args.early_stopping,
        validation_split=args.validation_split, strategy=args.strategy,
        batch_norm_statistics=args.batch_norm_statistics,
        model_options=ModelOptions(alpha=args.alpha, weights=args.weights, freeze=args.freeze))
    result = train(config)
    print(f"test accuracy: {result.test_accuracy:.4f} ({result.epochs_run} epochs, "
          f"{result.seconds:.1f} s) -> {result.run_dir}")
    return 0


# --- convert ---------------------------------------------------------------------------------

def _add_convert(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="prune, QAT, export int8/float TFLite and ONNX, report the accuracy drop")
    parser.add_argument("source", metavar="RUN_DIR_OR_MODEL",
                        help="run directory from `edgeship train`, or a .keras/.h5 file")
    parser.add_argument("--int8", action="store_true",
                        help="full-integer int8 TFLite (and int8 ONNX with --onnx)")
    parser.add_argument("--qat", type=int, default=0, metavar="EPOCHS",
                        help="quantization-aware fine-tuning epochs")
    parser.add_argument("--qat-learning-rate", type=float, default=1e-4, metavar="LR",
                        help="Adam learning rate of quantization-aware fine-tuning")
    parser.add_argument("--prune", type=float, default=None, metavar="SPARSITY",
                        help="magnitude-pruning target sparsity in (0, 1)")
    parser.add_argument("--prune-structure", default=None, metavar="M:N",
                        help="structured sparsity, e.g. 2:4")
    parser.add_argument("--prune-epochs", type=int, default=2,
                        help="fine-tuning epochs over which pruning reaches its target")
    parser.add_argument("--prune-allowance", type=float, default=1.0, metavar="PP",
                        help="a pruned int8 model ships unless it scores more than PP points "
                             "below post-training int8 on training images (default 1.0)")
    parser.add_argument("--onnx", action="store_true", help="also write float and int8 ONNX")
    parser.add_argument("--dataset", default=None,
                        help="dataset (required for a bare model file; default: the run's)")
    parser.add_argument("--image-size", type=_image_size, default=None, metavar="HxW")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--test-size", type=float, default=None)
    parser.add_argument("--calibration-samples", type=int, default=500)
    parser.add_argument("--io", default="int8", choices=("int8", "uint8", "float32"),
                        help="input/output type of the int8 TFLite")
    parser.add_argument("--weight-granularity", default="auto", choices=GRANULARITIES,
                        help="int8 weight scales per output channel, per tensor, or auto: "
                             "per-tensor where measured to cost no fidelity (smaller file), "
                             "for the whole model or layer by layer")
    parser.add_argument("--max-drop", type=float, default=None, metavar="PP",
                        help="exit 1 when an int8 artifact loses more than PP points of accuracy")
    parser.add_argument("--out", default=None, help="output directory (default: the run directory)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=_run_convert)


def _run_convert(args) -> int:
    from edgeship.convert.run import ConvertConfig, run_convert

    config = ConvertConfig(
        source=args.source, int8=args.int8 or args.qat > 0, qat_epochs=args.qat,
        prune_sparsity=args.prune, prune_structure=args.prune_structure,
        prune_epochs=args.prune_epochs, onnx=args.onnx,
        dataset=_dataset_spec(args) if args.dataset else None,
        calibration_samples=args.calibration_samples, io_type=args.io,
        weight_granularity=args.weight_granularity, qat_learning_rate=args.qat_learning_rate,
        prune_allowance_pp=args.prune_allowance,
        max_drop_pp=args.max_drop, out=args.out, seed=args.seed)
    try:
        result = run_convert(config)
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

def _comma_list(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _positive_int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(item) for item in _comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1 or 1,4, got {text!r}")
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _add_validate(subparsers) -> None:
    from edgeship.runtime.parity import Tolerances

    defaults = Tolerances()
    parser = subparsers.add_parser(
        "validate", help="run the test split through every artifact x backend pair and check "
        "parity; writes parity.json and parity.md")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory after train + convert")
    parser.add_argument("--dataset", default=None,
                        help="another dataset shaped like the run's (default: the run's test split)")
    parser.add_argument("--backends", type=_comma_list, default=None, metavar="LIST",
                        help="comma-separated backends (default: keras,litert,litert-ref,tflm,"
                        "onnxruntime)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="use the first N test images")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"),
                        help="device of keras and onnxruntime; gpu without a GPU exits 2")
    parser.add_argument("--max-drop", type=float, default=defaults.max_drop_pp, metavar="PP",
                        help="float vs int8: largest accuracy drop in points")
    parser.add_argument("--min-agreement", type=float, default=defaults.min_agreement,
                        help="float vs int8: smallest top-1 agreement with the reference")
    parser.add_argument("--float-atol", type=float, default=defaults.float_atol)
    parser.add_argument("--float-rtol", type=float, default=defaults.float_rtol)
    parser.add_argument("--reference-min-exact", type=float, default=defaults.reference_min_exact,
                        help="int8 on reference kernels, end to end: smallest fraction of equal "
                        "elements (default: reported, not bound; per-op parity decides)")
    parser.add_argument("--cross-max-quanta", type=int, default=defaults.cross_max_quanta)
    parser.add_argument("--cross-min-fraction", type=float, default=defaults.cross_min_fraction,
                        help="int8 across implementations, end to end: fraction within "
                        "--cross-max-quanta (default: reported, not bound)")
    parser.add_argument("--forbidden-quanta", type=int, default=defaults.forbidden_quanta)
    parser.add_argument("--max-forbidden-fraction", type=float,
                        default=defaults.max_forbidden_fraction,
                        help="int8 vs int8, end to end: largest fraction of elements "
                        "--forbidden-quanta or more apart (default: reported, not bound)")
    parser.add_argument("--cross-min-agreement", type=float,
                        default=defaults.cross_min_agreement,
                        help="int8 vs int8: smallest top-1 agreement between two runtimes")
    parser.add_argument("--per-op-images", type=int, default=defaults.per_op_images,
                        metavar="N", help="test images each op is compared on across runtimes "
                        "with identical inputs (0: off)")
    _add_timeout_flag(parser)
    parser.set_defaults(run=_run_validate)


def _add_timeout_flag(parser: argparse.ArgumentParser) -> None:
    from edgeship.runtime.isolation import DEFAULT_TIMEOUT_S

    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="time limit per model run in a child process: model files no "
                        "manifest.json beside them vouches for are loaded there, so a crash or "
                        "hang is an error (exit 2)")


def _run_validate(args) -> int:
    from edgeship.runtime.backends import default_backend_names
    from edgeship.runtime.parity import Tolerances, ValidateConfig, validate_run

    tolerances = Tolerances(
        float_atol=args.float_atol, float_rtol=args.float_rtol,
        reference_min_exact=args.reference_min_exact, cross_max_quanta=args.cross_max_quanta,
        cross_min_fraction=args.cross_min_fraction, forbidden_quanta=args.forbidden_quanta,
        max_forbidden_fraction=args.max_forbidden_fraction,
        min_agreement=args.min_agreement, max_drop_pp=args.max_drop,
        cross_min_agreement=args.cross_min_agreement, per_op_images=args.per_op_images)
    config = ValidateConfig(run_dir=args.run_dir, dataset=args.dataset,
                            backends=args.backends or default_backend_names(), limit=args.limit,
                            device=args.device, tolerances=tolerances, timeout_s=args.timeout)
    report = validate_run(config)
    print(report.markdown_path.read_text())
    print(f"wrote {report.json_path} and {report.markdown_path}")
    for check in report.failures:
        print(f"edgeship validate: parity check failed: {check.describe()}", file=error_stream())
    return 0 if report.passed else 1


# --- bench -----------------------------------------------------------------------------------

def _add_inspect(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect", help="per-layer quantization error and per-op runtime parity of a run")
    parser.add_argument("source", metavar="RUN_DIR_OR_TFLITE",
                        help="run directory after convert --int8, or a bare int8 .tflite "
                        "(per-op parity only; writes NAME_inspect.json/.md beside it)")
    _add_dataset_flags(parser, required=False)
    parser.add_argument("--images", type=int, default=100, metavar="N",
                        help="test images (or random inputs) to compare on")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random inputs of a bare .tflite without --dataset")
    parser.add_argument("--backends", type=_comma_list, default=("litert", "tflm"),
                        metavar="LIST", help="int8 runtimes compared op by op with litert-ref")
    parser.add_argument("--restore", type=int, default=5, metavar="K",
                        help="restore the K worst layers to float one at a time and measure the "
                        "accuracy each recovers (0: off)")
    parser.add_argument("--max-drop", type=float, default=1.0, metavar="PP",
                        help="say what helps, measured, when model_int8.tflite loses more")
    parser.set_defaults(run=_run_inspect)


def _run_inspect(args) -> int:
    from edgeship.inspect import InspectConfig, run_inspect

    source = Path(args.source)
    run_inspect(InspectConfig(source=args.source,
                              dataset=_dataset_spec(args) if args.dataset else None,
                              images=args.images, runtimes=args.backends, restore=args.restore,
                              max_drop_pp=args.max_drop, seed=args.seed))
    stem = source / "inspect" if source.is_dir() else Path(f"{source.with_suffix('')}_inspect")
    markdown = Path(f"{stem}.md")
    print(markdown.read_text())
    print(f"wrote {stem}.json and {markdown}")
    return 0


def _add_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="latency percentiles, throughput and peak RSS per artifact x backend; "
        "optional regression gate against a baseline")
    parser.add_argument("artifacts", nargs="+", metavar="ARTIFACT",
                        help=".tflite, .onnx or .keras files")
    parser.add_argument("--backend", type=_comma_list, default=(), metavar="NAME",
                        help="backend(s), comma-separated (default: litert for .tflite, "
                        "onnxruntime for .onnx, keras for .keras)")
    parser.add_argument("--runs", type=int, default=200, help="timed inferences")
    parser.add_argument("--warmup", type=int, default=20, help="untimed inferences first")
    parser.add_argument("--threads", type=_positive_int_list, default=(1,), metavar="N[,N]")
    parser.add_argument("--batch", type=_positive_int_list, default=(1,), metavar="N[,N]")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the records here")
    parser.add_argument("--format", default="edgeship", choices=("edgeship", "gab"),
                        help="--json format: edgeship records, or github-action-benchmark's "
                        "customSmallerIsBetter")
    parser.add_argument("--baseline", default=None, metavar="FILE",
                        help="a stored --json file; exit 1 when a p50 regresses")
    parser.add_argument("--max-regression", type=float, default=0.10,
                        help="largest allowed p50 increase against --baseline (0.10 = 10%%)")
    _add_timeout_flag(parser)
    parser.set_defaults(run=_run_bench)


def _run_bench(args) -> int:
    from edgeship.runtime.bench import (
        BenchConfig,
        bench,
        compare_to_baseline,
        load_baseline,
        render_table,
        write_results,
    )

    config = BenchConfig(artifacts=tuple(args.artifacts), backends=tuple(args.backend),
                         runs=args.runs, warmup=args.warmup, threads=args.threads,
                         batch=args.batch, device=args.device, seed=args.seed,
                         timeout_s=args.timeout)
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


# --- pipeline --------------------------------------------------------------------------------

def _add_pipeline(subparsers) -> None:
    parser = subparsers.add_parser(
        "pipeline", help="train -> convert -> validate -> bench -> embed -> report, skipping "
        "stages whose inputs did not change")
    parser.add_argument("--config", default=None, help="TOML file with the same options")
    parser.add_argument("--model", default=None)
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--augment", action="store_true", default=None)
    parser.add_argument("--batch-norm-statistics", default=None, choices=BATCH_NORM_STATISTICS)
    parser.add_argument("--image-size", type=_image_size, default=None, metavar="HxW")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None)
    parser.add_argument("--alpha", type=float, default=None)
    parser.add_argument("--qat", type=int, default=None, metavar="EPOCHS")
    parser.add_argument("--prune", type=float, default=None, metavar="SPARSITY")
    parser.add_argument("--prune-structure", default=None, metavar="M:N")
    parser.add_argument("--prune-epochs", type=int, default=None)
    parser.add_argument("--no-onnx", dest="onnx", action="store_false", default=None)
    parser.add_argument("--io", default=None, choices=("int8", "uint8", "float32"))
    parser.add_argument("--calibration-samples", type=int, default=None)
    parser.add_argument("--weight-granularity", default=None, choices=GRANULARITIES)
    parser.add_argument("--max-drop", type=float, default=None, metavar="PP")
    parser.add_argument("--validate-limit", type=int, default=None, metavar="N")
    parser.add_argument("--bench-runs", type=int, default=None)
    parser.add_argument("--bench-warmup", type=int, default=None)
    parser.add_argument("--embed-samples", type=int, default=None)
    parser.add_argument("--force", action="store_true", default=None,
                        help="redo every stage even when up to date")
    parser.set_defaults(run=_run_pipeline)


def _run_pipeline(args) -> int:
    from edgeship.pipeline import config_from_sources, load_config_file, run_pipeline

    file_values = load_config_file(args.config) if args.config else {}
    flags = {key: value for key, value in vars(args).items()
             if key not in ("command", "run", "config", "verbose")}
    result = run_pipeline(config_from_sources(file_values, flags))
    print()
    print(result.summary)
    print(f"report: {result.report_path.resolve()}")
    if result.failures:
        for failure in result.failures:
            print(f"edgeship pipeline: check failed: {failure}", file=error_stream())
        return 1
    return 0


# --- codegen ---------------------------------------------------------------------------------

def _add_codegen(subparsers) -> None:
    parser = subparsers.add_parser(
        "codegen", help="int8 .tflite -> standalone C99 (no runtime), bit-exact with TFLite")
    parser.add_argument("model", help="full-int8 .tflite (e.g. runs/demo/model_int8.tflite)")
    _add_firmware_flags(parser, out_help="folder to write NAME.h and NAME.c into",
                        name_help="C prefix of the files and symbols")
    parser.set_defaults(run=_run_codegen)


def _add_firmware_flags(parser: argparse.ArgumentParser, out_help: str, name_help: str) -> None:
    """Flags codegen and embed share: where to write, the C prefix, embedded samples."""
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--name", default="model", help=name_help)
    parser.add_argument("--samples", type=int, default=0, metavar="N",
                        help="embed N test images with TFLite Micro's outputs (NAME_samples.c)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample choice")


def _run_codegen(args) -> int:
    from edgeship.convert.codegen import CodegenConfig, generate_c

    result = generate_c(CodegenConfig(model=args.model, out=args.out, name=args.name,
                                      samples=args.samples, seed=args.seed))
    print(f"wrote {', '.join(path.name for path in result.files)} to {result.out_dir}")
    print(f"{len(result.ops)} ops ({', '.join(sorted(set(result.ops)))}); activations "
          f"{result.arena_bytes} bytes (all tensors: {result.sum_of_tensors}); weights and "
          f"constants {result.weight_bytes} bytes; {result.samples} samples")
    return 0


# --- serve-demo ------------------------------------------------------------------------------

def _add_serve_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve-demo", help="build the phone web demo for a run (int8 model in the browser) and "
        "serve it on localhost")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="run directory after `edgeship convert --int8 --onnx`")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: this machine only)")
    parser.add_argument("--out", default="", help="site folder (default: RUN_DIR/phone_web)")
    parser.add_argument("--test-images", type=int, default=20,
                        help="real test images the page offers")
    parser.add_argument("--rebuild", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--build-only", action="store_true", help="build the site, do not serve")
    parser.set_defaults(run=_run_serve_demo)


def _run_serve_demo(args) -> int:
    from edgeship.runtime.serve_demo import ServeDemoConfig, serve_demo

    config = ServeDemoConfig(run_dir=args.run_dir, port=args.port, host=args.host, out=args.out,
                             test_images=args.test_images, rebuild=args.rebuild,
                             build_only=args.build_only)
    serve_demo(config, report=lambda line: print(line, flush=True))
    return 0


# --- embed -----------------------------------------------------------------------------------

def _add_embed(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed", help=".tflite -> C++ model data, op resolver and arena size for TFLite Micro")
    parser.add_argument("model", help="the .tflite to embed (e.g. runs/demo/model_int8.tflite)")
    _add_firmware_flags(parser, out_help="folder to write the sources into",
                        name_help="prefix of files and symbols (g_NAME_model_data)")
    parser.set_defaults(run=_run_embed)


def _run_embed(args) -> int:
    from edgeship.convert.embed import EmbedConfig, embed_model

    result = embed_model(EmbedConfig(model=args.model, out=args.out, name=args.name,
                                     samples=args.samples, seed=args.seed))
    print(f"wrote {', '.join(path.name for path in result.files)} to {result.out_dir}")
    print(f"model {result.model_bytes} bytes; TFLite Micro arena {result.arena_bytes} bytes "
          f"measured, {result.arena_size} with margin; {len(result.ops)} ops: "
          f"{', '.join(result.ops)}; {result.samples} samples")
    return 0


# --- main ------------------------------------------------------------------------------------

_COMMANDS = [_add_train, _add_convert, _add_pipeline, _add_validate, _add_inspect, _add_bench,
             _add_codegen, _add_embed, _add_serve_demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeship", description="Keras CNN -> validated int8 model for MCUs "
                     "and phones: train, convert, validate, bench.")
    parser.add_argument("--version", action="version", version=f"edgeship {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show the frameworks' logs on the console (default: edgeship.log in "
                        "the output folder)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in _COMMANDS:
        add_command(subparsers)
    return parser


def _one_line(error: Exception) -> str:
    """Runtimes put their own multi-line reports in exceptions; the CLI prints one line."""
    return " ".join(str(error).split())


def main(argv: list[str] | None = None, quiet: bool = False) -> int:
    """Parse, run one command, map errors to exit codes.

    Args:
        argv: the arguments (default: sys.argv[1:]).
        quiet: the frameworks' output goes to a log file (console_main), which then holds an
            internal failure's traceback.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except EdgeshipError as error:
        if error.exit_code == 3:  # a library failed: keep its traceback (in the log when quiet)
            import traceback

            traceback.print_exception(error)
        print(f"edgeship {args.command}: error: {_one_line(error)}", file=error_stream())
        return error.exit_code
    except ValueError as error:
        # Config validation (frozen dataclasses) reports bad flag values this way.
        print(f"edgeship {args.command}: error: {_one_line(error)}", file=error_stream())
        return 2
    except KeyboardInterrupt:
        print(f"edgeship {args.command}: interrupted", file=error_stream())
        return 130
    except Exception as error:  # ours, not the user's: exit 3, the traceback kept
        import traceback

        traceback.print_exc()  # into the log file while quiet
        print(f"edgeship {args.command}: internal error (a bug in edgeship or a library, not "
              f"your input): {type(error).__name__}: {_one_line(error)}"
              + ("" if quiet else " (traceback above)"), file=error_stream())
        return 3


def console_main(argv: list[str] | None = None) -> int:
    """The `edgeship` command: main() with the frameworks' logs in a log file unless --verbose."""
    from edgeship.console import keep_log, quiet_console

    arguments = sys.argv[1:] if argv is None else argv
    build_parser().parse_args(arguments)  # usage errors, --help and --version on the terminal
    if "--verbose" in arguments:
        return main(arguments)
    with quiet_console() as log_path:
        code = main(arguments, quiet=True)
    folder = _output_folder(arguments)
    if folder is None or not folder.is_dir():
        if code == 3:
            print(f"edgeship: the traceback is in {log_path}", file=sys.stderr)
        else:
            log_path.unlink(missing_ok=True)
        return code
    kept = keep_log(log_path, folder, " ".join(arguments))
    if code == 3:
        print(f"edgeship: the traceback is in {kept}", file=sys.stderr)
    return code


def _output_folder(arguments: list[str]) -> Path | None:
    """The folder a command writes into (its log goes there), when the flags name one."""
    try:
        args = build_parser().parse_args(arguments)
    except SystemExit:
        return None
    for name in ("out", "run_dir", "source"):
        value = getattr(args, name, None)
        if value:
            path = Path(value)
            return path if path.is_dir() or path.suffix == "" else path.parent
    return None


if __name__ == "__main__":
    sys.exit(console_main())
