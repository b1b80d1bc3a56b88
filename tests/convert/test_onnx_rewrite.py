"""drop_identity_reshapes: exact, and only Reshapes that change nothing go."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeship.convert.onnx import drop_identity_reshapes  # noqa: E402


def _model(second_shape):
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    initializers = [weights,
                    numpy_helper.from_array(np.array([-1, 4, 1, 1], np.int64), "same"),
                    numpy_helper.from_array(np.array(second_shape, np.int64), "other")]
    for name, value in (("scale", 1.5), ("bias", 0.1), ("mean", 0.2), ("var", 2.0)):
        initializers.append(numpy_helper.from_array(np.full(4, value, np.float32), name))
    nodes = [helper.make_node("Conv", ["x", "w"], ["conv"]),
             helper.make_node("Reshape", ["conv", "same"], ["kept_shape"]),
             helper.make_node("BatchNormalization", ["kept_shape", "scale", "bias", "mean", "var"],
                              ["bn"]),
             helper.make_node("Reshape", ["bn", "other"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          ["n", 3, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_identity_reshape_goes_and_results_agree():
    model = _model([-1, 4])
    x = np.random.default_rng(1).random((2, 3, 3, 3), dtype=np.float32)
    before = _run(model, x)
    assert drop_identity_reshapes(model) == 1
    assert [node.op_type for node in model.graph.node] == ["Conv", "BatchNormalization", "Reshape"]
    assert model.graph.node[1].input[0] == "conv"
    assert "same" not in {item.name for item in model.graph.initializer}
    # ORT now fuses Conv+BN, so float rounding may differ in the last bits
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-5)


def test_reshapes_that_change_the_shape_or_end_the_graph_stay():
    model = _model([-1, 4, 1, 1])  # identity, but it produces the graph's output
    assert drop_identity_reshapes(model) == 1
    assert [node.op_type for node in model.graph.node][-1] == "Reshape"
