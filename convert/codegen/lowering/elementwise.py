"""ADD: two same-shape int8 activations take a flat loop (kernels/portable/add.c); a broadcast
or constant operand, and int16, take lowering.arithmetic's broadcasting kernels."""

from edgeship.convert.codegen.lowering.arithmetic import SAME_TYPES, lower_binary
from edgeship.convert.codegen.lowering.base import (
    ConstantStruct,
    LoweredOp,
    SymbolArg,
    TensorArg,
    check_int8,
    lowers,
)
from edgeship.convert.codegen.quant import activation_range, add_parameters
from edgeship.tflite_graph import Graph, Operator


@lowers("ADD", types=SAME_TYPES)
def lower_add(graph: Graph, op: Operator) -> LoweredOp:
    first, second = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    output = graph.tensors[op.outputs[0]]
    if (output.dtype != "int8" or first.shape != second.shape or first.data is not None
            or second.data is not None):
        return lower_binary(graph, op)
    for tensor, role in ((first, "input"), (second, "input"), (output, "output")):
        check_int8(tensor, role, op)
    scaling = add_parameters(first, second, output)
    act_min, act_max = activation_range(op.options.fusedActivationFunction, output, op.name)
    # Field order of es_add_params in kernels/portable/add_params.c.
    params = ConstantStruct("es_add_params", f"op{op.index}_params", (
        -first.zero_point, -second.zero_point, output.zero_point, scaling["left_shift"],
        scaling["first_multiplier"], scaling["second_multiplier"], scaling["output_multiplier"],
        scaling["first_shift"], scaling["second_shift"], scaling["output_shift"], act_min,
        act_max))
    arguments = (SymbolArg(params.name, address=True), first.size, TensorArg(op.inputs[0]),
                 TensorArg(op.inputs[1]), TensorArg(op.outputs[0]))
    return LoweredOp(op.index, op.name, "add", arguments, inputs=(op.inputs[0], op.inputs[1]),
                     outputs=(op.outputs[0],), summary=f"{first.size} values", structs=(params,),
                     overlap=((op.inputs[0], 0), (op.inputs[1], 0)))  # element i read, then written
