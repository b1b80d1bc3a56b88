"""codegen's RAM: PAD fused into convolutions, the input and output inside the plan (the input's
bytes reused once read, or kept with keep_input), ops in place, and the execution order of
branches chosen for the smallest buffer; every case bit-exact with TFLite Micro.

Two tiny untrained Keras models, converted once per module: `padded` has PADs before a conv
and depthwise convs (asymmetric, before SAME and VALID windows, one strided) and one before
a max pool, which is not fused; `branches` has two branches whose order matters, written to
the .tflite in the worse order (TFLite Micro runs the file's order), and a LOGISTIC in place.
"""

import dataclasses
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgeship.c_backend import compile_generated
from edgeship.convert.codegen import CodegenConfig, generate_c, read_graph
from edgeship.convert.codegen.lowering import LOWERINGS, lower_graph
from edgeship.convert.codegen.lowering.fold import fold_constants
from edgeship.convert.codegen.plan import plan_memory, tensor_bytes
from edgeship.profile.report import ProfileReport
from edgeship.runtime.backends import open_backend
from edgeship.runtime.backends.c import find_c_compiler

needs_host_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                   reason="no host C compiler")


def _export(model, path: Path) -> Path:
    from edgeship.convert.tflite import export_tflite

    rng = np.random.default_rng(0)
    for layer in model.layers:
        weights = layer.get_weights()
        if len(weights) == 2:
            layer.set_weights([weights[0], rng.normal(0, 0.1, weights[1].shape)])
    samples = rng.uniform(-1, 1, (32, *model.input_shape[1:])).astype(np.float32)
    path.write_bytes(export_tflite(model, representative_samples=samples))
    return path


def _in_worse_order(path: Path) -> Path:
    """The branches model with its two branches interleaved: both wide tensors live at once."""
    from edgeship.tflite_graph import read_model, write_model

    model = read_model(path.read_bytes())
    operators = model.subgraphs[0].operators
    assert [len(op.inputs) for op in operators[:4]] == [3, 3, 3, 3]  # four convs first
    operators[1], operators[2] = operators[2], operators[1]
    worse = path.with_name("branches_worse_order.tflite")
    worse.write_bytes(write_model(model))
    return worse


@pytest.fixture(scope="module")
def memory_models(tmp_path_factory) -> dict[str, Path]:
    from edgeship.deps import import_tf_keras

    tensorflow, keras = import_tf_keras()
    tensorflow.random.set_seed(0)
    layers = keras.layers
    folder = tmp_path_factory.mktemp("memory")
    inputs = keras.Input((12, 12, 3))
    x = layers.ZeroPadding2D(((1, 2), (2, 1)))(inputs)                # PAD of the model input
    x = layers.Conv2D(8, 3, activation="relu")(x)                     # conv, valid
    x = layers.ZeroPadding2D(((0, 1), (1, 0)))(x)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)  # depthwise, same
    x = layers.ZeroPadding2D(((2, 0), (0, 2)))(x)
    x = layers.DepthwiseConv2D(3, strides=2)(x)                       # depthwise, strided
    x = layers.ZeroPadding2D(((1, 0), (0, 1)))(x)
    x = layers.Conv2D(6, 3, strides=2, padding="same")(x)             # conv, strided same
    x = layers.ZeroPadding2D(1)(x)
    x = layers.MaxPooling2D(2)(x)                                     # PAD kept: a pool
    x = layers.Flatten()(x)
    padded = keras.Model(inputs, layers.Dense(4)(x))
    inputs = keras.Input((8, 8, 4))
    first = layers.Conv2D(2, 1)(layers.Conv2D(32, 1, activation="relu")(inputs))
    second = layers.Conv2D(2, 1)(layers.Conv2D(32, 1, activation="relu")(inputs))
    x = layers.Activation("sigmoid")(layers.Add()([first, second]))  # LOGISTIC: in place
    branches = keras.Model(inputs, layers.Dense(4)(layers.Flatten()(x)))
    branches_path = _export(branches, folder / "branches_int8.tflite")
    return {"padded": _export(padded, folder / "padded_int8.tflite"),
            "branches": branches_path, "branches_worse": _in_worse_order(branches_path)}


def _micro(model: Path, count: int = 6) -> tuple[np.ndarray, np.ndarray]:
    with open_backend("tflm", model) as backend:
        shape = tuple(backend.inputs()[0].shape[1:])
        raw = np.random.default_rng(3).integers(-128, 128, (count, *shape), dtype=np.int8)
        return raw, np.asarray(backend.infer_raw(raw)).reshape(count, -1)


def _generated(model: Path, kernels: str = "portable", **options):
    folder = tempfile.TemporaryDirectory(prefix="edgeship_memory_")
    result = generate_c(CodegenConfig(model=str(model), out=folder.name, kernels=kernels,
                                      **options))
    return folder, result


def _c_outputs(model: Path, raw: np.ndarray, kernels: str = "portable", **options):
    """NAME_run of the generated C, compiled for the host (-Wall -Wextra -Werror), on raw."""
    backend, result = compile_generated(model, kernels=kernels, **options)
    try:
        return np.asarray(backend.infer_raw(raw)).reshape(len(raw), -1), result
    finally:
        backend.close()


def _unfused_plan(model: Path, **options):
    """The plan without the PAD fusion (each op lowered as the .tflite has it)."""
    graph = read_graph(model.read_bytes())
    lowered = [LOWERINGS[op.name](graph, op) for op in fold_constants(graph).operators]
    return plan_memory(graph, lowered, **options)


@needs_host_cc
@pytest.mark.parametrize("kernels", ("portable", "dsp"))
def test_fused_pads_are_bit_exact_with_tflite_micro(memory_models, kernels):
    raw, expected = _micro(memory_models["padded"])
    generated, result = _c_outputs(memory_models["padded"], raw, kernels)
    np.testing.assert_array_equal(generated, expected)
    # Four PADs feed convolutions and vanish; the one before MAX_POOL_2D stays.
    assert result.ops == ("CONV_2D", "DEPTHWISE_CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "PAD",
                          "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED")
    fused = [record.summary for record in result.op_records if "PAD fused" in record.summary]
    assert len(fused) == 4 and "PAD fused (1,2)x(2,1) from 12x12" in fused[0]
    assert len({row.tobytes() for row in generated}) > 1  # not a constant function


def test_fusion_takes_the_padded_tensors_out_of_ram(memory_models):
    path = memory_models["padded"]
    graph = read_graph(path.read_bytes())
    fused = plan_memory(graph, lower_graph(graph))
    unfused = _unfused_plan(path)
    # Real numbers of this model: each PAD's output lived beside its input before.
    assert (unfused.arena_bytes, fused.arena_bytes) == (3_616, 1_864)
    assert fused.sum_of_tensors < unfused.sum_of_tensors


def test_the_input_is_planned_and_its_bytes_reused(memory_models):
    path = memory_models["padded"]
    graph = read_graph(path.read_bytes())
    lowered = lower_graph(graph)
    reused, kept = plan_memory(graph, lowered), plan_memory(graph, lowered, keep_input=True)
    outside = plan_memory(graph, lowered, io_in_arena=False)
    input_bytes = tensor_bytes(graph, graph.inputs[0])
    assert reused.input_bytes == input_bytes == 432
    # Inside the plan, the 432 input bytes cost nothing: another tensor takes them once read.
    assert reused.arena_bytes < outside.arena_bytes + input_bytes + reused.output_bytes
    start = reused.input_offset
    later = [tensor for tensor, (_, offset) in reused.storage.items()
             if tensor != graph.inputs[0] and tensor >= 0
             and offset < start + input_bytes and start < offset + tensor_bytes(graph, tensor)]
    assert later, "no tensor reuses the input's bytes"
    # keep_input: nothing else ever touches them, at the cost of a larger buffer.
    assert kept.arena_bytes > reused.arena_bytes
    for tensor, (_, offset) in kept.storage.items():
        if tensor != graph.inputs[0] and tensor >= 0:
            size = tensor_bytes(graph, tensor)
            assert offset >= kept.input_offset + input_bytes or offset + size <= kept.input_offset


_ZERO_COPY_MAIN = r"""
#include <stdio.h>
#include <string.h>
#include "model.h"
#include "raw.h"
int main(void) {
  int changed;
  memcpy(model_input(), raw_input, MODEL_INPUT_SIZE);
  model_invoke();
  changed = memcmp(model_input(), raw_input, MODEL_INPUT_SIZE) != 0;
  if (memcmp(model_output(), raw_expected, MODEL_OUTPUT_SIZE) != 0) {
    return 2;
  }
  printf("%s\n", changed ? "input reused" : "input intact");
  return 0;
}
"""


@needs_host_cc
@pytest.mark.parametrize("keep_input", (False, True))
def test_zero_copy_api_and_keep_input(memory_models, keep_input, tmp_path):
    """NAME_input()/NAME_invoke()/NAME_output() in a C program: TFLite Micro's output; the input
    overwritten once read, unless --keep-input."""
    raw, expected = _micro(memory_models["padded"], count=1)
    folder, result = _generated(memory_models["padded"], keep_input=keep_input)
    out = Path(folder.name)
    (out / "raw.h").write_text(
        "static const signed char raw_input[] = {" + ",".join(map(str, raw.reshape(-1))) + "};\n"
        "static const signed char raw_expected[] = {"
        + ",".join(map(str, expected.reshape(-1))) + "};\n")
    (out / "main.c").write_text(_ZERO_COPY_MAIN)
    header = (out / "model.h").read_text()
    assert "model_input_t *model_input(void);" in header and "int model_invoke(void);" in header
    binary = tmp_path / "zero_copy"
    subprocess.run([find_c_compiler(), "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-o",
                    str(binary), str(out / "main.c"), str(out / "model.c")], check=True)
    completed = subprocess.run([str(binary)], check=False, capture_output=True, text=True)
    assert completed.returncode == 0, completed
    assert completed.stdout.strip() == ("input intact" if keep_input else "input reused")
    report = json.loads((out / "model_codegen.json").read_text())
    assert report["ram"]["arena"] == result.arena_bytes and report["ram"]["input"] == 432
    assert report["ram"]["keep_input"] is keep_input
    folder.cleanup()


def test_ops_run_in_place_where_their_loop_order_allows(memory_models):
    graph = read_graph(memory_models["branches"].read_bytes())
    plan = plan_memory(graph, lower_graph(graph))
    logistic = next(low for low in lower_graph(graph) if low.name == "LOGISTIC")
    assert plan.storage[logistic.outputs[0]] == plan.storage[logistic.inputs[0]]
    # The padded model's convolutions write over the inputs they finish reading: without
    # the overlap their kernels allow, the buffer would be the peak of live tensors.
    graph = read_graph(memory_models["padded"].read_bytes())
    lowered = lower_graph(graph)
    apart = plan_memory(graph, [dataclasses.replace(low, overlap=()) for low in lowered])
    plan = plan_memory(graph, lowered)
    assert (apart.arena_bytes, plan.arena_bytes) == (2_920, 1_864)
    assert max(plan.timeline) == 2_920 and plan.peak_op == 1


@needs_host_cc
def test_branches_run_in_the_order_with_the_smaller_buffer(memory_models):
    worse = memory_models["branches_worse"]
    raw, expected = _micro(worse)
    generated, result = _c_outputs(worse, raw)
    np.testing.assert_array_equal(generated, expected)
    graph = read_graph(worse.read_bytes())
    in_file_order = plan_memory(graph, lower_graph(graph))
    # Both 8x8x32 tensors live together in the file's order; one at a time in codegen's.
    assert (in_file_order.arena_bytes, result.arena_bytes) == (4_224, 2_432)
    summaries = [record.summary for record in result.op_records[:4]]
    assert summaries[0].endswith("-> 8x8x32, 1x1 stride 1x1 valid")
    assert summaries[1].endswith("-> 8x8x2, 1x1 stride 1x1 valid")
    assert [record.index for record in result.op_records] == list(range(len(result.ops)))
    assert len(result.memory_timeline) == len(result.ops)
    assert result.memory_timeline[result.peak_op] == max(result.memory_timeline)


def test_profile_report_shows_the_memory_timeline():
    report = ProfileReport(
        schema_version=1, model="m.tflite", model_sha256="0", target="cortex-m4", board="b",
        clock_mhz=100.0, kernels="portable", compiler={}, emulator={}, cycle_model={},
        input={}, output=[], ops=(), harness_instructions=0, harness_cycles=0.0,
        flash={"total": 10, "text": 5, "rodata": 5, "data": 0, "harness": 1},
        ram={"activations": 900, "input": 300, "output": 10, "scratch": 0, "stack": 100,
             "total": 1000},
        memory_timeline=((0, "CONV_2D", 700), (1, "DEPTHWISE_CONV_2D", 900), (2, "SOFTMAX", 20)))
    memory = report.to_dict()["memory"]
    assert memory["peak"] == {"index": 1, "op": "DEPTHWISE_CONV_2D", "live_bytes": 900}
    assert [entry["live_bytes"] for entry in memory["timeline"]] == [700, 900, 20]
    assert "memory peak: op 1 (DEPTHWISE_CONV_2D), 900 B live" in report.table()
