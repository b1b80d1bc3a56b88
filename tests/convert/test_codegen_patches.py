"""codegen --patches: the first, high-resolution stage computed patch by patch (MCUNetV2),
bit-exact with the layer-by-layer run and TFLite Micro, in less RAM, the recomputed MACs
reported; --patches auto under --max-ram picks the smallest grid that fits, or refuses.

Three tiny untrained Keras models, converted once per module: `stage` chains every op kind a
stage may hold (strided SAME conv, a PAD fused into a depthwise conv, LEAKY_RELU, a SAME
average pool whose border windows count fewer taps, a max pool) before a residual block;
`mobilenet` is MobileNetV2's first stage at 96x96 (its 48x48x48 expansion is the peak);
`dense` starts with a fully connected layer, which cannot run patch by patch.
"""

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeship.c_backend import compile_generated
from edgeship.convert.codegen import CodegenConfig, lower_graph, read_graph
from edgeship.convert.codegen.patches import PatchedStage, plan_with_patches, stage_length
from edgeship.errors import UserInputError
from edgeship.options import add_options, option_values
from edgeship.runtime.backends import open_backend
from edgeship.runtime.backends.c import compile_shared_library

needs_host_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                   reason="no host C compiler")
needs_arm = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make")),
    reason="needs arm-none-eabi-gcc, qemu-system-arm and make (scripts/setup.sh installs them)")
VWW = Path("/work/shared/models/mlperf_tiny/vww_96_int8.tflite")
QEMU_EXAMPLE = Path(__file__).resolve().parents[2] / "firmware_examples" / "cortex_m_qemu"


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


@pytest.fixture(scope="module")
def patch_models(tmp_path_factory) -> dict[str, Path]:
    from edgeship.deps import import_tf_keras

    tensorflow, keras = import_tf_keras()
    tensorflow.random.set_seed(0)
    layers = keras.layers
    folder = tmp_path_factory.mktemp("patches")
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inputs)
    x = layers.ZeroPadding2D(((2, 0), (1, 1)))(x)
    x = layers.DepthwiseConv2D(3, activation="relu")(x)                    # PAD fused
    x = layers.LeakyReLU(0.1)(x)                                           # elementwise op
    x = layers.AveragePooling2D(3, strides=1, padding="same")(x)           # border counts
    x = layers.Conv2D(12, 1)(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    y = layers.Conv2D(12, 1, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(layers.Add()([x, y]))              # ends the chain
    stage = keras.Model(inputs, layers.Dense(4)(x))

    inputs = keras.Input((96, 96, 3))
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = layers.Conv2D(8, 1)(x)
    x = layers.Conv2D(48, 1, activation="relu6")(x)                        # 48x48x48
    x = layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
    x = layers.DepthwiseConv2D(3, strides=2, activation="relu6")(x)
    x = layers.Conv2D(16, 1)(x)                                            # 24x24x16
    y = layers.Conv2D(48, 1, activation="relu6")(x)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    x = layers.Add()([x, layers.Conv2D(16, 1)(y)])
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(32, 1, activation="relu6")(x))
    mobilenet = keras.Model(inputs, layers.Dense(4)(x))

    inputs = keras.Input((16,))
    dense = keras.Model(inputs, layers.Dense(4)(layers.Dense(8, activation="relu")(inputs)))
    return {"stage": _export(stage, folder / "stage_int8.tflite"),
            "mobilenet": _export(mobilenet, folder / "mobilenet_int8.tflite"),
            "dense": _export(dense, folder / "dense_int8.tflite")}


def _raw(model: Path, count: int) -> np.ndarray:
    graph = read_graph(model.read_bytes())
    shape = graph.tensors[graph.inputs[0]].shape[1:]
    return np.random.default_rng(3).integers(-128, 128, (count, *shape), dtype=np.int8)


def _micro(model: Path, raw: np.ndarray) -> np.ndarray:
    with open_backend("tflm", model) as backend:
        return np.asarray(backend.infer_raw(raw)).reshape(len(raw), -1)


def _c_outputs(model: Path, raw: np.ndarray, **options):
    """NAME_run of the generated C, compiled for the host (-Wall -Wextra -Werror), on raw,
    and the result (with the reports written, read before the folder goes)."""
    backend, result = compile_generated(model, **options)
    try:
        reports = {name: json.loads((backend.folder / f"model_{name}.json").read_text())
                   for name in ("codegen", "ops")}
        return np.asarray(backend.infer_raw(raw)).reshape(len(raw), -1), result, reports
    finally:
        backend.close()


def _plans(model: Path, patches, max_ram=None):
    graph = read_graph(model.read_bytes())
    lowered = lower_graph(graph)
    return plan_with_patches(graph, lowered, lowered, patches, max_ram)


@needs_host_cc
@pytest.mark.parametrize(("kernels", "grid"), (("portable", 2), ("portable", 3), ("dsp", 4)))
def test_patches_are_bit_exact_with_the_layer_by_layer_run_and_tflite_micro(
        patch_models, kernels, grid):
    path = patch_models["stage"]
    raw = _raw(path, 6)
    expected = _micro(path, raw)
    unpatched, _, _ = _c_outputs(path, raw, kernels=kernels)
    patched, result, _ = _c_outputs(path, raw, kernels=kernels, patches=grid)
    np.testing.assert_array_equal(unpatched, expected)
    np.testing.assert_array_equal(patched, expected)
    assert len({row.tobytes() for row in patched}) > 1  # not a constant function
    assert result.ops[0] == "PATCHES" and result.patches.grid == grid
    # Every op kind of the chain is inside the stage; the residual block is not.
    assert result.patches.stage_ops == ("CONV_2D", "DEPTHWISE_CONV_2D", "LEAKY_RELU",
                                        "AVERAGE_POOL_2D", "CONV_2D", "MAX_POOL_2D")
    stage = lower_graph(read_graph(path.read_bytes()))[:len(result.patches.stage_ops)]
    assert "PAD fused (2,0)x(1,1)" in stage[1].summary


@needs_host_cc
def test_mobilenet_stage_needs_far_less_ram_and_reports_the_recomputed_macs(patch_models):
    path = patch_models["mobilenet"]
    raw = _raw(path, 3)
    expected = _micro(path, raw)
    unpatched, plain, _ = _c_outputs(path, raw, kernels="portable")
    patched, result, reports = _c_outputs(path, raw, kernels="portable", patches=4)
    np.testing.assert_array_equal(unpatched, expected)
    np.testing.assert_array_equal(patched, expected)
    report = result.patches
    # Real numbers of this model: the 48x48x48 expansion beside its 48x48x8 input made the
    # peak; patched, those never exist in full, and the stage ends at its 24x24x48 output.
    assert report.stage_output == (24, 24, 48)
    assert report.arena_bytes_unpatched == plain.arena_bytes == 110_608
    assert report.arena_bytes == result.arena_bytes == 46_848
    assert result.arena_bytes < 0.45 * plain.arena_bytes
    assert report.macs_unpatched == plain.macs and result.macs == plain.macs + report.extra_macs
    assert report.extra_macs == 603_072
    assert report.saved_bytes == 110_608 - 46_848
    assert f"{report.cycles_factor:.4f}" == f"{result.macs / plain.macs:.4f}"
    summary = report.summary()
    assert "patches 4x4" in summary and "110,608 -> 46,848 B (-63,760)" in summary
    assert "+603,072 MACs" in summary and "MAC-based" in summary
    written = reports["codegen"]
    assert written["patches"]["extra_macs"] == 603_072
    assert written["patches"]["arena_bytes_unpatched"] == 110_608
    assert written["ram"]["arena"] == 46_848 and "cycles_rule" in written["patches"]
    ops = reports["ops"]["ops"]
    assert ops[0]["op"] == "PATCHES" and ops[0]["macs"] == report.extra_macs + sum(
        record.macs for record in plain.op_records[:len(report.stage_ops)])


@needs_host_cc
def test_samples_checked_by_the_generated_c_match_tflite_micro(patch_models, tmp_path):
    """The --samples path: NAME_samples.c holds TFLite Micro's outputs; the patched C meets them."""
    from edgeship.firmware import generate_c as generate_with_samples

    generate_with_samples(CodegenConfig(model=str(patch_models["mobilenet"]), out=str(tmp_path),
                                        samples=4, patches=3, kernels="portable"))
    harness = tmp_path / "check.c"
    harness.write_text(
        '#include "model.h"\n#include "model_samples.h"\n'
        "int count_mismatches(void) {\n"
        "  int8_t output[MODEL_OUTPUT_SIZE];\n  int sample, i, wrong = 0;\n"
        "  for (sample = 0; sample < MODEL_SAMPLE_COUNT; ++sample) {\n"
        "    model_run(model_sample_inputs[sample], output);\n"
        "    for (i = 0; i < MODEL_OUTPUT_SIZE; ++i) {\n"
        "      wrong += output[i] != model_sample_outputs[sample][i];\n    }\n  }\n"
        "  return wrong;\n}\n")
    library = compile_shared_library([tmp_path / "model.c", tmp_path / "model_samples.c",
                                      harness], tmp_path / "libcheck.so")
    import ctypes

    assert ctypes.CDLL(str(library)).count_mismatches() == 0


def test_auto_picks_the_smallest_grid_under_max_ram(patch_models):
    path = patch_models["mobilenet"]
    by_grid = {grid: _plans(path, grid)[1].arena_bytes for grid in range(2, 9)}
    # A budget between the 2x2 and 3x3 buffers: 3x3 is the smallest grid that fits (a finer
    # grid only if its buffer is what fits, since buffers need not fall with N).
    budget = (by_grid[2] + by_grid[3]) // 2
    assert by_grid[3] <= budget < by_grid[2]
    _, plan, report = _plans(path, "auto", budget)
    assert report.grid == 3 and report.chosen_by == "auto" and plan.arena_bytes <= budget
    # A budget the model meets unpatched: no patches.
    unpatched = _plans(path, "off")[1].arena_bytes
    ops, plan, report = _plans(path, "auto", unpatched)
    assert report is None and plan.arena_bytes == unpatched
    assert not any(isinstance(low, PatchedStage) for low in ops)


def test_refusals_name_the_problem(patch_models):
    path = patch_models["mobilenet"]
    smallest = min(_plans(path, grid)[1].arena_bytes for grid in range(2, 9))
    with pytest.raises(UserInputError, match=r"no patch grid fits --max-ram 20000 B"):
        _plans(path, "auto", 20_000)
    assert smallest > 20_000
    with pytest.raises(UserInputError, match="over --max-ram"):
        _plans(path, "off", 40_000)
    with pytest.raises(UserInputError, match="needs --max-ram"):
        _plans(path, "auto")
    with pytest.raises(UserInputError, match="first op is FULLY_CONNECTED"):
        _plans(patch_models["dense"], 2)
    with pytest.raises(UserInputError, match="smaller than a 30x30 grid"):
        _plans(patch_models["stage"], 30)
    with pytest.raises(UserInputError, match="patches must be off, auto or a grid size"):
        CodegenConfig(model="m.tflite", out="o", patches="many")
    with pytest.raises(UserInputError, match="max_ram"):
        CodegenConfig(model="m.tflite", out="o", max_ram="lots")
    assert stage_length(read_graph(patch_models["dense"].read_bytes()),
                        lower_graph(read_graph(patch_models["dense"].read_bytes()))) == 0


def test_flags_come_from_the_config_fields():
    parser = argparse.ArgumentParser()
    add_options(parser, CodegenConfig)
    args = parser.parse_args(["--patches", "auto", "--max-ram", "40KB"])
    values = option_values(args, CodegenConfig)
    assert values["patches"] == "auto" and values["max_ram"] == 40 * 1024
    config = CodegenConfig(model="m.tflite", out="o", patches="4", max_ram="40KB")
    assert config.max_ram == 40_960 and CodegenConfig(model="m", out="o").patches == "off"


@needs_host_cc
@pytest.mark.skipif(not VWW.is_file(), reason="MLPerf Tiny VWW model not in ../shared")
def test_mlperf_vww_with_patches_is_bit_exact_in_less_ram():
    raw = _raw(VWW, 2)
    unpatched, plain, _ = _c_outputs(VWW, raw, kernels="portable")
    patched, result, _ = _c_outputs(VWW, raw, kernels="portable", patches="auto",
                                 max_ram="32KB")
    np.testing.assert_array_equal(patched, unpatched)
    assert plain.arena_bytes == 36_880
    assert result.arena_bytes <= 32 * 1024 < plain.arena_bytes
    assert result.patches.grid == 5 and result.patches.stage_output == (24, 24, 16)


@needs_arm
def test_patched_model_is_bit_exact_on_cortex_m4_in_qemu(patch_models, tmp_path):
    from edgeship.firmware import generate_c as generate_with_samples

    generated = tmp_path / "generated"
    generate_with_samples(CodegenConfig(model=str(patch_models["stage"]), out=str(generated),
                                        samples=4, patches=3, target="cortex-m4"))
    completed = subprocess.run(["make", "-C", str(QEMU_EXAMPLE), "run",
                                f"GENERATED={generated}", f"BUILD={tmp_path / 'build'}"],
                               check=False, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "matches: 4/4" in completed.stdout
