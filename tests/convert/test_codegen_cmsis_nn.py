"""`edgeship codegen --kernels cmsis-nn`: the generated C calls Arm's CMSIS-NN and stays
bit-exact with TFLite Micro, on the host (CMSIS-NN's plain C) and on an emulated Cortex-M4
(its DSP paths) and Cortex-M0+; scratch sizes equal CMSIS-NN's own arm_*_get_buffer_size.

CMSIS-NN is not part of edgeship: the tests use the copy named by $EDGESHIP_CMSIS_NN or
../shared/third_party/cmsis-nn and skip, saying so, without one.
"""

import ctypes
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeship.convert.codegen.kernels.cmsis_nn_variant import (
    avgpool_scratch_bytes,
    conv_scratch_bytes,
    depthwise_scratch_bytes,
)
from edgeship.errors import UserInputError
from tests.helpers import REPO

CMSIS_NN = Path(os.environ.get("EDGESHIP_CMSIS_NN",
                               REPO.parent / "shared" / "third_party" / "cmsis-nn"))
needs_cmsis_nn = pytest.mark.skipif(not (CMSIS_NN / "Include" / "arm_nnfunctions.h").is_file(),
                                    reason=f"no CMSIS-NN at {CMSIS_NN} (set EDGESHIP_CMSIS_NN)")
needs_host_cc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no host gcc")
needs_emulator = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None
    or any(importlib.util.find_spec(name) is None for name in ("unicorn", "capstone", "elftools")),
    reason="needs arm-none-eabi-gcc, unicorn, capstone and pyelftools")

# (k_h, k_w, in_c, stride, pad_h, pad_w, dilation): 1x1 fast and strided, 1xN, 3x3, 5x5, dilated.
WINDOWS = [(1, 1, 8, 1, 0, 0, 1), (1, 1, 3, 2, 0, 0, 1), (1, 3, 4, 1, 0, 1, 1),
           (3, 3, 1, 1, 1, 1, 1), (3, 3, 7, 2, 0, 0, 1), (5, 5, 16, 1, 2, 2, 1),
           (3, 3, 6, 1, 2, 2, 2), (3, 3, 5, 1, 2, 1, 1), (10, 4, 1, 2, 4, 1, 1)]

_SIZES_PROGRAM = r"""
#include <stdio.h>
#include "arm_nnfunctions.h"
int main(void) {
  static const int cases[][8] = {CASES};
  unsigned i;
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
    const int *c = cases[i];
    const cmsis_nn_dims input = {1, c[7], 12, c[2]};
    const cmsis_nn_dims filter = {8, c[0], c[1], c[2]};
    const cmsis_nn_dims output = {1, 6, 6, 8};
    const cmsis_nn_dims dw_filter = {1, c[0], c[1], c[2]};
    const cmsis_nn_dims dw_output = {1, 6, 6, c[2]};
    const cmsis_nn_conv_params conv = {0, 0, {c[3], c[3]}, {c[5], c[4]}, {c[6], c[6]}, {-128, 127}};
    const cmsis_nn_dw_conv_params dw = {0, 0, 1, {c[3], c[3]}, {c[5], c[4]}, {c[6], c[6]},
                                        {-128, 127}};
    printf("%d %d %d %d %d %d\n",
           (int)arm_convolve_wrapper_s8_get_buffer_size(&conv, &input, &filter, &output),
           (int)arm_convolve_wrapper_s8_get_buffer_size_dsp(&conv, &input, &filter, &output),
           (int)arm_depthwise_conv_wrapper_s8_get_buffer_size(&dw, &input, &dw_filter, &dw_output),
           (int)arm_depthwise_conv_wrapper_s8_get_buffer_size_dsp(&dw, &input, &dw_filter,
                                                                  &dw_output),
           (int)arm_avgpool_s8_get_buffer_size(6, c[2]),
           (int)arm_avgpool_s8_get_buffer_size_dsp(6, c[2]));
  }
  return 0;
}
"""


def _window(k_h, k_w, in_c, stride, pad_h, pad_w, dilation, in_h):
    return {"k_h": k_h, "k_w": k_w, "in_c": in_c, "in_h": in_h, "stride_h": stride,
            "stride_w": stride, "pad_h": pad_h, "pad_w": pad_w, "dil_h": dilation,
            "dil_w": dilation}


@needs_cmsis_nn
@needs_host_cc
def test_scratch_sizes_equal_cmsis_nn_get_buffer_size(tmp_path):
    """The generation-time port of arm_*_get_buffer_size equals CMSIS-NN's C on every window
    shape (plain C build and the _dsp functions; gcc's 1x1 fast path needs none)."""
    cases = [(*window, in_h) for window, in_h in itertools.product(WINDOWS, (1, 12))]
    program = tmp_path / "sizes.c"
    program.write_text(_SIZES_PROGRAM.replace(
        "CASES", ", ".join("{" + ", ".join(map(str, case)) + "}" for case in cases)))
    sources = [CMSIS_NN / "Source" / name for name in (
        "ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c",
        "ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s8.c",
        "PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c")]
    subprocess.run(["gcc", "-O1", f"-I{CMSIS_NN / 'Include'}", str(program), *map(str, sources),
                    "-o", str(tmp_path / "sizes")], check=True)
    lines = subprocess.run([str(tmp_path / "sizes")], capture_output=True, text=True,
                           check=True).stdout.split("\n")
    for case, line in zip(cases, lines, strict=False):
        measured = [int(value) for value in line.split()]
        window = _window(*case)
        ours = [conv_scratch_bytes(window, "c"), conv_scratch_bytes(window, "dsp"),
                depthwise_scratch_bytes(window, 1, "c"), depthwise_scratch_bytes(window, 1, "dsp"),
                avgpool_scratch_bytes(window["in_c"], "c"),
                avgpool_scratch_bytes(window["in_c"], "dsp")]
        assert ours == measured, case
    assert any(value > 0 for line in lines if line for value in map(int, line.split()))


@pytest.fixture(scope="module")
def cmsis_models(tmp_path_factory) -> dict[str, Path]:
    """Two untrained full-int8 models whose ops reach every CMSIS-NN path codegen calls.

    vision: conv on 1 input channel, depthwise 3x3 (the DSP 3x3 path), 1x1 conv (fast path),
    add, depthwise 5x5 (the optimized path, with scratch), depthwise multiplier 2, 1x1 conv
    with stride 2, max pool, 3x3 conv (im2col, with scratch), average pool, dense, softmax.
    audio: a 1xN conv on a one-row input, a strided 3x3 conv, MEAN (no CMSIS-NN kernel: the
    portable fallback), dense with softmax.
    """
    from edgeship.convert.tflite import export_tflite
    from edgeship.deps import import_tf_keras

    _, keras = import_tf_keras()
    layers = keras.layers
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.Add()([x, layers.Conv2D(8, 1, activation="relu")(x)])
    x = layers.DepthwiseConv2D(5, padding="same")(x)
    x = layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu6")(x)
    x = layers.Conv2D(12, 1, strides=2)(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(10, 3, padding="same", activation="relu")(x)
    x = layers.AveragePooling2D(2, strides=1, padding="same")(x)
    x = layers.Dense(10)(layers.Flatten()(x))
    vision = keras.Model(inputs, layers.Softmax()(x))
    inputs = keras.Input((1, 20, 4))
    x = layers.Conv2D(8, (1, 3), padding="same", activation="relu")(inputs)
    x = layers.Conv2D(8, 3, strides=2, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    audio = keras.Model(inputs, layers.Dense(6, activation="softmax")(x))
    folder = tmp_path_factory.mktemp("cmsis_models")
    paths = {}
    for name, model in (("vision", vision), ("audio", audio)):
        samples = np.random.default_rng(0).uniform(0, 1, (32, *model.input_shape[1:]))
        paths[name] = folder / f"{name}_int8.tflite"
        paths[name].write_bytes(export_tflite(model, representative_samples=samples.astype(
            np.float32)))
    return paths


def _generate(model: Path, out: Path):
    from edgeship.convert.codegen import CodegenConfig, generate_c

    return generate_c(CodegenConfig(model=str(model), out=str(out), kernels="cmsis-nn",
                                    cmsis_nn=str(CMSIS_NN)))


@needs_cmsis_nn
def test_generated_c_calls_cmsis_nn_with_planned_scratch_and_names_fallbacks(cmsis_models,
                                                                            tmp_path):
    result = _generate(cmsis_models["audio"], tmp_path)
    source = (tmp_path / "model.c").read_text()
    for call in ("arm_convolve_wrapper_s8(", "arm_fully_connected_wrapper_s8(",
                 "arm_softmax_s8("):
        assert call in source
    assert "static int8_t" not in source.split("int model_run(")[0].split("#error")[-1]
    assert result.portable_fallbacks == ("op 2 MEAN",)
    assert "[portable kernel: CMSIS-NN has none]" in source
    makefile = (tmp_path / "model_cmsis_nn.mk").read_text()
    assert "-I$(CMSIS_NN)/Include" in makefile and "op 2 MEAN" in makefile
    assert all(str(path.relative_to(CMSIS_NN)) in makefile for path in result.c_sources)
    assert "arm_convolve_s8.c" in makefile and "arm_avgpool_s8.c" not in makefile
    # Scratch lives in the activation buffer: the 1x3 conv's im2col needs 2 * 12 int16 taps.
    ops = json.loads((tmp_path / "model_ops.json").read_text())["ops"]
    assert [op["kernel"] for op in ops][:3] == ["cmsis_conv_2d", "cmsis_conv_2d", "mean"]
    # (the model's input is planned in the same buffer)
    assert re.search(r"es_cmsis_conv_2d\(&op0_window, arena( \+ \d+)?, op0_weights, op0_bias, "
                     r"op0_multiplier, op0_shift, arena( \+ \d+)?, 48, ", source)
    assert result.arena_bytes >= 48


def test_cmsis_nn_without_its_folder_is_one_line_of_bad_input(cmsis_models, tmp_path):
    from edgeship.convert.codegen import CodegenConfig, generate_c

    for folder, words in ((None, "--cmsis-nn DIR"), (str(tmp_path), "not a CMSIS-NN folder")):
        with pytest.raises(UserInputError, match=words):
            generate_c(CodegenConfig(model=str(cmsis_models["audio"]), out=str(tmp_path / "c"),
                                     kernels="cmsis-nn", cmsis_nn=folder))
    assert not (tmp_path / "c" / "model.c").exists()


def _tflite_micro(model: Path, inputs: np.ndarray) -> np.ndarray:
    from edgeship.runtime.backends import open_backend

    with open_backend("tflm", model) as backend:
        shape = tuple(backend.inputs()[0].shape[1:])
        return np.asarray(backend.infer_raw(inputs.reshape((len(inputs), *shape))),
                          np.int8).reshape(len(inputs), -1)


@needs_cmsis_nn
@needs_host_cc
@pytest.mark.parametrize("name", ["vision", "audio"])
def test_host_build_of_cmsis_nn_plain_c_is_bit_exact_with_tflite_micro(cmsis_models, name,
                                                                        tmp_path):
    """On x86 CMSIS-NN compiles its plain-C paths (no ARM_MATH_DSP)."""
    result = _generate(cmsis_models[name], tmp_path)
    library = tmp_path / "libmodel.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-std=c99", "-Wall", "-Werror",
                    f"-I{CMSIS_NN / 'Include'}", f"-I{tmp_path}", str(tmp_path / "model.c"),
                    *map(str, result.c_sources), "-o", str(library)], check=True)
    run = ctypes.CDLL(str(library)).model_run
    run.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
    inputs = np.random.default_rng(1).integers(-128, 128, (16, result.input.size), np.int8)
    outputs = np.zeros((16, result.output.size), np.int8)
    for image, output in zip(inputs, outputs, strict=True):
        assert run(image.ctypes.data, output.ctypes.data) == 0
    np.testing.assert_array_equal(outputs, _tflite_micro(cmsis_models[name], inputs))
    assert np.any(outputs != outputs[0])  # the images give different outputs


@needs_cmsis_nn
@needs_emulator
@pytest.mark.parametrize(("name", "target"), [("vision", "cortex-m4"), ("audio", "cortex-m4"),
                                              ("vision", "cortex-m0plus")])
def test_emulated_cortex_m_build_is_bit_exact_with_tflite_micro(cmsis_models, name, target):
    """Cortex-M4 takes CMSIS-NN's DSP paths (SMLAD...), Cortex-M0+ its plain C."""
    from edgeship.profile.run import ProfileConfig, model_input, profile_model
    from tests.helpers import matches_tflite_micro

    config = ProfileConfig(model=str(cmsis_models[name]), target=target, kernels="cmsis-nn",
                           cmsis_nn=str(CMSIS_NN))
    report = profile_model(config)
    input_bytes, _ = model_input(config, _input_size(cmsis_models[name]), 1.0, 0)
    assert matches_tflite_micro(cmsis_models[name], input_bytes, report.output)
    assert report.kernels == "cmsis-nn"
    if target == "cortex-m4":  # the DSP paths ran: dual 16-bit multiply-accumulates
        assert sum(op.classes.get("dsp", 0) for op in report.ops) > 0


def _input_size(model: Path) -> int:
    from edgeship.tflite_graph import read_graph

    graph = read_graph(model.read_bytes())
    return graph.tensors[graph.inputs[0]].size
