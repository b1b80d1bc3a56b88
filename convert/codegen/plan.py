"""The static memory plan: every activation's place, decided at generation time.

Each tensor gets an offset in one buffer, and tensors whose lifetimes do not overlap share
bytes, so the buffer is the peak of live tensors rather than their sum. A kernel's scratch
buffer (LoweredOp.scratch_bytes, passed as ScratchArg) is planned the same way, as a tensor
live during its op only: arena_bytes includes it.
"""

from dataclasses import dataclass

from edgeship.convert.codegen.lowering import ACTIVATION_BYTES, LoweredOp

from edgeship.tflite_graph import Graph

ARENA_ALIGNMENT = 4


def scratch_key(op_index: int) -> int:
    """The plan's key of op op_index's scratch buffer (negative: never a tensor index)."""
    return -1 - op_index


@dataclass(frozen=True)
class MemoryPlan:
    """Where every activation lives: the caller's input/output buffers or an arena offset."""

    storage: dict[int, tuple[str, int]]  # tensor index -> ("input"|"output"|"arena", offset)
    arena_bytes: int
    final_copy: int | None  # tensor whose bytes are copied to the output buffer at the end
    sum_of_tensors: int
    scratch_bytes: int = 0  # largest scratch buffer of one op (inside arena_bytes)

    def pointer(self, tensor: int) -> str:
        """The C expression of a tensor's first byte inside NAME_run."""
        kind, offset = self.storage[tensor]
        if kind == "arena":
            return f"arena + {offset}" if offset else "arena"
        return kind

    @property
    def uses_arena(self) -> bool:
        return any(kind == "arena" for kind, _ in self.storage.values())


def plan_memory(graph: Graph, lowered: list[LoweredOp]) -> MemoryPlan:
    """Offsets for all activations: greedy by size, sharing bytes between disjoint lifetimes.

    A tensor is live from the op that writes it to the last op that reads it. Two tensors
    live at the same time get disjoint bytes, except an op's output and an input it reads
    for the last time: those may overlap as far as the kernel's loop order allows (the op's
    `overlap`). The outputs of ops that are no code (RESHAPE) alias their input.
    """
    root = {}
    for low in lowered:
        if low.alias:
            root[low.outputs[0]] = root.get(low.inputs[0], low.inputs[0])
    graph_input, graph_output = graph.inputs[0], graph.outputs[0]
    output_root = root.get(graph_output, graph_output)
    first, last = {}, {}
    for low in lowered:
        for index in low.inputs:
            last[root.get(index, index)] = low.index
        if not low.alias:
            for index in low.outputs:  # SPLIT and UNPACK write several
                first[index] = low.index
                last.setdefault(index, low.index)
    final_copy = None
    if output_root != graph_output or output_root == graph_input:
        final_copy = output_root
        last[output_root] = len(lowered)
    overlap: dict[tuple[int, int], int] = {}  # (output, input root) -> largest output shift
    for low in lowered:
        for index, limit in low.overlap:
            base = root.get(index, index)
            if last.get(base) == low.index and base != graph_input:
                key = (low.outputs[0], base)
                overlap[key] = min(limit, overlap.get(key, limit))
    storage = {graph_input: ("input", 0)}
    if final_copy is None:
        storage[graph_output] = ("output", 0)
    tensors = [tensor for tensor in first if tensor not in storage]
    sizes = {tensor: tensor_bytes(graph, tensor) for tensor in tensors}
    scratch = []
    for low in lowered:
        if low.scratch_bytes > 0:
            key = scratch_key(low.index)
            scratch.append(key)
            sizes[key], first[key], last[key] = _align(low.scratch_bytes), low.index, low.index
    # Greedy first fit is order-sensitive: try three orders, keep the smallest arena. Reverse
    # execution order suits chains whose outputs must start below their inputs. Scratch
    # buffers come last, into the gaps the tensors leave.
    scratch.sort(key=lambda key: -sizes[key])
    orders = tuple(order + scratch for order in (
        sorted(tensors, key=lambda tensor: (-sizes[tensor], first[tensor])),
        sorted(tensors, key=lambda tensor: (first[tensor], -sizes[tensor])),
        sorted(tensors, key=lambda tensor: (-first[tensor], -sizes[tensor]))))
    tensors += scratch
    placed = min((_place(order, sizes, first, last, overlap) for order in orders),
                 key=lambda offsets: max((offsets[t] + sizes[t] for t in offsets), default=0))
    for tensor in tensors:
        storage[tensor] = ("arena", placed[tensor])
    for tensor, base in root.items():
        storage[tensor] = storage[base]
    arena_bytes = max((offset + sizes[tensor] for tensor, offset in placed.items()), default=0)
    return MemoryPlan(storage, _align(arena_bytes), final_copy,
                      sum(size for tensor, size in sizes.items() if tensor >= 0),
                      max((sizes[key] for key in scratch), default=0))


def tensor_bytes(graph: Graph, tensor: int) -> int:
    """Bytes of an activation tensor (ACTIVATION_BYTES: int16 values take two, float32 four)."""
    return graph.tensors[tensor].size * ACTIVATION_BYTES.get(graph.tensors[tensor].dtype, 1)


def _place(order: list[int], sizes: dict, first: dict, last: dict, overlap: dict) -> dict:
    """First-fit offsets for tensors in the given order."""
    placed: dict[int, int] = {}
    for tensor in order:
        neighbours = [other for other in placed
                      if first[other] <= last[tensor] and first[tensor] <= last[other]]
        candidates = {0}
        for other in neighbours:
            candidates.add(_align(placed[other] + sizes[other]))
            if (tensor, other) in overlap:
                candidates.add(_align_down(placed[other] + overlap[(tensor, other)]))
            if (other, tensor) in overlap:
                candidates.add(_align(placed[other] - overlap[(other, tensor)]))
        for offset in sorted(candidate for candidate in candidates if candidate >= 0):
            if all(_compatible(sizes, overlap, tensor, offset, other, placed[other])
                   for other in neighbours):
                placed[tensor] = offset
                break
    return placed


def _compatible(sizes: dict, overlap: dict, tensor: int, offset: int, other: int,
                other_offset: int) -> bool:
    """Disjoint bytes, or an output overlapping its dying input within the kernel's limit."""
    if offset + sizes[tensor] <= other_offset or other_offset + sizes[other] <= offset:
        return True
    if (tensor, other) in overlap:
        return offset - other_offset <= overlap[(tensor, other)]
    if (other, tensor) in overlap:
        return other_offset - offset <= overlap[(other, tensor)]
    return False


def _align_down(value: int) -> int:
    return value // ARENA_ALIGNMENT * ARENA_ALIGNMENT


def _align(value: int) -> int:
    return (value + ARENA_ALIGNMENT - 1) // ARENA_ALIGNMENT * ARENA_ALIGNMENT
