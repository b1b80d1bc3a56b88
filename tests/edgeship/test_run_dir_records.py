"""RunDir.write(record) / RunDir.read(RecordType): typed manifest sections."""

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest

from edgeship.errors import UserInputError
from edgeship.run_dir import ManifestRecord, RunDir


@dataclass(frozen=True)
class _Record(ManifestRecord):
    SECTION: ClassVar[str] = "probe"
    count: int
    names: tuple[str, ...] = ()


def test_a_record_round_trips_as_plain_json(tmp_path):
    run = RunDir(tmp_path)
    assert run.read(_Record) is None  # nothing recorded yet
    (tmp_path / "out.bin").write_bytes(b"abc")
    run.write(_Record(count=3, names=("a", "b")), artifacts={"out.bin": tmp_path / "out.bin"})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["probe"] == {"count": 3, "names": ["a", "b"]}
    assert manifest["artifacts"]["out.bin"]["stage"] == "probe"
    assert run.read(_Record) == _Record(count=3, names=("a", "b"))


def test_unknown_keys_are_ignored_and_missing_ones_are_bad_input(tmp_path):
    run = RunDir(tmp_path)
    run.update("probe", {"count": 2, "added_by_a_newer_edgeship": True})
    assert run.read(_Record) == _Record(count=2)
    run.update("probe", {"names": ["x"]})
    with pytest.raises(UserInputError, match="manifest section 'probe' lacks a field"):
        run.read(_Record)


def test_the_pipeline_stage_records_keep_their_layout(tmp_path):
    """manifest["pipeline"] stays stage -> {key, outputs, seconds, note} (readers of older
    runs and of report.html see the same JSON)."""
    from edgeship.commands.embed import EmbedRecord
    from edgeship.pipeline import PipelineRecord, StageRecord

    run = RunDir(tmp_path)
    stages = {"train": StageRecord(key="k1", outputs=("model.keras",), seconds=1.5),
              "validate": StageRecord(key="k2", outputs=(), seconds=0.2, note="check failed: x")}
    run.write(PipelineRecord(stages))
    run.write(EmbedRecord(arena_bytes=100, arena_size=128, ops=("CONV_2D",)))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["pipeline"]["train"] == {"key": "k1", "outputs": ["model.keras"],
                                             "seconds": 1.5, "note": ""}
    assert run.read(PipelineRecord).stages == stages
    assert run.read(EmbedRecord).ops == ("CONV_2D",)
    from edgeship.pipeline import _failures_recorded

    assert _failures_recorded(tmp_path, []) == ["validate: check failed: x"]


def test_a_converted_run_reads_back_as_typed_records(converted_run):
    """The train and convert sections read back as records holding what was written."""
    from edgeship.dataset_spec import DatasetSpec
    from edgeship.records import ConvertRecord, TrainRecord, XnnpackRecord

    run = RunDir(converted_run.out_dir)
    manifest = json.loads(run.manifest_path.read_text())
    train, convert = run.read(TrainRecord), run.read(ConvertRecord)
    assert train.dataset.spec == DatasetSpec(name="mnist5k", seed=0)
    assert train.dataset.input_shape == tuple(manifest["train"]["dataset"]["input_shape"]) == (
        28, 28, 1)
    assert train.dataset.class_names == tuple(manifest["train"]["dataset"]["class_names"])
    assert train.model.name == "lenet5" and train.model.parameters > 0
    assert train.test_accuracy == manifest["train"]["test_accuracy"] > 0.5
    assert TrainRecord.from_dict(train.to_dict()) == train
    # convert wrote its section from the record: the JSON is the record's, key for key
    assert convert.to_dict() == manifest["convert"]
    assert ConvertRecord.from_dict(manifest["convert"]) == convert
    assert convert.files["int8_tflite"] == "model_int8.tflite"
    assert convert.reference == "model.keras" and convert.fine_tuned_files == ()
    assert convert.accuracy["model_int8.tflite"] == manifest["convert"]["accuracy"][
        "model_int8.tflite"]
    assert set(convert.int8_io) == {"input", "output"}
    assert isinstance(convert.xnnpack, XnnpackRecord) and convert.xnnpack.exact
    assert convert.xnnpack.file == "model_int8_xnnpack.tflite"
    assert run.dataset_spec() == train.dataset.spec and run.class_names() == list(
        train.dataset.class_names)
    assert run.float_reference("model_int8.tflite") == "model_float.tflite"
    assert run.reference_model() == "model.keras"


def test_the_validate_record_keeps_its_layout(tmp_path):
    from edgeship.dataset_spec import DatasetSpec
    from edgeship.records import ValidatedDataset, ValidatedReference, ValidateRecord

    run = RunDir(tmp_path)
    record = ValidateRecord(
        passed=False, failures=("model_int8.tflite on litert: top-1 agreement 0.9 < 0.95",),
        reference=ValidatedReference(artifact="model.keras", backend="keras", accuracy=0.97),
        dataset=ValidatedDataset(spec=DatasetSpec(name="mnist5k"), images=100, sha256="ab"),
        pairs=("model.keras on keras", "model_int8.tflite on litert"), versions={"python": "3"})
    run.write(record)
    written = json.loads(run.manifest_path.read_text())["validate"]
    assert written["reference"] == {"artifact": "model.keras", "backend": "keras",
                                    "accuracy": 0.97}
    assert written["dataset"]["spec"]["name"] == "mnist5k" and written["dataset"]["split"] == "test"
    assert written["failures"] == list(record.failures)
    assert run.read(ValidateRecord) == record


def _converted_manifest(converted_run) -> dict:
    return json.loads((converted_run.out_dir / "manifest.json").read_text())


def test_keys_of_a_newer_edgeship_are_ignored_in_typed_sections(converted_run, tmp_path):
    from edgeship.records import ConvertRecord, TrainRecord

    manifest = _converted_manifest(converted_run)
    expected_train = TrainRecord.from_dict(manifest["train"])
    expected_convert = ConvertRecord.from_dict(manifest["convert"])
    manifest["train"]["added_by_a_newer_edgeship"] = [1, 2]
    manifest["train"]["dataset"]["added_by_a_newer_edgeship"] = {"x": 1}
    manifest["convert"]["added_by_a_newer_edgeship"] = "yes"
    manifest["convert"]["xnnpack"] = {"mode": "exact", "rewrites": [], "exact": True,
                                      "file": None, "added_by_a_newer_edgeship": 0}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    run = RunDir(tmp_path)
    assert run.read(TrainRecord) == expected_train
    assert run.read(ConvertRecord).files == expected_convert.files
    assert run.read(ConvertRecord).xnnpack.exact is True


@pytest.mark.parametrize(("section", "key", "where"), [
    ("convert", "files", "convert"), ("train", "model", "train"),
    ("train.dataset", "spec", "train.dataset"), ("train.dataset.spec", "name",
                                                  "train.dataset.spec")])
def test_a_section_missing_a_required_field_is_bad_input(converted_run, tmp_path, section, key,
                                                         where):
    from edgeship.records import ConvertRecord, TrainRecord

    manifest = _converted_manifest(converted_run)
    entry = manifest
    for part in section.split("."):
        entry = entry[part]
    del entry[key]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    record_type = ConvertRecord if section == "convert" else TrainRecord
    with pytest.raises(UserInputError, match=f"manifest section '{where}' lacks a field"):
        RunDir(tmp_path).read(record_type)


def test_a_nested_section_that_is_not_an_object_is_bad_input(converted_run, tmp_path):
    from edgeship.convert.firmware_sources import run_directory_dataset
    from edgeship.records import TrainRecord

    manifest = _converted_manifest(converted_run)
    manifest["train"]["dataset"] = "mnist5k"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserInputError, match="'train.dataset' is not an object"):
        RunDir(tmp_path).read(TrainRecord)
    with pytest.raises(UserInputError, match="'train.dataset' is not an object"):
        RunDir(tmp_path).dataset_spec()
    # a firmware build beside such a manifest gets no dataset from it, and no traceback
    assert run_directory_dataset(tmp_path / "model_int8.tflite") is None
