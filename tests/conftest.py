"""Session fixtures: the offline dataset loaded once and one small model trained once.

Later stages (convert, runtime, firmware) reuse `trained_run` so the suite trains lenet5 on
mnist5k a single time per session.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest


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
