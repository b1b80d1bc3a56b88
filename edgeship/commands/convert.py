"""`edgeship convert`: prune, QAT, export int8/float TFLite and ONNX, report the accuracy drop.

The API takes more than the command line: a model object, and the notebook's arrays (data=,
calibration=, class_names=), kept in the run folder only as far as later stages need them
(edgeship/commands/notebook_data.py).
"""

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

from edgeship.commands import Command, OptionGroup
from edgeship.commands.dataset import DatasetOptions, dataset_spec_or_none
from edgeship.convert.run import ConvertConfig
from edgeship.options import option


@dataclass(frozen=True)
class ConvertArguments:
    """What `edgeship convert` reads and where it writes (ConvertConfig's other fields)."""

    source: str = option(positional=True, metavar="RUN_DIR_OR_MODEL",
                         help="run directory from `edgeship train`, or a .keras/.h5 file")
    out: str | None = option(None, help="output directory (default: the run directory)")


GROUPS = (OptionGroup(ConvertArguments), OptionGroup(ConvertConfig), OptionGroup(DatasetOptions))


def build(values: dict) -> ConvertConfig:
    """The ConvertConfig of the options (QAT implies int8)."""
    options = {item.name: values[item.name] for item in GROUPS[1].options()}
    options["int8"] = options["int8"] or options["qat_epochs"] > 0
    dataset = values.get("_dataset_spec") or dataset_spec_or_none(values)
    return ConvertConfig(source=str(values["source"]), out=values["out"], dataset=dataset,
                         **options)


def execute(config: ConvertConfig, values: dict):
    from edgeship.convert.run import run_convert

    return run_convert(config)


def _report_path(config_source: str, out: str | None) -> Path:
    source = Path(config_source)
    folder = Path(out) if out else (source if source.is_dir() else source.parent)
    return folder / "convert_report.md"


def render(converted, values: dict) -> int:
    report = _report_path(str(values["source"]), values["out"])
    if report.is_file():
        print(report.read_text())
    for name, path in converted.artifacts.items():
        print(f"wrote {path} ({name})")
    return 0


def check_failed(values: dict, for_api: bool):
    """--max-drop failed: the report was written; the CLI prints it, the API returns it."""
    out = values["out"]
    if for_api:
        source = Path(str(values["source"]))
        return convert_result(Path(out) if out else source if source.is_dir() else source.parent,
                              None)
    report = _report_path(str(values["source"]), out)
    if report.is_file():
        print(report.read_text())
    return None


def result(converted, values: dict):
    return convert_result(converted.out_dir, converted)


def convert_result(out_dir: Path, converted):
    from edgeship.commands.result import ConvertResult
    from edgeship.convert.run import load_convert_report
    from edgeship.tables import Table

    report = converted.report if converted is not None else load_convert_report(out_dir)
    columns = ("file", "backend", "accuracy", "drop_pp", "agreement", "bytes", "gzipped_bytes",
               "sparsity")
    table = Table.from_records(f"accuracy drop against {report.get('reference', 'the float model')}",
                               report.get("artifacts", []), columns)
    paths = dict(converted.artifacts) if converted is not None else {}
    return ConvertResult(table, paths, report, out_dir=Path(out_dir))


def prepare(values: dict, extras: dict) -> dict:
    """A model object saved as OUT/model.keras; data= as a dataset name or the notebook's
    arrays (written as OUT/dataset.npz, bounded)."""
    from edgeship.commands.notebook_data import save_model, write_dataset
    from edgeship.errors import UserInputError
    from edgeship.train.datasets import DatasetSpec

    model, data = values["source"], extras.get("data")
    if model is None:
        raise UserInputError("convert() needs the model: a Keras model object, a .keras/.h5 "
                             "file or a run directory")
    is_object = not isinstance(model, (str, os.PathLike))
    out = values["out"]
    if is_object and out is None:
        raise UserInputError("out= is required when converting a model object (the folder where "
                             "model.keras, the artifacts and the report go)")
    out_dir = Path(out) if out is not None else None
    values = {**values, "out": str(out_dir) if out_dir else None}
    if is_object:
        out_dir.mkdir(parents=True, exist_ok=True)
        values["source"] = str(save_model(model, out_dir))
    else:
        values["source"] = str(model)
    if isinstance(data, str):
        values["dataset"] = data
    elif isinstance(data, DatasetSpec):
        values["_dataset_spec"] = data
    elif data is not None:
        source = Path(values["source"])
        target = out_dir or (source if source.is_dir() else source.parent)
        target.mkdir(parents=True, exist_ok=True)
        fine_tune = bool(values["qat_epochs"] or values["prune_sparsity"])
        values["_dataset_spec"] = DatasetSpec(name=write_dataset(
            target, data, extras.get("calibration"), extras.get("class_names"), fine_tune,
            int(values["seed"])))
    elif is_object and not values.get("dataset"):
        raise UserInputError("data= is required with a model object: a dataset name or "
                             "((x_train, y_train), (x_test, y_test)) arrays")
    return values


_KEYWORD = inspect.Parameter.KEYWORD_ONLY
COMMAND = Command(
    "convert", "prune, QAT, export int8/float TFLite and ONNX, report the accuracy drop",
    GROUPS, build, execute, render, result,
    api_extra=(inspect.Parameter("data", _KEYWORD, default=None),
               inspect.Parameter("calibration", _KEYWORD, default=None),
               inspect.Parameter("class_names", _KEYWORD, default=None)),
    api_prepare=prepare, on_check_failed=check_failed)
