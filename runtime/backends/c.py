"""The `c` backend: the C that `edgeship codegen` writes, compiled on the host and run.

Opening a .tflite generates the C into a temporary folder, compiles it with the system C
compiler (`$CC`, else cc, gcc or clang) into a shared library with the same warnings the
tests demand (-std=c99 -Wall -Wextra -Werror, -O2) and calls `model_run` through ctypes, one
image at a time as a microcontroller would. Its int8 outputs must equal litert-ref's and
tflm's bit for bit: that is the proof the generated code computes what TFLite computes.
"""

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from edgeship.runtime.backends import Backend, TensorInfo, check_options

from edgeship.errors import UserInputError

_OPTIONS = ("threads", "device", "optimization")
SYMBOL_PREFIX = "model"
WARNING_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror")


def find_c_compiler() -> str:
    """$CC, else the first of cc, gcc, clang on PATH; one clear error when there is none."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise UserInputError("the c backend needs a C compiler on PATH (cc, gcc or clang; or set "
                         "CC); on Debian/Ubuntu: apt-get install gcc")


def compile_shared_library(sources: list[Path], output: Path, optimization: str = "-O2") -> Path:
    """Compile C files into a shared library; a compiler error is reported with its output."""
    compiler = find_c_compiler()
    command = [compiler, *WARNING_FLAGS, optimization, "-shared", "-fPIC", "-o", str(output),
               *map(str, sources)]
    completed = subprocess.run(command, check=False, capture_output=True, text=True)
    if completed.returncode != 0:
        raise UserInputError(f"compiling the generated C failed ({' '.join(command)}):\n"
                             f"{completed.stderr.strip()}")
    return output


def open_backend(artifact_path: Path, **options) -> "CBackend":
    check_options("c", options, _OPTIONS)
    if options.get("device", "cpu") != "cpu":
        raise UserInputError("the c backend runs on the CPU; use --device cpu")
    if options.get("threads", 1) != 1:
        raise UserInputError("the generated C is single-threaded, as on a microcontroller; "
                             "use --threads 1")
    return CBackend(Path(artifact_path), optimization=options.get("optimization", "-O2"))


class CBackend(Backend):
    """Generated C for one int8 .tflite, compiled into a temporary shared library."""

    def __init__(self, artifact_path: Path, optimization: str = "-O2"):
        from edgeship.convert.codegen import CodegenConfig, generate_c

        self.artifact_path = artifact_path
        self._folder = tempfile.TemporaryDirectory(prefix="edgeship_c_")
        folder = Path(self._folder.name)
        try:
            self._generated = generate_c(CodegenConfig(model=str(artifact_path), out=str(folder),
                                                       name=SYMBOL_PREFIX))
            self._library_path = compile_shared_library(
                [folder / f"{SYMBOL_PREFIX}.c"], folder / f"lib{SYMBOL_PREFIX}.so", optimization)
            self._library = ctypes.CDLL(str(self._library_path))
        except Exception:
            self._folder.cleanup()
            raise
        self._run = self._library[f"{SYMBOL_PREFIX}_run"]
        self._run.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
        self._run.restype = ctypes.c_int
        self.optimization = optimization
        generated_input, generated_output = self._generated.input, self._generated.output
        self._inputs = [TensorInfo("input", (-1,) + tuple(generated_input.shape[1:]), "int8",
                                   generated_input.scale, generated_input.zero_point)]
        self._outputs = [TensorInfo("output", (-1,) + tuple(generated_output.shape[1:]), "int8",
                                    generated_output.scale, generated_output.zero_point)]

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.dtype != np.int8:
            raise UserInputError(f"the c backend takes int8 inputs, got {batch.dtype}")
        input_size = self._generated.input.size
        output_size = self._generated.output.size
        flat = np.ascontiguousarray(batch.reshape(len(batch), -1))
        if flat.shape[1] != input_size:
            raise UserInputError(f"input has {flat.shape[1]} values per image; the model takes "
                                 f"{input_size}")
        outputs = np.zeros((len(batch), output_size), np.int8)
        for index in range(len(batch)):
            self._run(flat[index].ctypes.data, outputs[index].ctypes.data)
        return outputs.reshape((len(batch),) + tuple(self._outputs[0].shape[1:]))

    def details(self) -> dict:
        return {"kernels": "edgeship codegen (generated C99)", "compiler": find_c_compiler(),
                "flags": [*WARNING_FLAGS, self.optimization],
                "activation_bytes": self._generated.arena_bytes,
                "weight_bytes": self._generated.weight_bytes}

    def close(self) -> None:
        self._library = None
        self._run = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

