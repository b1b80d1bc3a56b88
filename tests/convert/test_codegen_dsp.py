"""codegen's dsp kernel variant and zero-weight (sparse) storage: bit-exact with TFLite Micro
on the host (the plain-C build of the intrinsics) and on an emulated Cortex-M4/M33 (the ACLE
build), on tiny untrained models that cover the kernel paths: conv (kernel sizes 1x1, 3x3,
5x4, 2x3; strides 1 and 2; same and valid padding; 1, 3 and odd input channels; odd output
channels), depthwise (multiplier 1 and 2; 3x3 stride 1 and 2, 5x3 stride 2, 2x2; channel
counts not a multiple of 4), fully connected (depth a multiple of 8 or not), ADD of two
activations with a fused ReLU (the dsp table path, an element count not a multiple of 4),
a pruned model
whose layers go sparse, and a GEMM model (pointwise with 6 and 7 input channels, through
im2col, and with 8, read in place at stride 2; 3x3 stride 2 with odd output channels; fused
ReLU6; a dead filter with a large bias, stored as a constant channel), a model of 3x3
depthwise layers of every row width the pair layout treats apart (stride 1 and 2, a clamped
activation range); and the dsp requantizations (with the output offset folded in; on doubled
accumulators) against TFLite's on random and extreme values."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeship.c_backend import compile_generated
from edgeship.convert.codegen import CodegenConfig, generate_c, lower_graph, plan_memory, read_graph
from edgeship.convert.codegen.kernels import dsp_variant, kernel_variant, resolve_kernels
from edgeship.convert.codegen.lowering.sparse import decode_sparse, encode_sparse
from edgeship.convert.codegen.plan import scratch_key
from edgeship.errors import UserInputError
from edgeship.runtime.backends import open_backend

needs_host_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                   reason="no host C compiler")
needs_profile = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None
    or any(__import__("importlib").util.find_spec(name) is None
           for name in ("unicorn", "capstone", "elftools")),
    reason="needs arm-none-eabi-gcc, unicorn, capstone and pyelftools (scripts/setup.sh)")


def _export(model, input_shape, path: Path) -> Path:
    from edgeship.convert.tflite import export_tflite

    samples = np.random.default_rng(1).uniform(-1, 1, (32, *input_shape)).astype(np.float32)
    path.write_bytes(export_tflite(model, representative_samples=samples))
    return path


def _randomize_biases(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if len(weights) == 2:
            layer.set_weights([weights[0], rng.normal(0, 0.1, weights[1].shape)])


def _prune(model, fraction: float, seed: int) -> None:
    """Zero the smallest `fraction` of each conv/dense kernel (what --prune leaves)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if len(weights) == 2 and "depthwise" not in layer.name:
            kernel = weights[0] * rng.uniform(0.5, 1.5, weights[0].shape)
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), fraction)] = 0
            layer.set_weights([kernel, weights[1]])


@pytest.fixture(scope="module")
def layer_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny int8 models, untrained (random weights and biases reach every code path)."""
    from edgeship.deps import import_tf_keras

    tensorflow, keras = import_tf_keras()
    tensorflow.random.set_seed(0)
    layers = keras.layers
    folder = tmp_path_factory.mktemp("dsp")
    mixed = keras.Sequential([
        layers.Input((11, 13, 3)),
        layers.Conv2D(5, 3, strides=2, padding="same", activation="relu"),    # 3x3 s2 same, odd out
        layers.Conv2D(7, 1, activation="relu"),                               # 1x1, 5 channels in
        layers.DepthwiseConv2D(3, padding="same", activation="relu"),         # mult 1, odd channels
        layers.DepthwiseConv2D(2, depth_multiplier=2, strides=2),             # mult 2 (portable)
        layers.Conv2D(5, (2, 3), padding="valid"),                            # 2x3 valid
        layers.Flatten(),
        layers.Dense(10, activation="relu"),                                  # depth 10 (not %4)
        layers.Dense(4)])
    kws_like = keras.Sequential([
        layers.Input((14, 8, 1)),
        layers.Conv2D(8, (5, 4), strides=2, padding="same", activation="relu"),  # 1 input channel
        layers.DepthwiseConv2D(3, padding="same", activation="relu"),            # mult 1, 8 ch
        layers.Conv2D(16, 1, activation="relu"),                                 # 1x1 direct
        layers.GlobalAveragePooling2D(),
        layers.Dense(5)])                                                        # depth 16
    depthwise = keras.Sequential([
        layers.Input((9, 10, 6)),
        layers.DepthwiseConv2D((5, 3), strides=2, padding="same"),  # generic taps, 6 channels
        layers.DepthwiseConv2D(3, padding="same", activation="relu"),  # 3x3, 6 channels
        layers.Conv2D(7, 1, activation="relu"),                     # 1x1, 6 channels: im2col
        layers.DepthwiseConv2D(2, padding="valid"),                 # 7 channels, 2x2
        layers.Flatten(),
        layers.Dense(3)])
    pruned = keras.Sequential([
        layers.Input((8, 8, 8)),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.Conv2D(24, 1, activation="relu"),
        layers.Flatten(),
        layers.Dense(6)])  # depth 1536: gaps over 255 taps need bridge entries
    inputs = keras.Input((7, 7, 3))
    pointwise = layers.Conv2D(7, 1, activation="relu")(inputs)  # 1x1, odd channels in and out
    branch = layers.DepthwiseConv2D(3, padding="same", activation="relu")(pointwise)  # 3x3 s1
    branch = layers.Conv2D(7, 1)(branch)
    summed = layers.ReLU()(layers.Add()([pointwise, branch]))  # ADD + ReLU, 343 values
    tail = layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)(summed)
    tail = layers.DepthwiseConv2D(3, strides=2, padding="same")(tail)  # 3x3 s2, 14 channels
    residual = keras.Model(inputs, layers.Dense(4)(layers.Flatten()(tail)))
    gemm = keras.Sequential([
        layers.Input((9, 7, 6)),
        layers.Conv2D(5, 1, activation="relu6"),                              # 1x1, 6 in: im2col
        layers.Conv2D(7, 3, strides=2, padding="same", activation="relu6"),   # 3x3 s2, odd out
        layers.Conv2D(8, 1, activation="relu6"),                              # 1x1, 7 in, ReLU6
        layers.Conv2D(12, 1, strides=2),                                      # 1x1 s2, direct
        layers.Flatten(),
        layers.Dense(6, activation="relu6"),                                  # depth 72
        layers.Dense(3)])
    # 3x3 depthwise layers (the pair layout) of every row-width class: at stride 1, 4k + 3
    # with a fused ReLU6 (its range shared with the concatenation: clamped), 4k + 1 (four,
    # then five), 4k + 2 (overlapping fours) at row stride 2, 1, 2, 3, 5; at stride 2, 6 and 5
    # (overlapping fours) and 4; 6 channels (band copy: four, then one at a time); stride 2
    # with 3 and 2 outputs a row and a 3x2 window stay on the four-channel layout.
    image = keras.Input((9, 11, 6))

    def crop(width):
        return layers.Cropping2D(((0, 0), (0, 11 - width)))(image) if width < 11 else image

    branches = [layers.DepthwiseConv2D(kernel, padding=padding, strides=strides,
                                       activation=activation)(crop(width))
                for width, kernel, padding, strides, activation in (
                    (11, 3, "same", 1, "relu6"), (11, 3, "valid", 1, None),
                    (6, 3, "same", (2, 1), None), (3, 3, "valid", 1, None),
                    (2, 3, "same", 1, "relu"), (5, 3, "valid", 1, None),
                    (5, 3, "same", 1, "relu"), (11, 3, "same", 2, "relu6"),
                    (11, 3, "valid", 2, None), (9, 3, "valid", 2, None), (7, 3, "valid", 2, None),
                    (4, 3, "same", 2, None), (11, (3, 2), "same", 1, None))]
    flat = [layers.Flatten()(branch) for branch in branches]  # TFLM: <= 10 inputs a concat
    widths = keras.Model(image, layers.Concatenate()([layers.Concatenate()(flat[:7]),
                                                       layers.Concatenate()(flat[7:])]))
    # A ReLU6 conv whose output range is the concatenation's (wider: the linear branch's
    # negative values), so its activation clamps inside int8; 35 pixels (three at a time,
    # two left), kernel rows of whole words (3 x 4 channels).
    image = keras.Input((7, 5, 4))
    clamped_conv = layers.Conv2D(6, 3, padding="same", activation="relu6")(image)
    linear = layers.Conv2D(6, 1)(image)
    clamped = keras.Model(image, layers.Dense(3)(layers.Flatten()(
        layers.Concatenate()([clamped_conv, linear]))))
    # Sparse convolutions (pruned) whose pixels leave 3, 0, 1 and 2 of dsp_conv_2d_sparse's
    # groups of four: 3x3 same (im2col), 1x1 (in place), 1x1 at stride 2, 2x3 and 2x1 valid.
    pruned_tails = keras.Sequential([
        layers.Input((7, 9, 8)),
        layers.Conv2D(16, 3, padding="same", activation="relu"),    # 63 pixels
        layers.Conv2D(24, 1, activation="relu"),                    # 63, read in place
        layers.Conv2D(20, 1, strides=2),                            # 20, in place at stride 2
        layers.Conv2D(12, (2, 3), activation="relu"),               # 9
        layers.Conv2D(8, (2, 1)),                                   # 6
        layers.Flatten(),
        layers.Dense(4)])
    models = {}
    for seed, (name, model) in enumerate((("mixed", mixed), ("kws_like", kws_like),
                                          ("pruned", pruned), ("depthwise", depthwise),
                                          ("residual", residual), ("gemm", gemm),
                                          ("widths", widths), ("clamped", clamped),
                                          ("pruned_tails", pruned_tails))):
        _randomize_biases(model, seed)
        if name in ("pruned", "pruned_tails"):  # 8% left of the tails model: not constant
            _prune(model, 0.96 if name == "pruned" else 0.92, seed)
        if name == "gemm":  # a dead filter with a large bias: a constant channel
            kernel, bias = model.layers[2].get_weights()
            kernel[..., 3] = 0
            bias[3] = 2.5
            model.layers[2].set_weights([kernel, bias])
        models[name] = _export(model, model.input_shape[1:], folder / f"{name}_int8.tflite")
    return models


def _c_outputs(model: Path, kernels: str, raw: np.ndarray) -> tuple[np.ndarray, object]:
    """The generated C of one variant, compiled for the host (-Wall -Wextra -Werror), run."""
    backend, generated = compile_generated(model, kernels=kernels)
    try:
        return np.asarray(backend.infer_raw(raw)).reshape(len(raw), -1), generated
    finally:
        backend.close()


def _micro(model: Path, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    with open_backend("tflm", model) as backend:
        shape = tuple(backend.inputs()[0].shape[1:])
        raw = np.random.default_rng(seed).integers(-128, 128, (count, *shape), dtype=np.int8)
        return raw, np.asarray(backend.infer_raw(raw)).reshape(count, -1)


@needs_host_cc
@pytest.mark.parametrize("name", ("mixed", "kws_like", "pruned", "depthwise", "residual",
                                  "gemm", "widths", "clamped", "pruned_tails"))
@pytest.mark.parametrize("kernels", ("portable", "dsp"))
def test_variant_is_bit_exact_with_tflite_micro_on_the_host(layer_models, name, kernels):
    raw, expected = _micro(layer_models[name], 8, seed=2)
    generated, result = _c_outputs(layer_models[name], kernels, raw)
    np.testing.assert_array_equal(generated, expected)
    assert len({row.tobytes() for row in expected}) > 4  # not a constant function
    used = {record.kernel for record in result.op_records}
    if kernels == "dsp" and name not in ("pruned", "gemm", "widths", "clamped", "pruned_tails"):
        assert {"dsp_conv_2d", "dsp_depthwise_conv_2d"} <= used
    if name == "mixed":  # depth multiplier 2 and depth 10 stay portable
        assert "depthwise_conv_2d" in used and "fully_connected" in used
    if name == "kws_like" and kernels == "dsp":
        assert "dsp_fully_connected" in used  # depth 16
    if name == "depthwise" and kernels == "dsp":
        assert {"dsp_depthwise_conv_2d", "dsp_conv_2d"} <= used
    if name == "residual" and kernels == "dsp":  # mult 2 stays portable
        assert {"dsp_add", "dsp_depthwise_conv_2d", "depthwise_conv_2d"} <= used
    if name == "pruned":
        conv = "dsp_conv_2d_sparse" if kernels == "dsp" else "conv_2d_sparse"
        assert {conv, "fully_connected_sparse"} <= used
    if name == "gemm" and kernels == "dsp":  # every conv on the GEMM path, FC depth 72
        assert used >= {"dsp_conv_2d", "dsp_fully_connected"} and "conv_2d" not in used
    if name == "widths" and kernels == "dsp":  # every depthwise layer on a dsp layout
        assert "dsp_depthwise_conv_2d" in used and "depthwise_conv_2d" not in used


def _pair_layers(model: Path) -> list[tuple[dict, int]]:
    """(window, pairs) of each dsp depthwise op codegen would emit (pairs 0: the four-channel
    layout)."""
    lowered = kernel_variant("dsp").specialize_ops(lower_graph(read_graph(model.read_bytes())))
    return [(op.linear.window, op.arguments[9]) for op in lowered
            if op.kernel == "dsp_depthwise_conv_2d"]


def test_pair_layout_covers_every_row_width_class(layer_models):
    """The widths model reaches each path of the pair layout's rows (and the clamp)."""
    windows = _pair_layers(layer_models["widths"])
    widths = {(window["stride_w"], window["out_w"]) for window, pairs in windows if pairs}
    assert {(1, 1), (1, 2), (1, 3), (1, 5), (1, 6), (1, 9), (1, 11)} <= widths
    assert {(2, 4), (2, 5), (2, 6)} <= widths
    assert sum(pairs == 0 for _, pairs in windows) == 3  # the four-channel layout
    assert any((window["act_min"], window["act_max"]) != (-128, 127)
               for window, pairs in windows if pairs)  # clamped
    assert all(pairs == dsp_variant.pair_count(window) for window, pairs in windows if pairs)
    assert sum(window["stride_w"] == 2 for window, pairs in windows if pairs) == 3


def _conv_paths(model: Path) -> set[tuple]:
    """(pixels % 3, odd output channels, window path, clamped, ReLU-family requantization) of
    each staged dsp conv codegen would emit: the three-window path's cases."""
    lowered = kernel_variant("dsp").specialize_ops(lower_graph(read_graph(model.read_bytes())))
    paths = set()
    for op in lowered:
        if op.kernel != "dsp_conv_2d" or not op.arguments[6]:
            continue
        window, direct = op.linear.window, op.arguments[5]
        path = ("direct" if direct else "whole rows" if window["k_w"] * window["in_c"] % 4 == 0
                else "row tails")
        paths.add((window["out_h"] * window["out_w"] % 3, window["out_c"] % 2, path,
                   (window["act_min"], window["act_max"]) != (-128, 127), op.arguments[8]))
    return paths


def test_staged_conv_cases_cover_the_three_window_path(layer_models):
    """The bit-exact tests reach every case of dsp_conv_2d's three-window (3x2) path: one,
    two or no pixels repeated at the end, an odd last channel, windows read in place, widened
    from kernel rows of whole words or with leftover taps (conv_tap_order's tails), a
    clamped activation, both requantizations."""
    paths = set().union(*(_conv_paths(layer_models[name]) for name in
                          ("mixed", "kws_like", "depthwise", "residual", "gemm", "clamped")))
    assert {left for left, *_ in paths} == {0, 1, 2}
    assert any(odd for _, odd, *_ in paths)
    assert {path for _, _, path, *_ in paths} == {"direct", "whole rows", "row tails"}
    assert any(clamp for *_, clamp, _ in paths)
    assert {positive for *_, positive in paths} == {0, 1}


def test_sparse_conv_cases_cover_the_four_pixel_groups(layer_models):
    """dsp_conv_2d_sparse's cases are reached: 0 to 3 pixels left for the last group of
    four, windows read in place (at stride 1 and 2) and through im2col, both
    requantizations."""
    lowered = kernel_variant("dsp").specialize_ops(
        lower_graph(read_graph(layer_models["pruned_tails"].read_bytes())))
    cases = {(op.linear.window["out_h"] * op.linear.window["out_w"] % 4, op.arguments[6],
              op.linear.window["stride_w"], op.arguments[7])
             for op in lowered if op.kernel == "dsp_conv_2d_sparse"}
    assert {left for left, *_ in cases} == {0, 1, 2, 3}
    assert {(direct, stride) for _, direct, stride, _ in cases} >= {(0, 1), (1, 1), (1, 2)}
    assert {positive for *_, positive in cases} == {0, 1}


def _staged_flags(model: Path) -> list[int]:
    """The `staged` argument of each dsp conv and depthwise call codegen would emit."""
    lowered = kernel_variant("dsp").specialize_ops(lower_graph(read_graph(model.read_bytes())))
    position = {"dsp_conv_2d": 6, "dsp_depthwise_conv_2d": 8}
    return [op.arguments[position[op.kernel]] for op in lowered if op.kernel in position]


@needs_host_cc
def test_dsp_without_staged_constants_is_bit_exact_too(layer_models, monkeypatch):
    """The test models' layers stage their constants in scratch (SRAM); with staging off the
    kernels read them in place (flash), and must give the same integers."""
    assert set(_staged_flags(layer_models["gemm"])) == {1}
    monkeypatch.setattr(dsp_variant, "STAGE_BYTES", 0)
    for name in ("gemm", "depthwise", "widths"):
        assert set(_staged_flags(layer_models[name])) == {0}
        raw, expected = _micro(layer_models[name], 8, seed=4)
        generated, _ = _c_outputs(layer_models[name], "dsp", raw)
        np.testing.assert_array_equal(generated, expected)


def _conv_chunks(model: Path) -> list[tuple[int, int]]:
    """(out_c, chunk) of each dsp conv codegen would emit (chunk: channels staged at a time)."""
    lowered = kernel_variant("dsp").specialize_ops(lower_graph(read_graph(model.read_bytes())))
    return [(op.linear.window["out_c"], op.arguments[7]) for op in lowered
            if op.kernel == "dsp_conv_2d"]


@needs_host_cc
def test_dsp_conv_staged_in_channel_chunks_is_bit_exact(layer_models, monkeypatch):
    """Constants larger than STAGE_BYTES are staged a chunk of output channels at a time (an
    odd last channel in the last chunk); the integers must not change."""
    assert all(chunk == out_c for out_c, chunk in _conv_chunks(layer_models["gemm"]))
    monkeypatch.setattr(dsp_variant, "STAGE_BYTES", 300)
    for name in ("gemm", "mixed", "kws_like"):
        chunks = _conv_chunks(layer_models[name])
        assert any(0 < chunk < out_c for out_c, chunk in chunks), chunks
        assert any(out_c % 2 and chunk < out_c for out_c, chunk in chunks) or name != "gemm"
        raw, expected = _micro(layer_models[name], 8, seed=6)
        generated, _ = _c_outputs(layer_models[name], "dsp", raw)
        np.testing.assert_array_equal(generated, expected)


@needs_host_cc
def test_dsp_add_with_staged_tables_is_bit_exact(layer_models, monkeypatch):
    """The residual model's ADD (343 values) reads its tables in place; staged from 1 element
    up, it copies them into scratch first, and must give the same integers."""
    def add_scratch(model):
        lowered = kernel_variant("dsp").specialize_ops(
            lower_graph(read_graph(model.read_bytes())))
        return [op.scratch_bytes for op in lowered if op.kernel == "dsp_add"]

    assert add_scratch(layer_models["residual"]) == [0]
    monkeypatch.setattr(dsp_variant, "ADD_STAGE_ELEMENTS", 1)
    assert add_scratch(layer_models["residual"]) == [2048]
    raw, expected = _micro(layer_models["residual"], 16, seed=5)
    generated, _ = _c_outputs(layer_models["residual"], "dsp", raw)
    np.testing.assert_array_equal(generated, expected)


def test_max_ram_shrinks_dsp_staging_until_the_plan_fits(layer_models, tmp_path):
    """Staging constants in SRAM is for speed; under codegen --max-ram it shrinks (down to
    none) before the RAM limit is refused."""
    from edgeship.convert.codegen.order import order_for_memory

    model = layer_models["kws_like"]
    graph = read_graph(model.read_bytes())
    dsp = kernel_variant("dsp")
    lean = order_for_memory(graph, dsp.specialize_ops(lower_graph(graph), stage_bytes=0))[1]
    staged = generate_c(CodegenConfig(model=str(model), out=str(tmp_path / "staged"),
                                      target="cortex-m4"))
    assert staged.kernels == "dsp" and staged.arena_bytes > lean.arena_bytes
    fitted = generate_c(CodegenConfig(model=str(model), out=str(tmp_path / "fitted"),
                                      target="cortex-m4", max_ram=lean.arena_bytes))
    assert fitted.arena_bytes <= lean.arena_bytes
    with pytest.raises(UserInputError, match="RAM|max-ram|max_ram"):
        generate_c(CodegenConfig(model=str(model), out=str(tmp_path / "refused"),
                                 target="cortex-m4", max_ram=lean.arena_bytes // 4))


@needs_profile
def test_profile_with_max_ram_estimates_the_c_codegen_generates_under_it(layer_models):
    """`codegen --target ... --max-ram` prints an estimate of the C it wrote: profile_model
    with max_ram profiles the staging-fitted C, and the default C when nothing fits."""
    from edgeship.profile.run import ProfileConfig, profile_model

    config = ProfileConfig(model=str(layer_models["kws_like"]), target="cortex-m4")
    default = profile_model(config)
    lean_arena = default.ram["activations"] - 1
    fitted = profile_model(config, max_ram=lean_arena)
    assert fitted.ram["activations"] <= lean_arena < default.ram["activations"]
    assert fitted.output == default.output
    unfit = profile_model(config, max_ram=64)
    assert unfit.ram["activations"] == default.ram["activations"]


def test_dsp_specializations_and_weight_layouts():
    """Pairs of conv rows interleaved 4 bytes at a time, rows zero-padded; FC in fours."""
    weights = np.arange(3 * 6, dtype=np.int8).reshape(3, 6)
    laid = dsp_variant.interleave_rows(weights, 2, 8)
    # pair 0: group 0 (row 0 bytes 0-3, row 1 bytes 0-3), group 1 (row 0 4-5+pad, row 1...)
    assert laid[:8].tolist() == [0, 1, 2, 3, 6, 7, 8, 9]
    assert laid[8:16].tolist() == [4, 5, 0, 0, 10, 11, 0, 0]
    assert laid[16:].tolist() == [12, 13, 14, 15, 16, 17, 0, 0]  # the odd row alone
    rows = np.arange(5 * 4, dtype=np.int8).reshape(5, 4)
    assert dsp_variant.interleave_rows(rows, 4, 4).tolist() == rows.reshape(-1).tolist()


def test_sparse_encoding_round_trips_with_bridges_over_255_taps():
    rng = np.random.default_rng(0)
    weights = np.zeros((4, 1000), np.int8)
    weights[0, [0, 3, 999]] = [5, -7, 9]  # a 996-tap gap: three bridges
    weights[2] = rng.integers(-128, 128, 1000) * (rng.uniform(size=1000) < 0.1)
    sparse = encode_sparse(weights)
    assert sparse.counts[0] == 3 + 3 and sparse.counts[1] == 0 and sparse.counts[3] == 0
    assert sparse.deltas.max() <= 255
    np.testing.assert_array_equal(decode_sparse(sparse, 1000), weights)


def test_auto_picks_dsp_on_dsp_cores_and_portable_elsewhere(layer_models, tmp_path):
    assert resolve_kernels("auto", "cortex-m4") == "dsp"
    assert resolve_kernels("auto", "cortex-m33") == "dsp"
    assert resolve_kernels("auto", "cortex-m0plus") == "portable"
    assert resolve_kernels("auto", None) == "portable"
    assert resolve_kernels("portable", "cortex-m4") == "portable"
    with pytest.raises(ValueError, match="kernels must be one of"):
        CodegenConfig(model="m.tflite", out="c", kernels="fast")
    result = generate_c(CodegenConfig(model=str(layer_models["kws_like"]), out=str(tmp_path),
                                      target="cortex-m7"))
    assert result.kernels == "dsp"
    assert "es_dsp_conv_2d(" in (tmp_path / "model.c").read_text()


def test_scratch_buffers_never_share_bytes_with_live_tensors(layer_models):
    graph = read_graph(layer_models["mixed"].read_bytes())
    lowered = kernel_variant("dsp").specialize_ops(lower_graph(graph))
    plan = plan_memory(graph, lowered)
    with_scratch = [op for op in lowered if op.scratch_bytes]
    assert with_scratch and plan.scratch_bytes >= max(op.scratch_bytes for op in with_scratch)
    for op in with_scratch:
        kind, start = plan.storage[scratch_key(op.index)]
        assert kind == "arena" and start + op.scratch_bytes <= plan.arena_bytes
        for tensor in (*op.inputs, *op.outputs):
            kind, offset = plan.storage[tensor]
            if kind == "arena":
                end = offset + graph.tensors[tensor].size
                assert end <= start or start + op.scratch_bytes <= offset, (op.index, tensor)


def _profile(model: Path, target: str, kernels: str):
    from edgeship.profile.run import ProfileConfig, model_input, profile_model
    from tests.helpers import matches_tflite_micro

    report = profile_model(ProfileConfig(model=str(model), target=target, kernels=kernels))
    graph = read_graph(model.read_bytes())
    tensor = graph.tensors[graph.inputs[0]]
    input_bytes, _ = model_input(ProfileConfig(model=str(model)), tensor.size, tensor.scale,
                                 tensor.zero_point)
    assert matches_tflite_micro(model, input_bytes, report.output), (model.name, target, kernels)
    return report


@needs_profile
@pytest.mark.parametrize("target", ("cortex-m4", "cortex-m33"))
def test_dsp_is_bit_exact_on_emulated_dsp_cores(layer_models, target):
    for name in ("mixed", "kws_like", "depthwise", "residual", "gemm", "widths", "clamped",
                 "pruned_tails"):
        report = _profile(layer_models[name], target, "dsp")  # asserts: equals TFLite Micro
        assert report.kernels == "dsp" and report.target == target
        assert report.cycles > 0 and all(op.instructions > 0 for op in report.ops
                                         if op.macs > 0)


@needs_profile
def test_dsp_beats_portable_and_sparse_beats_dense_on_cortex_m4(layer_models, monkeypatch):
    kws_dsp = _profile(layer_models["kws_like"], "cortex-m4", "dsp")
    kws_portable = _profile(layer_models["kws_like"], "cortex-m4", "portable")
    assert kws_dsp.cycles < 0.8 * kws_portable.cycles
    sparse = _profile(layer_models["pruned"], "cortex-m4", "dsp")
    monkeypatch.setattr(dsp_variant, "DSP_RULE",
                        dataclasses.replace(dsp_variant.DSP_RULE, max_density=0.0))
    dense = _profile(layer_models["pruned"], "cortex-m4", "dsp")
    # At 4% entries sparse took 0.955x the dense cycles until the dense GEMM's staged layers
    # went three windows at a time (3x2 blocking) and stopped copying windows (im2col);
    # since then 1.048x (225,488 vs 215,134 cycles) at under half the flash: the trade
    # DSP_RULE makes (on VWW sparse is still faster: dsp_variant.DSP_RULE's measurements).
    assert sparse.cycles < 1.10 * dense.cycles
    assert sparse.flash["rodata"] < 0.5 * dense.flash["rodata"]


# What every check program starts with: stdio and a seeded xorshift64 generator, next().
_C_CHECK_PRELUDE = r"""
#include <stdio.h>
static uint64_t state = 88172645463325252ull;
static uint32_t next(void) {  /* xorshift64 */
  state ^= state << 13; state ^= state >> 7; state ^= state << 17;
  return (uint32_t)(state >> 16);
}
"""


def _run_c_check(tmp_path: Path, sections: tuple[str, ...], program: str) -> list[int]:
    """The dsp variant's C sections, _C_CHECK_PRELUDE and a check program compiled for the
    host and run: the integers it prints."""
    import subprocess

    dsp = kernel_variant("dsp")
    source = tmp_path / "check.c"
    source.write_text("".join(dsp.section(name)[1] for name in sections) + _C_CHECK_PRELUDE
                      + program)
    compiler = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([compiler, "-O2", "-std=c99", "-Wall", "-Werror", "-Wno-unused-function",
                    "-o", str(tmp_path / "check"), str(source)], check=True)
    output = subprocess.run([str(tmp_path / "check")], check=True, capture_output=True,
                            text=True).stdout
    return [int(value) for value in output.split()]


_REQUANTIZE_CHECK = r"""
int main(void) {
  static const int32_t edges[] = {0, 1, -1, 2, -2, INT32_MAX, INT32_MIN, INT32_MIN + 1,
                                  1 << 30, -(1 << 30), 12345, -12345};
  long checked = 0, wrong = 0;
  int e, i;
  for (e = 2; e <= 31; ++e) {
    for (i = 0; i < 200000; ++i) {
      const int32_t multiplier = i % 97 == 0 ? 0 : (int32_t)((1u << 30) | (next() >> 2));
      int32_t x = (int32_t)next();
      int32_t q[3];
      if (i < 12) x = edges[i];
      else if (i % 3 == 0) x >>= next() % 31;  /* small magnitudes too: ties occur there */
      if (i % 5 == 0) {  /* exact ties of the final rounding: x * M / 2^31 = (k + 1/2) 2^e */
        x = (int32_t)(((int64_t)(int32_t)(next() % 2001) - 1000) << (e - 1)) | 1;
      }
      q[0] = multiplier; q[1] = (int32_t)(1u << (e - 2)); q[2] = e - 1;
      if (multiplier == 0) { q[1] = 1; q[2] = 1; }
      wrong += es_requantize(x, multiplier, -e) != es_dsp_requantize(x, q);
      ++checked;
    }
  }
  printf("%ld %ld\n", checked, wrong);
  return 0;
}
"""


@needs_host_cc
def test_dsp_requantize_equals_tflite_on_random_and_extreme_values(tmp_path):
    """es_dsp_requantize (one SMLAL) against es_requantize (TFLite's two roundings), every
    right shift 2..31: 6 M values (random, extremes, small magnitudes, zero multipliers)."""
    checked, wrong = _run_c_check(tmp_path, ("common", "linear_common", "dsp_common"),
                                  _REQUANTIZE_CHECK)
    assert checked == 30 * 200000 and wrong == 0


_POSITIVE_CHECK = r"""
int main(void) {
  static const int32_t offsets[] = {-128, -7, 0, 23};
  long checked = 0, wrong = 0, negative = 0;
  int e, o, i;
  for (e = 2; e <= 31; ++e) {
    for (o = 0; o < 4; ++o) {
      const int64_t h2 = 2 * ((1LL << (e - 2)) + (int64_t)offsets[o] * (1LL << (e - 1)));
      for (i = 0; i < 20000; ++i) {
        int32_t multiplier = (int32_t)((1u << 30) | (next() >> 2));
        int32_t x = (int32_t)(next() >> 2) - (1 << 29);  /* |2x| < 2^31 */
        int32_t q[3], got, exact;
        if (i % 3 == 0) x >>= next() % 29;
        if (i % 7 == 0) {  /* a tie of the first rounding: x M = 2^30 (mod 2^31) */
          const int j = (int)(next() % 29) + 1;
          multiplier = (int32_t)((1u << 30) | (1u << (30 - j)) |
                                 (((uint32_t)next() << (31 - j)) & 0x3FFFFFFFu));
          x = (i % 2 ? -1 : 1) * (1 << j);
        }
        /* doubled_requant_words refuses a channel whose top word could overflow */
        if (2 * (h2 < 0 ? -h2 : h2) + 2 + (2LL * (1 << 29) * multiplier >> 32) >= (1LL << 31))
          continue;
        q[0] = multiplier; q[1] = (int32_t)h2; q[2] = e;
        got = es_dsp_requantize_positive(x, q);
        exact = es_requantize(x, multiplier, -e) + offsets[o];
        /* x >= 0: exact; x < 0: both at most the offset, so a ReLU's clamp agrees */
        wrong += x >= 0 ? got != exact : (got > offsets[o] || exact > offsets[o]);
        negative += x < 0;
        ++checked;
      }
    }
  }
  printf("%ld %ld %ld\n", checked, wrong, negative);
  return 0;
}
"""


@needs_host_cc
def test_dsp_positive_requantize_is_exact_where_relu_keeps_the_value(tmp_path):
    """es_dsp_requantize_positive (one SMMLAR on the doubled accumulator, no sign term): equal
    to TFLite's requantization for accumulators >= 0, and at most the output offset below 0
    (where a ReLU clamps both to act_min), for every right shift 2..31 and several offsets."""
    checked, wrong, negative = _run_c_check(
        tmp_path, ("common", "linear_common", "dsp_common", "dsp_conv_2d"), _POSITIVE_CHECK)
    assert checked > 1_000_000 and negative > 300_000 and wrong == 0


def test_requant_table_refuses_shifts_it_cannot_compute_exactly():
    def linear(multipliers, shifts):
        return dataclasses.make_dataclass("L", ["multipliers", "shifts"])(
            np.asarray(multipliers), np.asarray(shifts))

    table = dsp_variant.requant_table(linear([1 << 30, 0], [-5, 0]), 3)
    assert table.tolist() == [1 << 30, 8, 4, 0, 1, 1, 0, 1, 1]  # {M, 2^(e-2), e-1}, padded
    assert dsp_variant.requant_table(linear([1 << 30], [-1]), 1) is None
    assert dsp_variant.requant_table(linear([1 << 30], [0]), 1) is None


def test_add_tables_equal_the_reference_arithmetic_and_refuse_outside_it():
    """The dsp ADD's rescaling table entry for byte b is TFLite's rescaling of int8(b)."""
    table = dsp_variant.add_rescale_table(offset=3, left_shift=20, multiplier=1 << 30, shift=0)
    # multiplier 2^30 with shift 0 halves: (v + 3) * 2^20 / 2, exactly
    assert table[5] == (5 + 3) << 19 and table[0xFF] == (-1 + 3) << 19
    assert table[0x80] == (-128 + 3) << 19
    assert dsp_variant.reference_requantize(7, 1 << 30, -1) == 2  # 7 / 4 = 1.75 -> 2
    assert dsp_variant.reference_requantize(-6, 1 << 30, -1) == -2  # -1.5: ties away from 0
    assert dsp_variant.requant_words([1 << 30], [-1], 1) is None  # e = 1: not exact


def _dsp_requantize(x: int, q) -> int:
    """es_dsp_requantize in exact integers (int32 and int64 wrap-around as in C)."""
    def wrap(value, bits):
        return (value + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)

    low = 0x40000000 | (x & 0x80000000)
    high = wrap(int(q[1]) + (x >> 31), 32)
    total = wrap(((high % 2**32) << 32 | low) + x * int(q[0]), 64)
    return wrap(total >> 32, 32) >> int(q[2])


def test_requant_words_fold_the_output_offset_and_constant_channels_exactly():
    """With the output offset folded into the high word, es_dsp_requantize gives TFLite's
    requantize + offset for every accumulator within the bound; a dead channel gives its
    constant; a fold that could overflow int32 is refused."""
    rng = np.random.default_rng(3)
    multipliers = [1 << 30, 1_500_000_000, 2**31 - 1, 0, 1_320_764_593]
    shifts = [-2, -9, -20, -7, -27]
    bound = [2**31, 2**24, 2**20, 2**31, 2**30]
    constant = dsp_variant.reference_requantize(2**30, multipliers[4], shifts[4]) - 128
    table = dsp_variant.requant_words(multipliers, shifts, 6, -128, bound, {4: constant})
    assert table is not None and table[4 * 3] == 0
    q = table.reshape(6, 3)
    for channel in range(4):
        limit = min(bound[channel], 2**31 - 1)
        values = np.concatenate([rng.integers(-limit, limit, 3000), [0, 1, -1, limit, -limit]])
        for x in values.tolist():
            expected = dsp_variant.reference_requantize(x, multipliers[channel],
                                                        shifts[channel]) - 128
            assert _dsp_requantize(x, q[channel]) == expected, (channel, x)
    assert _dsp_requantize(2**30, q[4]) == constant
    assert _dsp_requantize(12345, q[5]) == -128  # padding channel: the offset alone
    # e = 27 with any live accumulator near 2^30: the offset cannot fold
    assert dsp_variant.requant_words([1 << 30], [-27], 1, -128, [2**30]) is None
    # the same channel bounded to 2^20: its result is always 0, stored as M = 0
    folded = dsp_variant.requant_words([1 << 30], [-27], 1, -128, [2**20])
    assert folded[0] == 0 and _dsp_requantize(2**20, folded) == -128


def _dsp_requantize_doubled(x2: int, q) -> int:
    """es_dsp_requantize_doubled in exact integers (SMMLAR: the top word of a 64-bit sum)."""
    high = ((int(q[1]) + (x2 >> 31)) + 2**31) % 2**32 - 2**31
    return ((high * 2**32 + x2 * int(q[0]) + 2**31) >> 32) >> int(q[2])


def test_doubled_requant_words_give_tflite_on_doubled_accumulators():
    """The pair layout's requantization (accumulators doubled, one SMMLAR) equals TFLite's
    requantize + offset for every accumulator within the bound, constant channels included;
    accumulators whose double or top word could overflow int32 are refused."""
    rng = np.random.default_rng(5)
    multipliers = [1 << 30, 1_500_000_000, 2**31 - 1, 0, 1_320_764_593, 1_100_000_000]
    shifts = [-2, -9, -20, -7, -27, -31]
    bound = [2**29, 2**24, 2**20, 2**29, 2**30 - 1, 2**29]
    constant = dsp_variant.reference_requantize(2**20, multipliers[4], shifts[4]) - 128
    table = dsp_variant.requant_words(multipliers, shifts, 7, -128, bound, {4: constant})
    doubled = dsp_variant.doubled_requant_words(table, bound)
    assert doubled is not None
    q = doubled.reshape(7, 3)
    for channel in (0, 1, 2, 3, 5):
        values = np.concatenate([rng.integers(-bound[channel], bound[channel], 3000),
                                 [0, 1, -1, bound[channel], -bound[channel]],
                                 # multiples of 2^(e - 1): ties where M = 2^30
                                 (rng.integers(-1000, 1000, 200) << max(-shifts[channel] - 1, 0))
                                 .clip(-bound[channel], bound[channel])])
        for x in values.tolist():
            expected = dsp_variant.reference_requantize(x, multipliers[channel],
                                                        shifts[channel]) - 128
            assert _dsp_requantize_doubled(2 * x, q[channel]) == expected, (channel, x)
    assert _dsp_requantize_doubled(2 * 12345, q[4]) == constant
    assert _dsp_requantize_doubled(-2 * 12345, q[6]) == -128  # padding channel: the offset
    assert dsp_variant.doubled_requant_words(table, [2**30] * 6) is None  # 2x overflows
    wide = dsp_variant.requant_words([1 << 30], [-24], 1, -128, [2**28])  # top word > 2^31
    assert wide is not None and dsp_variant.doubled_requant_words(wide, [2**28]) is None
