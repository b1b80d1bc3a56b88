"""Estimated cycles per instruction on Cortex-M cores: each core's table, never a measurement.

The emulator counts instructions exactly; this module sorts each executed instruction into a
timing class and costs basic blocks with the core's published instruction timings (the
tables are the `timing` of each edgeship.targets.Target, with their sources).

What every table ignores: flash wait states and the flash accelerator or caches (the STM32
parts behind the MLPerf Tiny results run from flash with an ART accelerator; zero-wait-state
memory is assumed), bus contention and stalls between dependent instructions (a load whose
result the next instruction uses, the M4's LDR-then-address-use), IT folding (IT is charged
1 cycle, conservative), load/store pipelining across a taken branch, whether
branch targets are aligned (P is a fixed number), and unaligned word loads (the M4 splits one
into two bus accesses; the dsp convolutions read kernel rows of RGB and other inputs whose
rows are not word-aligned this way, a few per window). The estimate is therefore a model of the
core running from zero-wait-state memory, to compare kernels and catch regressions; it is
not what a board measures.
"""

from dataclasses import dataclass

from edgeship.targets import (
    ALU,
    BRANCH,
    CALL,
    DIVIDE,
    DSP,
    IT,
    LOAD,
    LOAD_DOUBLE,
    LOAD_MULTIPLE,
    MULTIPLY,
    MULTIPLY_ACCUMULATE,
    MULTIPLY_LONG,
    RETURN,
    STORE,
    STORE_DOUBLE,
    STORE_MULTIPLE,
    TABLE_BRANCH,
    CoreTiming,
)

_LOADS = {"ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrex", "ldrexb", "ldrexh", "ldrt",
          "ldrbt", "ldrht", "ldrsbt", "ldrsht", "lda", "ldab", "ldah", "pld"}
_STORES = {"str", "strb", "strh", "strex", "strexb", "strexh", "strt", "strbt", "strht",
           "stl", "stlb", "stlh"}
_MULTIPLY_LONG = {"smull", "umull", "smlal", "umlal", "umaal"}
_DSP_PREFIXES = ("smla", "smls", "smul", "smua", "smus", "smmul", "smmla", "smmls",
                 "sxtb16", "sxtab16", "uxtb16", "uxtab16", "qadd", "qsub", "qdadd", "qdsub",
                 "sadd", "ssub", "uadd", "usub", "shadd", "shsub", "uhadd", "uhsub",
                 "uqadd", "uqsub", "qasx", "qsax", "sasx", "ssax", "uasx", "usax", "sel",
                 "ssat16", "usat16", "usad8", "usada8", "pkhbt", "pkhtb")


def classify(name: str, operands: int = 0, writes_pc: bool = False) -> str:
    """The timing class of one instruction.

    Args:
        name: capstone's base instruction name (`insn_name()`: "ldr" for ldr.w, "b" for bne).
        operands: number of registers moved, for LDM/STM/PUSH/POP.
        writes_pc: the instruction loads PC (POP {..., pc}, LDR pc, LDM with pc).
    """
    if name in ("b", "cbz", "cbnz"):
        return BRANCH
    if name in ("bl", "blx"):
        return CALL
    if name == "bx" or (writes_pc and name in _LOADS):
        return RETURN
    if name in ("tbb", "tbh"):
        return TABLE_BRANCH
    if name in _LOADS:
        return LOAD
    if name in _STORES:
        return STORE
    if name == "ldrd":
        return LOAD_DOUBLE
    if name == "strd":
        return STORE_DOUBLE
    if name in ("pop", "ldm", "ldmdb", "ldmia"):
        return LOAD_MULTIPLE
    if name in ("push", "stm", "stmdb", "stmia"):
        return STORE_MULTIPLE
    if name == "mul":
        return MULTIPLY
    if name in ("mla", "mls"):
        return MULTIPLY_ACCUMULATE
    if name in _MULTIPLY_LONG:
        return MULTIPLY_LONG
    if name in ("sdiv", "udiv"):
        return DIVIDE
    if name == "it":
        return IT
    if name.startswith(_DSP_PREFIXES):
        return DSP
    return ALU


@dataclass(frozen=True)
class Instruction:
    """One decoded instruction as the cycle model needs it."""

    name: str
    size: int
    klass: str
    registers: int = 0  # registers moved by LDM/STM/PUSH/POP
    writes_pc: bool = False
    conditional: bool = False


@dataclass(frozen=True)
class BlockCost:
    """Cycles of one basic block: everything but its final branch's taken penalty.

    Attributes:
        instructions: instructions in the block.
        cycles: cycles when the block falls through (its final branch not taken).
        taken_extra: cycles added when the block's final branch is taken.
        classes: instruction class -> count, for the report.
    """

    instructions: int
    cycles: float
    taken_extra: float
    classes: dict[str, int]
    # A block the emulator split without a branch (unicorn ends translation blocks at 1 KB
    # guest pages) falls through into the next: a load or store that ends it pipelines with
    # one that starts the next, as inside a block. ends_in_memory: the last instruction is a
    # single load or store; pipelined_saving: what the first instruction saves when it is one
    # and follows one (0 otherwise).
    ends_in_memory: bool = False
    pipelined_saving: float = 0.0


def block_cost(instructions: list[Instruction], timing: CoreTiming) -> BlockCost:
    """Cost a basic block (straight-line code ending, at most, in one branch)."""
    cycles = 0.0
    taken_extra = 0.0
    classes: dict[str, int] = {}
    previous_was_memory = False
    saving = 0.0
    if (instructions and instructions[0].klass in (LOAD, STORE)
            and timing.pipelined_load_store is not None):
        saving = timing.cycles[instructions[0].klass] - timing.pipelined_load_store
    for position, insn in enumerate(instructions):
        klass = insn.klass
        classes[klass] = classes.get(klass, 0) + 1
        single_memory = klass in (LOAD, STORE)
        if klass in (LOAD_MULTIPLE, STORE_MULTIPLE):
            cost = timing.multiple_base + timing.cycles[klass] * insn.registers
        elif single_memory and previous_was_memory and timing.pipelined_load_store is not None:
            cost = timing.pipelined_load_store
        else:
            cost = timing.cycles[klass]
        previous_was_memory = single_memory
        last = position == len(instructions) - 1
        if insn.writes_pc:
            # A branch, call, return or load into PC: the refill is paid when control moves.
            loads_pc = klass in (LOAD_MULTIPLE, RETURN) and insn.name != "bx"
            extra = timing.pc_load_extra if loads_pc else timing.branch_taken
            if last:
                taken_extra += extra
            else:
                cost += extra
        cycles += cost
    return BlockCost(len(instructions), cycles, taken_extra, classes,
                     ends_in_memory=previous_was_memory, pipelined_saving=saving)


def decode(code: bytes, address: int, disassembler) -> list[Instruction]:
    """Decode a block's bytes with a capstone Thumb disassembler (detail on)."""
    from capstone import arm_const

    decoded = []
    for insn in disassembler.disasm(code, address):
        name = insn.insn_name()
        registers = 0
        writes_pc = name in ("b", "bl", "blx", "bx", "cbz", "cbnz", "tbb", "tbh")
        if name in ("pop", "ldm", "ldmdb", "ldmia", "push", "stm", "stmdb", "stmia"):
            regs = [op.reg for op in insn.operands if op.type == arm_const.ARM_OP_REG]
            if name not in ("pop", "push"):
                regs = regs[1:]  # the base register
            registers = len(regs)
            writes_pc = name in ("pop", "ldm", "ldmdb", "ldmia") and arm_const.ARM_REG_PC in regs
        elif name in _LOADS and insn.operands:
            first = insn.operands[0]
            writes_pc = first.type == arm_const.ARM_OP_REG and first.reg == arm_const.ARM_REG_PC
        decoded.append(Instruction(name=name, size=insn.size,
                                   klass=classify(name, registers, writes_pc),
                                   registers=registers, writes_pc=writes_pc,
                                   conditional=insn.cc not in (arm_const.ARM_CC_AL,
                                                               arm_const.ARM_CC_INVALID)))
    return decoded


def thumb_disassembler():
    """A capstone disassembler for M-profile Thumb code, with operand detail."""
    from edgeship.deps import require

    capstone = require("capstone")
    disassembler = capstone.Cs(capstone.CS_ARCH_ARM,
                               capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    disassembler.detail = True
    return disassembler
