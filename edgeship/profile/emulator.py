"""Run the profile firmware on unicorn (QEMU's CPU emulation as a library) and count.

A basic-block hook (one Python call per block executed, not per instruction) counts every
transition from one block to the next, per op: the op changes when control reaches
edgeship_op_boundary (its argument, r0, is the op index). Each block is decoded once with
capstone and costed with the core's timing table; the transition tells whether the branch
that ended the previous block was taken (the next block is not the fall-through address).
The stack is painted with a pattern before the run; the deepest byte changed afterwards is
the measured stack. Everything is deterministic: same ELF and input, same counts.

With a board (edgeship.profile.boards), the block hook also runs each block's instruction
lines through the board's instruction cache, and a UC_HOOK_MEM_READ hook limited to the
flash range runs every data read from flash through its data cache; the misses' stall cycles
are added to the op that was running.
"""

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeship.deps import require
from edgeship.errors import ToolFailureError
from edgeship.profile.boards import Board, FlashModel
from edgeship.profile.cycle_model import BlockCost, block_cost, decode, thumb_disassembler
from edgeship.profile.targets import Target

PAGE = 0x1000
STACK_PAINT = 0xA5
TIMEOUT_S = 1800  # runaway guard, far above any model's run time
OUTSIDE = -1  # the op index of code before the first boundary and after the last


@dataclass(frozen=True)
class OpCount:
    """What one op executed: instructions, estimated cycles (memory stalls included),
    instruction classes, and the board model's flash stall cycles."""

    instructions: int
    cycles: float
    classes: dict[str, int]
    stall_cycles: int = 0


@dataclass(frozen=True)
class EmulatedRun:
    """Counts of one emulated run.

    Attributes:
        ops: op index -> its counts (OUTSIDE: start-up and the harness).
        output: the int8 output the model wrote.
        stack_bytes: deepest stack use of the whole program, measured by stack painting.
        blocks: distinct basic blocks decoded.
        memory: the board model's cache accesses and misses (empty without a board).
    """

    ops: dict[int, OpCount]
    output: np.ndarray
    stack_bytes: int
    blocks: int
    memory: dict = field(default_factory=dict)


class CycleLimitReached(Exception):
    """emulate stopped early: the estimated cycles (fetch stalls and taken-branch extras left
    out, so a lower bound) passed the caller's limit after `cycles`."""

    def __init__(self, cycles: float):
        super().__init__(f"stopped after {cycles:,.0f} estimated cycles")
        self.cycles = cycles


@dataclass(frozen=True)
class _Image:
    segments: list[tuple[int, bytes, int]]  # (physical address, file bytes, memory size)
    symbols: dict[str, tuple[int, int]]  # name -> (address, size)
    entry_sp: int
    entry_pc: int


def _read_image(elf_path: Path) -> _Image:
    elffile = require("elftools.elf.elffile")
    with open(elf_path, "rb") as handle:
        elf = elffile.ELFFile(handle)
        segments = [(segment["p_paddr"], segment.data(), segment["p_memsz"])
                     for segment in elf.iter_segments() if segment["p_type"] == "PT_LOAD"]
        symbols = {symbol.name: (symbol["st_value"], symbol["st_size"])
                   for symbol in elf.get_section_by_name(".symtab").iter_symbols()
                   if symbol.name}
    vectors = next(data for address, data, _ in segments if address == 0)
    entry_sp, entry_pc = np.frombuffer(vectors[:8], "<u4")
    return _Image(segments, symbols, int(entry_sp), int(entry_pc))


def _map(uc, start: int, end: int) -> None:
    start &= ~(PAGE - 1)
    end = (end + PAGE - 1) & ~(PAGE - 1)
    uc.mem_map(start, end - start)


def _machine(elf_path: Path, target: Target, input_bytes: bytes):
    """A unicorn CPU of the target with the firmware loaded, the stack painted and the input
    written; returns (uc, image)."""
    unicorn = require("unicorn")
    arm = require("unicorn.arm_const")
    image = _read_image(elf_path)
    symbols = image.symbols
    flash_end = max(address + size for address, _, size in image.segments if address < 0x20000000)
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(getattr(arm, target.unicorn_cpu))
    _map(uc, 0, max(flash_end, PAGE))
    ram_start, ram_end = symbols["__data_start__"][0], symbols["__stack_top"][0]
    _map(uc, ram_start, ram_end)
    for address, data, _ in image.segments:
        if data:
            uc.mem_write(address, data)
    stack_limit = symbols["__stack_limit"][0]
    uc.mem_write(stack_limit, bytes([STACK_PAINT]) * (ram_end - stack_limit))
    input_address, input_size = symbols["edgeship_input"]
    if len(input_bytes) != input_size:
        raise ToolFailureError(f"input of {len(input_bytes)} bytes for a model that takes "
                               f"{input_size}")
    uc.mem_write(input_address, bytes(input_bytes))
    uc.reg_write(arm.UC_ARM_REG_SP, image.entry_sp)
    return uc, image


def _start(uc, image: _Image, done: int) -> None:
    unicorn = require("unicorn")
    arm = require("unicorn.arm_const")
    try:
        uc.emu_start(image.entry_pc | 1, done, timeout=TIMEOUT_S * 1_000_000)
    except unicorn.UcError as error:
        pc = uc.reg_read(arm.UC_ARM_REG_PC)
        raise ToolFailureError(f"the profile firmware faulted in the emulator at "
                               f"0x{pc:08x}: {error}") from error


@dataclass(frozen=True)
class HookCheck:
    """The block-hook count checked against a per-instruction hook over one whole run.

    Attributes:
        per_block: instructions counted by expanding each executed block (what emulate counts).
        per_instruction: instructions a per-instruction hook saw. Unicorn does not call it for
            IT-block instructions whose condition fails, which the core still issues (and
            QEMU's -icount counts), so it is lower by exactly those.
        condition_failed: per_block - per_instruction at conditional instructions.
        unexplained: differences at unconditional instructions (0 when the counts agree).
        seconds_per_block, seconds_per_instruction: wall time of each way of counting.
    """

    per_block: int
    per_instruction: int
    condition_failed: int
    unexplained: int
    seconds_per_block: float
    seconds_per_instruction: float


def check_block_counting(elf_path: Path, target: Target, input_bytes: bytes) -> HookCheck:
    """Count one run both ways (see HookCheck); the slow, obvious count checks the fast one."""
    import time

    unicorn = require("unicorn")
    disassembler = thumb_disassembler()
    timings = []
    counts = []
    for hook_type in (unicorn.UC_HOOK_BLOCK, unicorn.UC_HOOK_CODE):
        uc, image = _machine(elf_path, target, input_bytes)
        done = image.symbols["edgeship_done"][0] & ~1
        seen: dict[tuple[int, int], int] = {}

        def on_hook(uc, address, size, _, seen=seen, done=done):
            key = (address, size)
            seen[key] = seen.get(key, 0) + 1
            if address == done:
                uc.emu_stop()

        uc.hook_add(hook_type, on_hook)
        began = time.perf_counter()
        _start(uc, image, done)
        timings.append(time.perf_counter() - began)
        per_address: dict[int, int] = {}
        conditional: dict[int, bool] = {}
        for (address, size), count in seen.items():
            for insn in decode(bytes(uc.mem_read(address, size)), address, disassembler):
                per_address[address] = per_address.get(address, 0) + count
                conditional[address] = insn.conditional
                address += insn.size
        counts.append((per_address, conditional))
    (blocks, conditional), (instructions, _) = counts
    differences = {address: blocks.get(address, 0) - instructions.get(address, 0)
                   for address in set(blocks) | set(instructions)}
    return HookCheck(
        per_block=sum(blocks.values()), per_instruction=sum(instructions.values()),
        condition_failed=sum(diff for address, diff in differences.items()
                             if conditional.get(address)),
        unexplained=sum(abs(diff) for address, diff in differences.items()
                        if not conditional.get(address)),
        seconds_per_block=timings[0], seconds_per_instruction=timings[1])


def emulate(elf_path: Path, target: Target, input_bytes: bytes,
            output_dtype: str = "int8", board: Board | None = None,
            cycle_limit: float | None = None) -> EmulatedRun:
    """Run the firmware once on the target's CPU model and count per op.

    Args:
        elf_path: the linked profile firmware (see firmware.build_firmware).
        target: the core (its unicorn CPU model and timing table).
        input_bytes: the input (int8 or int16 values), written into edgeship_input before
            reset.
        output_dtype: the model's output element type.
        board: add the board's flash stalls (boards.FlashModel); None: zero-wait memory.
        cycle_limit: stop once the blocks run cost more estimated cycles than this (a caller
            that only needs to know a model is over a latency budget: tune's cheap check).

    Raises:
        CycleLimitReached: cycle_limit was passed.
        MissingDependencyError: unicorn, capstone or pyelftools is not installed.
        ToolFailureError: the program faulted or never reached its stop address.
    """
    unicorn = require("unicorn")
    arm = require("unicorn.arm_const")
    uc, image = _machine(elf_path, target, input_bytes)
    symbols = image.symbols
    ram_end = symbols["__stack_top"][0]
    stack_limit = symbols["__stack_limit"][0]
    boundary = symbols["edgeship_op_boundary"][0] & ~1
    done = symbols["edgeship_done"][0] & ~1
    disassembler = thumb_disassembler()
    timing = target.timing
    costs: dict[int, tuple[BlockCost, int]] = {}  # block address -> (cost, fall-through)
    per_op: dict[int, dict[int, int]] = {OUTSIDE: {}}
    state = {"current": per_op[OUTSIDE], "previous": 0, "op": OUTSIDE, "cycles": 0.0}
    limit = float("inf") if cycle_limit is None else cycle_limit
    r0 = arm.UC_ARM_REG_R0
    flash = FlashModel(board) if board is not None else None
    stalls: dict[int, int] = {}

    def on_block(uc, address, size, _):
        # One call per block executed: keep it small. The edge key packs (previous, next).
        current = state["current"]
        key = (state["previous"] << 32) | address
        current[key] = current.get(key, 0) + 1
        state["previous"] = address
        if address not in costs:
            costs[address] = (block_cost(decode(bytes(uc.mem_read(address, size)), address,
                                                disassembler), timing), address + size)
        state["cycles"] += costs[address][0].cycles
        if state["cycles"] > limit:
            uc.emu_stop()
        if flash is not None and address != boundary:
            stall = flash.fetch(address, size)
            if stall:
                stalls[state["op"]] = stalls.get(state["op"], 0) + stall
        if address == boundary:
            index = uc.reg_read(r0)
            state["current"] = per_op.setdefault(index, {})
            state["op"] = index
        elif address == done:
            uc.emu_stop()

    def on_flash_read(uc, access, address, size, value, _):
        stall = flash.read(address, size)
        if stall:
            stalls[state["op"]] = stalls.get(state["op"], 0) + stall

    uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
    if flash is not None:
        flash_end = max(address + size for address, _, size in image.segments
                        if address < 0x20000000)
        uc.hook_add(unicorn.UC_HOOK_MEM_READ, on_flash_read, begin=0, end=flash_end - 1)
    _start(uc, image, done)
    if state["cycles"] > limit:
        raise CycleLimitReached(state["cycles"])
    pc = uc.reg_read(arm.UC_ARM_REG_PC) & ~1
    if pc != done and state["previous"] != done:
        raise ToolFailureError(f"the profile firmware stopped at 0x{pc:08x}, not at its end "
                               f"(no end within {TIMEOUT_S} s)")
    output_address, output_size = symbols["edgeship_output"]
    output = np.frombuffer(bytes(uc.mem_read(output_address, output_size)),
                           np.dtype(output_dtype)).copy()
    stack = bytes(uc.mem_read(stack_limit, ram_end - stack_limit))
    untouched = len(stack) - len(stack.lstrip(bytes([STACK_PAINT])))
    ops = {index: _total(edges, costs, boundary) for index, edges in per_op.items()}
    for index, stall in stalls.items():
        count = ops.get(index, OpCount(0, 0.0, {}))
        ops[index] = replace(count, cycles=count.cycles + stall, stall_cycles=stall)
    return EmulatedRun(ops=ops, output=output, stack_bytes=len(stack) - untouched,
                       blocks=len(costs), memory=flash.summary() if flash else {})


def _total(edges: dict[int, int], costs: dict, boundary: int) -> OpCount:
    """Sum an op's block transitions: each counts its source block once, plus the taken
    penalty when the destination is not the source's fall-through, less the pipelining
    saving of the destination's first load or store when the source fell through into it
    after one (BlockCost.ends_in_memory). The boundary function's own block is
    instrumentation and left out."""
    instructions, cycles, classes = 0, 0.0, {}
    for key, count in edges.items():
        source, destination = key >> 32, key & 0xFFFFFFFF
        if source == 0 or source == boundary:
            continue
        cost, fall_through = costs[source]
        instructions += cost.instructions * count
        cycles += cost.cycles * count
        if destination != fall_through:
            cycles += cost.taken_extra * count
        elif cost.ends_in_memory and destination in costs:
            # split without a branch: the next block's first load or store pipelines
            cycles -= costs[destination][0].pipelined_saving * count
        for klass, number in cost.classes.items():
            classes[klass] = classes.get(klass, 0) + number * count
    return OpCount(instructions, cycles, classes)
