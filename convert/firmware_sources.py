"""What `edgeship codegen` and `edgeship embed` share: the config, the model's quantized I/O,
its class labels, and the sample files (test images with the outputs a firmware must get).

The sample outputs come from TFLite Micro, a runtime: edgeship.firmware collects them (the
layer above convert and runtime) and hands them to the writers here as a Samples value.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.artifacts import sha256_file, write_text_atomic
from edgeship.convert.c_source import (
    EXTERN_C_CLOSE,
    EXTERN_C_OPEN,
    IO_CTYPES,
    c_array_literal,
    c_io_array_literal,
    check_c_name,
    header_guard,
)
from edgeship.errors import UserInputError
from edgeship.quantization import TensorInfo
from edgeship.records import DatasetRecord, TrainRecord
from edgeship.run_dir import RunDir
from edgeship.tflite_graph import Graph, read_graph


@dataclass(frozen=True)
class FirmwareSourceConfig:
    """A model turned into firmware sources (`edgeship codegen` and `edgeship embed`).

    Attributes:
        model: path of the .tflite (full int8 for codegen).
        out: folder to write the sources into.
        name: prefix of every file and public C symbol.
        samples: number of test images (with TFLite Micro's outputs) to embed; 0 for none.
        seed: seed of the sample choice (and of random inputs outside a run directory).
    """

    model: str
    out: str
    name: str = "model"
    samples: int = 0
    seed: int = 0

    def __post_init__(self):
        check_c_name(self.name)
        if self.samples < 0:
            raise UserInputError(f"samples must be >= 0, got {self.samples}")


# The model's input or output (edgeship.quantization.TensorInfo: shape, scale, zero point and
# type, C_TYPES: int8, int16, uint8; float32, which the model quantizes itself, or int32
# indices: those two with scale 0.0 and zero point 0). QuantizedIO is the name codegen uses.
QuantizedIO = TensorInfo


@dataclass(frozen=True)
class FirmwareModel:
    """The model a firmware-source writer works from, read and checked once."""

    path: Path
    data: bytes
    sha256: str
    graph: Graph
    input: TensorInfo
    output: TensorInfo
    labels: list[str]
    out: Path
    # Every input and output, in the model's order (one each for most models); with several,
    # `input`/`output` describe them packed into one buffer (packed_io).
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()

    @property
    def note(self) -> str:
        """How generated files name their source: file name and short hash."""
        return f"{self.path.name} (sha256 {self.sha256[:16]})"


def read_firmware_model(config: FirmwareSourceConfig, samples: "Samples | None",
                        collector: str, packed: bool = False) -> FirmwareModel:
    """Read and check the config's model and output folder.

    Args:
        config: the writer's config.
        samples: the samples the writer was given (None for none).
        collector: the function that collects samples, for the error when they are missing.
        packed: describe several inputs (outputs) as one buffer of them all in order
            (codegen's NAME_run); otherwise `input`/`output` are the first ones.

    Raises:
        UserInputError: a missing or malformed model, an --out that is a file.
        ValueError: config.samples asks for samples and none were given.
    """
    if config.samples and samples is None:
        raise ValueError(f"config.samples is {config.samples} but no samples were given; "
                         f"{collector} collects them with TFLite Micro")
    path = Path(config.model)
    if not path.is_file():
        raise UserInputError(f"model {path} does not exist")
    data = path.read_bytes()
    graph = read_graph(data)
    input_io, output_io = model_io(graph)
    inputs = tuple(graph.tensors[index].info() for index in graph.inputs)
    outputs = tuple(graph.tensors[index].info() for index in graph.outputs)
    if packed:
        input_io, output_io = packed_io(inputs), packed_io(outputs)
    for role, io in (("input", input_io), ("output", output_io)):
        if io.dtype not in IO_CTYPES:
            raise UserInputError(f"the model's {role} is {io.dtype}; firmware sources take "
                                 f"{', '.join(IO_CTYPES)} input and output")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} exists and is not a directory")
    return FirmwareModel(path, data, sha256_file(path), graph, input_io, output_io,
                         model_labels(path, output_io.size), out, inputs, outputs)


def packed_io(parts: tuple[TensorInfo, ...]) -> TensorInfo:
    """One tensor as it is, or several of one type as one flat buffer of them all in order
    (shape (1, total)); its scale and zero point are theirs when they share them, else 0.0
    and 0 (each part's own are in NAME.h)."""
    if len(parts) == 1:
        return parts[0]
    shared = len({(part.scale, part.zero_point) for part in parts}) == 1
    return TensorInfo(" + ".join(part.name for part in parts),
                      (1, sum(part.size for part in parts)), parts[0].dtype,
                      parts[0].scale if shared else 0.0, parts[0].zero_point if shared else 0)


def write_samples(out: Path, name: str, samples: "Samples | None", tool: str) -> list[Path]:
    """NAME_samples.h/.c in out (nothing without samples); the paths written."""
    if samples is None:
        return []
    header, source = render_samples(name, samples, tool)
    return [write_text_atomic(out / f"{name}_samples.h", header),
            write_text_atomic(out / f"{name}_samples.c", source)]


def model_io(graph: Graph) -> tuple[TensorInfo, TensorInfo]:
    """The first input's and first output's TensorInfo (a float tensor's scale is 0.0)."""
    tensors = graph.tensors
    return tensors[graph.inputs[0]].info(), tensors[graph.outputs[0]].info()


def random_inputs(graph: Graph, count: int, seed: int) -> np.ndarray:
    """count seeded random inputs in the model's input type, for a model without a dataset
    (with several inputs, each sample packs them all, flat, in order).

    Integers cover their whole type. Float32 inputs cover the range the model's input
    QUANTIZE maps onto its output type, two quanta beyond each end so clamping is met too
    ([-1, 1] when the input feeds no QUANTIZE).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for index in graph.inputs:
        tensor = graph.tensors[index]
        # The first dimension is the batch of 1 when there is one; a 1-D input (a bias
        # vector, as TFLite Micro's one-op test models take) is a sample whole.
        batched = len(tensor.shape) > 1 and tensor.shape[0] == 1
        shape = (count,) + tuple(tensor.shape[1:] if batched else tensor.shape)
        dtype = np.dtype(tensor.dtype)
        if np.issubdtype(dtype, np.integer):
            limits = np.iinfo(dtype)
            parts.append(rng.integers(int(limits.min), int(limits.max) + 1,
                                      size=shape).astype(dtype))
        else:
            low, high = _quantize_input_range(graph, index)
            parts.append(rng.uniform(low, high, size=shape).astype(dtype))
    if len(parts) == 1:
        return parts[0]
    # Several inputs: each sample is all of them in order, flat (codegen's packed buffer).
    return np.concatenate([part.reshape(count, -1) for part in parts], axis=1)


def _quantize_input_range(graph: Graph, index: int) -> tuple[float, float]:
    """The float range the QUANTIZE reading graph input `index` maps, two quanta wider each
    side."""
    for op in graph.operators:
        if op.name == "QUANTIZE" and op.inputs[0] == index:
            output = graph.tensors[op.outputs[0]]
            if output.scale > 0 and output.dtype in ("int8", "uint8", "int16"):
                limits = np.iinfo(np.dtype(output.dtype))
                return ((int(limits.min) - output.zero_point - 2) * output.scale,
                        (int(limits.max) - output.zero_point + 2) * output.scale)
    return -1.0, 1.0


def run_directory_dataset(model_path: Path) -> DatasetRecord | None:
    """The dataset train recorded beside a .tflite, if it sits in a run directory."""
    run = RunDir(Path(model_path).parent)
    try:  # read under the run directory's lock, as every manifest access is
        train = run.read(TrainRecord)
    except UserInputError:  # a corrupt manifest vouches for no dataset
        return None
    return train.dataset if train else None


def model_labels(model_path: Path | None, output_size: int) -> list[str]:
    """Class names from the run's manifest when they fit the output, else "0".."N-1"."""
    dataset = run_directory_dataset(model_path) if model_path is not None else None
    names = list(dataset.class_names) if dataset else []
    if len(names) == output_size:
        return [str(label) for label in names]
    return [str(index) for index in range(output_size)]


@dataclass(frozen=True)
class Samples:
    """Test images as the model takes them, their dataset labels (-1 unknown) and TFLM's
    outputs: the arrays' dtypes are the model's I/O types (int8, int16, uint8 or float32)."""

    inputs: np.ndarray
    labels: np.ndarray
    expected: np.ndarray
    source: str


def render_samples(name: str, samples: Samples, tool: str) -> tuple[str, str]:
    """NAME_samples.h and NAME_samples.c: plain C, usable from C and C++ firmware alike."""
    upper = name.upper()
    count = len(samples.inputs)
    input_size = int(np.prod(samples.inputs.shape[1:]))
    output_size = samples.expected.shape[1]
    input_type = IO_CTYPES[samples.inputs.dtype.name]
    output_type = IO_CTYPES[samples.expected.dtype.name]
    form = ("float32 values (the model quantizes them)" if samples.inputs.dtype == np.float32
            else f"already quantized to {samples.inputs.dtype.name}")
    guard_open, guard_close = header_guard(f"{name}_samples")
    header = "\n".join([
        f"/* {name}_samples.h: generated by edgeship {tool}. Do not edit; regenerate. */",
        *guard_open, "", "#include <stdint.h>", "", *EXTERN_C_OPEN, "",
        f"/* {count} samples from the {samples.source}, {form}. */",
        f"#define {upper}_SAMPLE_COUNT {count}",
        f"#define {upper}_SAMPLE_INPUT_SIZE {input_size}",
        f"#define {upper}_SAMPLE_OUTPUT_SIZE {output_size}", "",
        f"extern const {input_type} {name}_sample_inputs[{upper}_SAMPLE_COUNT][{upper}_SAMPLE_INPUT_SIZE];",
        "/* The outputs TFLite Micro's reference kernels compute for each sample. */",
        f"extern const {output_type} {name}_sample_outputs[{upper}_SAMPLE_COUNT][{upper}_SAMPLE_OUTPUT_SIZE];",
        "/* The dataset's label of each sample (-1: unknown). */",
        f"extern const int {name}_sample_labels[{upper}_SAMPLE_COUNT];", "",
        *EXTERN_C_CLOSE, "", *guard_close, ""])
    rows_in = ",\n".join("  {\n" + c_io_array_literal(row) + "\n  }"
                         for row in samples.inputs.reshape(count, -1))
    rows_out = ",\n".join("  {" + c_io_array_literal(row, indent="") + "}"
                          for row in samples.expected)
    source = "\n".join([
        f"/* {name}_samples.c: generated by edgeship {tool}. Do not edit; regenerate. */",
        f'#include "{name}_samples.h"', "",
        f"const {input_type} {name}_sample_inputs[{upper}_SAMPLE_COUNT][{upper}_SAMPLE_INPUT_SIZE] = {{",
        rows_in, "};", "",
        f"const {output_type} {name}_sample_outputs[{upper}_SAMPLE_COUNT][{upper}_SAMPLE_OUTPUT_SIZE] = {{",
        rows_out, "};", "",
        f"const int {name}_sample_labels[{upper}_SAMPLE_COUNT] = {{",
        c_array_literal(samples.labels), "};", ""])
    return header, source
