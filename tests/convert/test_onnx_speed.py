"""convert.onnx_speed: each rewrite fires on the zoo's shapes and ORT's int8 outputs stay bit-identical."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper

from edgeship.convert import onnx as convert_onnx
from edgeship.convert.onnx_speed import speed_up_int8_onnx
from edgeship.onnx_saturation import pair_sum_bounds, saturating_ops

# first convolutions of the zoo: (kernel, stride, pads, side), from the models' ONNX files
ZOO_FIRST_CONVS = {
    "lenet5": (5, 1, [2, 2, 2, 2], 28),
    "simple_cnn": (3, 1, [0, 0, 0, 0], 28),  # keras_cnn's too
    "dscnn": (3, 2, [0, 0, 1, 1], 28),
    "mobilenet_v2": (3, 2, [0, 0, 1, 1], 32),
}


def _float_model(kernel: int, stride: int, pads: list[int], side: int, pool: str) -> bytes:
    """image (N,side,side,1) -> Reshape NCHW -> Conv(1->6) Relu -> pool -> Conv -> GAP -> Gemm -> Softmax,
    the tf2onnx layout of the zoo; `pool` is "average" or "max" (2x2) or "none"."""
    rng = np.random.default_rng(kernel * 10 + stride)
    constants = {"w1": rng.normal(0, 0.3, (6, 1, kernel, kernel)), "b1": rng.normal(0, 0.1, 6),
                 "w3": rng.normal(0, 0.2, (8, 6, 3, 3)), "b3": rng.normal(0, 0.1, 8),
                 "wf": rng.normal(0, 0.3, (8, 10)), "bf": rng.normal(0, 0.1, 10)}
    initializers = [numpy_helper.from_array(value.astype(np.float32), name)
                    for name, value in constants.items()]
    initializers.append(numpy_helper.from_array(np.array([-1, 1, side, side], np.int64), "nchw"))
    nodes = [helper.make_node("Reshape", ["image", "nchw"], ["x"]),
             helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[kernel, kernel],
                              strides=[stride, stride], pads=pads),
             helper.make_node("Relu", ["c1"], ["r1"])]
    if pool == "none":
        nodes.append(helper.make_node("Identity", ["r1"], ["p1"]))
    else:
        nodes.append(helper.make_node({"average": "AveragePool", "max": "MaxPool"}[pool], ["r1"], ["p1"],
                                      kernel_shape=[2, 2], strides=[2, 2]))
    nodes += [helper.make_node("Conv", ["p1", "w3", "b3"], ["c3"], kernel_shape=[3, 3], strides=[2, 2]),
              helper.make_node("Relu", ["c3"], ["r3"]),
              helper.make_node("GlobalAveragePool", ["r3"], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)]
    graph = helper.make_graph(
        nodes, "zoo_like",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", side, side, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 10])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _images(mnist5k, side: int, count: int, offset: int = 0) -> np.ndarray:
    images = np.asarray(mnist5k.x_test[offset:offset + count], np.float32)
    margin = (side - images.shape[1]) // 2
    return np.pad(images, ((0, 0), (margin, margin), (margin, margin), (0, 0)))


def _plain_int8(monkeypatch, float_onnx: bytes, calibration: np.ndarray) -> bytes:
    """ORT's quantization without edgeship's rewrites (the file they start from)."""
    monkeypatch.setattr(convert_onnx, "speed_up_int8_onnx", lambda data: (data, None))
    return convert_onnx.quantize_onnx(float_onnx, calibration)


def _run(model: bytes, images: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: image[np.newaxis]})[0] for image in images])


def _intermediate(model: bytes, tensor: str) -> bytes:
    """The model with one more graph output (a quantized intermediate, to compare int8 values)."""
    proto = onnx.load_from_string(model)
    proto.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.UINT8, None))
    return proto.SerializeToString()


@pytest.mark.parametrize("zoo_model", sorted(ZOO_FIRST_CONVS))
def test_space_to_depth_fires_on_zoo_first_convs_and_is_bit_identical(monkeypatch, mnist5k, zoo_model):
    kernel, stride, pads, side = ZOO_FIRST_CONVS[zoo_model]
    float_onnx = _float_model(kernel, stride, pads, side, "average" if zoo_model == "lenet5" else "max")
    plain = _plain_int8(monkeypatch, float_onnx, _images(mnist5k, side, 64))
    fast, record = speed_up_int8_onnx(plain)
    assert record.space_to_depth_convs == 1
    ops = [node.op_type for node in onnx.load_from_string(fast).graph.node]
    assert "SpaceToDepth" not in ops and ops.count("Conv") == 2
    if zoo_model == "simple_cnn":  # conv, then a 2x2 max pool: one u8 max over the phase groups
        assert "ReduceMax" in ops and "MaxPool" not in ops
    images = _images(mnist5k, side, 200, offset=100)
    np.testing.assert_array_equal(_run(fast, images), _run(plain, images))
    # the first layer's int8 output itself, not only the softmax after it
    first_output = next(node.output[0] for node in onnx.load_from_string(plain).graph.node
                        if node.op_type == "QuantizeLinear" and node.input[0] == "p1")
    np.testing.assert_array_equal(_run(_intermediate(fast, first_output), images[:50]),
                                  _run(_intermediate(plain, first_output), images[:50]))
    # same weight values, so the saturation bound and its guarantee are unchanged
    assert not saturating_ops(fast)
    assert (max(bound.worst_pair_sum for bound in pair_sum_bounds(fast))
            == max(bound.worst_pair_sum for bound in pair_sum_bounds(plain)))


def test_quantize_onnx_applies_the_rewrites(mnist5k):
    float_onnx = _float_model(5, 1, [2, 2, 2, 2], 28, "average")
    int8_onnx = convert_onnx.quantize_onnx(float_onnx, _images(mnist5k, 28, 32))
    proto = onnx.load_from_string(int8_onnx)
    weight_shapes = [tuple(item.dims) for item in proto.graph.initializer if len(item.dims) == 4]
    assert (24, 4, 3, 3) in weight_shapes  # 6 filters 5x5 on 1 channel -> 4 phases x 6, 3x3 on 4


def test_unit_global_average_pool_is_dropped_and_bit_identical(monkeypatch, mnist5k):
    # side 16, stride-2 3x3 conv without padding -> 7x7, 2x2 max pool -> 3x3, 3x3 stride 2 -> 1x1
    float_onnx = _float_model(3, 2, [0, 0, 0, 0], 16, "max")
    images = np.asarray(mnist5k.x_test[:264, 6:22, 6:22], np.float32)
    plain = _plain_int8(monkeypatch, float_onnx, images[:64])
    fast, record = speed_up_int8_onnx(plain)
    assert record.unit_global_pools == 1
    assert "GlobalAveragePool" not in [node.op_type for node in onnx.load_from_string(fast).graph.node]
    np.testing.assert_array_equal(_run(fast, images[64:]), _run(plain, images[64:]))


@pytest.mark.parametrize("kernel, stride, pads, side", [(3, 1, [1, 1, 1, 1], 27),   # odd input
                                                        (3, 1, [0, 0, 0, 0], 27),   # odd output
                                                        (3, 3, [0, 0, 0, 0], 30)])  # stride 3
def test_space_to_depth_leaves_shapes_it_cannot_map_exactly(monkeypatch, mnist5k, kernel, stride, pads, side):
    images = np.asarray(mnist5k.x_test[:32, :side, :side], np.float32)
    if side > 28:
        images = _images(mnist5k, side, 32)
    plain = _plain_int8(monkeypatch, _float_model(kernel, stride, pads, side, "none"), images)
    fast, record = speed_up_int8_onnx(plain)
    assert record.space_to_depth_convs == 0
    np.testing.assert_array_equal(_run(fast, images), _run(plain, images))
