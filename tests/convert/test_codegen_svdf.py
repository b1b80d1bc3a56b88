"""SVDF (and the int8 -> int16 SOFTMAX and int16 -> int32 QUANTIZE that follow it in Google's
keyword models) in the generated C, bit-exact with TFLite Micro invoke after invoke.

TensorFlow's converter makes no SVDF from Keras, so the models are written here with the
flatbuffer schema: SVDF (int8 input and feature weights, int16 time weights and state, rank 2,
a bias), then SOFTMAX to int16 and QUANTIZE to int32, the tail of TFLite
Micro's keyword model. Weights are seeded random, scales chosen so that every stage uses
its range. TFLite Micro runs in a child process (its Python module beside TensorFlow can
crash). The state carries over between invokes; with a reset before each, outputs differ.
"""

import shutil

import numpy as np
import pytest

from tests.helpers import generated_outputs_in_a_row, micro_outputs_in_a_row

needs_cc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
RUNS = 8
BATCH, INPUT, FILTERS, RANK, MEMORY = 1, 20, 16, 2, 10


def _svdf_model(with_bias: bool, tail: bool) -> bytes:
    """SVDF [-> SOFTMAX int16 -> QUANTIZE int32] as a .tflite."""
    from edgeship.tflite_graph import flatbuffer_schema, write_model

    schema = flatbuffer_schema()
    rng = np.random.default_rng(7)
    units = FILTERS // RANK
    model = schema.ModelT()
    model.version = 3
    model.buffers = [schema.BufferT()]
    graph = schema.SubGraphT()
    graph.tensors, graph.operators = [], []

    def tensor(name, shape, kind, scale, zero_point, data=None, variable=False):
        entry = schema.TensorT()
        entry.name, entry.shape, entry.type = name.encode(), list(shape), kind
        quantization = schema.QuantizationParametersT()
        quantization.scale, quantization.zeroPoint = [scale], [zero_point]
        entry.quantization = quantization
        entry.isVariable = variable
        entry.buffer = 0
        if data is not None:
            buffer = schema.BufferT()
            buffer.data = np.ascontiguousarray(data).tobytes()
            model.buffers.append(buffer)
            entry.buffer = len(model.buffers) - 1
        graph.tensors.append(entry)
        return len(graph.tensors) - 1

    types = schema.TensorType
    x = tensor("input", (BATCH, INPUT), types.INT8, 0.05, -3)
    feature = tensor("feature", (FILTERS, INPUT), types.INT8, 0.01, 0,
                     rng.integers(-127, 128, (FILTERS, INPUT), dtype=np.int8))
    time = tensor("time", (FILTERS, MEMORY), types.INT16, 0.0005, 0,
                  rng.integers(-8000, 8000, (FILTERS, MEMORY), dtype=np.int16))
    bias = (tensor("bias", (units,), types.INT32, 0.004 * 0.0005, 0,
                   rng.integers(-20000, 20000, units, dtype=np.int32)) if with_bias else -1)
    state = tensor("state", (BATCH, FILTERS * MEMORY), types.INT16, 0.004, 0, variable=True)
    svdf_out = tensor("svdf", (BATCH, units), types.INT8, 0.08, 2)
    codes, operators = [], []

    def operator(code, inputs, outputs, options_type=0, options=None):
        if code not in codes:
            codes.append(code)
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = codes.index(code), list(inputs), list(outputs)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        operators.append(op)

    svdf_options = schema.SVDFOptionsT()
    svdf_options.rank, svdf_options.fusedActivationFunction = RANK, 1  # RELU, as shipped
    operator(schema.BuiltinOperator.SVDF, (x, feature, time, bias, state), (svdf_out,),
             schema.BuiltinOptions.SVDFOptions, svdf_options)
    last = svdf_out
    if tail:
        probabilities = tensor("probabilities", (BATCH, units), types.INT16, 1 / 65536, -32768)
        softmax_options = schema.SoftmaxOptionsT()
        softmax_options.beta = 1.0
        operator(schema.BuiltinOperator.SOFTMAX, (svdf_out,), (probabilities,),
                 schema.BuiltinOptions.SoftmaxOptions, softmax_options)
        last = tensor("scores", (BATCH, units), types.INT32, 1 / 32768, 0)
        operator(schema.BuiltinOperator.QUANTIZE, (probabilities,), (last,))
    model.operatorCodes = []
    for code in codes:
        entry = schema.OperatorCodeT()
        entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, min(code, 127), 1
        model.operatorCodes.append(entry)
    graph.operators, graph.inputs, graph.outputs = operators, [x], [last]
    model.subgraphs = [graph]
    return write_model(model)



@needs_cc
# Without a bias TFLite Micro's SVDF crashes (tflite-micro at the tested version), so there
# is no reference for that case (the generated C passes a null bias).
@pytest.mark.parametrize("with_bias, tail", [(True, False), (True, True)])
def test_svdf_is_bit_exact_with_tflite_micro_invoke_after_invoke(tmp_path, with_bias, tail):
    model_path = tmp_path / "svdf.tflite"
    model_path.write_bytes(_svdf_model(with_bias, tail))
    inputs = np.random.default_rng(2).integers(-128, 128, (RUNS, BATCH, INPUT), dtype=np.int8)
    dtype = np.int32 if tail else np.int8
    carried = micro_outputs_in_a_row(model_path, inputs, False, tmp_path / "micro_carried")
    generated, result = generated_outputs_in_a_row(model_path, inputs, False,
                                                   tmp_path / "carried", dtype=dtype)
    np.testing.assert_array_equal(generated, carried)
    restarted = micro_outputs_in_a_row(model_path, inputs, True, tmp_path / "micro_reset")
    generated, _ = generated_outputs_in_a_row(model_path, inputs, True, tmp_path / "reset",
                                              dtype=dtype)
    np.testing.assert_array_equal(generated, restarted)
    assert (carried[1:] != restarted[1:]).any()  # the state's memory reaches the output
    assert len({row.tobytes() for row in carried}) == RUNS  # every output its own
    assert result.state_bytes == 2 * FILTERS * MEMORY
    ops = ["SVDF", "SOFTMAX", "QUANTIZE"] if tail else ["SVDF"]
    assert list(result.ops) == ops
    if tail:
        # Probabilities at 1/32768: each row sums to one within a quantum per unit.
        assert (np.abs(carried.sum(axis=1) - 32768) <= FILTERS // RANK).all()


def test_svdf_with_int8_state_is_refused_by_name(tmp_path):
    from edgeship.convert.codegen.lowering import lower_graph
    from edgeship.errors import UserInputError
    from edgeship.tflite_graph import read_graph, read_model, write_model

    model = read_model(_svdf_model(True, False))
    model.subgraphs[0].tensors[2].type = 9  # time weights as int8
    model.buffers[model.subgraphs[0].tensors[2].buffer].data = np.zeros(
        FILTERS * MEMORY, np.int8).tobytes()
    with pytest.raises(UserInputError, match=r"SVDF\): time weights are int8"):
        lower_graph(read_graph(write_model(model)))
