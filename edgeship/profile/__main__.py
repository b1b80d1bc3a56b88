"""python -m edgeship.profile MODEL_int8.tflite ...: the same as `edgeship profile ...`."""

import sys

from edgeship.cli import console_main

if __name__ == "__main__":
    sys.exit(console_main(["profile", *sys.argv[1:]]))
