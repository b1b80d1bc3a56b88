"""`edgeship codegen`: an int8 .tflite turned into dependency-free C99, bit-exact with TFLite.

Models with int16 activations (16x8: int16 activations, int8 weights), whole or mixed with
int8 layers through QUANTIZE ops, are generated too: SUB, MUL, ADD, CONV_2D,
DEPTHWISE_CONV_2D, FULLY_CONNECTED, pooling, SOFTMAX, RESHAPE and QUANTIZE have int16
kernels (kernels/portable/*_s16.c; other variants fall back to them), int16 tensors take two
bytes in the plan, and NAME_run takes int16_t buffers when the model's I/O is int16. An op
whose dtypes have no kernel is refused by name ("MEAN (int16 -> int16)"), never guessed.

The model is read with edgeship.tflite_graph. Every shape, padding, activation range and
fixed-point multiplier is computed at generation time with TFLite's own formulas, so the
generated C only loops over integers: no interpreter, no malloc, no float. Activations live
in one static buffer planned here: tensors whose lifetimes do not overlap share bytes, so
the buffer is the peak of live tensors rather than their sum.

One module per concern:
- quant.py: TFLite's quantization arithmetic (multipliers, activation ranges, padding).
- lowering/: each op family lowered to a kernel call (`@lowers`; SUPPORTED_OPS is that registry).
- plan.py: the static memory plan.
- patches.py: patch-based inference of the first stage (--patches N|auto).
- kernels/: the kernel variants and their C sources (package data).
- emit.py: NAME.c and NAME.h.
- api.py: CodegenConfig, CodegenResult, generate_c.

Output: NAME.h (run function, sizes, scales, zero points, labels), NAME.c (weights as const
arrays, the kernels the model uses, one call per op, EDGESHIP_OP_HOOK(i) between ops for
profiling), NAME_ops.json (each op's index, type, kernel and MACs), NAME_codegen.json, and
with samples NAME_samples.h/.c: test images and the outputs TFLite Micro computes for
them, so a firmware can check itself ("10/10 match").
"""

from edgeship.convert.codegen.api import (
    MAC_RULE,
    CodegenConfig,
    CodegenResult,
    OpRecord,
    generate_c,
)
from edgeship.convert.codegen.emit import OP_HOOK, render_header, render_source
from edgeship.convert.codegen.kernels import KERNEL_VARIANTS, KernelVariant, kernel_variant
from edgeship.convert.codegen.lowering import SUPPORTED_OPS, LoweredOp, lower_graph, lowers
from edgeship.convert.codegen.plan import ARENA_ALIGNMENT, MemoryPlan, plan_memory
from edgeship.convert.codegen.quant import (
    activation_range,
    mean_parameters,
    padding_and_size,
    quantize_multiplier,
    round_half_away,
    softmax_parameters,
)
from edgeship.convert.firmware_sources import (
    FirmwareSourceConfig,
    QuantizedIO,
    Samples,
    model_io,
    model_labels,
    render_samples,
)
from edgeship.tflite_graph import Graph, Operator, Tensor, read_graph

__all__ = [
    "ARENA_ALIGNMENT", "KERNEL_VARIANTS", "MAC_RULE", "OP_HOOK", "SUPPORTED_OPS",
    "CodegenConfig", "CodegenResult", "FirmwareSourceConfig", "Graph", "KernelVariant",
    "LoweredOp", "MemoryPlan", "OpRecord", "Operator", "QuantizedIO", "Samples", "Tensor",
    "activation_range", "generate_c", "kernel_variant", "lower_graph", "lowers",
    "mean_parameters", "model_io", "model_labels", "padding_and_size", "plan_memory",
    "quantize_multiplier", "read_graph", "render_header", "render_samples", "render_source",
    "round_half_away", "softmax_parameters",
]
