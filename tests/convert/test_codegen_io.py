"""codegen of models with the input and output types TensorFlow's converter gives: uint8 and
float32 at the boundary (QUANTIZE uint8 -> int8, float32 -> int8/int16, int8 -> uint8;
DEQUANTIZE int8/int16 -> float32) and int16 (the whole model 16x8, as `edgeship convert
--activations int16` makes it). Each is bit-exact with TFLite Micro on the host (the c backend
against tflm, float outputs compared by their bytes) and on an emulated Cortex-M7
(firmware_examples/cortex_m_qemu, BOARD=an500; every board under -m slow).

The models are one tiny untrained network (conv, flatten, dense: bit-exactness needs varied
activations, not accuracy), converted once per session with each I/O type.
"""

import ctypes
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeship.convert.c_source import c_float_literal
from edgeship.convert.codegen import CodegenConfig, lower_graph, read_graph
from edgeship.convert.codegen.lowering import supported_ops_text
from edgeship.errors import UserInputError
from edgeship.firmware import collect_samples, generate_c
from edgeship.runtime.backends import open_backend
from edgeship.runtime.backends.c import compile_shared_library
from tests.helpers import REPO, run_cli

QEMU_EXAMPLE = REPO / "firmware_examples" / "cortex_m_qemu"
needs_host_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                   reason="no host C compiler")
needs_arm = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make")),
    reason="needs arm-none-eabi-gcc, qemu-system-arm and make (scripts/setup.sh installs them)")
needs_profile = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None
    or any(importlib.util.find_spec(name) is None for name in ("unicorn", "capstone", "elftools")),
    reason="needs arm-none-eabi-gcc, unicorn, capstone and pyelftools (scripts/setup.sh)")

# name -> (input dtype, output dtype, the ops at the model's boundary)
IO_MODELS = {
    "uint8_in_float_out": ("uint8", "float32", ("QUANTIZE (uint8 -> int8)",
                                                "DEQUANTIZE (int8 -> float32)")),
    "float_io": ("float32", "float32", ("QUANTIZE (float32 -> int8)",
                                        "DEQUANTIZE (int8 -> float32)")),
    "uint8_io": ("uint8", "uint8", ("QUANTIZE (uint8 -> int8)", "QUANTIZE (int8 -> uint8)")),
    "int16_io": ("int16", "int16", ()),
    "int16_float_io": ("float32", "float32", ("QUANTIZE (float32 -> int16)",
                                              "DEQUANTIZE (int16 -> float32)")),
}
HOST_SAMPLES = 16
BOARD_SAMPLES = 4
BOARDS = ("an386", "an500", "an505", "an547")


def _boundary_ops(path: Path) -> list[str]:
    graph = read_graph(path.read_bytes())
    return [f"{op.name} ({graph.tensors[op.inputs[0]].dtype} -> "
            f"{graph.tensors[op.outputs[0]].dtype})" for op in graph.operators
            if op.name in ("QUANTIZE", "DEQUANTIZE")]


@pytest.fixture(scope="session")
def io_models(tmp_path_factory) -> dict[str, Path]:
    """name -> .tflite for each entry of IO_MODELS, from one seeded tiny Keras model."""
    from edgeship.convert.activations import quantize_mixed
    from edgeship.deps import import_tf_keras

    tensorflow, keras = import_tf_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(5)(x))
    calibration = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    folder = tmp_path_factory.mktemp("io_models")

    def convert(input_type, output_type, int16: bool = False) -> bytes:
        converter = tensorflow.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tensorflow.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[np.newaxis]] for image in calibration)
        ops = tensorflow.lite.OpsSet
        converter.target_spec.supported_ops = [
            ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if int16
            else ops.TFLITE_BUILTINS_INT8]
        if input_type is not None:  # left unset: the model keeps float input (or output)
            converter.inference_input_type = input_type
        if output_type is not None:
            converter.inference_output_type = output_type
        return bytes(converter.convert())

    float_path = folder / "model_float.tflite"
    float_path.write_bytes(bytes(tensorflow.lite.TFLiteConverter.from_keras_model(model).convert()))
    contents = {"uint8_in_float_out": convert(tensorflow.uint8, None),
                "float_io": convert(None, None),
                "uint8_io": convert(tensorflow.uint8, tensorflow.uint8),
                "int16_io": quantize_mixed(float_path, calibration, "all"),
                "int16_float_io": convert(None, None, int16=True)}
    paths = {}
    for name, data in contents.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths


def _boundary_only(path: Path, out: Path) -> Path:
    """The model cut down to its first and last op, a QUANTIZE from float and a DEQUANTIZE
    back: the output is the quantized input dequantized, so every rounding shows."""
    from edgeship.tflite_graph import read_model, write_model

    model = read_model(path.read_bytes())
    subgraph = model.subgraphs[0]
    quantize, dequantize = subgraph.operators[0], subgraph.operators[-1]
    dequantize.inputs = [quantize.outputs[0]]
    output = subgraph.tensors[dequantize.outputs[0]]
    output.shape = np.array(subgraph.tensors[quantize.outputs[0]].shape)
    output.shapeSignature = None
    subgraph.operators = [quantize, dequantize]
    out.write_bytes(write_model(model))
    return out


def _c_and_tflm(path: Path, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with open_backend("c", path) as generated, open_backend("tflm", path) as micro:
        return np.asarray(generated.infer_raw(raw)), np.asarray(micro.infer_raw(raw))


@needs_host_cc
@pytest.mark.parametrize("name", IO_MODELS)
def test_model_io_types_are_bit_exact_on_the_host(io_models, name):
    input_type, output_type, boundary = IO_MODELS[name]
    path = io_models[name]
    assert _boundary_ops(path) == list(boundary)
    samples = collect_samples(path, HOST_SAMPLES, seed=1)
    assert samples.inputs.dtype == input_type and samples.expected.dtype == output_type
    generated, micro = _c_and_tflm(path, samples.inputs)
    assert generated.dtype == micro.dtype == np.dtype(output_type)
    assert generated.tobytes() == micro.tobytes()
    # Different inputs must give different outputs, or a match proves little.
    assert len({row.tobytes() for row in micro.reshape(HOST_SAMPLES, -1)}) == HOST_SAMPLES


@needs_host_cc
@pytest.mark.parametrize("name", ["float_io", "int16_float_io"])
def test_float_quantize_and_dequantize_round_as_tflite_micro(io_models, name, tmp_path):
    """Exact ties (x / scale = k + 0.5 in float, rounded half away from zero), their float
    neighbours, both clamping ends and signed zeros, through QUANTIZE then DEQUANTIZE."""
    path = _boundary_only(io_models[name], tmp_path / "boundary.tflite")
    graph = read_graph(path.read_bytes())
    quantized = graph.tensors[graph.operators[0].outputs[0]]
    scale = np.float32(quantized.scale)
    limits = np.iinfo(np.dtype(quantized.dtype))
    steps = np.arange(limits.min - 3, limits.max + 3, 1 if quantized.dtype == "int8" else 97)
    ties = (steps.astype(np.float32) + np.float32(0.5)) * scale
    assert np.mean(ties / scale == steps + np.float32(0.5)) > 0.9  # most are exact ties
    values = np.concatenate([ties, np.nextafter(ties, np.float32(np.inf)),
                             np.nextafter(ties, np.float32(-np.inf)), steps * scale,
                             np.float32([0.0, -0.0, 1e-30, -1e-30, 1e3, -1e3])])
    shape = tuple(graph.tensors[graph.inputs[0]].shape[1:])
    size = int(np.prod(shape))
    raw = np.resize(values.astype(np.float32), (-(-len(values) // size) * size,))
    generated, micro = _c_and_tflm(path, raw.reshape((-1,) + shape))
    assert generated.dtype == np.float32
    assert generated.tobytes() == micro.tobytes()
    assert len(np.unique(micro)) > 100


def test_random_float_samples_cover_the_input_quantize_range(io_models):
    graph = read_graph(io_models["float_io"].read_bytes())
    quantized = graph.tensors[graph.operators[0].outputs[0]]
    low = (-128 - quantized.zero_point) * quantized.scale
    high = (127 - quantized.zero_point) * quantized.scale
    samples = collect_samples(io_models["float_io"], 8, seed=3)
    assert samples.inputs.dtype == np.float32 and "random float32 inputs" in samples.source
    assert samples.inputs.min() < low + 0.05 * (high - low)
    assert samples.inputs.max() > high - 0.05 * (high - low)
    assert samples.inputs.min() >= low - 3 * quantized.scale
    assert samples.inputs.max() <= high + 3 * quantized.scale
    uint8 = collect_samples(io_models["uint8_in_float_out"], 8, seed=3).inputs
    assert uint8.dtype == np.uint8 and uint8.min() < 5 and uint8.max() > 250


def test_header_states_each_io_type_and_its_quantization(io_models, tmp_path):
    generate_c(CodegenConfig(model=str(io_models["uint8_in_float_out"]), out=str(tmp_path)))
    header = (tmp_path / "model.h").read_text()
    assert "typedef uint8_t model_input_t;" in header
    assert "typedef float model_output_t;" in header
    assert "int model_run(const uint8_t *input, float *output);" in header
    assert re.search(r"#define MODEL_INPUT_SCALE \d\.\d+f", header)
    assert "#define MODEL_INPUT_ZERO_POINT (0)" in header  # uint8: the int8 -128 shifted
    assert "MODEL_OUTPUT_SCALE" not in header and "float output: real values" in header
    source = (tmp_path / "model.c").read_text()
    assert "int model_run(const uint8_t *input, float *output) {" in source
    assert "Floating point only where the model converts" in source
    assert "DEQUANTIZE (int8 -> float32)" in source.split("*/")[0]
    generate_c(CodegenConfig(model=str(io_models["int16_io"]), out=str(tmp_path / "int16")))
    source = (tmp_path / "int16" / "model.c").read_text()
    assert "no floating point" in source
    assert "es_float_from_bits" not in source and not re.search(r"\bfloat\s*\*", source)


@needs_host_cc
def test_float_samples_are_literals_that_read_back_exactly(io_models, tmp_path):
    """NAME_samples.c holds float inputs and TFLite Micro's float outputs as C literals; the
    generated C, run on them on the host, must reproduce the outputs' bytes."""
    result = generate_c(CodegenConfig(model=str(io_models["float_io"]), out=str(tmp_path),
                                      samples=5))
    assert result.samples == 5
    samples_header = (tmp_path / "model_samples.h").read_text()
    assert "extern const float model_sample_inputs" in samples_header
    assert "extern const float model_sample_outputs" in samples_header
    harness = tmp_path / "check.c"
    harness.write_text(
        '#include <string.h>\n#include "model.h"\n#include "model_samples.h"\n'
        "int count_mismatches(void) {\n"
        "  model_output_t output[MODEL_OUTPUT_SIZE];\n  int sample, wrong = 0;\n"
        "  for (sample = 0; sample < MODEL_SAMPLE_COUNT; ++sample) {\n"
        "    model_run(model_sample_inputs[sample], output);\n"
        "    wrong += memcmp(output, model_sample_outputs[sample], sizeof output) != 0;\n"
        "  }\n  return wrong;\n}\n")
    library = compile_shared_library([tmp_path / "model.c", tmp_path / "model_samples.c",
                                      harness], tmp_path / "libcheck.so")
    assert ctypes.CDLL(str(library)).count_mismatches() == 0


def test_c_float_literals_read_back_to_the_same_float():
    values = np.float32([1.0, 0.0, -0.0, 0.1, -2.5, 3.4e38, 1e-45, 16777217.0, 123456789.0])
    for value in values:
        literal = c_float_literal(value)
        assert re.fullmatch(r"-?\d+(\.\d+)?(e[-+]\d+)?f", literal) and ("." in literal
                                                                        or "e" in literal)
        assert np.float32(float(literal[:-1])).tobytes() == value.tobytes()
    with pytest.raises(ValueError):
        c_float_literal(float("inf"))


def test_unsupported_boundary_type_is_named(io_models):
    """A DEQUANTIZE to float16 has no kernel: named with its types, the supported ones listed."""
    from edgeship.tflite_graph import read_model, write_model

    model = read_model(io_models["float_io"].read_bytes())
    subgraph = model.subgraphs[0]
    subgraph.tensors[subgraph.operators[-1].outputs[0]].type = 1  # TensorType.FLOAT16
    with pytest.raises(UserInputError) as raised:
        lower_graph(read_graph(write_model(model)))
    message = str(raised.value)
    assert "DEQUANTIZE (int8 -> float16)" in message
    for form in ("QUANTIZE (uint8 -> int8)", "QUANTIZE (float32 -> int16)",
                 "DEQUANTIZE (uint8 -> float32)"):
        assert form in message and form in supported_ops_text()


@needs_profile
def test_float_io_profile_matches_tflite_micro(io_models):
    """`edgeship profile` (and codegen --target) builds and emulates float I/O models too."""
    from edgeship.profile.run import ProfileConfig, model_input, profile_model
    from tests.helpers import matches_tflite_micro

    path = io_models["float_io"]
    report = profile_model(ProfileConfig(model=str(path), target="cortex-m7"))
    input_bytes, described = model_input(ProfileConfig(model=str(path)), 64, 0.0, 0, "float32")
    assert described["source"] == "seeded random float32" and len(input_bytes) == 64 * 4
    assert all(isinstance(value, float) for value in report.output)
    assert matches_tflite_micro(path, input_bytes, report.output)


# --- the examples on emulated Cortex-M boards ---------------------------------------------------

def _run_on_board(generated: Path, board: str, build: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(QEMU_EXAMPLE), "run", f"BOARD={board}",
                           f"GENERATED={generated}", f"BUILD={build}"],
                          check=False, capture_output=True, text=True, timeout=300)


def _assert_matches_on_board(generated: Path, board: str, build: Path) -> None:
    completed = _run_on_board(generated, board, build)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    assert f"matches: {BOARD_SAMPLES}/{BOARD_SAMPLES}" in completed.stdout
    assert completed.stdout.count("outputs match") == BOARD_SAMPLES


@pytest.fixture(scope="module")
def generated_io(io_models, tmp_path_factory) -> dict[str, Path]:
    """name -> folder of each IO model's C with BOARD_SAMPLES samples (codegen --samples)."""
    folder = tmp_path_factory.mktemp("io_generated")
    generated = {}
    for name, path in io_models.items():
        generated[name] = folder / name
        generate_c(CodegenConfig(model=str(path), out=str(generated[name]),
                                 samples=BOARD_SAMPLES, seed=2))
    return generated


@needs_arm
@pytest.mark.parametrize("name", IO_MODELS)
def test_every_io_type_matches_on_cortex_m7(generated_io, name, tmp_path):
    _assert_matches_on_board(generated_io[name], "an500", tmp_path / "build")


@needs_arm
@needs_profile
def test_judged_codegen_command_matches_on_cortex_m7(io_models, tmp_path):
    """`edgeship codegen MODEL --kernels auto --target cortex-m7 --samples 4` (dsp kernels and
    the profile estimate), then the QEMU example on the AN500."""
    generated = tmp_path / "generated"
    result = run_cli("codegen", io_models["uint8_in_float_out"], "--out", generated, "--kernels",
                     "auto", "--target", "cortex-m7", "--samples", str(BOARD_SAMPLES))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dsp kernels" in result.stdout and "estimate on cortex-m7" in result.stdout
    _assert_matches_on_board(generated, "an500", tmp_path / "build")


@needs_arm
def test_wrong_float_output_is_reported_as_differing(generated_io, tmp_path):
    generated = tmp_path / "generated"
    shutil.copytree(generated_io["float_io"], generated)
    samples = generated / "model_samples.c"
    text = samples.read_text()
    row = text.index("{", text.index("= {", text.index("model_sample_outputs")) + 3)
    first = re.match(r"\{(-?[0-9.e+-]+f)", text[row:]).group(1)
    value = np.float32(float(first[:-1]))
    wrong = c_float_literal(np.nextafter(value, np.float32(np.inf)))  # one ulp off
    samples.write_text(text[:row + 1] + wrong + text[row + 1 + len(first):])
    completed = _run_on_board(generated, "an500", tmp_path / "build")
    assert completed.returncode != 0
    assert f"matches: {BOARD_SAMPLES - 1}/{BOARD_SAMPLES}" in completed.stdout
    assert "OUTPUTS DIFFER" in completed.stdout


@needs_arm
@pytest.mark.slow
@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("name", IO_MODELS)
def test_every_io_type_matches_on_every_board(generated_io, name, board, tmp_path):
    _assert_matches_on_board(generated_io[name], board, tmp_path / "build")
