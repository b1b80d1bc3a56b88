"""The `c` backend: `edgeship codegen`'s C for a .tflite, compiled on the host and run.

It needs both stages: convert generates the C, runtime compiles and runs it
(edgeship.runtime.backends.c). So it lives here, above both, and the backend registry names
it by import path ("c" -> edgeship.c_backend), so `open_backend("c", path)` works as for any
runtime.
"""

import tempfile
from pathlib import Path

from edgeship.convert.codegen import CodegenConfig, generate_c
from edgeship.runtime.backends import TensorInfo
from edgeship.runtime.backends.c import CompiledCBackend, check_c_options

SYMBOL_PREFIX = "model"


def open_backend(artifact_path: Path, **options) -> CompiledCBackend:
    """Generate the C for an int8 .tflite into a temporary folder and compile it.

    Args:
        artifact_path: the int8 .tflite.
        **options: threads (1), device ("cpu"), optimization (a compiler flag, "-O2").
    """
    optimization = check_c_options(options)
    folder = tempfile.TemporaryDirectory(prefix="edgeship_c_")
    try:
        generated = generate_c(CodegenConfig(model=str(artifact_path), out=folder.name,
                                             name=SYMBOL_PREFIX))
    except Exception:
        folder.cleanup()
        raise
    inputs = TensorInfo("input", (-1,) + tuple(generated.input.shape[1:]), generated.input.dtype,
                        generated.input.scale, generated.input.zero_point)
    outputs = TensorInfo("output", (-1,) + tuple(generated.output.shape[1:]),
                         generated.output.dtype, generated.output.scale,
                         generated.output.zero_point)
    return CompiledCBackend(
        Path(artifact_path), folder, [Path(folder.name) / f"{SYMBOL_PREFIX}.c"], SYMBOL_PREFIX,
        inputs, outputs, optimization,
        facts={"kernels": f"edgeship codegen (generated C99, {generated.kernels} kernels)",
               "activation_bytes": generated.arena_bytes,
               "weight_bytes": generated.weight_bytes})
