"""Patch-based inference (MCUNetV2): the first, high-resolution stage computed patch by patch.

The stage is a prefix of the graph that is a chain of spatial ops (CONV_2D, DEPTHWISE_CONV_2D,
pools, with any PAD fused, and elementwise activations) reading the model's input. Its output
is cut into an N x N grid; for each patch, the window each layer must compute is found by
back-propagating receptive fields (kernel, stride, dilation and padding) from the patch to
the input, and the stage's kernels run on those windows, one after the other, in two small
buffers; the patch's result is then copied into the stage output. Only the stage output and
the patch buffers exist, never the stage's large activations in full. Overlapping windows
are recomputed: the extra MACs are reported (PatchReport).

Bit-exact by construction: each kernel call computes a rectangle of its layer's outputs with
exactly the taps of the full run. A window is the receptive field of the rectangle clipped to
the image, so a tap outside a window lies outside the image, where the kernels skip it (or
count it as the zero point) just as in the layer-by-layer run; the window's top and left
padding is what remains of the layer's padding at the image border, 0 inside. The first
layer reads the model input in place: its window is the whole input, with the padding moved
by the patch's offset (negative inside the image), so nothing is copied.

Memory: the stage is one op of the plan (PatchedStage) reading the model input and writing
the stage output, with the two patch buffers as its scratch. Patches run row by row and store
their results last, so the stage output may start below the input and overlap it wherever the
stores stay below the input rows later patches still read (its `overlap`).

The stage's kernels are the portable ones whatever the variant (their es_window is the only
thing that changes per patch); the ops after the stage keep the variant's kernels. Estimated
cycles are MAC-based (CYCLES_RULE); benchmarks/bench_patches.py measures emulated ones.
"""

from dataclasses import dataclass, replace

import numpy as np

from edgeship.convert.codegen.kernels.variant import PORTABLE
from edgeship.convert.codegen.lowering import ConstantArray, LoweredOp, SymbolArg, TensorArg
from edgeship.convert.codegen.lowering.base import WINDOW_FIELDS, shape4
from edgeship.convert.codegen.order import order_for_memory, renumbered
from edgeship.convert.codegen.plan import MemoryPlan, plan_memory, scratch_key
from edgeship.errors import UserInputError
from edgeship.tflite_graph import Graph

# Kernels whose arguments start with the op's es_window: patched by changing its sizes.
WINDOWED_KERNELS = ("conv_2d", "depthwise_conv_2d", "pool_2d")
# One-input elementwise kernels whose first argument is the value count (then input, output).
ELEMENTWISE_KERNELS = ("relu", "relu6", "leaky_relu", "hard_swish", "logistic", "tanh")
MAX_GRID = 8  # the largest N tried by "auto"
CYCLES_RULE = ("MAC-based: the stage's kernels are the same, so estimated cycles grow with "
               "MACs (cycles x (macs + extra_macs) / macs), not measured")
ALIGNMENT = 4


@dataclass(frozen=True)
class PatchedStage(LoweredOp):
    """The stage's ops as one op of the plan: reads the model input, writes the stage output,
    and needs `scratch_bytes` of patch buffers (two slots, `slot_bytes` each).

    Attributes:
        grid: N of the N x N grid.
        stage: the stage's ops, lowered as in the layer-by-layer run (portable kernels).
        rows, columns: per patch row (column), per layer (in size, out size, padding), then
            the patch's first row (column) in the stage output.
        slots: the slot (0 or 1) each layer writes.
        slot_bytes: the bytes of each slot.
        channels: each layer's output channels.
        output_shape: the stage output's (h, w, c).
        stage_macs: the stage's MACs in the layer-by-layer run (`macs` counts the patches').
    """

    grid: int = 0
    stage: tuple[LoweredOp, ...] = ()
    rows: tuple[tuple[int, ...], ...] = ()
    columns: tuple[tuple[int, ...], ...] = ()
    slots: tuple[int, ...] = ()
    slot_bytes: tuple[int, int] = (0, 0)
    stage_macs: int = 0
    channels: tuple[int, ...] = ()
    output_shape: tuple[int, int, int] = (0, 0, 0)


@dataclass(frozen=True)
class PatchReport:
    """What patch-based inference saved and cost (codegen's result and JSON).

    Attributes:
        grid: N of the N x N grid.
        stage_ops: the stage's ops ("CONV_2D", ...), first ops of the model.
        stage_output: the stage output's shape (h, w, c), the one tensor of the stage in full.
        arena_bytes_unpatched: the RAM buffer of the layer-by-layer run.
        arena_bytes: the RAM buffer with patches.
        macs_unpatched: the model's MACs layer by layer.
        extra_macs: the MACs recomputed in the patches' overlaps.
        chosen_by: "grid" (--patches N) or "auto" (with max_ram, if given).
    """

    grid: int
    stage_ops: tuple[str, ...]
    stage_output: tuple[int, int, int]
    arena_bytes_unpatched: int
    arena_bytes: int
    macs_unpatched: int
    extra_macs: int
    chosen_by: str
    max_ram: int | None = None

    @property
    def saved_bytes(self) -> int:
        return self.arena_bytes_unpatched - self.arena_bytes

    @property
    def cycles_factor(self) -> float:
        """Estimated cycles with patches over cycles without (CYCLES_RULE)."""
        if not self.macs_unpatched:
            return 1.0
        return (self.macs_unpatched + self.extra_macs) / self.macs_unpatched

    def to_dict(self) -> dict:
        return {"grid": f"{self.grid}x{self.grid}", "stage_ops": list(self.stage_ops),
                "stage_output": list(self.stage_output), "chosen_by": self.chosen_by,
                "max_ram": self.max_ram, "arena_bytes_unpatched": self.arena_bytes_unpatched,
                "arena_bytes": self.arena_bytes, "saved_bytes": self.saved_bytes,
                "macs_unpatched": self.macs_unpatched, "extra_macs": self.extra_macs,
                "estimated_cycles_factor": round(self.cycles_factor, 4),
                "cycles_rule": CYCLES_RULE}

    def summary(self) -> str:
        """One console line: the RAM saved beside the MACs and estimated cycles it costs."""
        h, w, c = self.stage_output
        return (f"patches {self.grid}x{self.grid} over the first {len(self.stage_ops)} ops "
                f"(to {h}x{w}x{c}): RAM {self.arena_bytes_unpatched:,} -> "
                f"{self.arena_bytes:,} B ({-self.saved_bytes:+,}); +{self.extra_macs:,} MACs "
                f"recomputed (+{(self.cycles_factor - 1) * 100:.1f}% estimated cycles, "
                "MAC-based)")


def parse_patches(value: str | int) -> str | int:
    """"off", "auto" or the grid's N (an int >= 1; 1 is off): what --patches accepts."""
    text = str(value).strip().lower()
    if text in ("off", "auto"):
        return text
    if text.isdigit() and int(text) >= 1:
        return "off" if int(text) == 1 else int(text)
    raise UserInputError(f"patches must be off, auto or a grid size N >= 1 (N x N patches), "
                         f"got {value!r}")


def stage_length(graph: Graph, lowered: list[LoweredOp]) -> int:
    """How many first ops form a chain that can run patch by patch (0: none)."""
    if len(graph.inputs) != 1:
        return 0  # a stage starts at the model's one input
    graph_input = graph.inputs[0]
    length = 0
    for low in lowered:
        if low.kernel in WINDOWED_KERNELS:
            if low.scratch_bytes or not low.structs or len(low.inputs) != 1:
                break
        elif low.kernel in ELEMENTWISE_KERNELS and length > 0:
            tensor = graph.tensors[low.inputs[0]]
            if low.arguments[0] != tensor.size or \
                    shape4(tensor) != shape4(graph.tensors[low.outputs[0]]):
                break
        else:
            break
        source = low.inputs[0]
        previous = lowered[length - 1].outputs[0] if length else graph_input
        if source != previous or len(low.outputs) != 1 or low.outputs[0] in graph.outputs:
            break
        if length and any(source in other.inputs for other in lowered if other is not low):
            break  # the intermediate tensor is read elsewhere: it must exist in full
        if len(shape4(graph.tensors[low.outputs[0]])) != 4:
            break
        length += 1
    return length


def _axes(graph: Graph, low: LoweredOp) -> tuple[dict, dict, int]:
    """(height geometry, width geometry, output channels) of one stage op."""
    if low.kernel in WINDOWED_KERNELS:
        values = dict(zip(WINDOW_FIELDS, low.structs[0].values, strict=True))
        return ({"in": values["in_h"], "out": values["out_h"], "k": values["k_h"],
                 "s": values["stride_h"], "pad": values["pad_h"], "d": values["dil_h"]},
                {"in": values["in_w"], "out": values["out_w"], "k": values["k_w"],
                 "s": values["stride_w"], "pad": values["pad_w"], "d": values["dil_w"]},
                values["out_c"])
    _, h, w, c = shape4(graph.tensors[low.outputs[0]])
    return ({"in": h, "out": h, "k": 1, "s": 1, "pad": 0, "d": 1},
            {"in": w, "out": w, "k": 1, "s": 1, "pad": 0, "d": 1}, c)


def _axis_table(layers: list[dict], grid: int) -> tuple[list[tuple[int, ...]], list[int]]:
    """Per patch along one axis: (in size, out size, padding) per layer, then its first output;
    and the first row (column) of the stage input each patch reads.

    The last layer's outputs are cut into `grid` near-equal ranges; each layer's input range
    is the receptive field of its output range clipped to the tensor, and is the previous
    layer's output range.
    """
    size = layers[-1]["out"]
    table, first_read = [], []
    for patch in range(grid):
        start, stop = patch * size // grid, (patch + 1) * size // grid
        entries: list[tuple[int, int, int]] = []
        for position in range(len(layers) - 1, -1, -1):
            layer = layers[position]
            low = start * layer["s"] - layer["pad"]
            high = (stop - 1) * layer["s"] - layer["pad"] + (layer["k"] - 1) * layer["d"] + 1
            in_start, in_stop = max(low, 0), min(high, layer["in"])
            if position == 0:  # reads the whole input in place
                entries.append((layer["in"], stop - start, layer["pad"] - start * layer["s"]))
            else:
                entries.append((in_stop - in_start, stop - start,
                                layer["pad"] + in_start - start * layer["s"]))
            start, stop = in_start, in_stop
        row = [value for entry in reversed(entries) for value in entry]
        table.append((*row, patch * size // grid))
        first_read.append(start)
    return table, first_read


def _align(value: int) -> int:
    return (value + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def patch_stage(graph: Graph, stage: list[LoweredOp], grid: int) -> PatchedStage:
    """The stage's ops as one PatchedStage op computing an N x N grid of patches."""
    geometry = [_axes(graph, low) for low in stage]
    rows, first_rows = _axis_table([axes[0] for axes in geometry], grid)
    columns, _ = _axis_table([axes[1] for axes in geometry], grid)
    slots, slot_bytes = [], [0, 0]
    for position, low in enumerate(stage):
        if position and low.kernel in ELEMENTWISE_KERNELS:
            slot = slots[-1]  # in place: value i read, then written
        else:
            slot = 1 - slots[-1] if slots else 0
        slots.append(slot)
        largest = max(row[3 * position + 1] for row in rows) * \
            max(column[3 * position + 1] for column in columns) * geometry[position][2]
        slot_bytes[slot] = max(slot_bytes[slot], _align(largest))
    macs = 0
    for position, low in enumerate(stage):
        per_pixel = low.macs // (geometry[position][0]["out"] * geometry[position][1]["out"])
        macs += per_pixel * sum(row[3 * position + 1] for row in rows) * \
            sum(column[3 * position + 1] for column in columns)
    out_h, out_w, out_c = (geometry[-1][0]["out"], geometry[-1][1]["out"], geometry[-1][2])
    constants = [constant for low in stage for constant in low.constants]
    constants += [ConstantArray("int32_t", "patch_rows", np.asarray(rows, np.int32).reshape(-1)),
                  ConstantArray("int32_t", "patch_columns",
                                np.asarray(columns, np.int32).reshape(-1))]
    in_h, in_w = geometry[0][0]["in"], geometry[0][1]["in"]
    in_c = shape4(graph.tensors[stage[0].inputs[0]])[3]
    # Patches run row by row and store their result last: the stage output may start before
    # the input as long as each patch row's stores end below the input rows still to be read.
    shift = min(first * in_w * in_c - (row[3 * len(stage) - 2] + row[-1]) * out_w * out_c
                for first, row in zip(first_rows, rows, strict=True))
    summary = (f"{grid}x{grid} patches of {', '.join(low.name for low in stage)}: "
               f"{in_h}x{in_w}x{in_c} -> {out_h}x{out_w}x{out_c}")
    return PatchedStage(
        index=stage[0].index, name="PATCHES", kernel="patch_store", arguments=(),
        inputs=(stage[0].inputs[0],), outputs=(stage[-1].outputs[0],), summary=summary,
        constants=tuple(constants), structs=tuple(s for low in stage for s in low.structs),
        overlap=((stage[0].inputs[0], int(shift)),), macs=int(macs),
        scratch_bytes=slot_bytes[0] + slot_bytes[1], grid=grid, stage=tuple(stage),
        rows=tuple(rows), columns=tuple(columns), slots=tuple(slots),
        slot_bytes=(slot_bytes[0], slot_bytes[1]), stage_macs=sum(low.macs for low in stage),
        channels=tuple(axes[2] for axes in geometry), output_shape=(out_h, out_w, out_c))


def with_patches(graph: Graph, plain: list[LoweredOp], lowered: list[LoweredOp], cut: int,
                 grid: int) -> list[LoweredOp]:
    """The ops with the first `cut` (taken from `plain`, the unspecialised lowering) as one
    PatchedStage, renumbered 0, 1, ..."""
    stage = patch_stage(graph, plain[:cut], grid)
    return [stage, *(renumbered(low, position + 1) for position, low in
                     enumerate(lowered[cut:]))]


def expand_stages(lowered: list[LoweredOp]) -> list[LoweredOp]:
    """The ops with each PatchedStage followed by its stage's ops (for the kernels' sources)."""
    ops = []
    for low in lowered:
        ops.append(low)
        if isinstance(low, PatchedStage):
            ops += low.stage
    return ops


def render_stage(stage: PatchedStage, pointer) -> list[str]:
    """NAME_run's lines computing a PatchedStage: a loop over the grid, each layer's kernel on
    its window with es_window resized from the patch tables, then the patch stored."""
    stride = 3 * len(stage.stage) + 1
    scratch = pointer(scratch_key(stage.index))
    slot_pointers = (f"({scratch})", f"({scratch} + {stage.slot_bytes[0]})")
    lines = ["  {", "    int32_t patch_row, patch_column;",
             f"    for (patch_row = 0; patch_row < {stage.grid}; ++patch_row) {{",
             f"      for (patch_column = 0; patch_column < {stage.grid}; ++patch_column) {{",
             f"        const int32_t *y = patch_rows + patch_row * {stride};",
             f"        const int32_t *x = patch_columns + patch_column * {stride};",
             "        es_window window;"]
    source = f"({pointer(stage.inputs[0])})"
    for position, low in enumerate(stage.stage):
        target = slot_pointers[stage.slots[position]]
        first = 3 * position
        if low.kernel in WINDOWED_KERNELS:
            lines += [f"        window = {low.structs[0].name};",
                      f"        window.in_h = y[{first}]; window.out_h = y[{first + 1}]; "
                      f"window.pad_h = y[{first + 2}];",
                      f"        window.in_w = x[{first}]; window.out_w = x[{first + 1}]; "
                      f"window.pad_w = x[{first + 2}];"]
            leading: tuple = (SymbolArg("window", address=True),)
        else:
            leading = (SymbolArg(f"y[{first + 1}] * x[{first + 1}] * "
                                 f"{stage.channels[position]}"),)
        tensors = {low.inputs[0]: source, low.outputs[0]: target}
        arguments = leading + tuple(SymbolArg(tensors[argument.tensor])
                                    if isinstance(argument, TensorArg) else argument
                                    for argument in low.arguments[1:])
        lines.append("        " + PORTABLE.call(replace(low, arguments=arguments), pointer))
        source = target
    last, start = 3 * (len(stage.stage) - 1) + 1, stride - 1
    _, width, channels = stage.output_shape
    output = f"({pointer(stage.outputs[0])})"
    lines += [f"        es_patch_store({source}, y[{last}], x[{last}], {channels}, "
              f"{output} + (y[{start}] * {width} + x[{start}]) * {channels}, "
              f"{width * channels});",
              "      }", "    }", "  }"]
    return lines


def plan_with_patches(graph: Graph, plain: list[LoweredOp], lowered: list[LoweredOp],
                      patches: str | int, max_ram: int | None, keep_input: bool = False
                      ) -> tuple[list[LoweredOp], MemoryPlan, PatchReport | None]:
    """The ops and memory plan codegen generates: layer by layer, or with a patched stage.

    Args:
        graph: the model's graph.
        plain: its ops as lower_graph gives them (the stage's kernels are these).
        lowered: the same ops as the kernel variant computes them.
        patches: "off", "auto" or N (see parse_patches). N: the stage (of the chains that
            can run patch by patch) with the smallest RAM buffer for an N x N grid. "auto"
            (needs max_ram): unpatched when that fits, else the smallest grid that fits
            (N up to MAX_GRID; of its stages the one recomputing the fewest MACs).
        max_ram: the largest RAM buffer allowed in bytes (None: no limit).
        keep_input: passed to the memory plan.

    Returns:
        (ops in execution order, their plan, the PatchReport or None when unpatched).

    Raises:
        UserInputError: patches asked for a model whose first op cannot run patch by patch,
            a grid finer than the stage output, "auto" without max_ram, or nothing fits
            max_ram.
    """
    patches = parse_patches(patches)
    if patches == "auto" and max_ram is None:
        raise UserInputError("--patches auto needs --max-ram (the RAM to fit, e.g. 40KB); or "
                             "give the grid: --patches N")
    base_ops, base_plan = order_for_memory(graph, lowered, keep_input=keep_input)
    base_macs = sum(low.macs for low in lowered)
    if patches == "off" or (patches == "auto" and max_ram is not None
                            and base_plan.arena_bytes <= max_ram):
        _check_fits(base_plan.arena_bytes, max_ram, "")
        return base_ops, base_plan, None
    length = stage_length(graph, plain)
    if length == 0:
        first = plain[0].name if plain else "none"
        raise UserInputError(
            f"--patches needs a model whose first op is a CONV_2D, DEPTHWISE_CONV_2D or pool "
            f"reading the input (int8, one reader per tensor); this model's first op is "
            f"{first}")
    grids = [patches] if isinstance(patches, int) else list(range(2, MAX_GRID + 1))
    candidates = []  # (grid, cut, arena, macs)
    for grid in grids:
        for cut in range(1, length + 1):
            _, height, width, _ = shape4(graph.tensors[plain[cut - 1].outputs[0]])
            if grid > min(height, width):
                continue
            ops = with_patches(graph, plain, lowered, cut, grid)
            plan = plan_memory(graph, ops, keep_input=keep_input)
            candidates.append((grid, cut, plan.arena_bytes, sum(low.macs for low in ops)))
    if not candidates:
        raise UserInputError(f"--patches {patches}: the stage's output is smaller than a "
                             f"{patches}x{patches} grid; use a smaller N")
    if patches == "auto" and max_ram is not None:
        fitting = [item for item in candidates if item[2] <= max_ram]
        if not fitting:
            best = min(candidates, key=lambda item: (item[2], item[3]))
            raise UserInputError(
                f"no patch grid fits --max-ram {max_ram} B: unpatched the RAM buffer is "
                f"{base_plan.arena_bytes} B, with patches at least {best[2]} B ({best[0]}x"
                f"{best[0]} patches over the first {best[1]} ops); raise --max-ram or use a "
                "smaller model or input")
        grid, cut, _, _ = min(fitting, key=lambda item: (item[0], item[3], item[2]))
    else:
        grid, cut, _, _ = min(candidates, key=lambda item: (item[2], item[3]))
    ops, plan = order_for_memory(graph, with_patches(graph, plain, lowered, cut, grid),
                                 keep_input=keep_input)
    _check_fits(plan.arena_bytes, max_ram, f" with {grid}x{grid} patches")
    stage = next(low for low in ops if isinstance(low, PatchedStage))
    report = PatchReport(grid=grid, stage_ops=tuple(low.name for low in stage.stage),
                         stage_output=stage.output_shape,
                         arena_bytes_unpatched=base_plan.arena_bytes,
                         arena_bytes=plan.arena_bytes, macs_unpatched=base_macs,
                         extra_macs=stage.macs - stage.stage_macs,
                         chosen_by="auto" if patches == "auto" else "grid", max_ram=max_ram)
    return ops, plan, report


def _check_fits(arena_bytes: int, max_ram: int | None, how: str) -> None:
    if max_ram is not None and arena_bytes > max_ram:
        raise UserInputError(f"the RAM buffer{how} is {arena_bytes} B, over --max-ram "
                             f"{max_ram} B; try --patches auto")
