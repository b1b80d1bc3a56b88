"""MAX_POOL_2D and AVERAGE_POOL_2D, int8 or int16 (pooling keeps the input's scale and zero
point)."""

from edgeship.convert.codegen.lowering.base import (
    ACTIVATION_BYTES,
    LoweredOp,
    SymbolArg,
    TensorArg,
    check_dtype,
    lowers,
    window,
    window_struct,
)
from edgeship.convert.codegen.lowering.overlap import element_overlap
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator


@lowers("MAX_POOL_2D", "AVERAGE_POOL_2D", types=(("int8", "int8"), ("int16", "int16")))
def lower_pool(graph: Graph, op: Operator) -> LoweredOp:
    input_tensor, output = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    check_dtype(input_tensor, "input", op, ("int8", "int16"))
    check_dtype(output, "output", op, (input_tensor.dtype,))
    if (input_tensor.scale, input_tensor.zero_point) != (output.scale, output.zero_point):
        raise UserInputError(f"op {op.index} ({op.name}) rescales its input; TFLite int8 "
                             "pooling keeps the input's scale and zero point")
    options = op.options
    values, summary = window(op, input_tensor, output, options.filterHeight,
                             options.filterWidth, options, (1, 1))
    struct = window_struct(op, values)
    average = int(op.name == "AVERAGE_POOL_2D")
    arguments = (SymbolArg(struct.name, address=True), average, TensorArg(op.inputs[0]),
                 TensorArg(op.outputs[0]))
    kernel = "pool_2d" if input_tensor.dtype == "int8" else "pool_2d_s16"
    # element_overlap counts values; the plan counts bytes.
    limit = element_overlap(values, 1) * ACTIVATION_BYTES[input_tensor.dtype]
    return LoweredOp(op.index, op.name, kernel, arguments, inputs=(op.inputs[0],),
                     outputs=(op.outputs[0],), summary=summary, structs=(struct,),
                     overlap=((op.inputs[0], limit),))
