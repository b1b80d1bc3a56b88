"""`edgeship inspect`: per-layer quantization error and per-op runtime parity of a run.

InspectConfig (edgeship/inspect.py) has no option fields; its options are declared here with
its defaults (tests/edgeship/test_cli.py checks they agree).
"""

from dataclasses import dataclass
from pathlib import Path

from edgeship.commands import Command, OptionGroup
from edgeship.commands.dataset import DatasetOptions, dataset_spec_or_none
from edgeship.inspect import InspectConfig
from edgeship.options import comma_list, option

_DEFAULTS = InspectConfig(source="")


@dataclass(frozen=True)
class InspectOptions:
    source: str = option(positional=True, metavar="RUN_DIR_OR_TFLITE",
                         help="run directory after convert --int8, or a bare int8 .tflite "
                         "(per-op parity only; writes NAME_inspect.json/.md beside it)")
    images: int = option(_DEFAULTS.images, metavar="N",
                         help="test images (or random inputs) to compare on")
    seed: int = option(_DEFAULTS.seed,
                       help="seed of the random inputs of a bare .tflite without --dataset")
    runtimes: tuple[str, ...] = option(_DEFAULTS.runtimes, flag="backends", parse=comma_list,
                                       metavar="LIST",
                                       help="int8 runtimes compared op by op with litert-ref")
    restore: int = option(_DEFAULTS.restore, metavar="K",
                          help="restore the K worst layers to float one at a time and measure "
                          "the accuracy each recovers (0: off)")
    attribution_images: int = option(_DEFAULTS.attribution_images, metavar="N",
                                     help="test images each restored variant is scored on")
    max_drop_pp: float = option(_DEFAULTS.max_drop_pp, flag="max-drop", metavar="PP",
                                help="say what helps, measured, when model_int8.tflite loses "
                                "more")


GROUPS = (OptionGroup(InspectOptions), OptionGroup(DatasetOptions))


def build(values: dict) -> InspectConfig:
    dataset = values.get("_dataset_spec") or dataset_spec_or_none(values)
    return InspectConfig(dataset=dataset, **{item.name: values[item.name]
                                             for item in GROUPS[0].options()}
                         | {"source": str(values["source"])})


def execute(config: InspectConfig, values: dict):
    from edgeship.inspect import run_inspect

    return run_inspect(config)


def _stem(source: Path) -> Path:
    return source / "inspect" if source.is_dir() else Path(f"{source.with_suffix('')}_inspect")


def render(payload, values: dict) -> int:
    stem = _stem(Path(values["source"]))
    markdown = Path(f"{stem}.md")
    print(markdown.read_text())
    print(f"wrote {stem}.json and {markdown}")
    return 0


def result(payload, values: dict):
    from edgeship.commands.result import Result
    from edgeship.tables import Table

    if payload.get("layers"):
        table = Table.from_records("per-layer quantization error (worst SQNR first)",
                                   payload["layers"], ("index", "op", "sqnr_db", "cosine",
                                                       "mean_error_quanta", "max_error_quanta"))
    else:
        table = Table.from_records("per-op comparison with the reference kernels",
                                   payload.get("ops", []), ("index", "op", "runtime", "verdict"))
    stem = _stem(Path(values["source"]))
    return Result(table, {suffix: Path(f"{stem}.{suffix}") for suffix in ("json", "md")},
                  payload)


def prepare(values: dict, extras: dict) -> dict:
    """The API's dataset= may be a DatasetSpec as well as a name."""
    from edgeship.train.datasets import DatasetSpec

    if isinstance(values.get("dataset"), DatasetSpec):
        values = {**values, "_dataset_spec": values["dataset"], "dataset": None}
    return values


COMMAND = Command("inspect", "per-layer quantization error and per-op runtime parity of a run",
                  GROUPS, build, execute, render, result, api_prepare=prepare)
