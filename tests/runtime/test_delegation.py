"""Delegation and kernel precision: which ops XNNPACK took, which ONNX nodes run in int8."""

import numpy as np
import pytest

from edgeship.runtime.backends import open_backend
from edgeship.runtime.backends.litert import delegation_summary
from edgeship.runtime.backends.onnxruntime import summarize_kernels
from edgeship.runtime.bench import describe_execution, execution_summary


def _op(index, name, inputs, outputs):
    return {"index": index, "op_name": name, "inputs": np.array(inputs, np.int32),
            "outputs": np.array(outputs, np.int32)}


def test_delegation_summary_splits_at_ops_left_outside():
    # conv(0->1) pool(1->2) conv(2->3) reshape(3->4) fc(4->5) softmax(5->6); XNNPACK took
    # conv | conv, reshape, fc: two partitions, pool and softmax outside
    ops = [_op(0, "CONV_2D", [0, 10, 11], [1]), _op(1, "AVERAGE_POOL_2D", [1], [2]),
           _op(2, "CONV_2D", [2, 12, 13], [3]), _op(3, "RESHAPE", [3, 14], [4]),
           _op(4, "FULLY_CONNECTED", [4, 15, 16], [5]), _op(5, "SOFTMAX", [5], [6]),
           _op(6, "DELEGATE", [0, 10, 11], [1]), _op(7, "DELEGATE", [2, 12, 13, 14, 15, 16], [5])]
    summary = delegation_summary(ops, [{"index": 6}], "XNNPACK")
    assert summary == {"delegate": "XNNPACK", "partitions": 2, "ops": 6, "delegated_ops": 4,
                       "outside": {"AVERAGE_POOL_2D": 1, "SOFTMAX": 1}}
    assert describe_execution(execution_summary({"delegation": summary})) == (
        "XNNPACK 2 partitions, 4/6 ops; outside: AVERAGE_POOL_2D x1, SOFTMAX x1")
    alone = delegation_summary(ops[:6], [{"index": 6}], None)
    assert alone["partitions"] == 0 and alone["delegated_ops"] == 0 and sum(alone["outside"].values()) == 6


def test_summarize_kernels_follows_precision_through_the_graph():
    onnx = pytest.importorskip("onnx")
    helper, tensor = onnx.helper, onnx.TensorProto
    scale = helper.make_tensor("scale", tensor.FLOAT, [], [0.1])
    zero = helper.make_tensor("zero", tensor.UINT8, [], [128])
    shape = helper.make_tensor("shape", tensor.INT64, [2], [1, -1])
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["xq"]),
        helper.make_node("Reshape", ["xq", "shape"], ["xr"]),
        helper.make_node("QLinearSoftmax", ["xr", "scale", "zero", "scale", "zero"], ["yq"],
                         domain="com.microsoft"),
        helper.make_node("DequantizeLinear", ["yq", "scale", "zero"], ["y"]),
        helper.make_node("Softmax", ["y"], ["z"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", tensor.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("z", tensor.FLOAT, [1, 4])],
                              [scale, zero, shape])
    summary = summarize_kernels(graph)
    assert summary == {"nodes": 5, "int8": {"QLinearSoftmax": 1, "Reshape": 1},
                       "float": {"Softmax": 1},
                       "conversions": {"DequantizeLinear": 1, "QuantizeLinear": 1}}
    assert describe_execution(execution_summary({"kernels": summary})) == (
        "int8 kernels 2/5 nodes; float: Softmax x1; 2 Q/DQ")


def test_backends_report_delegation_of_the_session_model(artifacts_dir):
    with open_backend("litert", artifacts_dir / "model_float.tflite") as backend:
        float_delegation = backend.details()["delegation"]
    assert float_delegation["partitions"] == 1 and float_delegation["outside"] == {}
    with open_backend("litert", artifacts_dir / "model_int8.tflite") as backend:
        int8_delegation = backend.details()["delegation"]
    assert int8_delegation["delegate"] == "XNNPACK" and int8_delegation["partitions"] >= 1
    assert int8_delegation["delegated_ops"] + sum(int8_delegation["outside"].values()) == \
        int8_delegation["ops"]
    with open_backend("litert-ref", artifacts_dir / "model_int8.tflite") as backend:
        reference = backend.details()["delegation"]
    assert reference["delegate"] is None and reference["delegated_ops"] == 0
    with open_backend("onnxruntime", artifacts_dir / "model_int8.onnx") as backend:
        kernels = backend.details()["kernels"]
    assert kernels["int8"].get("QLinearConv", 0) == 3 and "Conv" not in kernels["float"]
    with open_backend("onnxruntime", artifacts_dir / "model.onnx") as backend:
        assert backend.details()["kernels"]["int8"] == {}
