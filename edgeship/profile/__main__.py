"""python -m edgeship.profile MODEL_int8.tflite --target cortex-m4 ... (until the CLI has it)."""

import argparse
import sys

from edgeship.profile.command import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgeship profile", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
