"""Graph rewrites of an int8 .tflite so XNNPACK takes more of it.

XNNPACK (LiteRT's default CPU delegate) has no int8 SOFTMAX and no int8 AVERAGE_POOL_2D: each
splits the delegated graph, and the op runs on LiteRT's own kernels between partitions
(`edgeship bench` shows the partitions and the ops left outside).

- AVERAGE_POOL_2D has no exact rewrite: TFLite's int8 kernel rounds the raw window sum half
  away from zero, while every XNNPACK-supported int8 op (a depthwise convolution with unit
  weights, MEAN) requantizes the zero-point-shifted sum, so ties of negative sums round the
  other way; no constant weight or bias reproduces a tie rule that depends on the sum's sign.
- SOFTMAX at the output has no exact rewrite either (XNNPACK computes softmax in float only).
  `float_softmax_output` is the documented option where the result changes: the int8 logits
  are dequantized (exactly) and the softmax runs in float, so the model's output becomes
  float32 probabilities instead of int8-quantized ones. Top-1 can differ from the int8
  softmax only where the int8 output ties.
"""

from edgeship.errors import UserInputError


def float_softmax_output(tflite_bytes: bytes) -> bytes:
    """Replace the int8 SOFTMAX that produces the graph output by DEQUANTIZE + float SOFTMAX.

    Args:
        tflite_bytes: a full-integer .tflite whose output is an int8 SOFTMAX.

    Returns:
        The rewritten model: same inputs, float32 output (probabilities).

    Raises:
        UserInputError: the model's output is not produced by an int8 SOFTMAX.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    subgraph = model.subgraphs[0]
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    (output,) = subgraph.outputs
    softmax = next((op for op in subgraph.operators if list(op.outputs) == [output]
                    and codes[op.opcodeIndex] == schema.BuiltinOperator.SOFTMAX), None)
    if softmax is None or subgraph.tensors[output].type != schema.TensorType.INT8:
        raise UserInputError("float softmax output needs an int8 model whose output is a SOFTMAX")
    logits = subgraph.tensors[softmax.inputs[0]]
    float_logits = schema.TensorT()
    float_logits.name = (logits.name or b"logits") + b"/dequantized"
    float_logits.shape = list(logits.shape)
    float_logits.shapeSignature = (list(logits.shapeSignature)
                                   if logits.shapeSignature is not None else None)
    float_logits.type = schema.TensorType.FLOAT32
    float_logits.buffer = _empty_buffer(model, schema)
    subgraph.tensors.append(float_logits)
    float_index = len(subgraph.tensors) - 1
    probabilities = subgraph.tensors[output]
    probabilities.type = schema.TensorType.FLOAT32
    probabilities.quantization = None

    dequantize = schema.OperatorT()
    dequantize.opcodeIndex = _opcode_index(model, codes, schema.BuiltinOperator.DEQUANTIZE, schema)
    dequantize.inputs = [softmax.inputs[0]]
    dequantize.outputs = [float_index]
    softmax.inputs = [float_index]
    subgraph.operators.insert(subgraph.operators.index(softmax), dequantize)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _empty_buffer(model, schema) -> int:
    buffer = schema.BufferT()
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def _opcode_index(model, codes: list[int], builtin: int, schema) -> int:
    if builtin in codes:
        return codes.index(builtin)
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 2  # DEQUANTIZE of int8 input
    model.operatorCodes.append(code)
    codes.append(builtin)
    return len(codes) - 1
