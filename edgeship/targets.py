"""The microcontroller cores edgeship generates C for: one `Target` per core.

Everything that depends on the core is a field of its Target, so codegen and profile cannot
disagree about it: the compiler flags, the DSP extension (codegen's `--kernels auto` picks
the dsp kernels there), the emulator's CPU model and the instruction-timing table
(`edgeship profile`), and a typical board with its clock (the default of the ms estimate).

Where the timing tables come from (estimates from Arm's manuals, never measurements):

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

What every table ignores: see CoreTiming.ignores and edgeship.profile.cycle_model.
"""

from dataclasses import dataclass, field

from edgeship.errors import UserInputError

# Instruction classes of the timing tables (edgeship.profile.cycle_model sorts each executed
# instruction into one). A basic block is costed once; the taken/not-taken cost of the
# branch that ends it is added per execution from where the next block starts.
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


@dataclass(frozen=True)
class Target:
    """One core.

    Attributes:
        name: the --target name.
        cpu_flags: arm-none-eabi-gcc flags that select the core (soft float everywhere: the
            generated C computes in integers, float only in a float model's boundary QUANTIZE and
            DEQUANTIZE ops, which soft float runs exactly; the FPU stays off, as after reset).
        dsp: the instruction set has the DSP extension (SMLAD, SXTB16...): codegen's
            `--kernels auto` generates the dsp kernels for it.
        unicorn_cpu: the name of unicorn's CPU model constant (UC_CPU_ARM_...), or None when the
            emulator has no model of the core (it cannot be profiled).
        timing: its instruction-timing table, or None where none is modelled.
        clock_mhz: default clock for the ms estimate, a typical board's.
        board: that board (or class of boards), for the report.
    """

    name: str
    cpu_flags: tuple[str, ...]
    dsp: bool
    unicorn_cpu: str | None
    timing: CoreTiming | None
    clock_mhz: float
    board: str

    @property
    def profilable(self) -> bool:
        """The emulator runs it and its instructions have a timing table."""
        return self.unicorn_cpu is not None and self.timing is not None

    def board_at(self, clock_mhz: float) -> str:
        """The report's board text for a run at clock_mhz: the typical board at its own
        clock, or the core at another clock (never a board's name beside a clock it lacks)."""
        if clock_mhz == self.clock_mhz:
            return f"{self.board} ({clock_mhz:g} MHz)"
        return (f"{self.name} at {clock_mhz:g} MHz (--clock-mhz; the typical board, "
                f"{self.board}, runs {self.clock_mhz:g} MHz)")


def _flags(core: str) -> tuple[str, ...]:
    return (f"-mcpu={core}", "-mthumb", "-mfloat-abi=soft")


TARGETS: dict[str, Target] = {target.name: target for target in (
    Target("cortex-m0plus", _flags("cortex-m0plus"), dsp=False,
           unicorn_cpu="UC_CPU_ARM_CORTEX_M0",
           timing=CoreTiming(
               core="cortex-m0plus",
               cycles={ALU: 1, LOAD: 2, STORE: 2, LOAD_DOUBLE: 4, STORE_DOUBLE: 4,
                       LOAD_MULTIPLE: 1, STORE_MULTIPLE: 1, MULTIPLY: 1,
                       MULTIPLY_ACCUMULATE: 2, MULTIPLY_LONG: 1, DSP: 1, DIVIDE: 1, IT: 1,
                       BRANCH: 1, CALL: 2, RETURN: 1, TABLE_BRANCH: 2},
               multiple_base=1, pipelined_load_store=None, branch_taken=1, pc_load_extra=2,
               source="Cortex-M0+ TRM (DDI 0484) 3.3, single-cycle multiplier option"),
           clock_mhz=48.0, board="SAMD21 / STM32G0 class"),
    Target("cortex-m4", _flags("cortex-m4"), dsp=True, unicorn_cpu="UC_CPU_ARM_CORTEX_M4",
           timing=CoreTiming(
               core="cortex-m4", cycles=dict(_M4_CYCLES), multiple_base=1,
               pipelined_load_store=1, branch_taken=2, pc_load_extra=2,
               source="Cortex-M4 TRM (DDI 0439) table 3-1; P = 2, SDIV/UDIV = 7"),
           clock_mhz=120.0, board="NUCLEO-L4R5ZI, the MLPerf Tiny reference board"),
    Target("cortex-m7", _flags("cortex-m7"), dsp=True, unicorn_cpu="UC_CPU_ARM_CORTEX_M7",
           timing=CoreTiming(
               core="cortex-m7",
               cycles={ALU: 0.5, LOAD: 1, STORE: 1, LOAD_DOUBLE: 1, STORE_DOUBLE: 1,
                       LOAD_MULTIPLE: 0.5, STORE_MULTIPLE: 0.5, MULTIPLY: 1,
                       MULTIPLY_ACCUMULATE: 1, MULTIPLY_LONG: 1, DSP: 0.5, DIVIDE: 8, IT: 0.5,
                       BRANCH: 0.5, CALL: 1, RETURN: 1, TABLE_BRANCH: 2},
               multiple_base=1, pipelined_load_store=None, branch_taken=0.5, pc_load_extra=1,
               source="approximation of the dual-issue pipeline (no M7 table published): 2 "
                      "ALU/DSP per cycle, 1 load/store and 1 multiply per cycle, branches "
                      "predicted"),
           clock_mhz=216.0, board="STM32F7 class"),
    Target("cortex-m33", _flags("cortex-m33"), dsp=True, unicorn_cpu="UC_CPU_ARM_CORTEX_M33",
           timing=CoreTiming(
               core="cortex-m33", cycles={**_M4_CYCLES, DIVIDE: 6}, multiple_base=1,
               pipelined_load_store=1, branch_taken=2, pc_load_extra=2,
               source="Cortex-M4 TRM table 3-1 as an approximation (no M33 table published); "
                      "SDIV/UDIV = 6"),
           clock_mhz=160.0, board="STM32U5 class"),
    # Codegen targets the emulator (unicorn 2.1) has no model of: QEMU's mps3-an547 runs the
    # M55, but without per-op counts. Their clocks are typical parts', for the record only.
    Target("cortex-m35p", _flags("cortex-m35p"), dsp=True, unicorn_cpu=None, timing=None,
           clock_mhz=160.0, board="Cortex-M35P class"),
    Target("cortex-m55", _flags("cortex-m55"), dsp=True, unicorn_cpu=None, timing=None,
           clock_mhz=160.0, board="Corstone-300 class"),
    Target("cortex-m85", _flags("cortex-m85"), dsp=True, unicorn_cpu=None, timing=None,
           clock_mhz=480.0, board="Renesas RA8 class"),
)}

# Cores whose instruction set has the DSP extension: codegen's `auto` picks dsp there.
DSP_CORES = frozenset(name for name, target in TARGETS.items() if target.dsp)
# Cores `edgeship profile` can run.
PROFILE_TARGETS = tuple(name for name, target in TARGETS.items() if target.profilable)


def get_target(name: str) -> Target:
    """The target of that name.

    Raises:
        UserInputError: unknown name (the message lists the targets).
    """
    target = TARGETS.get(name)
    if target is None:
        raise UserInputError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    return target
