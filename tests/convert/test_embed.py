"""edgeship embed: the model as C++ source, its exact op resolver and TFLite Micro arena."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from edgeship.convert.embed import EmbedConfig, arena_with_margin, resolver_method
from edgeship.errors import UserInputError
from edgeship.firmware import embed_model
from edgeship.runtime.backends.tflm import capture_stderr
from tests.helpers import run_cli

# The MicroMutableOpResolver methods of TFLite Micro for the ops codegen also supports.
TFLM_METHODS = {"CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
                "FULLY_CONNECTED": "AddFullyConnected", "MAX_POOL_2D": "AddMaxPool2D",
                "AVERAGE_POOL_2D": "AddAveragePool2D", "RESHAPE": "AddReshape",
                "SOFTMAX": "AddSoftmax", "ADD": "AddAdd", "MEAN": "AddMean", "PAD": "AddPad",
                "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "LOGISTIC": "AddLogistic",
                "PADV2": "AddPadV2", "RELU6": "AddRelu6", "QUANTIZE": "AddQuantize"}


def _parse_c_array(source: str, name: str, dtype) -> np.ndarray:
    body = re.search(rf"{re.escape(name)}\[[^\]]*\](?:\[[^\]]*\])? = \{{(.*?)\n\}};",
                     source, re.DOTALL)
    assert body, f"{name} not found"
    numbers = re.findall(r"-?0x[0-9a-fA-F]+|-?\d+", body.group(1))
    return np.asarray([int(number, 0) for number in numbers], dtype)


def _tflm_reported_arena(model_bytes: bytes) -> int:
    """Straight from tflite_micro: invoke once, parse PrintAllocations' total."""
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=4 << 20)
    detail = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
    interpreter.invoke()
    text = capture_stderr(interpreter.print_allocations)
    return int(re.search(r"Arena allocation total (\d+) bytes", text).group(1))


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, converted_run):
    out = tmp_path_factory.mktemp("embed") / "fw"
    model = converted_run.out_dir / "model_int8.tflite"
    result = run_cli("embed", model, "--out", out, "--samples", "10")
    assert result.returncode == 0, result.stderr
    return model, out, result.stdout


def test_model_array_is_the_file_byte_for_byte(embedded):
    model, out, _ = embedded
    source = (out / "model_model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model_model_data[]" in source
    data = _parse_c_array(source, "g_model_model_data", np.uint8)
    assert data.tobytes() == model.read_bytes()
    assert f"g_model_model_data_len = {model.stat().st_size};" in source


def test_arena_figure_is_what_tflite_micro_reports(embedded):
    model, out, stdout = embedded
    measured = _tflm_reported_arena(model.read_bytes())
    header = (out / "model_model_data.h").read_text()
    assert f"#define MODEL_ARENA_MEASURED_BYTES {measured}\n" in header
    assert f"#define MODEL_TENSOR_ARENA_SIZE {arena_with_margin(measured)}\n" in header
    assert arena_with_margin(measured) >= measured * 1.2 + 1024
    footprint = json.loads((out / "model_footprint.json").read_text())
    assert footprint["arena_bytes"] == measured
    assert footprint["model_bytes"] == model.stat().st_size
    assert f"arena {measured} bytes" in stdout


def test_resolver_registers_exactly_the_model_ops(embedded):
    from edgeship.convert.tflite import open_interpreter

    model, out, _ = embedded
    interpreter = open_interpreter(model.read_bytes(), reference_kernels=True)  # no delegate
    ops = list(dict.fromkeys(op["op_name"] for op in interpreter._get_ops_details()))
    resolver = (out / "model_op_resolver.h").read_text()
    assert f"constexpr int kModelOpCount = {len(ops)};" in resolver
    assert "tflite::MicroMutableOpResolver<kModelOpCount>" in resolver
    registered = re.findall(r"resolver\.(Add\w+)\(\)", resolver)
    assert registered == [TFLM_METHODS[op] for op in ops]
    footprint = json.loads((out / "model_footprint.json").read_text())
    assert footprint["ops"] == ops


def test_samples_hold_tflite_micro_outputs_and_dataset_labels(embedded):
    model, out, _ = embedded
    source = (out / "model_samples.c").read_text()
    inputs = _parse_c_array(source, "model_sample_inputs", np.int8).reshape(10, 28, 28, 1)
    expected = _parse_c_array(source, "model_sample_outputs", np.int8).reshape(10, -1)
    labels = _parse_c_array(source, "model_sample_labels", np.int64)
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model.read_bytes(), arena_size=4 << 20)
    for sample, output in zip(inputs, expected):
        interpreter.set_input(sample[np.newaxis], 0)
        interpreter.invoke()
        np.testing.assert_array_equal(interpreter.get_output(0).reshape(-1), output)
    assert sorted(set(labels.tolist())) == list(range(10))  # class-balanced real labels
    assert np.mean(expected.argmax(axis=1) == labels) >= 0.7  # a trained model, real images


@pytest.mark.skipif(shutil.which("g++") is None, reason="no host C++ compiler")
def test_generated_sources_compile(embedded, tmp_path):
    _, out, _ = embedded
    for source, compiler, standard in (("model_model_data.cc", "g++", "-std=c++11"),
                                       ("model_samples.c", "gcc", "-std=c99")):
        completed = subprocess.run(
            [compiler, standard, "-Wall", "-Wextra", "-Werror", "-c", str(out / source),
             "-o", str(tmp_path / f"{source}.o")], check=False, capture_output=True, text=True)
        assert completed.returncode == 0, completed.stderr


def test_resolver_method_names(codegen_models, ops_model):
    for model in [*codegen_models.values(), ops_model]:
        result = embed_model(EmbedConfig(model=str(model.path), out=str(model.path.parent / "fw")))
        for op in result.ops:
            assert resolver_method(op) == TFLM_METHODS[op]
    assert resolver_method("SPACE_TO_BATCH_ND") == "AddSpaceToBatchNd"
    assert resolver_method("PADV2") == "AddPadV2"


def test_missing_model_and_bad_name_are_input_errors(tmp_path, converted_run):
    with pytest.raises(UserInputError):
        embed_model(EmbedConfig(model=str(tmp_path / "nope.tflite"), out=str(tmp_path)))
    result = run_cli("embed", converted_run.out_dir / "model_int8.tflite", "--out",
                     tmp_path / "fw", "--name", "model-data")
    assert result.returncode == 2 and "C identifier" in result.stderr
