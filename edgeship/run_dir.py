"""The run directory: one type for the manifest, the artifacts by kind, and the dataset it holds.

Every stage reads and writes manifest.json through RunDir, under one lock (flock on the
directory, see `manifest_lock`), as typed records (`RunDir.read(TrainRecord)`,
`RunDir.write(record)`; edgeship.records), and names its model files through ArtifactKind, which carries
each file's name, format and precision: nothing guesses a precision from a file name.
"""

import contextlib
import enum
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from edgeship.artifacts import describe_file, sha256_file, write_json_atomic
from edgeship.dataset_spec import DatasetSpec
from edgeship.errors import UserInputError
from edgeship.records import ConvertRecord, DatasetRecord, ManifestRecord, TrainRecord

R = TypeVar("R", bound="ManifestRecord")

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1
PREDICTIONS_NAME = "predictions.npz"


class ArtifactKind(enum.Enum):
    """A model file a run directory can hold: file name, format and precision.

    The kept-aside kinds are the int8 file convert did not deliver (see
    edgeship.convert.finetune); a run holds at most one of them. The fine-tuned float file
    holds the weights a pruned or quantization-aware fine-tune left, before int8: the float
    reference of the int8 files made from them (`RunDir.float_reference`).
    """

    KERAS_MODEL = ("model.keras", "keras", "float")
    REBUILT_KERAS_MODEL = ("model_rebuilt.keras", "keras", "float")
    FLOAT_TFLITE = ("model_float.tflite", "tflite", "float")
    FINETUNED_FLOAT_TFLITE = ("model_finetuned_float.tflite", "tflite", "float")
    INT8_TFLITE = ("model_int8.tflite", "tflite", "int8")
    XNNPACK_INT8_TFLITE = ("model_int8_xnnpack.tflite", "tflite", "int8")
    PTQ_INT8_TFLITE = ("model_ptq_int8.tflite", "tflite", "int8")
    FINETUNED_INT8_TFLITE = ("model_finetuned_int8.tflite", "tflite", "int8")
    INT16_TFLITE = ("model_int16.tflite", "tflite", "int16")
    MIXED_TFLITE = ("model_mixed.tflite", "tflite", "mixed")
    FLOAT_ONNX = ("model.onnx", "onnx", "float")
    INT8_ONNX = ("model_int8.onnx", "onnx", "int8")

    def __init__(self, file_name: str, format: str, precision: str):
        self.file_name = file_name
        self.format = format
        self.precision = precision

    @property
    def kept_aside(self) -> bool:
        """True for the int8 file convert scored worse and kept beside the delivered one."""
        return self in (ArtifactKind.PTQ_INT8_TFLITE, ArtifactKind.FINETUNED_INT8_TFLITE)

    @property
    def reference_only(self) -> bool:
        """True for a float file kept as the reference of fine-tuned int8 files, not shipped."""
        return self is ArtifactKind.FINETUNED_FLOAT_TFLITE

    @property
    def runtimes(self) -> tuple[str, ...] | None:
        """The backends a runtime-specific file is made for; None: every backend that opens it.

        model_int8_xnnpack.tflite is model_int8.tflite rewritten for LiteRT's XNNPACK delegate
        (edgeship.convert.xnnpack): the phone file. A microcontroller runs model_int8.tflite
        (the rewrite adds multiply-accumulates that only XNNPACK's channel packing hides).
        """
        return ("litert",) if self is ArtifactKind.XNNPACK_INT8_TFLITE else None

    @classmethod
    def of(cls, name: str | os.PathLike) -> "ArtifactKind | None":
        """The kind whose file name is name's last component; None for any other file."""
        return _BY_FILE_NAME.get(Path(name).name)


_BY_FILE_NAME = {kind.file_name: kind for kind in ArtifactKind}

# The model files every stage considers, in the order they are run and reported: the float
# reference, then TFLite, then ONNX. The Keras 3 rebuild is the reference only where convert
# recorded it (RunDir.reference_model), so it is not listed.
MODEL_ARTIFACTS = tuple(kind for kind in ArtifactKind
                        if kind is not ArtifactKind.REBUILT_KERAS_MODEL)

# The int8 files convert delivers (its --max-drop gate applies to these).
DELIVERED_INT8 = (ArtifactKind.INT8_TFLITE, ArtifactKind.XNNPACK_INT8_TFLITE,
                  ArtifactKind.INT8_ONNX)

# Integer precisions: int8, int16 activations with int8 weights (16x8), and per-layer mixes of
# the two (convert --activations, edgeship.convert.activations).
QUANTIZED_PRECISIONS = ("int8", "int16", "mixed")


def precision_of(name: str | os.PathLike) -> str | None:
    """"int8", "int16", "mixed" or "float" for a file of a known kind; None for any other."""
    kind = ArtifactKind.of(name)
    return kind.precision if kind else None


def is_quantized(precision: str | None) -> bool:
    """True for an integer precision (compared in quanta, not float tolerances)."""
    return precision in QUANTIZED_PRECISIONS


@contextlib.contextmanager
def manifest_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the run directory while manifest.json is read and rewritten.

    Each stage reads the manifest, changes its own section and writes it back; two edgeship
    commands on one run directory at once (validate beside bench in CI) would otherwise lose
    one's update. The lock is flock on the directory itself, so it leaves no file behind and
    the kernel drops it when a killed process's descriptor closes.
    """
    descriptor = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


class RunDir:
    """A run directory: manifest.json (read and written under the lock) and its artifacts.

    A missing manifest where one is required, or a corrupt one anywhere, is one
    UserInputError line; `has_manifest` lets a stage that makes the directory ask first.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    def has_manifest(self) -> bool:
        return self.manifest_path.is_file()

    # --- manifest ----------------------------------------------------------------------------

    def manifest(self) -> dict:
        """manifest.json, read under the lock; missing or corrupt is bad input."""
        if not self.has_manifest():
            raise UserInputError(f"{self.path} has no {MANIFEST_NAME}: is it a run directory "
                                 "made by edgeship?")
        with manifest_lock(self.path):
            return self._read()

    def manifest_or_empty(self) -> dict:
        """manifest.json, or {} before the first stage wrote one (a corrupt one is bad input)."""
        return self.manifest() if self.has_manifest() else {}

    def section(self, name: str) -> dict:
        """One stage's entry ({} when that stage has not recorded one)."""
        entry = self.manifest_or_empty().get(name)
        return entry if isinstance(entry, dict) else {}

    def _read(self) -> dict:
        if not self.manifest_path.is_file():
            return {}
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as error:
            raise UserInputError(f"{self.manifest_path} is not readable JSON: "
                                 f"{' '.join(str(error).split())}") from error
        if not isinstance(manifest, dict):
            raise UserInputError(f"{self.manifest_path} does not hold a JSON object")
        return manifest

    def update(self, section: str, entry: dict,
               artifacts: dict[str, str | os.PathLike] | None = None) -> dict:
        """Merge one stage's entry and its artifacts' hashes into manifest.json atomically.

        Args:
            section: the stage's key ("train", "convert", ...); replaced whole.
            entry: plain-JSON description of the stage (options, versions, results).
            artifacts: name -> path of files this stage wrote; each gets sha256, size and
                stage. Entries the same stage recorded before and did not write now are dropped.

        Returns:
            The manifest as written.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        with manifest_lock(self.path):
            manifest = self._read()
            manifest["schema_version"] = MANIFEST_SCHEMA_VERSION
            manifest[section] = entry
            recorded = manifest.setdefault("artifacts", {})
            artifacts = artifacts or {}
            # A stage's artifacts are replaced whole: the manifest never lists a file it no longer made.
            for stale in [name for name, info in recorded.items()
                          if isinstance(info, dict) and info.get("stage") == section
                          and name not in artifacts]:
                del recorded[stale]
            for name, artifact_path in artifacts.items():
                recorded[name] = {**describe_file(artifact_path), "stage": section,
                                  "path": os.path.relpath(artifact_path, self.path)}
            write_json_atomic(self.manifest_path, manifest)
            return manifest

    def write(self, record: ManifestRecord,
              artifacts: dict[str, str | os.PathLike] | None = None) -> dict:
        """Store a stage's record as its section (see `update` for artifacts)."""
        if not record.SECTION:
            raise ValueError(f"{type(record).__name__} names no manifest SECTION")
        return self.update(record.SECTION, record.to_dict(), artifacts)

    def read(self, record_type: type[R]) -> R | None:
        """The stage's record, read under the lock; None when that stage recorded none."""
        entry = self.manifest_or_empty().get(record_type.SECTION)
        if not isinstance(entry, dict):
            return None
        return record_type.from_dict(entry)

    def forget(self, section: str, remove_files: bool = False) -> dict:
        """Drop a stage's entry and its artifacts' records before the stage runs again.

        A stage rewrites its files one by one and records them at its end; were its old
        records kept, a run killed in between would leave a manifest whose hashes no longer
        match the disk. Without them the manifest claims only files no running stage touches.

        Args:
            section: the stage's manifest key.
            remove_files: also delete the files the records named (the rerun makes them anew,
                and one it no longer makes must not linger).

        Returns:
            The manifest as written ({} when there is none).
        """
        if not self.has_manifest():
            return {}
        with manifest_lock(self.path):
            manifest = self._read()
            recorded = manifest.get("artifacts", {})
            stale = [name for name, info in recorded.items()
                     if isinstance(info, dict) and info.get("stage") == section]
            if not manifest or (section not in manifest and not stale):
                return manifest
            manifest.pop(section, None)
            files = [self.path / recorded.pop(name).get("path", name) for name in stale]
            write_json_atomic(self.manifest_path, manifest)  # records first: a kill leaves no claim
        for file in files if remove_files else []:
            if file.resolve().is_relative_to(self.path.resolve()):
                file.unlink(missing_ok=True)
        return manifest

    def stage_outputs(self, section: str) -> dict[str, Path]:
        """name -> path of the files a stage recorded."""
        return {name: self.path / info.get("path", name)
                for name, info in self.manifest_or_empty().get("artifacts", {}).items()
                if isinstance(info, dict) and info.get("stage") == section}

    def recorded_paths(self) -> list[str]:
        """Every file a stage recorded, by its path relative to the run directory."""
        return [info.get("path", name)
                for name, info in self.manifest_or_empty().get("artifacts", {}).items()
                if isinstance(info, dict)]

    def artifact_hashes(self) -> dict[str, str]:
        """name -> SHA-256 of every file a stage recorded."""
        return {name: info["sha256"]
                for name, info in self.manifest_or_empty().get("artifacts", {}).items()
                if isinstance(info, dict) and isinstance(info.get("sha256"), str)}

    def records(self, digest: str) -> bool:
        """True when the manifest records a file with this SHA-256 (edgeship wrote it)."""
        try:
            manifest = self.manifest_or_empty()
        except UserInputError:  # a corrupt manifest vouches for nothing
            return False
        return any(isinstance(entry, dict) and entry.get("sha256") == digest
                   for entry in manifest.get("artifacts", {}).values())

    # --- artifacts ---------------------------------------------------------------------------

    def path_of(self, kind: ArtifactKind) -> Path:
        return self.path / kind.file_name

    def has(self, kind: ArtifactKind) -> bool:
        return self.path_of(kind).is_file()

    def existing(self, kinds: tuple[ArtifactKind, ...] = MODEL_ARTIFACTS) -> list[ArtifactKind]:
        """The kinds whose file is in the directory, in the order given."""
        return [kind for kind in kinds if self.has(kind)]

    def reference_model(self) -> str:
        """The float Keras model convert measured against (a Keras 3 model's tf_keras rebuild)."""
        convert = self.read(ConvertRecord)
        recorded = convert.reference if convert else None
        if (isinstance(recorded, str) and Path(recorded).suffix in (".keras", ".h5")
                and (self.path / recorded).is_file()):
            return recorded
        return ArtifactKind.KERAS_MODEL.file_name

    def float_reference(self, artifact: str | os.PathLike) -> str:
        """The float file an int8 artifact was quantized from, as convert recorded it.

        A fine-tuned (QAT or pruned) int8 file and its rewrites were quantized from the
        fine-tuned weights (model_finetuned_float.tflite); every other file from the trained
        model (model_float.tflite). Runs converted before convert recorded it: model_float.tflite.
        """
        convert = self.read(ConvertRecord)
        name = convert.float_references.get(Path(artifact).name) if convert else None
        if isinstance(name, str) and (self.path / name).is_file():
            return name
        return ArtifactKind.FLOAT_TFLITE.file_name

    # --- dataset -----------------------------------------------------------------------------

    def dataset(self) -> DatasetRecord:
        """The dataset train recorded (train.dataset); bad input when there is none."""
        train = self.read(TrainRecord)
        if train is None:
            raise UserInputError(f"{self.manifest_path} has no train.dataset.spec: was this run "
                                 "made by `edgeship train`?")
        return train.dataset

    def dataset_spec(self) -> DatasetSpec:
        """The DatasetSpec train recorded."""
        return self.dataset().spec

    def input_shape(self) -> tuple[int, ...]:
        return self.dataset().input_shape

    def class_names(self) -> list[str]:
        return list(self.dataset().class_names)

    def preprocessing(self) -> dict:
        return dict(self.dataset().preprocessing)


def find_run_dir_for(path: str | os.PathLike) -> Path | None:
    """The run directory whose manifest records this file's hash, if any."""
    path = Path(path)
    run_dir = RunDir(path.parent)
    if not run_dir.has_manifest():
        return None
    try:
        digest = sha256_file(path)
    except OSError:
        return None
    return path.parent if run_dir.records(digest) else None
