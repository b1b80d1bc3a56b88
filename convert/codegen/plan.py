"""The static memory plan: every tensor's place, decided at generation time.

Each tensor gets an offset in one buffer, and tensors whose lifetimes do not overlap share
bytes, so the buffer is the peak of live tensors rather than their sum. The model's input
and output are planned there too: the input is live from before the first op to its last
reader (to the end with keep_input), so its bytes are reused once it is consumed, and the
output from its writer to after the last op. A kernel's scratch buffer
(LoweredOp.scratch_bytes, passed as ScratchArg) is planned as a tensor live during its op
only. arena_bytes is therefore all the RAM the model needs besides the stack.
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
    """Where every tensor lives: an offset in the one static buffer (the arena).

    Attributes:
        storage: tensor index (or scratch_key) -> ("arena", offset).
        arena_bytes: the buffer's size: activations, input, output and scratch together.
        sum_of_tensors: what the tensors would take each in its own buffer.
        scratch_bytes: the largest scratch buffer of one op (inside arena_bytes).
        input_bytes, output_bytes: the model inputs' and outputs' bytes (inside arena_bytes).
        keep_input: whether the input's bytes stay intact through the run.
        timeline: bytes live while each op runs (its inputs, outputs, scratch and every
            tensor alive across it), in execution order.
    """

    storage: dict[int, tuple[str, int]]
    arena_bytes: int
    sum_of_tensors: int
    input_tensor: int
    output_tensor: int
    scratch_bytes: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    keep_input: bool = False
    timeline: tuple[int, ...] = ()
    input_tensors: tuple[int, ...] = ()  # every model input (input_tensor is the first)
    output_tensors: tuple[int, ...] = ()  # every model output (output_tensor is the first)

    def pointer(self, tensor: int) -> str:
        """The C expression of a tensor's first byte inside the generated code."""
        _, offset = self.storage[tensor]
        return f"arena + {offset}" if offset else "arena"

    @property
    def input_offset(self) -> int:
        return self.storage[self.input_tensor][1]

    @property
    def output_offset(self) -> int:
        return self.storage[self.output_tensor][1]

    @property
    def peak_op(self) -> int | None:
        """The op during which the most bytes are live (the first of equals)."""
        if not self.timeline:
            return None
        return max(range(len(self.timeline)), key=lambda index: (self.timeline[index], -index))


def plan_memory(graph: Graph, lowered: list[LoweredOp], keep_input: bool = False,
                io_in_arena: bool = True) -> MemoryPlan:
    """Offsets for all tensors: greedy by size, sharing bytes between disjoint lifetimes.

    A tensor is live from the op that writes it to the last op that reads it; the model's
    input from before the first op (to after the last with keep_input), its output to after
    the last. Two tensors live at the same time get disjoint bytes, except an op's output
    and an input it reads for the last time: those may overlap as far as the kernel's loop
    order allows (the op's `overlap`). The outputs of ops that are no code (RESHAPE) alias
    their input.

    Args:
        graph: the model's graph.
        lowered: its ops, lowered, in execution order.
        keep_input: keep the input's bytes intact for the whole run (never reused).
        io_in_arena: False plans without the input and output (the layout of caller-owned
            I/O buffers, before they joined the plan): for comparisons only, such a plan has
            no place for them and arena_bytes leaves their bytes out.
    """
    root = {}
    for low in lowered:
        if low.alias:
            root[low.outputs[0]] = root.get(low.inputs[0], low.inputs[0])
    graph_inputs, graph_outputs = tuple(graph.inputs), tuple(graph.outputs)
    end = len(lowered)  # "after the last op": the caller reads the outputs then
    first = {tensor: -1 for tensor in graph_inputs}
    last = {tensor: end if keep_input else -1 for tensor in graph_inputs}
    for low in lowered:
        for index in low.inputs:
            base = root.get(index, index)
            last[base] = max(last.get(base, low.index), low.index)
        if not low.alias:
            for index in low.outputs:  # SPLIT and UNPACK write several
                first[index] = low.index
                last.setdefault(index, low.index)
    for tensor in graph_outputs:
        last[root.get(tensor, tensor)] = end
    outside = set() if io_in_arena else {*graph_inputs, *graph_outputs}
    overlap: dict[tuple[int, int], int] = {}  # (output, input root) -> largest output shift
    for low in lowered:
        for index, limit in low.overlap:
            base = root.get(index, index)
            if last.get(base) == low.index and base not in outside:
                key = (low.outputs[0], base)
                overlap[key] = min(limit, overlap.get(key, limit))
    tensors = [tensor for tensor in first if tensor not in outside]
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
    storage = {tensor: ("arena", placed[tensor]) for tensor in tensors}
    for tensor, base in root.items():
        if base in storage:
            storage[tensor] = storage[base]
    arena_bytes = max((offset + sizes[tensor] for tensor, offset in placed.items()), default=0)
    timeline = tuple(sum(sizes[tensor] for tensor in tensors
                         if first[tensor] <= index <= last[tensor]) for index in range(end))
    return MemoryPlan(storage, _align(arena_bytes),
                      sum(size for tensor, size in sizes.items() if tensor >= 0),
                      graph_inputs[0], graph_outputs[0],
                      max((sizes[key] for key in scratch), default=0),
                      input_bytes=sum(tensor_bytes(graph, tensor) for tensor in graph_inputs),
                      output_bytes=sum(tensor_bytes(graph, tensor) for tensor in graph_outputs),
                      keep_input=keep_input, timeline=timeline, input_tensors=graph_inputs,
                      output_tensors=graph_outputs)


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
