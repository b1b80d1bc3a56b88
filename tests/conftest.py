"""Session fixtures: the offline dataset loaded once and one small model trained once.

Later stages (convert, runtime, firmware) reuse `trained_run` so the suite trains lenet5 on
mnist5k a single time per session.
"""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist5k():
    from edgeship.train.datasets import DatasetSpec, load_dataset

    return load_dataset(DatasetSpec(name="mnist5k", seed=0))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, mnist5k):
    """lenet5 trained 3 epochs on mnist5k: the session's one real model."""
    from edgeship.train.fit import TrainConfig, train

    out = tmp_path_factory.mktemp("lenet5_run")
    config = TrainConfig(model="lenet5", dataset=mnist5k.spec, out=str(out), epochs=3, seed=0)
    result = train(config, dataset=mnist5k)
    return result


def run_cli(*args, env=None, timeout=600, cwd=None):
    """Run the real `edgeship` console entry point in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgeship.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)


@pytest.fixture(scope="session")
def converted_run(tmp_path_factory, trained_run):
    """The session model converted post-training to int8 TFLite and ONNX (no fine-tuning).

    A copy of `trained_run`, so tests that read the run directory see all stages' files:
    model.keras, model_float.tflite, model_int8.tflite, model.onnx, model_int8.onnx,
    convert_report.json/.md and manifest.json.
    """
    import shutil

    from edgeship.convert.run import ConvertConfig, run_convert

    run_dir = tmp_path_factory.mktemp("converted") / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    return run_convert(ConvertConfig(source=str(run_dir), int8=True, onnx=True,
                                     calibration_samples=200))


@pytest.fixture(scope="session")
def qat_converted_run(tmp_path_factory, trained_run):
    """The session model after `convert --qat 1` with per-tensor weights (one fine-tune, no
    granularity search): model_finetuned_float.tflite, the fine-tuned weights in float, beside
    model_float.tflite, the int8 files (fine-tuned and post-training) and the XNNPACK file."""
    import shutil

    from edgeship.convert.run import ConvertConfig, run_convert

    run_dir = tmp_path_factory.mktemp("qat_converted") / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    return run_convert(ConvertConfig(source=str(run_dir), int8=True, qat_epochs=1,
                                     weight_granularity="per-tensor", calibration_samples=200))


def run_cli_in_process(*args):
    """Call edgeship.cli.main in this process (no TensorFlow start-up per call).

    Same code path as the console script from argument parsing to the exit code; use
    run_cli where a separate process matters (import cost, signals, locks).
    """
    import contextlib
    import io
    from types import SimpleNamespace

    from edgeship.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit_:  # argparse errors
            code = exit_.code
    return SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


def quantize_by_hand(detail: dict, image):
    """One image as an interpreter input: float, or quantized by hand with the input's
    recorded scale and zero point (independent of edgeship's own quantize code)."""
    import numpy as np

    value = image[np.newaxis]
    if detail["dtype"] != np.float32:
        scale, zero_point = detail["quantization"]
        value = np.clip(np.round(value / scale) + zero_point, -128, 127)
    return value.astype(detail["dtype"])
