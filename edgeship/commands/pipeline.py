"""`edgeship pipeline`: train -> convert -> validate -> bench -> embed -> profile -> report,
skipping stages whose inputs did not change.

Its options are the stage commands' (edgeship/pipeline_config.py GROUPS: the train and
convert flags as they are, --validate-*, --bench-*, --profile-*), merged over a --config
file; the API takes them by the same names (`edgeship.api.pipeline(out=..., bench_runs=20)`).
"""

from edgeship.commands import Command, OptionGroup
from edgeship.pipeline_config import GROUPS as STAGE_GROUPS
from edgeship.pipeline_config import PipelineFile

GROUPS = (OptionGroup(PipelineFile),) + STAGE_GROUPS


def build(values: dict):
    """The PipelineConfig of the defaults, the --config file and the options given."""
    from edgeship.pipeline_config import config_from_sources, flag_values, load_config_file

    file_values = load_config_file(values["config"]) if values.get("config") else {}
    return config_from_sources(file_values, flag_values(values))


def execute(config, values: dict):
    from edgeship.pipeline import run_pipeline

    return run_pipeline(config)


def render(result, values: dict) -> int:
    from edgeship.console import error_stream

    print()
    print(result.summary)
    print(f"report: {result.report_path.resolve()}")
    if result.failures:
        for failure in result.failures:
            print(f"edgeship pipeline: check failed: {failure}", file=error_stream())
        return 1
    return 0


def result(outcome, values: dict):
    from edgeship.commands.result import Result, raise_failed
    from edgeship.tables import Table

    rows = [{"stage": stage.name, "ran": stage.ran, "seconds": round(stage.seconds, 1),
             "note": stage.note} for stage in outcome.stages]
    summary = Result(Table.from_records(f"edgeship pipeline -> {outcome.run_dir}", rows,
                                        ("stage", "ran", "seconds", "note")),
                     {"report.html": outcome.report_path}, {"failures": outcome.failures})
    if outcome.failures:
        raise_failed("pipeline: " + "; ".join(outcome.failures), summary)
    return summary


COMMAND = Command("pipeline", "train -> convert -> validate -> bench -> embed -> profile -> "
                  "report, skipping stages whose inputs did not change", GROUPS, build, execute,
                  render, result, unset=True)
