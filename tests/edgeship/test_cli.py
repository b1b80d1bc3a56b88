import pytest

from tests.conftest import run_cli, run_cli_in_process


def test_train_unknown_model_exits_2_and_lists_models(tmp_path):
    result = run_cli("train", "--model", "nope", "--dataset", "mnist5k", "--out", tmp_path / "r")
    assert result.returncode == 2
    assert "valid models: simple_cnn, keras_cnn, lenet5, mlp, dscnn, mobilenet_v2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_train_unknown_dataset_exits_2(tmp_path):
    result = run_cli("train", "--model", "lenet5", "--dataset", "cifar", "--out", tmp_path / "r")
    assert result.returncode == 2
    assert "unknown dataset 'cifar'" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_input_too_small_exits_2(tmp_path):
    result = run_cli("train", "--model", "lenet5", "--dataset", "digits", "--out", tmp_path / "r")
    assert result.returncode == 2
    assert "too small for lenet5" in result.stderr.strip().splitlines()[-1]


def test_train_bad_flag_value_exits_2(tmp_path):
    result = run_cli("train", "--model", "lenet5", "--dataset", "digits", "--epochs", "0",
                     "--out", tmp_path / "r")
    assert result.returncode == 2
    assert "epochs must be >= 1" in result.stderr


def test_train_success_through_subprocess(tmp_path):
    result = run_cli("train", "--model", "simple_cnn", "--dataset", "digits", "--epochs", "2",
                     "--out", tmp_path / "r")
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.6
    assert "epoch 1/2: loss " in result.stdout and "epoch 2/2: " in result.stdout
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()
    assert (tmp_path / "r" / "edgeship.log").stat().st_size > 0
    for name in ("model.keras", "history.json", "training_curves.png", "manifest.json"):
        assert (tmp_path / "r" / name).stat().st_size > 0


def test_an_internal_failure_exits_3_naming_the_log(tmp_path, monkeypatch):
    """A crash inside edgeship is not bad input: exit 3, one line, the traceback kept."""
    import edgeship.convert.run

    def crash(config):
        raise RuntimeError("converter blew up")

    monkeypatch.setattr(edgeship.convert.run, "run_convert", crash)
    result = run_cli_in_process("convert", tmp_path, "--int8")
    assert result.returncode == 3
    assert "internal error" in result.stderr and "RuntimeError: converter blew up" in result.stderr


def test_a_value_error_deep_inside_is_ours_not_bad_input(tmp_path):
    """Only UserInputError is bad input: numpy's or TensorFlow's ValueError inside convert is
    exit 3, one line on the console, its traceback in edgeship.log where the command writes."""
    import subprocess
    import sys

    script = """
import sys
import numpy as np
import edgeship.convert.run
from edgeship.cli import console_main

def crash(config):
    return np.zeros(3) + np.zeros(4)  # ValueError: operands could not be broadcast

edgeship.convert.run.run_convert = crash
sys.exit(console_main(sys.argv[1:]))
"""
    result = subprocess.run([sys.executable, "-c", script, "convert", str(tmp_path), "--int8"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "internal error" in lines[0] and "ValueError" in lines[0]
    log = (tmp_path / "edgeship.log").read_text()
    assert "Traceback" in log and "in crash" in log and "ValueError: operands" in log


def test_config_validation_is_bad_input(tmp_path):
    from edgeship.errors import UserInputError
    from edgeship.train.fit import TrainConfig

    result = run_cli_in_process("convert", tmp_path, "--int8", "--calibration-samples", "0")
    assert result.returncode == 2 and "calibration samples must be >= 1" in result.stderr
    with pytest.raises(UserInputError):
        TrainConfig(model="lenet5", dataset="digits", out=str(tmp_path), epochs=0)


def test_stage_flags_are_generated_from_the_config_fields():
    """Each option is declared once, in its config's fields; the flags (and today's spellings,
    which scripts use) come from there, and the dataset flags cover every DatasetSpec field."""
    import dataclasses

    from edgeship.cli import build_parser
    from edgeship.cli_stages import DatasetOptions
    from edgeship.convert.run import ConvertConfig
    from edgeship.options import declared_options, flag_name
    from edgeship.runtime.bench import BenchConfig
    from edgeship.runtime.parity import ValidateConfig
    from edgeship.runtime.parity_checks import Tolerances
    from edgeship.train.datasets import DatasetSpec
    from edgeship.train.fit import TrainConfig
    from edgeship.train.models import ModelOptions

    commands = next(action for action in build_parser()._actions
                    if action.dest == "command").choices
    flags = {name: {flag for action in parser._actions for flag in action.option_strings}
             for name, parser in commands.items()}
    for command, classes in (("train", (TrainConfig, DatasetOptions, ModelOptions)),
                             ("convert", (ConvertConfig, DatasetOptions)),
                             ("validate", (ValidateConfig, Tolerances)),
                             ("bench", (BenchConfig,))):
        for config_class in classes:
            for item in declared_options(config_class):
                assert flag_name(item) in flags[command], (command, item.name)
    assert {"--qat", "--io", "--prune", "--max-drop", "--int8", "--onnx"} <= flags["convert"]
    assert {"--backend", "--backends"} <= flags["bench"] and {"--backend", "--backends"} <= (
        flags["validate"])
    assert len(dataclasses.fields(DatasetSpec)) == len(declared_options(DatasetOptions))
    spec = DatasetSpec(name="digits", seed=3, test_size=100, image_size=(16, 16), channels=3)
    assert DatasetOptions.from_spec(spec).spec() == spec
