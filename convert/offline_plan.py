"""edgeship's memory plan for TensorFlow Lite Micro: the .tflite's OfflineMemoryAllocation.

TFLite Micro plans its arena online (a greedy planner at AllocateTensors), but first reads an
offline plan when the model carries one: a metadata entry named "OfflineMemoryAllocation"
whose buffer holds int32 values [version 0, subgraph 0, N, offset of tensor 0, ...,
offset of tensor N-1] (N: the tensors of every subgraph), each offset relative to the start
of the non-persistent arena (its head), -1 for a tensor TFLite Micro plans online.

The plan here is for what TFLite Micro itself allocates and runs, not for the generated C:
- the tensors: every tensor without constant data that is not a variable and has bytes (the
  graph's input and output included); constants stay in the flatbuffer and variables in the
  persistent arena (-1);
- their lifetimes as TFLite Micro marks them (micro_allocation_info.cc): op i runs at scope
  i + 1, the graph's inputs are created at scope 0, an op's inputs live to its scope and its
  outputs from it, the graph's outputs to the last op's; two tensors whose [first, last]
  scopes meet must not share a byte (TFLite Micro's kernels never run in place);
- sizes rounded up to 16 bytes and offsets on 16 (MicroArenaBufferAlignment), as TFLite
  Micro rounds every planned buffer.
The scratch buffers kernels request at Prepare (CMSIS-NN's im2col buffers) are not known
from the file: TFLite Micro still plans those online, in the gaps the offline tensors leave
or after them, so the head it reports can exceed the plan by them.
"""

import struct
from dataclasses import dataclass

import numpy as np

from edgeship.errors import UserInputError
from edgeship.tflite_graph import read_user_model, write_model

OFFLINE_PLAN_METADATA = "OfflineMemoryAllocation"
ONLINE = -1  # TFLite Micro's kOnlinePlannedBuffer
TFLM_ALIGNMENT = 16  # MicroArenaBufferAlignment()
BUFFER_ALIGNMENT = 16  # the schema's force_align of Buffer.data
# The schema's TensorType code -> bytes per element, as TFLite Micro's TfLiteTypeSizeOf
# counts them (int4 takes a byte; strings and variants it cannot allocate are left out).
_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8,
               13: 4, 15: 4, 16: 2, 17: 1, 18: 2}


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor TFLite Micro allocates in its head: index, bytes (rounded to 16) and the
    first and last scope it is live in (scope 0: before the first op; op i: i + 1)."""

    index: int
    name: str
    bytes: int
    first: int
    last: int

    def meets(self, other: "PlannedTensor") -> bool:
        """Live at the same time (TFLite Micro's DoesEntryOverlapInTime)."""
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class OfflinePlan:
    """Offsets for TFLite Micro's head, one per tensor of the model.

    Attributes:
        offsets: tensor index -> offset in the head, ONLINE for tensors TFLite Micro places.
        tensors: the planned tensors with their sizes and lifetimes.
        plan_bytes: the head the plan needs: the end of its highest tensor.
        lower_bound_bytes: the most bytes live in one scope; no plan without overlapping
            tensors can be smaller.
        sum_of_tensors: what the planned tensors take each in its own bytes.
    """

    offsets: tuple[int, ...]
    tensors: tuple[PlannedTensor, ...]
    plan_bytes: int
    lower_bound_bytes: int
    sum_of_tensors: int

    def metadata_bytes(self) -> bytes:
        """The OfflineMemoryAllocation buffer: int32 version, subgraph, count, offsets."""
        return struct.pack(f"<3i{len(self.offsets)}i", 0, 0, len(self.offsets), *self.offsets)

    def overlaps(self) -> list[tuple[int, int]]:
        """Pairs of tensors live at the same time whose bytes meet (empty for a valid plan)."""
        found = []
        for position, tensor in enumerate(self.tensors):
            start = self.offsets[tensor.index]
            for other in self.tensors[position + 1:]:
                other_start = self.offsets[other.index]
                if (tensor.meets(other) and start < other_start + other.bytes
                        and other_start < start + tensor.bytes):
                    found.append((tensor.index, other.index))
        return found

    def to_dict(self) -> dict:
        return {"plan_bytes": self.plan_bytes, "lower_bound_bytes": self.lower_bound_bytes,
                "sum_of_tensors": self.sum_of_tensors, "planned_tensors": len(self.tensors),
                "model_tensors": len(self.offsets),
                "alignment": TFLM_ALIGNMENT}


def planned_tensors(model) -> tuple[list[PlannedTensor], int]:
    """The tensors TFLite Micro allocates in its head, with their lifetimes, and the model's
    tensor count (every subgraph's: the length of the offset list).

    Only subgraph 0 is planned; the tensors of other subgraphs (IF, WHILE bodies) are left
    to TFLite Micro.
    """
    subgraph = model.subgraphs[0]
    tensors = subgraph.tensors or []
    first: dict[int, int] = {}
    last: dict[int, int] = {}

    def created(index: int, scope: int) -> None:
        first.setdefault(index, scope)

    def used(index: int, scope: int) -> None:
        last[index] = scope

    for index in subgraph.inputs if subgraph.inputs is not None else []:
        created(int(index), 0)
        used(int(index), 0)
    operators = subgraph.operators or []
    for position, op in enumerate(operators):
        scope = position + 1
        outputs = [int(index) for index in (op.outputs if op.outputs is not None else [])]
        for index in outputs:
            created(index, scope)
        for index in op.inputs if op.inputs is not None else []:
            if index >= 0:
                used(int(index), scope)
        for index in outputs:
            used(index, scope)
    for index in subgraph.outputs if subgraph.outputs is not None else []:
        created(int(index), len(operators))
        used(int(index), len(operators))
    planned = []
    for index, tensor in enumerate(tensors):
        size = _tensor_bytes(tensor)
        if (size == 0 or tensor.isVariable or _is_constant(model, tensor)
                or index not in first or index not in last):
            continue
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        planned.append(PlannedTensor(index, name, _align(size), first[index], last[index]))
    count = sum(len(graph.tensors or []) for graph in model.subgraphs)
    return planned, count


def plan_offline(tflite_bytes: bytes) -> OfflinePlan:
    """edgeship's plan of TFLite Micro's head for a model (see the module docstring): the
    smallest of plan_candidates.

    Raises:
        UserInputError: the file is not a .tflite edgeship can rewrite.
    """
    return plan_candidates(tflite_bytes)[0]


def plan_candidates(tflite_bytes: bytes) -> list[OfflinePlan]:
    """The distinct plans greedy first fit makes in several orders (largest first, as TFLite
    Micro's own planner; by creation, forwards and backwards; most bytes x scopes first),
    smallest first.

    First fit is order-sensitive, so the smallest is kept; the others leave their gaps
    elsewhere, which matters where kernels ask TFLite Micro for scratch buffers it then
    places online, in the gaps or after the plan (edgeship.firmware measures which fits).

    Raises:
        UserInputError: the file is not a .tflite edgeship can rewrite.
    """
    model = _read(tflite_bytes)
    tensors, count = planned_tensors(model)
    orders = (
        sorted(tensors, key=lambda tensor: (-tensor.bytes, tensor.first, tensor.index)),
        sorted(tensors, key=lambda tensor: (tensor.first, -tensor.bytes, tensor.index)),
        sorted(tensors, key=lambda tensor: (-tensor.first, -tensor.bytes, tensor.index)),
        sorted(tensors, key=lambda tensor: (-(tensor.last - tensor.first + 1) * tensor.bytes,
                                            tensor.index)))
    scopes = sorted({scope for tensor in tensors for scope in (tensor.first, tensor.last)})
    lower_bound = max((sum(tensor.bytes for tensor in tensors
                           if tensor.first <= scope <= tensor.last) for scope in scopes),
                      default=0)
    plans: dict[tuple[int, ...], OfflinePlan] = {}
    for order in orders:
        placed = _first_fit(order)
        offsets = [ONLINE] * count
        for index, offset in placed.items():
            offsets[index] = offset
        plans.setdefault(tuple(offsets), OfflinePlan(
            offsets=tuple(offsets), tensors=tuple(tensors),
            plan_bytes=max((offset + tensor.bytes for tensor in tensors
                            for offset in (placed[tensor.index],)), default=0),
            lower_bound_bytes=lower_bound,
            sum_of_tensors=sum(tensor.bytes for tensor in tensors)))
    return sorted(plans.values(), key=lambda plan: plan.plan_bytes)


def with_offline_plan(tflite_bytes: bytes, plan: OfflinePlan) -> bytes:
    """The model with the plan as its OfflineMemoryAllocation metadata (an existing one
    replaced), everything else kept: the same tensors, ops, buffers and other metadata,
    every buffer's data on 16 bytes as the converter writes them.

    Raises:
        UserInputError: the file is not a .tflite edgeship can rewrite.
    """
    model = _read(tflite_bytes)
    data = np.frombuffer(plan.metadata_bytes(), np.uint8).copy()
    buffer = _buffer_type()()
    buffer.data = data
    metadata_type = type(model.metadata[0]) if model.metadata else _metadata_type()
    existing = [entry for entry in model.metadata or []
                if _text(entry.name) == OFFLINE_PLAN_METADATA]
    if existing and _buffer_owned_by_metadata(model, existing[0].buffer):
        model.buffers[existing[0].buffer] = buffer
        for entry in existing[1:]:
            model.metadata.remove(entry)
    else:
        for entry in existing:
            model.metadata.remove(entry)
        model.buffers.append(buffer)
        entry = metadata_type()
        entry.name = OFFLINE_PLAN_METADATA
        entry.buffer = len(model.buffers) - 1
        model.metadata = [*(model.metadata or []), entry]
    model.buffers = [_AlignedBuffer(item) for item in model.buffers]
    return write_model(model)


def read_offline_plan(tflite_bytes: bytes) -> list[int] | None:
    """The offsets of a model's OfflineMemoryAllocation metadata, None when it has none.

    Raises:
        UserInputError: the entry is malformed (not version 0, a count that is not its length).
    """
    model = _read(tflite_bytes)
    for entry in model.metadata or []:
        if _text(entry.name) != OFFLINE_PLAN_METADATA:
            continue
        raw = np.asarray(model.buffers[entry.buffer].data, np.uint8).tobytes()
        values = list(struct.unpack(f"<{len(raw) // 4}i", raw[:len(raw) // 4 * 4]))
        if len(values) < 3 or values[0] != 0 or values[2] != len(values) - 3:
            raise UserInputError(f"malformed {OFFLINE_PLAN_METADATA} metadata: header "
                                 f"{values[:3]} for {len(values) - 3} offsets")
        return values[3:]
    return None


class _AlignedBuffer:
    """A schema BufferT that packs its data on BUFFER_ALIGNMENT bytes (the schema's
    force_align, which the Python object API ignores): TFLite Micro reads weights, biases
    and this plan through int32 pointers."""

    def __init__(self, buffer):
        self.buffer = buffer

    def Pack(self, builder):  # the schema object API's name
        schema = _schema()
        data = None
        if self.buffer.data is not None:
            raw = np.asarray(self.buffer.data, np.uint8).tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, self.buffer.offset)
        schema.BufferAddSize(builder, self.buffer.size)
        return schema.BufferEnd(builder)


def _first_fit(order: list[PlannedTensor]) -> dict[int, int]:
    """Offsets (multiples of 16) for the tensors in order: each at the lowest offset where it
    meets no tensor placed before it that is live at the same time."""
    placed: list[tuple[PlannedTensor, int]] = []
    offsets: dict[int, int] = {}
    for tensor in order:
        live = sorted(((offset, offset + other.bytes) for other, offset in placed
                       if other.meets(tensor)))
        candidate = 0
        for start, end in live:
            if candidate + tensor.bytes <= start:
                break
            candidate = max(candidate, end)
        offsets[tensor.index] = candidate
        placed.append((tensor, candidate))
    return offsets


def _tensor_bytes(tensor) -> int:
    shape = [int(side) for side in (tensor.shape if tensor.shape is not None else [])]
    if any(side < 0 for side in shape):
        return 0  # dynamic: TFLite Micro does not plan it either
    return int(np.prod(shape, dtype=np.int64)) * _TYPE_BYTES.get(tensor.type, 0)


def _is_constant(model, tensor) -> bool:
    """Data in the flatbuffer (TFLite Micro points the tensor at it, outside the arena)."""
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and ((buffer.data is not None and len(buffer.data) > 0)
                                   or (buffer.offset or 0) > 1)


def _buffer_owned_by_metadata(model, buffer_index: int) -> bool:
    """No tensor of any subgraph uses the buffer (so the plan may overwrite it)."""
    return buffer_index > 0 and all(tensor.buffer != buffer_index for graph in model.subgraphs
                                    for tensor in graph.tensors or [])


def _read(tflite_bytes: bytes):
    model = read_user_model(tflite_bytes)
    if any((buffer.offset or 0) > 1 for buffer in model.buffers or []):
        raise UserInputError("the .tflite keeps buffers after its flatbuffer (a model over "
                             "2 GB); TFLite Micro does not load those")
    return model


def _schema():
    from edgeship.tflite_graph import flatbuffer_schema

    return flatbuffer_schema()


def _buffer_type():
    return _schema().BufferT


def _metadata_type():
    return _schema().MetadataT


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _align(value: int) -> int:
    return -(-value // TFLM_ALIGNMENT) * TFLM_ALIGNMENT


@dataclass(frozen=True)
class PlannedModel:
    """A model with edgeship's plan as metadata, and what TFLite Micro measured with it
    (edgeship.firmware measures it; convert/embed.py writes it).

    Attributes:
        plan: the plan written into the model.
        model_data: the .tflite with the OfflineMemoryAllocation metadata.
        arena_with_plan: TFLite Micro's RecordingMicroAllocator figures for model_data.
        checked_inputs: random inputs on which TFLite Micro's outputs with the plan equal
            those without, bit for bit.
    """

    plan: OfflinePlan
    model_data: bytes
    arena_with_plan: dict
    checked_inputs: int
