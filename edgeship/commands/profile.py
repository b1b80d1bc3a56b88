"""`edgeship profile`: int8 .tflite -> generated C on an emulated Cortex-M: instructions and
estimated cycles per op, flash, RAM; --baseline gates on them.

    edgeship profile MODEL_int8.tflite --target cortex-m4 [--kernels auto] [--board NAME]
        [--clock-mhz 120] [--input x.npy] [--seed 0] [--json out.json]
        [--baseline old.json --max-regression 0.01]

Exit codes: 0 ok, 1 an op regressed past --max-regression, 2 bad input, 3 a tool failed.
Its options are ProfileConfig's (edgeship/profile/run.py): one added there is a flag here, a
parameter of `edgeship.api.profile()` and a --profile-* flag and [profile] key of the pipeline.
"""

from dataclasses import dataclass
from typing import ClassVar

from edgeship.commands import Command, OptionGroup
from edgeship.options import option
from edgeship.profile.run import ProfileConfig
from edgeship.run_dir import ManifestRecord


@dataclass(frozen=True)
class ProfileOutput:
    """Where the profile goes and the gate (ProfileConfig says what is profiled)."""

    json: str | None = option(None, metavar="FILE", help="write the profile to this JSON file")
    baseline: str | None = option(None, metavar="FILE",
                                  help="a profile JSON to gate against: exit 1 naming each op "
                                  "whose instructions or estimated cycles grew past "
                                  "--max-regression")
    max_regression: float = option(0.01, help="allowed growth over the baseline, a fraction")

    def __post_init__(self):
        from edgeship.errors import UserInputError

        if self.max_regression < 0:
            raise UserInputError(f"--max-regression must be >= 0, got {self.max_regression}")


@dataclass(frozen=True)
class ProfileRecord(ManifestRecord):
    """The manifest's "profile" section (the pipeline's profile stage; profile.json beside it):
    the totals report.html's MCU section shows."""

    SECTION: ClassVar[str] = "profile"
    target: str
    clock_mhz: float
    kernels: str
    total: dict
    flash_bytes: int
    ram_bytes: int

    @classmethod
    def of(cls, report) -> "ProfileRecord":
        return cls(target=report.target, clock_mhz=report.clock_mhz, kernels=report.kernels,
                   total=report.to_dict()["total"], flash_bytes=report.flash["total"],
                   ram_bytes=report.ram["total"])


GROUPS = (OptionGroup(ProfileConfig), OptionGroup(ProfileOutput))


def build(values: dict) -> ProfileConfig:
    ProfileOutput(**{item.name: values[item.name] for item in GROUPS[1].options()})
    return ProfileConfig(**{item.name: values[item.name] for item in GROUPS[0].options()}
                         | {"model": str(values["model"])})


def execute(config: ProfileConfig, values: dict):
    """(the report, the ops that regressed past the baseline or None without one)."""
    from edgeship.artifacts import write_json_atomic
    from edgeship.profile.report import load_baseline, regressions
    from edgeship.profile.run import profile_model

    baseline = load_baseline(values["baseline"]) if values["baseline"] else None
    report = profile_model(config)
    if values["json"]:
        write_json_atomic(values["json"], report.to_dict())
    failed = regressions(report, baseline, values["max_regression"]) if baseline else None
    return report, failed


def render(outcome, values: dict) -> int:
    from edgeship.console import say

    report, failed = outcome
    print(report.table())
    if values["json"]:
        print(f"wrote {values['json']}")
    if failed is None:
        return 0
    if failed:
        for line in failed:
            say(f"edgeship profile: regression: {line}")
        return 1
    print(f"no op regressed past +{values['max_regression'] * 100:g}% of {values['baseline']}")
    return 0


def result(outcome, values: dict):
    """One row per op and a total row; cycles and ms are an estimate from Arm's instruction
    timings, instructions are counted."""
    from pathlib import Path

    from edgeship.commands.result import Result, raise_failed
    from edgeship.tables import Table

    report, failed = outcome
    payload = report.to_dict()
    columns = ("index", "op", "instructions", "cycles", "ms", "macs", "cycles_per_mac")
    rows = [{key: op.get(key) for key in columns} for op in payload["ops"]]
    rows.append({"op": "total", **{key: payload["total"][key] for key in columns[2:]}})
    table = Table.from_records(f"{Path(values['model']).name} on {report.target} at "
                               f"{report.clock_mhz:g} MHz ({report.kernels} kernels; cycles "
                               "estimated)", rows, columns)
    outcome = Result(table, {"json": Path(values["json"])} if values["json"] else {}, payload)
    if failed:
        raise_failed("profile regression: " + "; ".join(failed), outcome)
    return outcome


COMMAND = Command("profile", "int8 .tflite -> generated C on an emulated Cortex-M: "
                  "instructions and estimated cycles per op, flash, RAM; --baseline gates on "
                  "them", GROUPS, build, execute, render, result, record=ProfileRecord)
