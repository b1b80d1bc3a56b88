"""Estimated cycles per instruction on Cortex-M cores: a table per core, never a measurement.

The emulator counts instructions exactly; this module turns each executed instruction into an
estimated cycle count from the core's published instruction timings. Sources:

- Cortex-M0+: Arm Cortex-M0+ Technical Reference Manual (DDI 0484), "Processor instruction
  timings" (3.3). Data processing 1; LDR/STR 2; LDM/STM/PUSH/POP 1+N; POP with PC 3+N;
  branch taken 2 (not taken 1); BL 3; BX/BLX 2; MULS 1 (the single-cycle multiplier option;
  the small multiplier takes 32).
- Cortex-M4: Arm Cortex-M4 Technical Reference Manual (DDI 0439), table 3-1 "Cortex-M4
  instruction set summary". Data processing 1; MUL 1; MLA/MLS 2; SMULL/UMULL/SMLAL/UMLAL 1;
  DSP multiply-accumulate and SIMD (SMLAD, SMLABB, SMULBB, SXTB16, QADD8, SEL, SSAT ...) 1;
  SDIV/UDIV 2-12 (early termination; charged 7, the middle); LDR/STR 2, but a load or store
  that immediately follows another load or store pipelines into 1 ("neighbouring load and
  store single instructions can pipeline their address and data phases", so N in a row cost
  1+N); LDRD/STRD 3; LDM/STM/PUSH/POP 1+N; branch taken 1+P, not taken 1, with P the
  pipeline refill of 1-3 cycles (charged 2); BL/BX/BLX 1+P; TBB/TBH 2+P; a load into PC 2+P
  (POP with PC 1+N+P).
- Cortex-M33: Arm publishes no per-instruction table for it (the Cortex-M33 TRM has none);
  it is a 3-stage Armv8-M Mainline core with the same single-cycle DSP MAC as the M4, so the
  M4 table is used, with SDIV/UDIV (2-11 cycles) charged 6.
- Cortex-M7: Arm publishes no per-instruction table either; the core is a 6-stage, in-order,
  dual-issue pipeline with branch prediction. Approximated as: two data-processing or DSP
  instructions can issue per cycle (0.5 each); one load/store per cycle (1 each, no LDR
  pairing penalty: the M7 pipelines loads); MUL/MLA and long multiplies 1 (one MAC
  pipeline); branches predicted correctly (taken 1, not taken 0.5; mispredictions, about
  8 cycles on the M7, are not modelled); SDIV/UDIV charged 8.

What every table ignores: flash wait states and the flash accelerator or caches (the STM32
parts behind the MLPerf Tiny results run from flash with an ART accelerator; zero-wait-state
memory is assumed), bus contention and stalls between dependent instructions (a load whose
result the next instruction uses, the M4's LDR-then-address-use), IT folding (IT is charged
1 cycle, conservative), load/store pipelining across basic-block boundaries, and whether
branch targets are aligned (P is a fixed number). The estimate is therefore a model of the
core running from zero-wait-state memory, to compare kernels and catch regressions; it is
not what a board measures.
"""

from dataclasses import dataclass, field

# Instruction classes. A basic block is costed once; the taken/not-taken cost of the branch
# that ends it is added per execution from where the next block starts.
ALU = "alu"
LOAD = "load"
STORE = "store"
LOAD_DOUBLE = "load_double"
STORE_DOUBLE = "store_double"
LOAD_MULTIPLE = "load_multiple"  # LDM, POP: 1+N
STORE_MULTIPLE = "store_multiple"  # STM, PUSH: 1+N
MULTIPLY = "multiply"
MULTIPLY_ACCUMULATE = "multiply_accumulate"
MULTIPLY_LONG = "multiply_long"
DSP = "dsp"  # DSP-extension multiply-accumulate and SIMD
DIVIDE = "divide"
IT = "it"
BRANCH = "branch"  # B, Bcc, CBZ/CBNZ
CALL = "call"  # BL, BLX
RETURN = "return"  # BX, and loads into PC (POP {..., pc}, LDR pc)
TABLE_BRANCH = "table_branch"  # TBB/TBH

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


@dataclass(frozen=True)
class CoreTiming:
    """Cycles per instruction class for one core (see the module docstring for sources).

    Attributes:
        core: the target name.
        cycles: class -> cycles of one instruction (multiple-register classes: per register,
            plus `multiple_base`).
        multiple_base: the 1 of LDM/STM's 1+N.
        pipelined_load_store: cycles of a load/store that directly follows another one in the
            same block (None: no pipelining, the class cost applies).
        branch_taken: extra cycles when a branch is taken (the pipeline refill P, or the
            whole extra cost on cores where the table gives total figures).
        pc_load_extra: extra cycles of a load into PC beyond the load itself.
        source: where the numbers come from, in a few words.
    """

    core: str
    cycles: dict[str, float]
    multiple_base: float
    pipelined_load_store: float | None
    branch_taken: float
    pc_load_extra: float
    source: str
    ignores: tuple[str, ...] = field(default=(
        "flash wait states, caches and flash accelerators", "bus contention",
        "stalls between dependent instructions", "IT folding",
        "load/store pipelining across basic blocks", "branch target alignment"))

    def to_dict(self) -> dict:
        return {"core": self.core, "cycles": dict(self.cycles),
                "multiple_base": self.multiple_base,
                "pipelined_load_store": self.pipelined_load_store,
                "branch_taken_extra": self.branch_taken, "pc_load_extra": self.pc_load_extra,
                "source": self.source, "ignores": list(self.ignores)}


_M4_CYCLES = {ALU: 1, LOAD: 2, STORE: 2, LOAD_DOUBLE: 3, STORE_DOUBLE: 3, LOAD_MULTIPLE: 1,
              STORE_MULTIPLE: 1, MULTIPLY: 1, MULTIPLY_ACCUMULATE: 2, MULTIPLY_LONG: 1, DSP: 1,
              DIVIDE: 7, IT: 1, BRANCH: 1, CALL: 1, RETURN: 1, TABLE_BRANCH: 2}

TIMINGS: dict[str, CoreTiming] = {
    "cortex-m0plus": CoreTiming(
        core="cortex-m0plus",
        cycles={ALU: 1, LOAD: 2, STORE: 2, LOAD_DOUBLE: 4, STORE_DOUBLE: 4, LOAD_MULTIPLE: 1,
                STORE_MULTIPLE: 1, MULTIPLY: 1, MULTIPLY_ACCUMULATE: 2, MULTIPLY_LONG: 1,
                DSP: 1, DIVIDE: 1, IT: 1, BRANCH: 1, CALL: 2, RETURN: 1, TABLE_BRANCH: 2},
        multiple_base=1, pipelined_load_store=None, branch_taken=1, pc_load_extra=2,
        source="Cortex-M0+ TRM (DDI 0484) 3.3, single-cycle multiplier option"),
    "cortex-m4": CoreTiming(
        core="cortex-m4", cycles=dict(_M4_CYCLES), multiple_base=1, pipelined_load_store=1,
        branch_taken=2, pc_load_extra=2,
        source="Cortex-M4 TRM (DDI 0439) table 3-1; P = 2, SDIV/UDIV = 7"),
    "cortex-m33": CoreTiming(
        core="cortex-m33", cycles={**_M4_CYCLES, DIVIDE: 6}, multiple_base=1,
        pipelined_load_store=1, branch_taken=2, pc_load_extra=2,
        source="Cortex-M4 TRM table 3-1 as an approximation (no M33 table published); "
               "SDIV/UDIV = 6"),
    "cortex-m7": CoreTiming(
        core="cortex-m7",
        cycles={ALU: 0.5, LOAD: 1, STORE: 1, LOAD_DOUBLE: 1, STORE_DOUBLE: 1, LOAD_MULTIPLE: 0.5,
                STORE_MULTIPLE: 0.5, MULTIPLY: 1, MULTIPLY_ACCUMULATE: 1, MULTIPLY_LONG: 1,
                DSP: 0.5, DIVIDE: 8, IT: 0.5, BRANCH: 0.5, CALL: 1, RETURN: 1,
                TABLE_BRANCH: 2},
        multiple_base=1, pipelined_load_store=None, branch_taken=0.5, pc_load_extra=1,
        source="approximation of the dual-issue pipeline (no M7 table published): 2 ALU/DSP "
               "per cycle, 1 load/store and 1 multiply per cycle, branches predicted"),
}


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


def block_cost(instructions: list[Instruction], timing: CoreTiming) -> BlockCost:
    """Cost a basic block (straight-line code ending, at most, in one branch)."""
    cycles = 0.0
    taken_extra = 0.0
    classes: dict[str, int] = {}
    previous_was_memory = False
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
    return BlockCost(len(instructions), cycles, taken_extra, classes)


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
