"""`edgeship tune`: flags, the TOML file, and the command (registered in edgeship/cli.py).

    edgeship tune --dataset mnist5k --target cortex-m4 --max-ram 64KB --max-flash 256KB
        --max-ms 50 [--min-accuracy 0.95] --trials 30 --out runs/tune [--config tune.toml]
    edgeship tune --resume --out runs/tune       # go on with a killed or finished study
    edgeship tune --show --out runs/tune         # its report, nothing run

Exit codes: 0 ok, 1 no trained model met every budget, 2 bad input, 3 an internal failure.
"""

import argparse

from edgeship.options import add_options, option_values

TUNE_OPTIONS_HELP = ("multi-objective search (accuracy up, estimated ms and RAM down) for the "
                     "most accurate model within RAM, flash and latency budgets")


def add_tune(subparsers) -> None:
    from edgeship.cli_stages import DatasetOptions
    from edgeship.tune_space import TuneConfig

    parser = subparsers.add_parser("tune", help=TUNE_OPTIONS_HELP)
    add_options(parser, TuneConfig, unset=True)
    add_options(parser, DatasetOptions, unset=True)
    parser.add_argument("--config", default=None, metavar="TOML",
                        help="a file with a [tune] table (these options) and a [space] table "
                             "(the searched choices, see edgeship/tune_space.py SearchSpace); "
                             "flags win")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="go on with the study in --out (or --storage) with its own settings")
    mode.add_argument("--show", action="store_true",
                      help="write and print the report of the study in --out; run nothing")
    parser.set_defaults(run=run_tune_command)


def tune_settings(values: dict, config_file: str | None = None):
    """(TuneConfig, SearchSpace overrides) from defaults < the TOML file < values given.

    Args:
        values: TuneConfig and DatasetOptions field names -> values (None: not given).
        config_file: a TOML file with [tune] and [space] tables.
    """
    from dataclasses import fields

    from edgeship.cli_stages import DatasetOptions
    from edgeship.errors import UserInputError
    from edgeship.tune_space import TuneConfig, load_config_file

    file_values, space = load_config_file(config_file) if config_file else ({}, {})
    merged = {**file_values, **{key: value for key, value in values.items() if value is not None}}
    tune_names = {item.name for item in fields(TuneConfig)} - {"dataset"}
    dataset_names = {item.name for item in fields(DatasetOptions)}
    unknown = sorted(set(merged) - tune_names - dataset_names)
    if unknown:
        raise UserInputError(f"unknown tune option(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(tune_names | dataset_names))}")
    dataset_values = {key: merged.pop(key) for key in list(merged) if key in dataset_names}
    for key in ("max_ram", "max_flash"):
        if isinstance(merged.get(key), str):
            from edgeship.tune_space import parse_bytes

            try:
                merged[key] = parse_bytes(merged[key])
            except argparse.ArgumentTypeError as error:
                raise UserInputError(f"--{key.replace('_', '-')}: {error}") from None
    if "image_size" in dataset_values and dataset_values["image_size"] is not None:
        dataset_values["image_size"] = tuple(dataset_values["image_size"])
    dataset = (DatasetOptions(**dataset_values).spec() if dataset_values.get("dataset")
               else None)
    try:
        return TuneConfig(**merged, dataset=dataset), space
    except (TypeError, ValueError) as error:
        raise UserInputError(f"tune: {error}") from error


def run_tune_command(args: argparse.Namespace) -> int:
    from edgeship.cli_stages import DatasetOptions
    from edgeship.errors import CheckFailedError, UserInputError
    from edgeship.tune_report import front_rows
    from edgeship.tune_space import SearchSpace, TuneConfig
    from edgeship.tuning import resume_tune, run_tune, show_tune

    values = {**option_values(args, TuneConfig), **option_values(args, DatasetOptions)}
    config, space = tune_settings(values, args.config)
    if config.out is None:
        raise UserInputError("edgeship tune needs --out (the tune folder)")
    try:
        if args.show:
            outcome = show_tune(config)
        elif args.resume:
            outcome = resume_tune(config, values)
        else:
            if config.dataset is None:
                raise UserInputError("edgeship tune needs --dataset (or --resume/--show on a "
                                     "study in --out)")
            outcome = run_tune(config, SearchSpace(**space))
    except CheckFailedError as error:
        outcome = getattr(error, "outcome", None)
        if outcome is not None:
            print(f"report: {outcome.html_path.resolve()}")
        raise
    print()
    print(_front_text(front_rows(outcome.report)))
    print(f"report: {outcome.html_path.resolve()}")
    print(f"front: {outcome.json_path.resolve()}")
    return 0


def _front_text(rows: list[dict]) -> str:
    from edgeship.tables import Table

    return str(Table.from_records("Pareto front: every budget met", rows,
                                  ("trial", "model", "validation_accuracy", "accuracy", "ms",
                                   "ram", "flash", "run_dir")))
