"""Lowering: each TFLite op turned into one kernel call with its constants.

One module per op family; each registers its function with `@lowers`, and the supported-op
list is that registry, so the two cannot disagree.

Adding an op (say LOGISTIC) touches one Python file and one C file:

1. In a family module here (or a new one, imported below), write::

       @lowers("LOGISTIC")
       def lower_logistic(graph: Graph, op: Operator) -> LoweredOp:
           input_tensor, output = io_tensors(graph, op)          # checks both are int8
           ...                                                   # quant.py for the math
           return LoweredOp(op.index, op.name, "logistic",
                            (input_tensor.size, TensorArg(op.inputs[0]), TensorArg(op.outputs[0])),
                            inputs=(op.inputs[0],), outputs=(op.outputs[0],),
                            summary=f"{input_tensor.size} values")

2. Write its kernel in codegen/kernels/portable/logistic.c, starting with the line
   `/* @section logistic needs common */` and defining
   `static void es_logistic(int32_t size, const int8_t *input, int8_t *output)`.

The emitter calls `es_<kernel>(arguments...)`: integers as literals, TensorArg as the
tensor's place in the activation buffer, SymbolArg as a constant's name (`&name` for a
struct). Nothing else knows about the op. Declare `overlap` only when the kernel's loop
order lets its output share bytes with a dying input (see overlap.py); without it the
memory plan keeps them apart, which is always safe.
"""

from edgeship.convert.c_source import ACTIVATION_CTYPES
from edgeship.convert.codegen.lowering import (  # noqa: F401  (each module registers its ops)
    activation,
    arithmetic,
    boundary,
    conv,
    elementwise,
    fully_connected,
    movement,
    pool,
    reduce,
    shape,
    softmax,
)
from edgeship.convert.codegen.lowering.base import (
    ACTIVATION_BYTES,
    INT8_ONLY,
    LOWERINGS,
    TYPE_CONSTRAINTS,
    ConstantArray,
    ConstantStruct,
    LinearParams,
    LoweredOp,
    ScratchArg,
    SymbolArg,
    TensorArg,
    lowers,
)

from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator

SUPPORTED_OPS = tuple(LOWERINGS)

__all__ = ["ACTIVATION_BYTES", "SUPPORTED_OPS", "ConstantArray", "ConstantStruct", "LinearParams", "LoweredOp",
           "ScratchArg", "SymbolArg", "TensorArg", "lower_graph", "lowers",
           "supported_ops_text"]


def supported_ops_text() -> str:
    """The supported ops for messages: a bare name is int8 only, others list their dtypes."""
    forms = []
    for name in LOWERINGS:
        if TYPE_CONSTRAINTS[name] == INT8_ONLY:
            forms.append(name)
        else:
            forms += [f"{name} ({first} -> {second})" for first, second in TYPE_CONSTRAINTS[name]]
    return ", ".join(forms)


def lower_graph(graph: Graph) -> list[LoweredOp]:
    """Every op as a kernel call with its constants; raises on anything not supported.

    Raises:
        UserInputError: an unsupported op (named, with the model's op list), more than one
            input or output, non-int8 model input or output, or an op the kernels cannot
            compute (named by its index).
    """
    unsupported = sorted({form for op in graph.operators
                          if (form := _unsupported_form(graph, op)) is not None})
    if unsupported:
        raise UserInputError(
            f"codegen does not support op(s) {', '.join(unsupported)}; the model's ops are "
            f"{', '.join(graph.op_names())}; supported: {supported_ops_text()}")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UserInputError(f"the model has {len(graph.inputs)} input(s) and "
                             f"{len(graph.outputs)} output(s); codegen supports one of each")
    for role, index in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
        tensor = graph.tensors[index]
        if tensor.dtype not in ACTIVATION_CTYPES:
            raise UserInputError(f"the model's {role} is {tensor.dtype}; codegen needs an "
                                 "integer model with int8 or int16 input and output "
                                 "(edgeship convert writes model_int8.tflite)")
    return [LOWERINGS[op.name](graph, op) for op in graph.operators]


def _unsupported_form(graph: Graph, op: Operator) -> str | None:
    """None when codegen generates the op, else how to name it (with types if they decide)."""
    if op.name not in LOWERINGS:
        return op.name
    types = (graph.tensors[op.inputs[0]].dtype, graph.tensors[op.outputs[0]].dtype)
    if types not in TYPE_CONSTRAINTS[op.name]:
        return f"{op.name} ({types[0]} -> {types[1]})"
    return None
