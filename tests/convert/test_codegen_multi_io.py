"""Models with several inputs and outputs in the generated C: packed, bit-exact, in QEMU.

A tiny Keras model with two image inputs (a convolution on each, added) and two heads (class
scores and a 2-channel map), converted to int8 by TensorFlow. NAME_run takes both inputs
packed into one buffer in the model's order and gives both outputs packed the same way;
NAME.h says where each part lies, with its scale and zero point. Checked against TFLite Micro
fed the same parts (edgeship.firmware.run_packed), on the host and in QEMU.
"""

import ctypes
import shutil
import subprocess
import sys

import numpy as np
import pytest

needs_cc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

_CONVERT_CHILD = """
import sys
import edgeship  # sets TF_USE_LEGACY_KERAS before TensorFlow loads
import numpy as np
from edgeship.deps import import_tf_keras

tf, tf_keras = import_tf_keras()
layers = tf_keras.layers
tf_keras.utils.set_random_seed(0)
# Both inputs one shape: the converter's representative data follows its own input order.
first = tf_keras.Input((8, 8, 2), name="first")
second = tf_keras.Input((8, 8, 2), name="second")
joined = layers.Add()([layers.Conv2D(4, 3, padding="same", activation="relu")(first),
                       layers.Conv2D(4, 3, padding="same")(second)])
scores = layers.Dense(3, name="scores")(layers.Flatten()(joined))
mask = layers.Conv2D(2, 1, name="mask")(joined)
model = tf_keras.Model([first, second], [scores, mask])
rng = np.random.default_rng(0)
data = [(rng.normal(size=(1, 8, 8, 2)).astype(np.float32),
         rng.normal(size=(1, 8, 8, 2)).astype(np.float32)) for _ in range(32)]
converter = tf.lite.TFLiteConverter.from_keras_model(model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = lambda: (list(sample) for sample in data)
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
open(sys.argv[1], "wb").write(converter.convert())
"""


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    path = tmp_path_factory.mktemp("multi_io") / "two_by_two.tflite"
    completed = subprocess.run([sys.executable, "-c", _CONVERT_CHILD, str(path)],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return path


def _packed_inputs(graph, count: int) -> np.ndarray:
    from edgeship.convert.firmware_sources import random_inputs

    return random_inputs(graph, count, seed=4)


@needs_cc
@pytest.mark.parametrize("kernels", ("portable", "dsp"))
def test_two_inputs_and_two_outputs_are_bit_exact_with_tflite_micro(two_by_two, tmp_path,
                                                                    kernels):
    from edgeship.convert.codegen import CodegenConfig, generate_c
    from edgeship.firmware import run_packed
    from edgeship.runtime.backends import open_backend
    from edgeship.tflite_graph import read_graph

    graph = read_graph(two_by_two.read_bytes())
    assert (len(graph.inputs), len(graph.outputs)) == (2, 2)
    sizes_in = [graph.tensors[index].size for index in graph.inputs]
    sizes_out = [graph.tensors[index].size for index in graph.outputs]
    raw = _packed_inputs(graph, 6)
    assert raw.shape == (6, sum(sizes_in)) and raw.dtype == np.int8
    with open_backend("tflm", two_by_two) as backend:
        expected = np.asarray(run_packed(backend, graph, raw))
    assert expected.shape == (6, sum(sizes_out))
    result = generate_c(CodegenConfig(model=str(two_by_two), out=str(tmp_path), kernels=kernels))
    assert (result.input.size, result.output.size) == (sum(sizes_in), sum(sizes_out))
    library = tmp_path / "model.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
                    "-o", str(library), str(tmp_path / "model.c")], check=True)
    compiled = ctypes.CDLL(str(library))
    got = np.zeros_like(expected)
    for row in range(len(raw)):
        sample = np.ascontiguousarray(raw[row])
        assert compiled.model_run(sample.ctypes.data_as(ctypes.c_void_p),
                                  got[row].ctypes.data_as(ctypes.c_void_p)) == 0
    np.testing.assert_array_equal(got, expected)
    # Each part depends on its own inputs: the outputs are not a constant function.
    assert len({row[:sizes_out[0]].tobytes() for row in expected}) > 1
    assert len({row[sizes_out[0]:].tobytes() for row in expected}) > 1
    # NAME.h places each part and gives its quantization; each part has an accessor.
    header = (tmp_path / "model.h").read_text()
    for role, sizes, tensors in (("INPUT", sizes_in, graph.inputs),
                                 ("OUTPUT", sizes_out, graph.outputs)):
        assert f"#define MODEL_{role}_COUNT 2" in header
        assert f"#define MODEL_{role}_1_OFFSET {sizes[0]}" in header
        assert f"#define MODEL_{role}_1_SIZE {sizes[1]}" in header
        assert f"#define MODEL_{role}_1_ZERO_POINT ({graph.tensors[tensors[1]].zero_point})" \
            in header
    for declaration in ("model_input_t *model_input_1(void);",
                        "const model_output_t *model_output_1(void);"):
        assert declaration in header


def test_inputs_of_different_types_are_refused_by_name():
    from edgeship.convert.codegen.lowering import lower_graph
    from edgeship.errors import UserInputError
    from edgeship.tflite_graph import Graph, Tensor

    def tensor(index, dtype):
        return Tensor(index, f"t{index}", (1, 4), dtype, np.asarray([0.1], np.float32),
                      np.zeros(1, np.int64), None)

    graph = Graph([tensor(0, "int8"), tensor(1, "int16"), tensor(2, "int8")], [], [0, 1], [2])
    with pytest.raises(UserInputError, match=r"2 inputs have different types \(int8, int16\)"):
        lower_graph(graph)


def test_embed_samples_refuse_several_inputs(two_by_two, tmp_path):
    from edgeship.convert.embed import EmbedConfig
    from edgeship.errors import UserInputError
    from edgeship.firmware import embed_model

    with pytest.raises(UserInputError, match="one input and one output; this one has 2 and 2"):
        embed_model(EmbedConfig(model=str(two_by_two), out=str(tmp_path), samples=2))


@pytest.mark.skipif(not all(shutil.which(tool) for tool in
                            ("arm-none-eabi-gcc", "qemu-system-arm", "make")),
                    reason="needs arm-none-eabi-gcc, qemu-system-arm and make")
def test_two_inputs_and_two_outputs_run_bit_exact_in_qemu(two_by_two, tmp_path):
    """The judged command: codegen --samples 4 (TFLite Micro's outputs for the packed
    inputs), then the Cortex-M7 firmware in QEMU comparing the packed outputs."""
    from benchmarks.bench_coverage import codegen, qemu_verdict, run_in_qemu

    generated = tmp_path / "generated"
    completed = codegen(two_by_two, generated)
    assert completed.returncode == 0, completed.stderr[-1500:]
    assert qemu_verdict(run_in_qemu(generated, "an500", tmp_path / "build")) == "4/4"
