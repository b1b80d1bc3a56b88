import os
import subprocess
import sys
import time

import pytest

from edgeship.artifacts import atomic_path, write_bytes_atomic
from edgeship.errors import UserInputError
from edgeship.run_dir import ArtifactKind, RunDir, precision_of


def _python(code):
    env = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)


def test_import_edgeship_does_not_import_tensorflow():
    result = _python("import sys, edgeship, edgeship.cli, edgeship.train.datasets, "
                     "edgeship.train.models, edgeship.train.fit; "
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                     "('tensorflow', 'tf_keras', 'keras', 'onnx', 'onnxruntime')))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_tensorflow_keras_is_tf_keras_after_import_edgeship():
    result = _python("import edgeship, tensorflow as tf, tf_keras; "
                     "print(tf.keras.Model is tf_keras.Model, tf_keras.__version__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "True"
    assert result.stdout.split()[1].startswith("2.")


def test_help_imports_no_framework():
    """--help stays fast by importing no ML framework (checked by module, not by a timer)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgeship.cli", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "train" in result.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "edgeship" in imported
    assert not imported & {"tensorflow", "tf_keras", "keras", "onnx", "onnxruntime"}


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "model.bin"
    write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_manifest_records_hashes(tmp_path):
    artifact = write_bytes_atomic(tmp_path / "a.bin", b"abc")
    manifest = RunDir(tmp_path).update("stage", {"k": 1}, {"a.bin": artifact})
    assert manifest["artifacts"]["a.bin"]["sha256"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert RunDir(tmp_path).manifest()["stage"] == {"k": 1}
    assert RunDir(tmp_path).stage_outputs("stage") == {"a.bin": artifact}
    with pytest.raises(UserInputError, match="no manifest.json"):
        RunDir(tmp_path / "missing").manifest()


def test_a_corrupt_manifest_is_one_bad_input_line_for_every_reader(tmp_path):
    (tmp_path / "manifest.json").write_text('{"train": ')
    run = RunDir(tmp_path)
    for read in (run.manifest, run.manifest_or_empty, lambda: run.section("train"),
                 run.dataset_spec, lambda: run.update("x", {})):
        with pytest.raises(UserInputError, match="not readable JSON") as caught:
            read()
        assert "\n" not in str(caught.value)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(UserInputError, match="no train.dataset.spec"):
        run.dataset_spec()


def test_artifact_kinds_carry_name_format_and_precision():
    assert ArtifactKind.of("runs/x/model_int8.tflite") is ArtifactKind.INT8_TFLITE
    assert (ArtifactKind.INT8_ONNX.format, ArtifactKind.INT8_ONNX.precision) == ("onnx", "int8")
    assert precision_of("model_ptq_int8.tflite") == "int8"
    assert precision_of("model_float.tflite") == "float"
    # A name is not a precision: an unknown file with "int8" in it is not guessed.
    assert precision_of("my_int8_model.tflite") is None
    names = [kind.file_name for kind in ArtifactKind]
    assert len(set(names)) == len(names)


def test_save_keras_is_byte_reproducible_and_loads(tmp_path, monkeypatch):
    import zipfile

    import numpy as np
    import tf_keras

    from edgeship.artifacts import save_keras, sha256_file

    model = tf_keras.Sequential([tf_keras.layers.Input((4,)), tf_keras.layers.Dense(3)])
    first = save_keras(model, tmp_path / "first.keras")
    time.sleep(1.1)  # Keras stamps date_saved to the second
    second = save_keras(model, tmp_path / "second.keras")
    assert sha256_file(first) == sha256_file(second)
    with zipfile.ZipFile(first) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert "date_saved" not in archive.read("metadata.json").decode()
    reloaded = tf_keras.models.load_model(first)
    batch = np.arange(8, dtype="float32").reshape(2, 4)
    np.testing.assert_array_equal(reloaded(batch), model(batch))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["first.keras", "second.keras"]


_WRITER = """
import sys
from pathlib import Path
from edgeship.artifacts import write_bytes_atomic
from edgeship.run_dir import RunDir
run_dir, section = Path(sys.argv[1]), sys.argv[2]
for index in range(150):
    name = f"{section}_{index}.bin"
    write_bytes_atomic(run_dir / name, name.encode())
    RunDir(run_dir).update(section, {"last": index},
                    {f"{section}_{i}.bin": run_dir / f"{section}_{i}.bin" for i in range(index + 1)})
"""


def test_concurrent_stages_lose_no_manifest_update(tmp_path):
    # Without the manifest lock, one writer's read-modify-write overwrote the other's
    # records (checked by removing manifest_lock: sections went missing).
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), section])
               for section in ("validate", "bench", "embed")]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0]
    manifest = RunDir(tmp_path).manifest()
    for section in ("validate", "bench", "embed"):
        assert manifest[section] == {"last": 149}
        recorded = [name for name, info in manifest["artifacts"].items() if info["stage"] == section]
        assert len(recorded) == 150, section
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []
