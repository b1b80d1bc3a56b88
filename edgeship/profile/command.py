"""`edgeship profile`: flags and the command, for registration in edgeship/cli.py.

    edgeship profile MODEL_int8.tflite --target cortex-m4 [--kernels auto] [--board NAME]
        [--clock-mhz 120] [--input x.npy]
        [--seed 0] [--json out.json] [--baseline old.json --max-regression 0.01]

Exit codes: 0 ok, 1 an op regressed past --max-regression, 2 bad input, 3 a tool failed.
"""

import argparse

from edgeship.console import say
from edgeship.errors import EdgeshipError

DEFAULT_MAX_REGRESSION = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The profile command's flags."""
    from edgeship.profile.targets import TARGETS

    parser.add_argument("model", help="full-int8 .tflite")
    parser.add_argument("--target", default="cortex-m4", choices=list(TARGETS),
                        help="Cortex-M core to compile for and emulate (default cortex-m4; "
                             "with --board, the board's core)")
    parser.add_argument("--board", default=None,
                        help="model this board's flash wait states and caches (one of "
                             "nucleo-l4r5zi, nucleo-h7a3zi, nucleo-u575zi; "
                             "edgeship/profile/boards.py); default: zero-wait memory")
    from edgeship.convert.codegen.kernels import KERNEL_CHOICES
    from edgeship.profile.run import ProfileConfig

    parser.add_argument("--kernels", default=ProfileConfig.kernels, choices=KERNEL_CHOICES,
                        help="codegen's kernel variant to profile (default auto: dsp on cores "
                             "with the DSP extension, else portable; as codegen and the "
                             "pipeline's profile stage)")
    parser.add_argument("--cmsis-nn", default=None, metavar="DIR",
                        help="CMSIS-NN folder, for --kernels cmsis-nn")
    parser.add_argument("--clock-mhz", type=float, default=None,
                        help="clock for the ms estimate (default: the target's typical board, "
                             "120 for cortex-m4)")
    parser.add_argument("--input", default=None,
                        help=".npy input (float or int8); default a seeded random int8 input")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    parser.add_argument("--json", default=None, help="write the profile to this JSON file")
    parser.add_argument("--baseline", default=None,
                        help="a profile JSON to gate against: exit 1 naming each op whose "
                             "instructions or estimated cycles grew past --max-regression")
    parser.add_argument("--max-regression", type=float, default=DEFAULT_MAX_REGRESSION,
                        help="allowed growth over the baseline, a fraction (default 0.01)")


def run(args: argparse.Namespace) -> int:
    """Profile, print the table, write --json, gate against --baseline; the exit code."""
    try:
        return _run(args)
    except EdgeshipError as error:
        if error.exit_code == 3:  # a tool failed: edgeship.cli keeps the traceback, names the log
            raise
        say(f"edgeship profile: error: {error}")
        return error.exit_code


def _run(args: argparse.Namespace) -> int:
    from edgeship.artifacts import write_json_atomic
    from edgeship.errors import UserInputError
    from edgeship.profile.report import load_baseline, regressions
    from edgeship.profile.run import ProfileConfig, profile_model

    if args.max_regression < 0:
        raise UserInputError(f"--max-regression must be >= 0, got {args.max_regression}")
    baseline = load_baseline(args.baseline) if args.baseline else None
    report = profile_model(ProfileConfig(model=args.model, target=args.target, board=args.board,
                                         clock_mhz=args.clock_mhz, input=args.input,
                                         seed=args.seed, kernels=args.kernels,
                                         cmsis_nn=args.cmsis_nn))
    print(report.table())
    if args.json:
        print(f"wrote {write_json_atomic(args.json, report.to_dict())}")
    if baseline is None:
        return 0
    failed = regressions(report, baseline, args.max_regression)
    if failed:
        for line in failed:
            say(f"edgeship profile: regression: {line}")
        return 1
    print(f"no op regressed past +{args.max_regression * 100:g}% of {args.baseline}")
    return 0
