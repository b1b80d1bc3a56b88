import shutil

import numpy as np
import pytest

from tests.helpers import run_cli_in_process as run_cli


def _snapshot(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture
def run_copy(tmp_path, trained_run):
    shutil.copytree(trained_run.run_dir, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize("flags, message", [
    (["--prune", "1.5"], "prune sparsity must be in (0, 1)"),
    (["--prune", "0"], "prune sparsity must be in (0, 1)"),
    (["--calibration-samples", "999999"], "--calibration-samples 999999 exceeds the 4000 images"),
    (["--dataset", "digits"], "dataset images are (8, 8, 1) but model.keras takes (28, 28, 1)"),
    (["--prune-structure", "4:2"], "0 < M < N"),
])
def test_bad_options_exit_2_and_write_nothing(run_copy, flags, message):
    before = _snapshot(run_copy)
    result = run_cli("convert", run_copy, "--int8", *flags)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert _snapshot(run_copy) == before


def _save(model, path):
    model.save(path)
    return path


def test_corrupt_model_file(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"PK\x03\x04 this is not a zip")
    result = run_cli("convert", path, "--int8", "--dataset", "mnist5k")
    assert result.returncode == 2
    assert "cannot load model" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.keras"]


def test_undefined_input_shape_and_non_class_output(tmp_path):
    import tf_keras

    inputs = tf_keras.Input((None, None, 1))
    pooled = tf_keras.layers.GlobalAveragePooling2D()(tf_keras.layers.Conv2D(4, 3)(inputs))
    undefined = _save(tf_keras.Model(inputs, tf_keras.layers.Dense(10)(pooled)), tmp_path / "a.keras")
    result = run_cli("convert", undefined, "--int8", "--dataset", "mnist5k")
    assert result.returncode == 2
    assert "no defined input shape" in result.stderr

    inputs = tf_keras.Input((28, 28, 1))
    image_out = _save(tf_keras.Model(inputs, tf_keras.layers.Conv2D(1, 3, padding="same")(inputs)),
                      tmp_path / "b.keras")
    result = run_cli("convert", image_out, "--int8", "--dataset", "mnist5k")
    assert result.returncode == 2
    assert "not a class-probability or logit vector" in result.stderr
    assert np.all([p.suffix == ".keras" for p in tmp_path.iterdir()])


def test_qat_without_int8_is_implied(run_copy):
    result = run_cli("convert", run_copy, "--qat", "1", "--calibration-samples", "20",
                     "--out", run_copy / "qat")
    assert result.returncode == 0, result.stderr
    assert (run_copy / "qat" / "model_int8.tflite").is_file()
