"""Generated C compiled on the host and run: the machinery of the `c` backend.

The `c` backend (edgeship.c_backend, registered as "c") generates C from a .tflite with
`edgeship codegen`, then hands the sources to CompiledCBackend here, which compiles them with
the system C compiler (`$CC`, else cc, gcc or clang) into a shared library with the same
warnings the tests demand (-std=c99 -Wall -Wextra -Werror, -O2) and calls `PREFIX_run`
through ctypes, one image at a time as a microcontroller would. Raw inputs and outputs are in
the model's own types (int8, int16, uint8 or float32, as the TensorInfo dtypes say), and its
outputs must equal tflm's bit for bit, float ones included: that is the proof the generated
code computes what TFLite Micro computes. This module knows nothing of how the C was
generated.
"""

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgeship.errors import UserInputError
from edgeship.runtime.backends import Backend, TensorInfo, check_options

OPTIONS = ("threads", "device", "optimization")
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


def check_c_options(options: dict) -> str:
    """Validate the c backend's options; returns the optimization flag."""
    check_options("c", options, OPTIONS)
    if options.get("device", "cpu") != "cpu":
        raise UserInputError("the c backend runs on the CPU; use --device cpu")
    if options.get("threads", 1) != 1:
        raise UserInputError("the generated C is single-threaded, as on a microcontroller; "
                             "use --threads 1")
    return options.get("optimization", "-O2")


class CompiledCBackend(Backend):
    """C sources of one model with `int PREFIX_run(const IN *, OUT *)` (IN and OUT the C
    types of the TensorInfo dtypes: int8_t, int16_t, uint8_t or float), compiled into a shared
    library inside a temporary folder the backend owns and removes on close."""

    def __init__(self, artifact_path: Path, folder: tempfile.TemporaryDirectory,
                 sources: list[Path], prefix: str, inputs: TensorInfo, outputs: TensorInfo,
                 optimization: str = "-O2", facts: dict | None = None):
        self.artifact_path = artifact_path
        self._folder = folder
        try:
            library_path = compile_shared_library(sources, Path(folder.name) / f"lib{prefix}.so",
                                                  optimization)
            self._library = ctypes.CDLL(str(library_path))
        except Exception:
            folder.cleanup()
            raise
        self._run = self._library[f"{prefix}_run"]
        self._run.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
        self._run.restype = ctypes.c_int
        self.optimization = optimization
        self._facts = dict(facts or {})
        self._inputs, self._outputs = [inputs], [outputs]
        self._input_size = int(np.prod(inputs.shape[1:]))
        self._output_size = int(np.prod(outputs.shape[1:]))

    @property
    def folder(self) -> Path:
        """The folder the backend owns (the sources and the library) until close."""
        return Path(self._folder.name)

    def infer_raw(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.dtype != np.dtype(self._inputs[0].dtype):
            raise UserInputError(f"the c backend takes {np.dtype(self._inputs[0].dtype)} "
                                 f"inputs, got {batch.dtype}")
        flat = np.ascontiguousarray(batch.reshape(len(batch), -1))
        if flat.shape[1] != self._input_size:
            raise UserInputError(f"input has {flat.shape[1]} values per image; the model takes "
                                 f"{self._input_size}")
        outputs = np.zeros((len(batch), self._output_size), np.dtype(self._outputs[0].dtype))
        for index in range(len(batch)):
            self._run(flat[index].ctypes.data, outputs[index].ctypes.data)
        return outputs.reshape((len(batch),) + tuple(self._outputs[0].shape[1:]))

    def details(self) -> dict:
        return {**self._facts, "compiler": find_c_compiler(),
                "flags": [*WARNING_FLAGS, self.optimization]}

    def close(self) -> None:
        self._library = None
        self._run = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None
