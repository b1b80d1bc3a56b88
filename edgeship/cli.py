"""The `edgeship` command: a thin shell over one library call per command.

parse flags -> config object -> library call -> report -> exit code
(0 ok, 1 a check failed, 2 bad input). Heavy frameworks are imported inside the library
calls, so `edgeship --help` stays fast.
"""

import argparse
import os
import sys
from pathlib import Path

from edgeship import __version__
from edgeship.errors import CheckFailedError, EdgeshipError


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad flags already; keep its message to one line plus usage."""


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
    parser.add_argument("--prune", type=float, default=None, metavar="SPARSITY",
                        help="magnitude-pruning target sparsity in (0, 1)")
    parser.add_argument("--prune-structure", default=None, metavar="M:N",
                        help="structured sparsity, e.g. 2:4")
    parser.add_argument("--prune-epochs", type=int, default=2,
                        help="fine-tuning epochs over which pruning reaches its target")
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


# --- main ------------------------------------------------------------------------------------

_COMMANDS = [_add_train, _add_convert]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgeship", description="Keras CNN -> validated int8 model for MCUs "
                     "and phones: train, convert, validate, bench.")
    parser.add_argument("--version", action="version", version=f"edgeship {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in _COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except EdgeshipError as error:
        print(f"edgeship {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except ValueError as error:
        # Config validation (frozen dataclasses) reports bad flag values this way.
        print(f"edgeship {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgeship {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
