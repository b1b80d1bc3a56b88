"""The `edgeship` command: a thin shell over one library call per command.

parse flags -> config object -> library call -> report -> exit code
(the commands live in cli_stages.py: train, convert, validate, inspect, bench; and
cli_deploy.py: pipeline, codegen, embed, serve-demo)
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
from edgeship.cli_deploy import add_codegen, add_embed, add_pipeline, add_profile, add_serve_demo
from edgeship.cli_stages import add_bench, add_convert, add_inspect, add_train, add_validate
from edgeship.console import error_stream
from edgeship.errors import EdgeshipError

# --- main ------------------------------------------------------------------------------------

_COMMANDS = [add_train, add_convert, add_pipeline, add_validate, add_inspect, add_bench,
             add_codegen, add_profile, add_embed, add_serve_demo]


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
    for name in ("out", "pipeline.out", "run_dir", "source"):
        value = vars(args).get(name)
        if value:
            path = Path(value)
            return path if path.is_dir() or path.suffix == "" else path.parent
    return None


if __name__ == "__main__":
    sys.exit(console_main())
