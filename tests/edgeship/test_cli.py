import pytest

from tests.helpers import run_cli, run_cli_in_process


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
    from edgeship.commands.dataset import DatasetOptions
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


# What each command needs on the command line; everything else is left at its default.
MINIMAL_ARGUMENTS = {
    "train": ["--model", "lenet5", "--out", "r", "--dataset", "mnist5k"],
    "convert": ["runs/x"], "pipeline": [], "validate": ["runs/x"], "inspect": ["runs/x"],
    "bench": ["a.tflite"], "codegen": ["m.tflite", "--out", "o"], "profile": ["m.tflite"],
    "embed": ["m.tflite", "--out", "o"], "serve-demo": ["runs/x"],
    "tune": ["--out", "t", "--dataset", "mnist5k"],
}


def _given(command, arguments: list[str]) -> set[str]:
    """The keys of the options MINIMAL_ARGUMENTS sets."""
    from edgeship.options import flag_name, is_positional

    return {parameter.dest for parameter in command.parameters()
            if is_positional(parameter.item)
            or flag_name(parameter.item, parameter.group.flag_prefix) in arguments}


def test_every_command_has_the_same_defaults_on_the_cli_and_in_the_api():
    """The CLI subcommand and the edgeship.api function come from one spec: the same option
    names (flags in snake case), the same defaults, the same config built."""
    import inspect

    import edgeship.api as api
    from edgeship.cli import build_parser
    from edgeship.commands import COMMAND_NAMES, all_commands

    assert set(MINIMAL_ARGUMENTS) == set(COMMAND_NAMES)
    parser = build_parser()
    for command in all_commands():
        arguments = MINIMAL_ARGUMENTS[command.name]
        cli_values = command.values(parser.parse_args([command.name, *arguments]))
        assert set(cli_values) == {parameter.dest for parameter in command.parameters()}
        signature = inspect.signature(getattr(api, command.api_name))
        given = _given(command, arguments)
        for parameter in command.parameters():
            if parameter.dest in given:
                continue
            default = signature.parameters[parameter.name].default
            assert default == cli_values[parameter.dest], (command.name, parameter.name)
        # the API called as the command line was gives the same config
        positional = [cli_values[p.dest] for p in command.positional_parameters()]
        keywords = {p.name: cli_values[p.dest] for p in command.parameters()
                    if p.dest in given and p not in command.positional_parameters()}
        api_values, _ = command.api_values(tuple(positional), keywords)
        assert command.build(api_values) == command.build(cli_values), command.name
    # the default that once differed: the CLI exported float unless --int8, the API int8
    assert inspect.signature(api.convert).parameters["int8"].default is True
    convert = build_parser().parse_args(["convert", "runs/x"])
    assert convert.int8 is True and build_parser().parse_args(
        ["convert", "runs/x", "--no-int8"]).int8 is False


def test_the_pipeline_stages_take_the_commands_defaults():
    """Every stage option of the pipeline defaults to the stage command's default, except the
    pipeline's own defaults, declared once in its GROUPS (onnx on, fewer bench runs)."""
    from edgeship.commands import get_command
    from edgeship.pipeline_config import GROUPS, PipelineConfig, _group_config

    stage_of = {"train": "train", "dataset": "train", "model_options": "train",
                "convert": "convert", "convert_seed": "convert", "validate": "validate",
                "tolerances": "validate", "bench": "bench", "profile": "profile"}
    config = PipelineConfig()
    declared = {}
    for group in GROUPS:
        if group.key not in stage_of:
            continue
        command = get_command(stage_of[group.key])
        defaults = {(p.group.config_class, p.item.name): p.group.default(p.item)
                    for p in command.parameters()}
        instance = _group_config(config, group.key)
        for item in group.options():
            key = (group.config_class, item.name)
            if key not in defaults:  # ProfileStage: ProfileConfig's fields
                key = (group.config_class.__mro__[1], item.name)
            value = getattr(instance, item.name)
            if item.name in group.defaults:
                declared[f"{group.key}.{item.name}"] = value
                assert value == group.defaults[item.name]
            else:
                assert value == defaults[key], (group.key, item.name)
    assert declared == {"train.model": "lenet5", "dataset.dataset": "mnist5k",
                        "convert.onnx": True, "bench.runs": 100, "bench.warmup": 10}
    from edgeship.profile.run import ProfileConfig

    assert config.profile.variant == ProfileConfig(model="m.tflite").variant == "dsp"


ADDED_OPTION = r"""
import dataclasses, inspect, sys
import edgeship.profile.run as run
from edgeship.options import option

@dataclasses.dataclass(frozen=True)
class ProfileConfig(run.ProfileConfig):
    cache_lines: int = option(4, help="a new option, declared only here")

run.ProfileConfig = ProfileConfig  # as if the field were added in edgeship/profile/run.py

import edgeship.api as api
from edgeship.cli import build_parser
from edgeship.pipeline_config import config_from_sources, load_config_file, reproduce_commands

parser = build_parser()
print(parser.parse_args(["profile", "m.tflite", "--cache-lines", "8"]).cache_lines)
print(inspect.signature(api.profile).parameters["cache_lines"].default)
print(parser.parse_args(["pipeline", "--profile-cache-lines", "6"]).__dict__["profile.cache_lines"])
open(sys.argv[1], "w").write("[profile]\ncache_lines = 5\n")
config = config_from_sources(load_config_file(sys.argv[1]), {})
print(config.profile.cache_lines)
print(reproduce_commands(config)[-1].split("--cache-lines ")[1].split()[0])
"""


def test_an_option_added_to_profile_config_alone_reaches_cli_api_and_pipeline(tmp_path):
    """A newcomer adds an option to `profile` in one file: ProfileConfig's fields are the
    flag, the API parameter, the pipeline's --profile-* flag and [profile] key, and the
    reproduce command."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", ADDED_OPTION, str(tmp_path / "p.toml")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["8", "4", "6", "5", "5"]
