import os
import subprocess
import sys
import time

import pytest

from edgeship.artifacts import atomic_path, read_manifest, update_manifest, write_bytes_atomic
from edgeship.errors import UserInputError


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


def test_help_is_fast():
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "edgeship.cli", "--help"], capture_output=True,
                            text=True, timeout=60)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0
    assert "train" in result.stdout
    assert elapsed < 1.5


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
    manifest = update_manifest(tmp_path, "stage", {"k": 1}, {"a.bin": artifact})
    assert manifest["artifacts"]["a.bin"]["sha256"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert read_manifest(tmp_path)["stage"] == {"k": 1}
    with pytest.raises(UserInputError, match="no manifest.json"):
        read_manifest(tmp_path / "missing")
