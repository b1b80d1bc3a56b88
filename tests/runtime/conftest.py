"""Session fixture: the session's trained lenet5 run, converted to every artifact validate reads.

Uses the convert stage's library functions (export_tflite, export_onnx, quantize_onnx) on a
copy of `trained_run`, so the runtime tests see the same files `edgeship convert` writes.
"""

import shutil

import numpy as np
import pytest

CALIBRATION_IMAGES = 200


def convert_run(run_dir, dataset, calibration_images=CALIBRATION_IMAGES):
    """Write model_float/int8.tflite and model/model_int8.onnx beside run_dir's model.keras."""
    from edgeship.convert.onnx import export_onnx, quantize_onnx
    from edgeship.convert.tflite import export_tflite
    from edgeship.train.datasets import class_balanced_indices

    from edgeship.deps import import_tf_keras

    _, tf_keras = import_tf_keras()
    model = tf_keras.models.load_model(run_dir / "model.keras", compile=False)
    samples = dataset.x_train[class_balanced_indices(dataset.y_train, calibration_images, seed=0)]
    (run_dir / "model_float.tflite").write_bytes(export_tflite(model))
    (run_dir / "model_int8.tflite").write_bytes(export_tflite(model, samples))
    float_onnx = export_onnx(model, dataset.input_shape)
    (run_dir / "model.onnx").write_bytes(float_onnx)
    (run_dir / "model_int8.onnx").write_bytes(quantize_onnx(float_onnx, samples))
    return run_dir


@pytest.fixture(scope="session")
def converted_run(tmp_path_factory, trained_run, mnist5k):
    """A run directory with model.keras and the four converted artifacts (read-only use)."""
    run_dir = tmp_path_factory.mktemp("converted_run") / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    return convert_run(run_dir, mnist5k)


@pytest.fixture(scope="session")
def test_images(mnist5k):
    return np.ascontiguousarray(mnist5k.x_test[:64])
