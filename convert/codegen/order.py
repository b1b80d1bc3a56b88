"""The execution order that needs the least memory, for graphs with branches.

Where a tensor feeds two branches (a residual block, an inception cell), the order in which
the branches run decides what is live at the same time. order_for_memory searches the
topological orders for the smallest peak of live bytes (a dynamic programme over the sets of
ops already run, which suffices for the few branches of MCU models; past MAX_STATES it keeps
the model's order), plans the best order found, and keeps it only when the plan's buffer is
smaller than with the model's own order. Each op computes the same values in any
topological order, so outputs are unchanged.
"""

from dataclasses import replace

from edgeship.convert.codegen.lowering import LoweredOp, ScratchArg
from edgeship.convert.codegen.plan import MemoryPlan, plan_memory, tensor_bytes
from edgeship.tflite_graph import Graph

MAX_STATES = 2_000  # sets of executed ops at one depth before the search gives up


def order_for_memory(graph: Graph, lowered: list[LoweredOp], keep_input: bool = False
                     ) -> tuple[list[LoweredOp], MemoryPlan]:
    """The ops in the order whose memory plan is smallest, renumbered 0, 1, ..., and its plan.

    Args:
        graph: the model's graph.
        lowered: its ops in the model's order (indices 0, 1, ...).
        keep_input: passed to plan_memory.

    Returns:
        (ops, plan): the model's order and its plan unless another order plans smaller.
    """
    plan = plan_memory(graph, lowered, keep_input=keep_input)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return lowered, plan  # the search below follows one input and one output
    order = _lowest_peak_order(graph, lowered, keep_input)
    if order is None or order == list(range(len(lowered))):
        return lowered, plan
    reordered = [renumbered(lowered[old], new) for new, old in enumerate(order)]
    candidate = plan_memory(graph, reordered, keep_input=keep_input)
    if candidate.arena_bytes < plan.arena_bytes:
        return reordered, candidate
    return lowered, plan


def renumbered(low: LoweredOp, index: int) -> LoweredOp:
    arguments = tuple(ScratchArg(index) if isinstance(argument, ScratchArg) else argument
                      for argument in low.arguments)
    return replace(low, index=index, arguments=arguments)


def _lowest_peak_order(graph: Graph, lowered: list[LoweredOp], keep_input: bool
                       ) -> list[int] | None:
    """The topological order with the smallest peak of live bytes (tensor sizes summed, an
    alias counted with its root), or None when the search would take too long.

    The search runs over the ops that are code; each op that is no code (RESHAPE) is put
    right after the op writing its input, so it never lengthens a lifetime.
    """
    root: dict[int, int] = {}
    for low in lowered:
        if low.alias:
            root[low.outputs[0]] = root.get(low.inputs[0], low.inputs[0])
    ops = [low.index for low in lowered if not low.alias]
    producer = {tensor: low.index for low in lowered if not low.alias for tensor in low.outputs}
    readers: dict[int, set[int]] = {}
    needs: dict[int, frozenset] = {}
    for index in ops:
        sources = {root.get(tensor, tensor) for tensor in lowered[index].inputs}
        for tensor in sources:
            readers.setdefault(tensor, set()).add(index)
        needs[index] = frozenset(producer[tensor] for tensor in sources if tensor in producer)
    graph_input = graph.inputs[0]
    output_root = root.get(graph.outputs[0], graph.outputs[0])
    sizes = {tensor: tensor_bytes(graph, tensor) for tensor in {graph_input, *producer}}
    own = {index: sum(sizes[tensor] for tensor in lowered[index].outputs)
           + lowered[index].scratch_bytes for index in ops}

    def carried(done: frozenset) -> int:
        """Bytes written by ops in `done` (and the input) that are still to be read."""
        total = sum(sizes[tensor] for index in done for tensor in lowered[index].outputs
                    if tensor == output_root or readers.get(tensor, set()) - done)
        if keep_input or graph_input == output_root or readers.get(graph_input, set()) - done:
            total += sizes[graph_input]
        return total

    best: dict[frozenset, tuple[int, tuple[int, ...]]] = {frozenset(): (0, ())}
    frontier = [frozenset()]
    for _ in ops:
        following: dict[frozenset, tuple[int, tuple[int, ...]]] = {}
        for done in frontier:
            peak, order = best[done]
            base = carried(done)
            for index in ops:
                if index in done or not needs[index] <= done:
                    continue
                state = done | {index}
                candidate = (max(peak, base + own[index]), (*order, index))
                if state not in following or candidate < following[state]:
                    following[state] = candidate
        if len(following) > MAX_STATES:
            return None
        best = following
        frontier = list(following)
    order = best[frozenset(ops)][1] if ops else ()
    return _with_aliases(lowered, order)


def _with_aliases(lowered: list[LoweredOp], order: tuple[int, ...]) -> list[int]:
    """The order with each no-code op right after the op writing its input."""
    after: dict[int | None, list[int]] = {}
    writer = {tensor: low.index for low in lowered for tensor in low.outputs}
    for low in lowered:
        if low.alias:
            after.setdefault(writer.get(low.inputs[0]), []).append(low.index)
    result: list[int] = []

    def emit(index: int | None) -> None:
        if index is not None:
            result.append(index)
        for alias in after.get(index, []):
            emit(alias)

    emit(None)
    for index in order:
        emit(index)
    return result
