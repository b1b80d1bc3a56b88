"""python -m edgeship.profile MODEL_int8.tflite --target cortex-m4 ... (until the CLI has it)."""

import sys


def main(argv: list[str] | None = None) -> int:
    """`edgeship profile ...` through the CLI's error handling (exit 3 keeps its traceback)."""
    from edgeship.cli import main as cli_main

    return cli_main(["profile", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
