"""The manifest's sections as frozen records, and the train, convert and validate sections
that later stages read back.

A record is stored by `RunDir.write(record)` and read by `RunDir.read(RecordType)`, both under
the run directory's lock (edgeship.run_dir), so no reader walks the manifest's dicts. The JSON
keys are the field names, as the stages wrote them before the records existed: older run
directories read back unchanged. Part of the core: every stage imports it, it imports no stage.
"""

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from edgeship.dataset_spec import DatasetSpec
from edgeship.errors import UserInputError

R = TypeVar("R", bound="ManifestRecord")

__all__ = ["ConvertRecord", "DatasetRecord", "ManifestRecord", "ModelRecord", "TrainRecord",
           "ValidateRecord", "ValidatedDataset", "ValidatedReference", "XnnpackRecord"]


@dataclass(frozen=True)
class ManifestRecord:
    """A stage's section of manifest.json as a frozen dataclass: `SECTION` names the key.

    Stored as plain JSON: tuples as lists, nested records (and types with to_dict/from_dict,
    such as DatasetSpec) as objects. Keys a record does not know (a newer edgeship's) are
    ignored when reading; a missing required field, or an object where a record is expected
    that is not one, is bad input (a hand-edited or foreign manifest).
    """

    SECTION: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return json.loads(json.dumps({item.name: _plain(getattr(self, item.name))
                                      for item in dataclasses.fields(self)}))

    @classmethod
    def from_dict(cls: type[R], entry: dict, where: str = "") -> R:
        """The record from its plain JSON; `where` names it in errors (default: SECTION)."""
        where = where or cls.SECTION or cls.__name__
        hints = typing.get_type_hints(cls)
        values = {item.name: _typed(entry[item.name], hints[item.name], f"{where}.{item.name}")
                  for item in dataclasses.fields(cls) if item.name in entry}
        try:
            return cls(**values)
        except TypeError as error:
            raise UserInputError(f"manifest section {where!r} lacks a field: {error}") from error


def _plain(value):
    """A field's value as JSON-ready data (records and specs through their own to_dict)."""
    if hasattr(value, "to_dict") and dataclasses.is_dataclass(value):
        return value.to_dict()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _typed(value, kind, where: str):
    """value read from JSON, as the field's annotation `kind` holds it."""
    if value is None:
        return None
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in arguments if option is not type(None)]
        return _typed(value, options[0], where) if len(options) == 1 else value
    if origin is tuple and isinstance(value, list):
        inner = arguments[0] if len(arguments) == 2 and arguments[1] is Ellipsis else None
        return tuple(_typed(item, inner, where) if inner else item for item in value)
    if origin is dict and isinstance(value, dict):
        inner = arguments[1] if len(arguments) == 2 else None
        return {key: _typed(item, inner, f"{where}.{key}") if inner else item
                for key, item in value.items()}
    if isinstance(kind, type) and hasattr(kind, "from_dict"):
        if not isinstance(value, dict):
            raise UserInputError(f"manifest section {where!r} is not an object: {value!r:.60}")
        if issubclass(kind, ManifestRecord):
            return kind.from_dict(value, where)
        try:
            return kind.from_dict(value)
        except TypeError as error:
            raise UserInputError(f"manifest section {where!r} lacks a field: {error}") from error
    return value


# --- train -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetRecord(ManifestRecord):
    """train.dataset: the dataset the model was trained on, as every later stage reopens it."""

    spec: DatasetSpec
    input_shape: tuple[int, ...]  # one image, (height, width, channels)
    class_names: tuple[str, ...] = ()
    preprocessing: dict = field(default_factory=dict)  # scale, offset, layout, formula, ...
    train_images: int | None = None
    test_images: int | None = None
    streamed: bool = False  # read batch by batch from files (edgeship.train.stream)


@dataclass(frozen=True)
class ModelRecord(ManifestRecord):
    """train.model: a zoo model train built, or (source) a model file converted outside a run."""

    name: str
    source: str | None = None  # the converted file's absolute path
    options: dict = field(default_factory=dict)
    parameters: int | None = None


@dataclass(frozen=True)
class TrainRecord(ManifestRecord):
    """The manifest's "train" section (`edgeship train`, or convert of a bare model file)."""

    SECTION: ClassVar[str] = "train"
    dataset: DatasetRecord
    model: ModelRecord
    config: dict = field(default_factory=dict)  # TrainConfig.to_dict()
    seed: int | None = None
    batch_norm: dict = field(default_factory=dict)
    epochs_run: int | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    train_seconds: float | None = None
    versions: dict[str, str] = field(default_factory=dict)


# --- convert ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class XnnpackRecord(ManifestRecord):
    """convert.xnnpack: the rewrite of model_int8.tflite for LiteRT's XNNPACK delegate."""

    mode: str
    rewrites: tuple[str, ...] = ()
    exact: bool = False  # every rewrite bit-exact: validate requires identical raw outputs
    file: str | None = None  # None: no rewrite applied, no file written


@dataclass(frozen=True)
class ConvertRecord(ManifestRecord):
    """The manifest's "convert" section.

    `fine_tuned_files` is None for a run converted before convert listed them (validate then
    derives them from the options).
    """

    SECTION: ClassVar[str] = "convert"
    options: dict  # ConvertConfig.to_dict()
    files: dict[str, str]  # written key ("int8_tflite", ...) -> file name
    int8_io: dict | None = None  # role -> the int8 file's input/output quantization
    versions: dict[str, str] = field(default_factory=dict)
    weight_granularity: dict | None = None
    fine_tuned_weight_granularity: dict | None = None
    delivery: dict | None = None  # post-training vs fine-tuned int8: which one shipped, why
    fine_tuned_files: tuple[str, ...] | None = None
    float_references: dict[str, str] = field(default_factory=dict)  # int8 file -> float file
    rejected_files: tuple[str, ...] = ()  # kept beside the delivered files, not shipped
    accuracy: dict[str, float] = field(default_factory=dict)  # file -> top-1 on the test split
    reference: str | None = None  # the float model the files were scored against
    keras3: dict | None = None
    activations: dict | None = None
    xnnpack: XnnpackRecord | None = None


# --- validate --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidatedReference(ManifestRecord):
    """validate.reference: the float pair every other pair was compared with."""

    artifact: str
    backend: str
    accuracy: float | None = None


@dataclass(frozen=True)
class ValidatedDataset(ManifestRecord):
    """validate.dataset: the images validate ran, and their hash."""

    spec: DatasetSpec
    split: str = "test"
    images: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class ValidateRecord(ManifestRecord):
    """The manifest's "validate" section: the verdict (parity.json holds the details)."""

    SECTION: ClassVar[str] = "validate"
    passed: bool
    failures: tuple[str, ...] = ()
    reference: ValidatedReference | None = None
    dataset: ValidatedDataset | None = None
    pairs: tuple[str, ...] = ()  # "artifact on backend"
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportRecord(ManifestRecord):
    """The manifest's "report" section: the figures report.html embeds."""

    SECTION: ClassVar[str] = "report"
    figures: tuple[str, ...] = ()


@dataclass(frozen=True)
class TuneTrialRecord(ManifestRecord):
    """A tune trial's "tune" section: the candidate, what was measured, the target."""

    SECTION: ClassVar[str] = "tune"
    candidate: str
    measured: dict = field(default_factory=dict)
    target: str = ""
