"""`edgeship validate`: every artifact x backend pair of a run, parity checked."""

from dataclasses import dataclass

from edgeship.commands import Command, OptionGroup
from edgeship.options import option
from edgeship.runtime.parity import ValidateConfig
from edgeship.runtime.parity_checks import Tolerances


@dataclass(frozen=True)
class ValidateArguments:
    run_dir: str = option(positional=True, metavar="RUN_DIR",
                          help="run directory after train + convert")


GROUPS = (OptionGroup(ValidateArguments), OptionGroup(ValidateConfig), OptionGroup(Tolerances))


def build(values: dict) -> ValidateConfig:
    return ValidateConfig(run_dir=str(values["run_dir"]),
                          **{item.name: values[item.name] for item in GROUPS[1].options()},
                          tolerances=Tolerances(**{item.name: values[item.name]
                                                   for item in GROUPS[2].options()}))


def execute(config: ValidateConfig, values: dict):
    from edgeship.runtime.parity import validate_run

    return validate_run(config)


def render(report, values: dict) -> int:
    from edgeship.console import error_stream

    print(report.markdown_path.read_text())
    print(f"wrote {report.json_path} and {report.markdown_path}")
    for check in report.failures:
        print(f"edgeship validate: parity check failed: {check.describe()}", file=error_stream())
    return 0 if report.passed else 1


def result(report, values: dict):
    from edgeship.commands.result import Result, raise_failed
    from edgeship.tables import Table

    payload = report.payload
    table = Table.from_records(f"parity against {payload['reference']['artifact']} on "
                               f"{payload['reference']['backend']}", payload["pairs"],
                               ("artifact", "backend", "precision", "accuracy", "drop",
                                "agreement", "max_abs_error", "cosine"))
    outcome = Result(table, {"parity.json": report.json_path, "parity.md": report.markdown_path},
                     payload)
    if not report.passed:
        raise_failed("validate failed: " + "; ".join(payload["failures"][:3]), outcome)
    return outcome


COMMAND = Command(
    "validate", "run the test split through every artifact x backend pair and check parity; "
    "writes parity.json, parity.md and predictions.npz", GROUPS, build, execute, render, result)
