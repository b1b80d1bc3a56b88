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

from edgeship.convert.c_source import IO_CTYPES
from edgeship.convert.codegen.lowering import (  # noqa: F401  (each module registers its ops)
    activation,
    arithmetic,
    boundary,
    conv,
    elementwise,
    fully_connected,
    join,
    lstm,
    movement,
    pool,
    reduce,
    shape,
    softmax,
    svdf,
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
    StateArray,
    SymbolArg,
    TensorArg,
    lowers,
)
from edgeship.convert.codegen.lowering.fold import fold_constants
from edgeship.convert.codegen.lowering.fuse import fuse_padding
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph, Operator

SUPPORTED_OPS = tuple(LOWERINGS)

__all__ = ["ACTIVATION_BYTES", "SUPPORTED_OPS", "ConstantArray", "ConstantStruct", "LinearParams", "LoweredOp",
           "ScratchArg", "StateArray", "SymbolArg", "TensorArg", "lower_graph", "lowers",
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


_WHAT_TO_DO = ("What to do: cut the graph before the first of them (convert the model up to "
               "the layer that feeds it) and compute the rest in the application: a "
               "detector's post-processing (a CUSTOM op), ops TFLite Micro has no kernel for "
               "(TILE) and an NPU's command stream (CUSTOM ethos-u) have no Cortex-M code; for "
               "other ops TFLite Micro runs, `edgeship embed` gives TFLite Micro sources.")


def lower_graph(graph: Graph) -> list[LoweredOp]:
    """Every op as a kernel call with its constants; raises on anything not supported.

    Raises:
        UserInputError: an unsupported op (named, with the model's op list), a model input
            or output not uint8, int8, int16, int32 or float32 (a quantized model's boundary:
            QUANTIZE and DEQUANTIZE), several inputs (or outputs) of different types, or an op
            the kernels cannot compute (named by its index).
    """
    graph = fold_constants(graph)  # shape arithmetic on constants: evaluated, not emitted
    unsupported = sorted({form for op in graph.operators
                          if (form := _unsupported_form(graph, op)) is not None})
    if unsupported:
        raise UserInputError(
            f"codegen does not support op(s) {', '.join(unsupported)}; the model's ops are "
            f"{', '.join(graph.op_names())}. {_WHAT_TO_DO} Ops supported: "
            f"{supported_ops_text()}")
    for role, tensors in (("input", graph.inputs), ("output", graph.outputs)):
        dtypes = [graph.tensors[index].dtype for index in tensors]
        for dtype in dtypes:
            if dtype not in IO_CTYPES:
                raise UserInputError(f"the model's {role} is {dtype}; codegen takes "
                                     f"{', '.join(IO_CTYPES)} input and output (edgeship "
                                     "convert writes model_int8.tflite)")
        if len(set(dtypes)) > 1:
            raise UserInputError(
                f"the model's {len(dtypes)} {role}s have different types ({', '.join(dtypes)}); "
                f"codegen packs several {role}s into one buffer of one type (NAME_run), so "
                "they must share it")
    graph = fuse_padding(graph)  # PAD read by one convolution: implicit in it, no buffer
    return [LOWERINGS[op.name](graph, op) for op in graph.operators]


def _unsupported_form(graph: Graph, op: Operator) -> str | None:
    """None when codegen generates the op, else how to name it (with types if they decide)."""
    if op.name not in LOWERINGS:
        return op.name
    types = (graph.tensors[op.inputs[0]].dtype, graph.tensors[op.outputs[0]].dtype)
    if types not in TYPE_CONSTRAINTS[op.name]:
        return f"{op.name} ({types[0]} -> {types[1]})"
    return None
