"""`edgeship tune`: the most accurate model within RAM, flash and latency budgets.

    edgeship tune --dataset mnist5k --target cortex-m4 --max-ram 64KB --max-flash 256KB
        --max-ms 50 [--min-accuracy 0.95] --trials 30 --out runs/tune [--config tune.toml]
    edgeship tune --resume --out runs/tune       # go on with a killed or finished study
    edgeship tune --show --out runs/tune         # its report, nothing run

Exit codes: 0 ok, 1 no trained model met every budget, 2 bad input, 3 an internal failure.
Options default to "not given" so that they merge over the --config file's [tune] table.
"""

import argparse
import inspect
from dataclasses import dataclass, fields

from edgeship.commands import Command, OptionGroup
from edgeship.commands.dataset import DatasetOptions
from edgeship.options import option
from edgeship.tune_space import TuneConfig


@dataclass(frozen=True)
class TuneArguments:
    """The file, and what to do with the study in --out."""

    config: str | None = option(None, metavar="TOML",
                                help="a file with a [tune] table (these options) and a [space] "
                                "table (the searched choices, see edgeship/tune_space.py "
                                "SearchSpace); flags win")
    resume: bool = option(False, help="go on with the study in --out (or --storage) with its "
                          "own settings")
    show: bool = option(False, help="write and print the report of the study in --out; run "
                        "nothing")


GROUPS = (OptionGroup(TuneConfig), OptionGroup(DatasetOptions), OptionGroup(TuneArguments))


def tune_settings(values: dict, config_file: str | None = None):
    """(TuneConfig, SearchSpace overrides) from defaults < the TOML file < values given.

    Args:
        values: TuneConfig and DatasetOptions field names -> values (None: not given).
        config_file: a TOML file with [tune] and [space] tables.
    """
    from edgeship.errors import UserInputError
    from edgeship.options import parse_bytes
    from edgeship.tune_space import load_config_file

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
            try:
                merged[key] = parse_bytes(merged[key])
            except argparse.ArgumentTypeError as error:
                raise UserInputError(f"--{key.replace('_', '-')}: {error}") from None
    if dataset_values.get("image_size") is not None:
        dataset_values["image_size"] = tuple(dataset_values["image_size"])
    dataset = (DatasetOptions(**dataset_values).spec() if dataset_values.get("dataset")
               else None)
    try:
        return TuneConfig(**merged, dataset=dataset), space
    except (TypeError, ValueError) as error:
        raise UserInputError(f"tune: {error}") from error


def _given(values: dict) -> dict:
    """The TuneConfig and dataset options among values (None: not given)."""
    names = {item.name for group in GROUPS[:2] for item in group.options()}
    return {key: value for key, value in values.items() if key in names}


def build(values: dict):
    from edgeship.errors import UserInputError

    if values["resume"] and values["show"]:
        raise UserInputError("--resume and --show exclude each other")
    config, space = tune_settings(_given(values), values["config"])
    if config.out is None:
        raise UserInputError("edgeship tune needs --out (the tune folder)")
    if not (values["resume"] or values["show"]) and config.dataset is None:
        raise UserInputError("edgeship tune needs --dataset (or --resume/--show on a study in "
                             "--out)")
    return config, {**space, **(values.get("_space") or {})}


def execute(settings, values: dict):
    from edgeship.errors import CheckFailedError, UserInputError
    from edgeship.tune_space import SearchSpace
    from edgeship.tuning import resume_tune, run_tune, show_tune

    config, space = settings
    try:
        if values["show"]:
            return show_tune(config)
        if values["resume"]:
            return resume_tune(config, _given(values))
        try:
            searched = SearchSpace(**{key: tuple(value) if isinstance(value, list) else value
                                      for key, value in space.items()})
        except TypeError as error:
            raise UserInputError(f"tune space: {error}") from error
        return run_tune(config, searched)
    except CheckFailedError as error:
        outcome = getattr(error, "outcome", None)
        if outcome is not None:
            print(f"report: {outcome.html_path.resolve()}")
            error.result = result(outcome, values)
        raise


def render(outcome, values: dict) -> int:
    from edgeship.tables import Table
    from edgeship.tune_report import front_rows

    print()
    print(Table.from_records("Pareto front: every budget met", front_rows(outcome.report),
                             ("trial", "model", "validation_accuracy", "accuracy", "ms", "ram",
                              "flash", "run_dir")))
    print(f"report: {outcome.html_path.resolve()}")
    print(f"front: {outcome.json_path.resolve()}")
    return 0


def result(outcome, values: dict):
    from edgeship.commands.result import Result
    from edgeship.tables import Table
    from edgeship.tune_report import front_rows

    rows = front_rows(outcome.report)
    return Result(Table.from_records("Pareto front: every budget met", rows,
                                     tuple(rows[0]) if rows else ("trial",)),
                  {"tune_report.json": outcome.json_path, "tune_report.html": outcome.html_path},
                  outcome.report)


def prepare(values: dict, extras: dict) -> dict:
    """space= (SearchSpace fields -> choices) wins over the --config file's [space] table."""
    if values.get("out") is not None:
        values = {**values, "out": str(values["out"])}
    if values.get("config") is not None:
        values = {**values, "config": str(values["config"])}
    return {**values, "_space": extras.get("space")}


COMMAND = Command(
    "tune", "multi-objective search (accuracy up, estimated ms and RAM down) for the most "
    "accurate model within RAM, flash and latency budgets", GROUPS, build, execute, render,
    result, unset=True,
    api_extra=(inspect.Parameter("space", inspect.Parameter.KEYWORD_ONLY, default=None),),
    api_prepare=prepare)
