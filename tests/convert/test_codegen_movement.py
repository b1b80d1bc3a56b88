"""codegen of data-movement ops and folded shape arithmetic: bit-exact with TFLite Micro.

Two tiny untrained Keras models, converted once per session: an int8 one whose branches
cover CONCATENATION, TRANSPOSE, SPLIT, SPLIT_V, STRIDED_SLICE (negative strides, shrinking
axes), SLICE, GATHER (constant indices and ARG_MAX's indices at run time), SPACE_TO_DEPTH,
DEPTH_TO_SPACE, RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR (half-pixel, align-corners and
legacy), MIRROR_PAD (reflect and symmetric), PADV2, PACK, EXPAND_DIMS, and the SHAPE ->
STRIDED_SLICE -> PACK -> RESHAPE chains of Keras Reshape layers with a dynamic batch, which
codegen folds away; and a 16x8 one with TRANSPOSE, SPLIT, SPLIT_V, UNPACK, PACK,
STRIDED_SLICE, PAD, SLICE, RESIZE_NEAREST_NEIGHBOR and CONCATENATION of int16 tensors.
"""

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgeship.convert.codegen import CodegenConfig, generate_c, lower_graph, read_graph
from edgeship.convert.codegen.lowering.fold import fold_constants
from edgeship.errors import UserInputError
from edgeship.runtime.backends import open_backend

needs_host_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                   reason="no host C compiler")

INT8_OPS = {"CONCATENATION", "TRANSPOSE", "SPLIT", "SPLIT_V", "STRIDED_SLICE", "SLICE", "GATHER",
            "ARG_MAX", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "RESIZE_NEAREST_NEIGHBOR",
            "RESIZE_BILINEAR", "MIRROR_PAD", "PADV2", "PACK", "EXPAND_DIMS", "RESHAPE", "SHAPE"}
INT16_OPS = {"TRANSPOSE", "SPLIT", "SPLIT_V", "UNPACK", "PACK", "STRIDED_SLICE", "PAD", "SLICE",
             "RESIZE_NEAREST_NEIGHBOR", "CONCATENATION", "RESHAPE", "SHAPE"}
SHAPE_OPS = {"SHAPE"}  # what folding must remove (with the int32 STRIDED_SLICE and PACK after it)


def _reshaped(keras, tensor):
    """A Keras Reshape with a dynamic batch: SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE."""
    return keras.layers.Reshape((int(np.prod(tensor.shape[1:])),))(tensor)


def _int8_model(tf, keras):
    layers = keras.layers

    def op(function):
        return layers.Lambda(function)

    inputs = keras.Input((8, 8, 3))
    wide = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    narrow = layers.Conv2D(4, 1)(inputs)
    joined = layers.Concatenate()([wide, narrow])
    moved = op(lambda t: tf.transpose(t, [0, 2, 1, 3]))(joined)
    first, second = op(lambda t: tf.split(t, 2, axis=-1))(moved)
    left, right = op(lambda t: tf.split(t, [3, 5], axis=1))(moved)  # ReLU'd channels and not
    strided = op(lambda t: t[:, 1:7:2, ::-1, 1:])(second)
    scores = layers.Flatten()(layers.Conv2D(1, 8)(inputs))
    branches = [
        joined, strided,
        op(lambda t: tf.pad(t, [[0, 0], [1, 2], [2, 1], [0, 0]], mode="REFLECT"))(strided),
        op(lambda t: tf.pad(tf.gather(t, [3, 0, 2, 2], axis=-1), [[0, 0], [0, 1], [1, 0], [0, 0]],
                            mode="SYMMETRIC"))(second),
        op(lambda t: tf.pad(t, [[0, 0], [1, 1], [0, 2], [0, 0]], constant_values=0.5))(second),
        op(lambda t: tf.stack([t[0], t[1]], axis=1))([first, second]),
        op(lambda t: tf.gather(t[0], tf.argmax(t[1], axis=-1, output_type=tf.int32), axis=2,
                               batch_dims=1))([narrow, scores]),
        op(lambda t: tf.slice(t, [0, 1, 2, 0], [-1, 3, 4, 2]))(
            layers.UpSampling2D(2, interpolation="bilinear")(left)),
        op(lambda t: tf.image.resize(t, (5, 7)))(left),
        op(lambda t: tf.compat.v1.image.resize_bilinear(t, (7, 3), align_corners=True))(right),
        op(lambda t: tf.compat.v1.image.resize_bilinear(t, (4, 11)))(right),
        op(lambda t: tf.expand_dims(t[:, :, 0, :], 1))(
            op(lambda t: tf.nn.depth_to_space(tf.nn.space_to_depth(t, 2), 4))(joined)),
        layers.UpSampling2D(2)(right),
        op(lambda t: tf.compat.v1.image.resize_nearest_neighbor(t, (7, 5), align_corners=True))(
            left),
        op(lambda t: tf.compat.v1.image.resize_nearest_neighbor(t, (4, 13)))(right)]
    flat = [_reshaped(keras, branch) for branch in branches]
    groups = [layers.Concatenate()(flat[start:start + 5]) for start in range(0, len(flat), 5)]
    return keras.Model(inputs, layers.Concatenate()(groups))


def _int16_model(tf, keras):
    layers = keras.layers

    def op(function):
        return layers.Lambda(function)

    inputs = keras.Input((6, 8, 4))
    moved = op(lambda t: tf.transpose(t, [0, 2, 1, 3]))(inputs)
    first, second = op(lambda t: tf.split(t, 2, axis=-1))(moved)
    left, right = op(lambda t: tf.split(t, [2, 4], axis=2))(first)
    strided = op(lambda t: t[:, ::-2, 1:, :])(second)
    branches = [op(lambda t: tf.pad(t, [[0, 0], [1, 0], [0, 2], [1, 1]]))(strided),
                layers.UpSampling2D(2)(left),
                op(lambda t: tf.stack(tf.unstack(t, axis=1)[::-1], axis=-1))(first),
                op(lambda t: tf.slice(t, [0, 1, 0, 1], [-1, 4, 3, 1]))(moved), right]
    return keras.Model(inputs, layers.Concatenate()([_reshaped(keras, b) for b in branches]))


def _convert(tf, model, samples: np.ndarray, int16: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([samples[i:i + 1]] for i in range(len(samples)))
    ops = tf.lite.OpsSet
    if int16:
        converter.target_spec.supported_ops = [
            ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int16
    else:
        converter.target_spec.supported_ops = [ops.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def _smooth_images(count: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Real-looking inputs: gradients and blobs with a little noise, not white noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]),
                             indexing="ij")
    images = []
    for _ in range(count):
        a, b, c = rng.normal(size=3)
        base = np.sin(3 * a * rows + 2 * b * cols) + c * np.exp(-(rows ** 2 + cols ** 2) * 4)
        channels = base[..., None] * rng.uniform(0.5, 1.5, shape[2])
        images.append(channels + rng.normal(scale=0.1, size=shape))
    return np.asarray(images, np.float32)


@pytest.fixture(scope="session")
def movement_models(tmp_path_factory) -> dict[str, Path]:
    from edgeship.deps import import_tf_keras

    tf, keras = import_tf_keras()
    tf.random.set_seed(0)
    folder = tmp_path_factory.mktemp("movement")
    paths = {}
    for name, build, shape, int16 in (("int8", _int8_model, (8, 8, 3), False),
                                      ("int16", _int16_model, (6, 8, 4), True)):
        samples = np.concatenate([_smooth_images(24, shape, 0),
                                  np.random.default_rng(1).normal(size=(8, *shape))])
        paths[name] = folder / f"movement_{name}.tflite"
        paths[name].write_bytes(_convert(tf, build(tf, keras), samples.astype(np.float32),
                                         int16))
    return paths


def _raw_inputs(path: Path, count: int) -> np.ndarray:
    """Full-range random raw inputs, then smooth images quantized, in the model's input type."""
    with open_backend("tflm", path) as backend:
        info = backend.inputs()[0]
    dtype = np.dtype(info.dtype)
    bounds = np.iinfo(dtype)
    noise = np.random.default_rng(2).integers(bounds.min, bounds.max + 1,
                                              (count, *info.shape[1:]))
    smooth = _smooth_images(count, tuple(info.shape[1:]), 3) / info.scale + info.zero_point
    smooth = np.clip(np.round(smooth), bounds.min, bounds.max)
    return np.concatenate([noise, smooth]).astype(dtype)


def _assert_bit_exact(path: Path) -> np.ndarray:
    raw = _raw_inputs(path, 12)
    outputs = {}
    for backend_name in ("c", "tflm"):
        with open_backend(backend_name, path) as backend:
            outputs[backend_name] = np.asarray(backend.infer_raw(raw)).reshape(len(raw), -1)
    np.testing.assert_array_equal(outputs["c"], outputs["tflm"])
    assert outputs["c"].dtype == raw.dtype
    # Not a constant function: different inputs, different outputs, and every value moves
    # but the padding (a quarter of the int16 model's output).
    assert len({row.tobytes() for row in outputs["c"]}) == len(raw)
    assert np.mean(outputs["c"].std(axis=0) > 0) > 0.75
    return outputs["c"]


@needs_host_cc
@pytest.mark.parametrize(("name", "expected_ops"), (("int8", INT8_OPS), ("int16", INT16_OPS)))
def test_movement_ops_are_bit_exact_with_tflite_micro(movement_models, name, expected_ops):
    path = movement_models[name]
    graph = read_graph(path.read_bytes())
    assert expected_ops <= set(graph.op_names())
    lowered = lower_graph(graph)
    assert not SHAPE_OPS & {low.name for low in lowered}
    _assert_bit_exact(path)


def test_folding_drops_the_shape_chain_and_numbers_the_ops_in_order(movement_models):
    graph = read_graph(movement_models["int8"].read_bytes())
    folded = fold_constants(graph)
    assert "SHAPE" in graph.op_names() and "SHAPE" not in folded.op_names()
    assert [op.index for op in folded.operators] == list(range(len(folded.operators)))
    # Every int32 op of the chain is gone; the RESHAPEs it fed now have constant shapes.
    assert all(graph.tensors[op.outputs[0]].dtype != "int32" or op.name == "ARG_MAX"
               for op in folded.operators)
    for op in folded.operators:
        if op.name == "RESHAPE":
            shape = folded.tensors[op.inputs[1]]
            output = folded.tensors[op.outputs[0]]
            known = int(np.prod([side for side in shape.data if side != -1]))
            assert tuple(output.size // known if side == -1 else side
                         for side in shape.data.tolist()) == output.shape
    assert fold_constants(folded) is folded  # nothing left to fold
    # The folded graph's tensors are the model's, only the folded outputs gained values.
    assert len(folded.tensors) == len(graph.tensors)
    assert all(mine.shape == theirs.shape for mine, theirs in zip(folded.tensors, graph.tensors))


@needs_host_cc
def test_generated_ops_and_hooks_count_the_ops_left_after_folding(movement_models):
    with tempfile.TemporaryDirectory() as folder:
        result = generate_c(CodegenConfig(model=str(movement_models["int8"]), out=folder))
        listed = json.loads((Path(folder) / "model_ops.json").read_text())["ops"]
        source = (Path(folder) / "model.c").read_text()
    assert [entry["index"] for entry in listed] == list(range(len(listed)))
    assert "SHAPE" not in {entry["op"] for entry in listed}
    assert f"EDGESHIP_OP_HOOK({len(listed)});" in source
    assert f"EDGESHIP_OP_HOOK({len(listed) + 1});" not in source
    assert result.op_records[-1].index == len(listed) - 1
    kernels = {entry["kernel"] for entry in listed}
    assert {"copy_rows", "concatenation", "split", "gather", "resize_bilinear", "pad"} <= kernels


def _with_op(graph, name: str, change) -> object:
    """The graph with the first `name` op (or its tensors) changed by change(graph, op)."""
    op = next(op for op in graph.operators if op.name == name)
    return change(graph, op)


def _replace_tensor(graph, index: int, **fields):
    tensors = list(graph.tensors)
    tensors[index] = dataclasses.replace(tensors[index], **fields)
    return dataclasses.replace(graph, tensors=tensors)


def test_what_tflite_micro_refuses_is_refused_by_name(movement_models):
    graph = read_graph(movement_models["int8"].read_bytes())

    def renamed(graph, op, name="TILE"):
        operators = [dataclasses.replace(other, name=name) if other is op else other
                     for other in graph.operators]
        return dataclasses.replace(graph, operators=operators)

    # TILE has no TFLite Micro kernel: refused by name, with the supported list.
    with pytest.raises(UserInputError, match=r"does not support op\(s\) TILE"):
        lower_graph(_with_op(graph, "TRANSPOSE", renamed))
    # int8 CONCATENATION needs its inputs quantized like its output.
    requantized = _with_op(graph, "CONCATENATION", lambda graph, op: _replace_tensor(
        graph, op.inputs[1], scales=graph.tensors[op.inputs[1]].scales * 2))
    with pytest.raises(UserInputError, match=r"op \d+ \(CONCATENATION\): input 2 .* equal"):
        lower_graph(requantized)
    # TFLite Micro's GATHER and DEPTH_TO_SPACE compute int8 only.
    graph16 = read_graph(movement_models["int16"].read_bytes())
    with pytest.raises(UserInputError, match=r"GATHER \(int16 -> int16\)"):
        lower_graph(_with_op(graph16, "TRANSPOSE", lambda g, op: renamed(g, op, "GATHER")))
    # A computed permutation (TFLite Micro needs it constant).
    computed = _with_op(graph, "TRANSPOSE", lambda graph, op: _replace_tensor(
        graph, op.inputs[1], data=None))
    with pytest.raises(UserInputError, match=r"op \d+ \(TRANSPOSE\) has computed permutations"):
        lower_graph(computed)


def test_strided_slice_follows_tflite_micro_index_rules():
    """Negative begin/end, masks and strides against numpy's slicing of the same bounds."""
    from types import SimpleNamespace

    from edgeship.convert.codegen.lowering.movement import strided_slice_indices, take

    data = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    cases = (  # begin, end, strides, begin_mask, end_mask, shrink, numpy's equivalent
        ((1, 0, 0), (3, 5, 6), (1, 2, 3), 0, 0, 0, np.s_[1:3, 0:5:2, 0:6:3]),
        ((-1, 4, 0), (0, 0, 6), (-1, -2, 1), 0, 0, 0, np.s_[-1:0:-1, 4:0:-2, :]),
        ((9, -2, 5), (0, 0, -9), (-1, 1, -2), 0, 0b110, 0, np.s_[9:0:-1, -2:, 5::-2]),
        ((2, 1, -1), (3, 3, 0), (1, 1, 1), 0b001, 0, 0b100, np.s_[:3, 1:3, -1]))
    for begin, end, strides, begin_mask, end_mask, shrink, expected in cases:
        op = SimpleNamespace(index=0, options=SimpleNamespace(
            beginMask=begin_mask, endMask=end_mask, shrinkAxisMask=shrink))
        indices, shrinks = strided_slice_indices(op, data.shape, begin, end, strides)
        result = take(data, indices)
        if any(shrinks):
            result = result.reshape([index.size for index, gone in zip(indices, shrinks)
                                     if not gone])
        np.testing.assert_array_equal(result, data[expected])
