"""The `edgeship` command: a thin shell over one library call per command.

parse flags -> config object -> library call -> report -> exit code
(each command is one spec in edgeship/commands/, which also makes its API function)
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
from edgeship.commands import all_commands
from edgeship.console import error_stream
from edgeship.errors import EdgeshipError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeship", description="Keras CNN -> validated int8 model for MCUs "
                     "and phones: train, convert, validate, bench.")
    parser.add_argument("--version", action="version", version=f"edgeship {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show the frameworks' logs on the console (default: edgeship.log in "
                        "the output folder)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in all_commands():
        command.add_to(subparsers)
    return parser


def _one_line(error: Exception) -> str:
    """Runtimes put their own multi-line reports in exceptions; the CLI prints one line."""
    return " ".join(str(error).split())


def main(argv: list[str] | None = None, quiet: bool = False,
         log_path: Path | None = None) -> int:
    """Parse, run one command, map errors to exit codes.

    Args:
        argv: the arguments (default: sys.argv[1:]).
        quiet: the frameworks' output goes to a log file (console_main), which then holds an
            internal failure's traceback.
        log_path: where that log will be kept, named in an internal failure's one line.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    where = (f" (traceback in {log_path})" if quiet and log_path
             else "" if quiet else " (traceback above)")
    try:
        return args.run(args)
    except EdgeshipError as error:
        if error.exit_code == 3:  # a library failed: keep its traceback (in the log when quiet)
            import traceback

            traceback.print_exception(error)
        print(f"edgeship {args.command}: error: {_one_line(error)}"
              + (where if error.exit_code == 3 else ""), file=error_stream())
        return error.exit_code
    except KeyboardInterrupt:
        print(f"edgeship {args.command}: interrupted", file=error_stream())
        return 130
    except Exception as error:  # ours, not the user's: exit 3, the traceback kept
        import traceback

        traceback.print_exc()  # into the log file while quiet
        print(f"edgeship {args.command}: internal error (a bug in edgeship or a library, not "
              f"your input): {type(error).__name__}: {_one_line(error)}{where}",
              file=error_stream())
        return 3


def console_main(argv: list[str] | None = None) -> int:
    """The `edgeship` command: main() with the frameworks' logs in a log file unless --verbose.

    The log is kept as edgeship.log in the command's output folder; embed's and codegen's
    --out is created first, so one that fails before writing anything (a model TFLite Micro
    cannot load) still leaves its log where the person asked for output.
    """
    from edgeship.console import LOG_NAME, keep_log, quiet_console

    arguments = sys.argv[1:] if argv is None else argv
    build_parser().parse_args(arguments)  # usage errors, --help and --version on the terminal
    if "--verbose" in arguments:
        return main(arguments)
    folder = _output_folder(arguments)
    with quiet_console() as log_path:
        kept_at = folder / LOG_NAME if folder is not None and folder.is_dir() else log_path
        code = main(arguments, quiet=True, log_path=kept_at)
    if folder is None or not folder.is_dir():
        if code != 3:
            log_path.unlink(missing_ok=True)
        return code
    keep_log(log_path, folder, " ".join(arguments))
    return code


_OUT_CREATED_FOR_LOG = ("embed", "codegen")


def _output_folder(arguments: list[str]) -> Path | None:
    """The folder a command writes into (its log goes there), when the flags name one.

    embed's and codegen's --out is created here: their failures are about the model the
    person brought (TFLite Micro's reason, in full, is in the log), and the log belongs where
    they asked for output. Other folders are not made for a log (a bad `train --out` run
    leaves nothing behind; a typo in a run directory must not make one).
    """
    try:
        args = build_parser().parse_args(arguments)
    except SystemExit:
        return None
    for name in ("out", "pipeline.out", "run_dir", "source", "json"):
        value = vars(args).get(name)
        if not value or (name == "json" and args.command != "profile"):
            continue
        path = Path(value)
        folder = path if path.is_dir() or (path.suffix == "" and name != "json") else path.parent
        if name == "out" and args.command in _OUT_CREATED_FOR_LOG and not folder.is_dir():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError:
                return None
        return folder
    return None


if __name__ == "__main__":
    sys.exit(console_main())
