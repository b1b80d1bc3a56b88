"""Runtime fixtures on top of the session's converted lenet5 run (tests/conftest.py).

`artifacts_dir` is the shared converted run, read-only here; `run_copy` gives a test its own
copy to validate (validate writes parity.json/.md and the manifest) or to break.
"""

import shutil

import numpy as np
import pytest


@pytest.fixture(scope="session")
def artifacts_dir(converted_run):
    """model.keras, model_float.tflite, model_int8.tflite, model.onnx and model_int8.onnx."""
    return converted_run.out_dir


@pytest.fixture
def run_copy(tmp_path, artifacts_dir):
    """A private copy of the converted run directory."""
    return shutil.copytree(artifacts_dir, tmp_path / "run")


@pytest.fixture(scope="session")
def test_images(mnist5k):
    return np.ascontiguousarray(mnist5k.x_test[:64])
