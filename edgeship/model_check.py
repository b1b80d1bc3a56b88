"""Structural checks of model files before any runtime loads them.

TFLite's loader trusts the flatbuffer it is given: out-of-range tensor, buffer or operator
indices and constant buffers shorter than their tensor crash it (GHSA-cvpc-8phh-8f45,
GHSA-x9j7-x98r-r4w2, GHSA-hx2x-85gr-wrpq; TensorFlow issue 115308: an 8-byte file). ONNX
external data may name files outside the model's folder (CVE-2024-27318). These checks
refuse such files with one clear line before a runtime sees them.

The .tflite check is pure Python (the flatbuffers package and the schema bindings
ai_edge_litert ships), so it cannot crash the process: every read is bounds-checked by
Python and every vector length is checked against the file size before it is walked. The
.onnx check runs onnx's C++ checker; for files edgeship did not make, the caller runs it in a
child process (see edgeship.runtime.isolation).
"""

import math
import os
import re
import struct
from pathlib import Path

import numpy as np

from edgeship.deps import require
from edgeship.errors import UserInputError

TFLITE_IDENTIFIER = b"TFL3"
TFLITE_SCHEMA_VERSION = 3
# Far beyond any model edgeship targets (mobilenet_v2 at 224x224 peaks near 1.2 M), far
# below what would exhaust memory: a dimension product past this is a corrupt shape.
MAX_TENSOR_ELEMENTS = 1 << 28
MAX_TENSOR_RANK = 16
OPTIONAL_TENSOR = -1
# Bytes per element of TensorType values; sub-byte types (INT4, UINT4, INT2) and
# variable-size ones (STRING, RESOURCE, VARIANT) are not size-checked.
_ELEMENT_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1,
                  "INT16": 2, "COMPLEX64": 8, "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16,
                  "UINT64": 8, "UINT32": 4, "UINT16": 2, "BFLOAT16": 2, "FLOAT8_E4M3FN": 1,
                  "FLOAT8_E5M2": 1}
_ZERO_POINT_RANGES = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}
# What the flatbuffers package raises on out-of-range or nonsensical reads.
_READ_ERRORS = (struct.error, IndexError, ValueError, TypeError, OverflowError, KeyError,
                AttributeError, UnicodeDecodeError)


class _Malformed(Exception):
    """A structural fault, turned into one UserInputError line by check_tflite_bytes."""


def check_model_file(path: str | os.PathLike) -> None:
    """Check a .tflite or .onnx file's structure; other suffixes pass through.

    Raises:
        UserInputError: the file is unreadable or structurally unsafe to load.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        check_tflite_file(path)
    elif suffix == ".onnx":
        check_onnx_file(path)


# --- TFLite ----------------------------------------------------------------------------------

def check_tflite_file(path: str | os.PathLike) -> None:
    """Check that a .tflite file is a well-formed flatbuffer whose indices all point inside.

    Raises:
        UserInputError: one line naming the file and the first fault found.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserInputError(f"cannot read {path}: {error.strerror or error}") from error
    check_tflite_bytes(data, path.name)


def check_tflite_bytes(data: bytes, name: str = "model") -> None:
    """check_tflite_file on bytes already read (codegen and embed read the file themselves).

    Checks: the "TFL3" identifier and schema version 3; every vector fits in the file;
    operator-code, buffer, tensor and subgraph indices are in range; shapes are non-negative
    with at most MAX_TENSOR_ELEMENTS elements; a constant tensor's buffer holds exactly
    shape x element size bytes; int8/uint8 tensors carry finite positive scales with matching
    zero points (per-channel: one per slice of the quantized dimension).

    Raises:
        UserInputError: "NAME is not a valid .tflite model: REASON".
    """
    try:
        _TFLiteWalk(bytes(data)).check()
    except _Malformed as fault:
        raise UserInputError(f"{name} is not a valid .tflite model: {fault}") from None
    except RecursionError:
        raise UserInputError(f"{name} is not a valid .tflite model: its tables nest "
                             "without end") from None
    except _READ_ERRORS as error:
        raise UserInputError(f"{name} is not a valid .tflite model: the flatbuffer does not "
                             f"parse ({type(error).__name__}: {error})") from None


class _TFLiteWalk:
    """One pass over a .tflite flatbuffer with a budget on the tables it visits."""

    def __init__(self, data: bytes):
        self.schema = require("ai_edge_litert.schema_py_generated")
        self.data = data
        # Tables take at least 4 bytes each, so a file of N bytes holds fewer than N / 4
        # of them; more visits mean offsets pointing at the same bytes over and over.
        self.budget = len(data) // 4 + 64
        self.type_names = {value: key for key, value in vars(self.schema.TensorType).items()
                           if not key.startswith("_")}
        self.builtin_codes = {value for key, value in vars(self.schema.BuiltinOperator).items()
                              if not key.startswith("_")}

    def count(self, length: int, element_bytes: int, what: str, tables: bool = False) -> int:
        """A vector's length, refused when the file cannot hold that many elements.

        tables: the vector holds tables the walk visits one by one (charged to the budget).
        """
        if length < 0 or length * element_bytes > len(self.data):
            raise _Malformed(f"{what} claims {length} entries, more than the file's "
                             f"{len(self.data)} bytes can hold")
        self.budget -= length if tables else 0
        if self.budget < 0:
            raise _Malformed("its tables point at the same bytes over and over (more entries "
                             "than the file can hold)")
        return length

    def check(self) -> None:
        schema, data = self.schema, self.data
        if len(data) < 8:
            raise _Malformed(f"the file has {len(data)} bytes, too few for a flatbuffer")
        if not schema.Model.ModelBufferHasIdentifier(data, 0):
            raise _Malformed(f"file identifier {data[4:8]!r}, expected {TFLITE_IDENTIFIER!r}")
        root = struct.unpack_from("<I", data, 0)[0]
        if root + 4 > len(data):
            raise _Malformed(f"root table offset {root} is past the end of the file")
        model = schema.Model.GetRootAs(data, 0)
        if model.Version() != TFLITE_SCHEMA_VERSION:
            raise _Malformed(f"schema version {model.Version()}, expected "
                             f"{TFLITE_SCHEMA_VERSION}")
        opcode_count = self.count(model.OperatorCodesLength(), 4, "operator_codes", tables=True)
        for index in range(opcode_count):
            self.check_opcode(index, model.OperatorCodes(index))
        buffer_count = self.count(model.BuffersLength(), 4, "buffers", tables=True)
        buffer_sizes = [self.buffer_size(index, model.Buffers(index))
                        for index in range(buffer_count)]
        subgraph_count = self.count(model.SubgraphsLength(), 4, "subgraphs", tables=True)
        if subgraph_count == 0:
            raise _Malformed("it holds no subgraph")
        tensor_counts = [self.check_subgraph(index, model.Subgraphs(index), opcode_count,
                                             buffer_sizes, subgraph_count)
                         for index in range(subgraph_count)]
        for index in range(self.count(model.MetadataLength(), 4, "metadata", tables=True)):
            buffer = model.Metadata(index).Buffer()
            if not 0 <= buffer < buffer_count:
                raise _Malformed(f"metadata {index} names buffer {buffer} of {buffer_count}")
        for index in range(self.count(model.SignatureDefsLength(), 4, "signature_defs", tables=True)):
            self.check_signature(index, model.SignatureDefs(index), tensor_counts)

    def check_opcode(self, index: int, opcode) -> None:
        code = max(opcode.DeprecatedBuiltinCode(), opcode.BuiltinCode())
        if code not in self.builtin_codes:
            raise _Malformed(f"operator code {index} is {code}, not a TFLite builtin operator")
        if code == self.schema.BuiltinOperator.CUSTOM and not opcode.CustomCode():
            raise _Malformed(f"operator code {index} is CUSTOM without a custom_code name")

    def buffer_size(self, index: int, buffer) -> int:
        """Bytes of data a buffer holds, inline or at an offset inside the file."""
        offset, size = buffer.Offset(), buffer.Size()
        if offset > 1:  # models over 2 GB keep buffers after the flatbuffer, in the same file
            if offset + size > len(self.data):
                raise _Malformed(f"buffer {index} spans bytes {offset}..{offset + size}, past "
                                 f"the end of the {len(self.data)}-byte file")
            return size
        return self.count(buffer.DataLength(), 1, f"buffer {index} data")

    def check_subgraph(self, index: int, subgraph, opcode_count: int, buffer_sizes: list[int],
                       subgraph_count: int) -> int:
        where = f"subgraph {index}"
        tensor_count = self.count(subgraph.TensorsLength(), 4, f"{where} tensors", tables=True)
        for tensor_index in range(tensor_count):
            self.check_tensor(f"{where} tensor {tensor_index}", subgraph.Tensors(tensor_index),
                              buffer_sizes)
        for role, length, values in (("inputs", subgraph.InputsLength(), subgraph.InputsAsNumpy),
                                     ("outputs", subgraph.OutputsLength(),
                                      subgraph.OutputsAsNumpy)):
            if self.count(length, 4, f"{where} {role}"):
                self.check_indices(f"{where} {role}", values(), tensor_count, optional=False)
        for op_index in range(self.count(subgraph.OperatorsLength(), 4, f"{where} operators", tables=True)):
            self.check_operator(f"{where} operator {op_index}", subgraph.Operators(op_index),
                                opcode_count, tensor_count, subgraph_count)
        return tensor_count

    def check_indices(self, what: str, indices, count: int, optional: bool) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        low = OPTIONAL_TENSOR if optional else 0
        bad = indices[(indices < low) | (indices >= count)]
        if bad.size:
            raise _Malformed(f"{what} name tensor {int(bad[0])}, outside 0..{count - 1}")

    def check_tensor(self, where: str, tensor, buffer_sizes: list[int]) -> None:
        type_name = self.type_names.get(tensor.Type())
        if type_name is None:
            raise _Malformed(f"{where} has unknown type {tensor.Type()}")
        rank = self.count(tensor.ShapeLength(), 4, f"{where} shape")
        if rank > MAX_TENSOR_RANK:
            raise _Malformed(f"{where} has rank {rank}, more than {MAX_TENSOR_RANK}")
        shape = [int(side) for side in tensor.ShapeAsNumpy()] if rank else []
        if any(side < 0 for side in shape):
            raise _Malformed(f"{where} has a negative dimension in shape {shape}")
        elements = math.prod(shape)
        if elements > MAX_TENSOR_ELEMENTS:
            raise _Malformed(f"{where} has shape {shape} ({elements} elements), more than "
                             f"{MAX_TENSOR_ELEMENTS}")
        buffer = tensor.Buffer()
        if not 0 <= buffer < len(buffer_sizes):
            raise _Malformed(f"{where} names buffer {buffer} of {len(buffer_sizes)}")
        data_bytes = buffer_sizes[buffer]
        element_bytes = _ELEMENT_BYTES.get(type_name)
        if (data_bytes and element_bytes and tensor.Sparsity() is None
                and data_bytes != elements * element_bytes):
            raise _Malformed(f"{where} ({type_name} {shape}) needs {elements * element_bytes} "
                             f"bytes but its buffer {buffer} holds {data_bytes}")
        self.check_quantization(where, type_name, shape, tensor.Quantization())

    def check_quantization(self, where: str, type_name: str, shape: list[int],
                           quantization) -> None:
        scale_count = 0 if quantization is None else self.count(
            quantization.ScaleLength(), 4, f"{where} scales")
        if scale_count == 0:
            # UINT8 without quantization is raw bytes (an Ethos-U command stream, a custom op's
            # data); INT8 is only ever a quantized value.
            if type_name == "INT8":
                raise _Malformed(f"{where} is {type_name} without quantization parameters "
                                 "(scale and zero point)")
            return
        scales = np.asarray(quantization.ScaleAsNumpy(), dtype=np.float64)
        if not np.all(np.isfinite(scales) & (scales > 0)):
            raise _Malformed(f"{where} has a quantization scale that is not finite and positive")
        zero_count = self.count(quantization.ZeroPointLength(), 8, f"{where} zero points")
        if zero_count != scale_count:
            raise _Malformed(f"{where} has {scale_count} scale(s) but {zero_count} zero point(s)")
        limits = _ZERO_POINT_RANGES.get(type_name)
        if limits:
            zero_points = np.asarray(quantization.ZeroPointAsNumpy(), dtype=np.int64)
            if zero_points.min() < limits[0] or zero_points.max() > limits[1]:
                raise _Malformed(f"{where} has a zero point outside the {type_name} range")
        if scale_count > 1:
            dimension = quantization.QuantizedDimension()
            # A 1-d tensor (a bias) has one axis whatever quantized_dimension says: TensorFlow's
            # converter writes the weights' axis (3) on some depthwise biases, and TFLite Micro
            # reads them along their only axis.
            if len(shape) == 1:
                dimension = 0
            if not 0 <= dimension < len(shape) or shape[dimension] != scale_count:
                raise _Malformed(f"{where} has {scale_count} per-channel scales along "
                                 f"dimension {dimension} of shape {shape}")

    def check_operator(self, where: str, operator, opcode_count: int, tensor_count: int,
                       subgraph_count: int) -> None:
        if not 0 <= operator.OpcodeIndex() < opcode_count:
            raise _Malformed(f"{where} uses operator code {operator.OpcodeIndex()} of "
                             f"{opcode_count}")
        for role, length, values in (
                ("inputs", operator.InputsLength(), operator.InputsAsNumpy),
                ("outputs", operator.OutputsLength(), operator.OutputsAsNumpy),
                ("intermediates", operator.IntermediatesLength(), operator.IntermediatesAsNumpy)):
            if self.count(length, 4, f"{where} {role}"):
                self.check_indices(f"{where} {role}", values(), tensor_count, optional=True)
        for name, subgraph in self.called_subgraphs(operator):
            if not 0 <= subgraph < subgraph_count:
                raise _Malformed(f"{where} calls {name} subgraph {subgraph} of {subgraph_count}")

    def called_subgraphs(self, operator) -> list[tuple[str, int]]:
        """Subgraph indices control-flow operators (IF, WHILE, CALL_ONCE) jump to."""
        schema = self.schema
        kinds = {schema.BuiltinOptions.IfOptions: (schema.IfOptions, ("ThenSubgraphIndex",
                                                                      "ElseSubgraphIndex")),
                 schema.BuiltinOptions.WhileOptions: (schema.WhileOptions, (
                     "CondSubgraphIndex", "BodySubgraphIndex")),
                 schema.BuiltinOptions.CallOnceOptions: (schema.CallOnceOptions,
                                                         ("InitSubgraphIndex",))}
        kind = kinds.get(operator.BuiltinOptionsType())
        table = operator.BuiltinOptions() if kind else None
        if table is None:
            return []
        options = kind[0]()
        options.Init(table.Bytes, table.Pos)
        return [(re.sub(r"SubgraphIndex$", "", field).lower(), getattr(options, field)())
                for field in kind[1]]

    def check_signature(self, index: int, signature, tensor_counts: list[int]) -> None:
        subgraph = signature.SubgraphIndex()
        if not 0 <= subgraph < len(tensor_counts):
            raise _Malformed(f"signature {index} names subgraph {subgraph} of "
                             f"{len(tensor_counts)}")
        for role, length, item in (("inputs", signature.InputsLength(), signature.Inputs),
                                   ("outputs", signature.OutputsLength(), signature.Outputs)):
            for position in range(self.count(length, 4, f"signature {index} {role}", tables=True)):
                tensor = item(position).TensorIndex()
                if not 0 <= tensor < tensor_counts[subgraph]:
                    raise _Malformed(f"signature {index} {role} name tensor {tensor}, outside "
                                     f"0..{tensor_counts[subgraph] - 1}")


# --- ONNX ------------------------------------------------------------------------------------

def check_onnx_file(path: str | os.PathLike) -> None:
    """Refuse external data outside the model's folder, then run onnx's full checker.

    External-data locations must be relative paths that stay inside the model's folder
    after resolving `..` and symbolic links (the CVE-2024-27318 class), and each offset and
    length must fit the file named.

    Raises:
        UserInputError: "NAME is not a valid .onnx model: REASON" or the refused location.
    """
    onnx = require("onnx")
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError as error:
        raise UserInputError(f"cannot read {path}: {error.strerror or error}") from error
    except Exception as error:  # protobuf's DecodeError and friends
        raise UserInputError(f"{path.name} is not a valid .onnx model: it does not parse as "
                             f"an ONNX protobuf ({_one_line(error)})") from None
    external = [tensor for tensor in onnx_tensors(model)
                if tensor.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        check_external_data(path, tensor)
    try:
        if external:  # shape inference reads constants: load the data checked just above
            onnx.load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model if external else str(path), full_check=True)
    except Exception as error:  # ValidationError, InferenceError, and protobuf errors
        raise UserInputError(f"{path.name} is not a valid .onnx model: {_one_line(error)}"
                             ) from None


def onnx_tensors(model):
    """Every TensorProto of a model: initializers, sparse ones, constants in attributes,
    in subgraphs (If/Loop/Scan bodies) and in local functions."""
    def from_graph(graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            yield from from_node(node)

    def from_node(node):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
                yield attribute.sparse_tensor.indices
            if attribute.HasField("g"):
                yield from from_graph(attribute.g)
            for graph in attribute.graphs:
                yield from from_graph(graph)

    yield from from_graph(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from from_node(node)


def check_external_data(model_path: Path, tensor) -> None:
    """One external-data reference: a relative location inside the model's folder."""
    entries = {entry.key: entry.value for entry in tensor.external_data}
    location = entries.get("location", "")
    refuse = (f"{model_path.name}: tensor {tensor.name!r} keeps its data at {location!r}, "
              "outside the model's folder; edgeship refuses external data that leaves it")
    if not location:
        raise UserInputError(f"{model_path.name}: tensor {tensor.name!r} has external data "
                             "without a location")
    parts = re.split(r"[\\/]", location)
    if (os.path.isabs(location) or location.startswith(("/", "\\")) or ".." in parts
            or re.match(r"^[A-Za-z]:", location) or "\x00" in location):
        raise UserInputError(refuse)
    folder = os.path.realpath(model_path.parent)
    target = os.path.realpath(os.path.join(folder, location))
    if os.path.commonpath([folder, target]) != folder:
        raise UserInputError(refuse)
    if not os.path.isfile(target):
        raise UserInputError(f"{model_path.name}: tensor {tensor.name!r} keeps its data in "
                             f"{location!r}, which is not a file beside the model")
    try:
        offset = int(entries.get("offset", 0) or 0)
        length = int(entries.get("length", 0) or 0)
    except ValueError:
        raise UserInputError(f"{model_path.name}: tensor {tensor.name!r} has a non-integer "
                             "external-data offset or length") from None
    size = os.path.getsize(target)
    if offset < 0 or length < 0 or offset + length > size:
        raise UserInputError(f"{model_path.name}: tensor {tensor.name!r} reads bytes "
                             f"{offset}..{offset + length} of {location!r}, which holds {size}")


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:300] + ("..." if len(text) > 300 else "")
