"""The `c` backend: `edgeship codegen`'s C for a .tflite, compiled on the host and run.

It needs both stages: convert generates the C, runtime compiles and runs it
(edgeship.runtime.backends.c). So it lives here, above both, and the backend registry names
it by import path ("c" -> edgeship.c_backend), so `open_backend("c", path)` works as for any
runtime.
"""

import tempfile
from pathlib import Path

from edgeship.convert.codegen import CodegenConfig, CodegenResult, generate_c
from edgeship.runtime.backends import TensorInfo
from edgeship.runtime.backends.c import CompiledCBackend, check_c_options

SYMBOL_PREFIX = "model"


def open_backend(artifact_path: Path, **options) -> CompiledCBackend:
    """Generate the C for an int8 .tflite into a temporary folder and compile it.

    Args:
        artifact_path: the int8 .tflite.
        **options: threads (1), device ("cpu"), optimization (a compiler flag, "-O2").
    """
    return compile_generated(artifact_path, check_c_options(options))[0]


def compile_generated(artifact_path: str | Path, optimization: str = "-O2",
                      **codegen_options) -> tuple[CompiledCBackend, CodegenResult]:
    """`edgeship codegen` with its options (kernels, patches, max_ram, keep_input, ...) into a
    temporary folder, compiled for the host (-Wall -Wextra -Werror) and loaded.

    Returns:
        The backend (it owns the folder: the generated files stay at `backend.folder` until
        close) and codegen's result.
    """
    folder = tempfile.TemporaryDirectory(prefix="edgeship_c_")
    try:
        generated = generate_c(CodegenConfig(model=str(artifact_path), out=folder.name,
                                             name=SYMBOL_PREFIX, **codegen_options))
    except Exception:
        folder.cleanup()
        raise
    inputs, outputs = (TensorInfo(role, (-1,) + tuple(io.shape[1:]), io.dtype, io.scale,
                                  io.zero_point)
                       for role, io in (("input", generated.input), ("output", generated.output)))
    backend = CompiledCBackend(
        Path(artifact_path), folder, [Path(folder.name) / f"{SYMBOL_PREFIX}.c"], SYMBOL_PREFIX,
        inputs, outputs, optimization,
        facts={"kernels": f"edgeship codegen (generated C99, {generated.kernels} kernels)",
               "activation_bytes": generated.arena_bytes,
               "weight_bytes": generated.weight_bytes})
    return backend, generated
