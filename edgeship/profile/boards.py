"""Boards `edgeship profile --board` models: core, clock, flash wait states and the flash
accelerator or caches in front of the flash, applied to the emulated run as stall cycles.

Without --board the estimate is of the core alone on zero-wait-state memory (cycle_model).
With a board, every instruction fetch and every data read from flash goes through a cache
simulation (set-associative, LRU; a fully associative cache is one set), and each miss stalls
the core. Where things live (the profile firmware's link.ld, as on the boards' default
linker scripts): code, weights and every other constant in flash; activations, scratch,
stack and the input in SRAM, which is taken as zero-wait-state (SRAM1 on the L4R5, AXI SRAM
on the H7A3, SRAM1 on the U575 all run at the core clock).

The model, for each board:
- an instruction fetch from a line the instruction cache lacks stalls `wait_states` cycles
  (the flash read of the missed word; the rest of the line fills behind it), except a miss on
  the line right after the last one fetched, which the prefetch buffer read while the
  previous line executed: it stalls max(0, wait_states - line_bytes / 2), taking code to run
  at one 16-bit halfword per cycle;
- a data read from flash (weights, tables, literal pools) from a line the data cache lacks
  stalls `wait_states` cycles; a read that straddles two lines may miss twice. Where the
  board has no data cache on the flash path (`data_cache` None: the Cortex-M33's C-AHB bus
  carries both instruction fetches and data reads of the code region through one ICACHE),
  data reads go through the instruction cache and share its lines with the code.

Sources (numbers copied from the reference manuals as cited in issue 31 and from Arm's
Cortex-M7 TRM; the manuals themselves were not at hand when this was written, so each
figure names its section to check):
- NUCLEO-L4R5ZI (STM32L4R5ZI): RM0432 section 3.3.3 "Read access latency" (5 wait states
  for HCLK above 100 MHz up to 120 MHz in range 1 boost mode) and 3.3.4 "Adaptive real-time
  memory accelerator (ART Accelerator)": instruction cache 64 lines of 128 bits, data cache
  8 lines of 128 bits, prefetch buffer on ICode.
- NUCLEO-H7A3ZI-Q (STM32H7A3ZI): RM0455 section 4.3.8 "FLASH read access latency" (6 wait
  states at 280 MHz, VOS0), 128-bit flash words on AXI; Cortex-M7 L1 caches 16 KB each
  (RM0455 section 2.1), 32-byte lines, instruction 2-way, data 4-way (Arm Cortex-M7 TRM,
  DDI 0489, "Level 1 caches"). The L1 caches are enabled by the application (X-CUBE-AI's
  projects enable them), so the model has them on.
- NUCLEO-U575ZI-Q (STM32U575ZI): RM0456 section 7.3.3 "Read access latency" (4 wait states
  at 160 MHz, range 1); ICACHE (section 8) 8 KB, 2-way, 16-byte lines, on the Cortex-M33's
  C-AHB code bus, which fetches instructions and reads data (weights, literal pools) of the
  code region, internal flash included; DCACHE1 (section 9) sits on the S-AHB bus and caches
  external memories only, so it is not on the path of weights in internal flash (ST's ICACHE
  introduction: "to improve performance when fetching instructions and data from both
  internal and external memories"; DCACHE: "data traffic to/from external memories").

What the model ignores: bus contention between instruction and data reads of flash (the
M4's ICode and DCode buses reach the same flash; a simultaneous miss on both is charged
twice, not serialized), the ART's or caches' line fill beyond the critical word (a second
miss to the same line while it fills is charged as a hit), flash bank interleaving, the
H7's AXI latency beyond the flash wait states and its branch predictor's interaction with
the cache, DTCM/ITCM placement (nothing is placed there), write buffers (all writes go to
SRAM), and anything the core timing table already ignores (cycle_model).
"""

from dataclasses import asdict, dataclass

from edgeship.errors import UserInputError


@dataclass(frozen=True)
class Cache:
    """One cache in front of flash (set-associative with LRU replacement).

    Attributes:
        lines: how many lines it holds.
        line_bytes: bytes per line.
        ways: lines per set (lines: fully associative).
    """

    lines: int
    line_bytes: int
    ways: int

    @property
    def bytes(self) -> int:
        return self.lines * self.line_bytes


@dataclass(frozen=True)
class Board:
    """One board: its core, clock and the memory path from flash to the core.

    Attributes:
        name: the --board name.
        title: the board and chip, for reports.
        core: the --target it carries.
        clock_mhz: the clock the published results ran at.
        wait_states: flash wait states at that clock.
        instruction_cache: the cache (or ART instruction cache) on instruction fetches.
        data_cache: the cache on data reads from flash; None: data reads from flash go
            through instruction_cache (one cache on a bus that carries both).
        prefetch: sequential instruction lines are read ahead.
        placement: where code, weights and activations live.
        source: the reference manual sections the numbers come from.
    """

    name: str
    title: str
    core: str
    clock_mhz: float
    wait_states: int
    instruction_cache: Cache
    data_cache: Cache | None
    prefetch: bool
    placement: str
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


_PLACEMENT = ("code, weights and constants in internal flash; activations, scratch, stack and "
              "input in SRAM (zero wait states)")

BOARDS: dict[str, Board] = {
    "nucleo-l4r5zi": Board(
        "nucleo-l4r5zi", "NUCLEO-L4R5ZI (STM32L4R5ZI, Cortex-M4)", "cortex-m4", 120.0, 5,
        instruction_cache=Cache(64, 16, 64), data_cache=Cache(8, 16, 8), prefetch=True,
        placement=_PLACEMENT,
        source="RM0432 3.3.3 (5 WS at 120 MHz, range 1 boost), 3.3.4 ART: 64 x 128-bit "
               "instruction cache lines, 8 x 128-bit data cache lines, prefetch"),
    "nucleo-h7a3zi": Board(
        "nucleo-h7a3zi", "NUCLEO-H7A3ZI-Q (STM32H7A3ZI, Cortex-M7)", "cortex-m7", 280.0, 6,
        instruction_cache=Cache(512, 32, 2), data_cache=Cache(512, 32, 4), prefetch=False,
        placement=_PLACEMENT,
        source="RM0455 4.3.8 (6 WS at 280 MHz, VOS0); Cortex-M7 L1 16 KB I (2-way) and "
               "16 KB D (4-way), 32-byte lines (DDI 0489)"),
    "nucleo-u575zi": Board(
        "nucleo-u575zi", "NUCLEO-U575ZI-Q (STM32U575ZI, Cortex-M33)", "cortex-m33", 160.0, 4,
        instruction_cache=Cache(512, 16, 2), data_cache=None, prefetch=True,
        placement=_PLACEMENT,
        source="RM0456 7.3.3 (4 WS at 160 MHz, range 1), ICACHE 8 KB 2-way 16-byte lines "
               "on the C-AHB bus: instructions and flash data reads share it (DCACHE1 caches "
               "external memories only)"),
}


def get_board(name: str) -> Board:
    """The board of that name.

    Raises:
        UserInputError: unknown name (the message lists the boards).
    """
    board = BOARDS.get(name)
    if board is None:
        raise UserInputError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    return board


class CacheSimulation:
    """Hits and misses of one Cache over a stream of addresses (LRU within each set)."""

    def __init__(self, cache: Cache):
        self.line_bytes = cache.line_bytes
        self.ways = cache.ways
        self.set_count = cache.lines // cache.ways
        self.sets: list[list[int]] = [[] for _ in range(self.set_count)]
        self.misses = 0
        self.accesses = 0

    def access(self, line: int) -> bool:
        """Touch one line (address // line_bytes); True on a hit."""
        self.accesses += 1
        ways = self.sets[line % self.set_count]
        if ways and ways[-1] == line:
            return True
        if line in ways:
            ways.remove(line)
            ways.append(line)
            return True
        self.misses += 1
        if len(ways) == self.ways:
            del ways[0]
        ways.append(line)
        return False


class FlashModel:
    """The stall cycles one board's flash path adds to an emulated run (module docstring)."""

    def __init__(self, board: Board):
        self.board = board
        self.instructions = CacheSimulation(board.instruction_cache)
        self.data = (self.instructions if board.data_cache is None
                     else CacheSimulation(board.data_cache))
        self.data_reads = 0
        self.data_misses = 0
        self.sequential_stall = max(0, board.wait_states
                                    - board.instruction_cache.line_bytes // 2)
        self.last_line = -2

    def fetch(self, address: int, size: int) -> int:
        """Stall cycles of fetching the instructions at [address, address + size)."""
        line_bytes = self.instructions.line_bytes
        stall = 0
        for line in range(address // line_bytes, (address + size - 1) // line_bytes + 1):
            if not self.instructions.access(line):
                sequential = self.board.prefetch and line == self.last_line + 1
                stall += self.sequential_stall if sequential else self.board.wait_states
            self.last_line = line
        return stall

    def read(self, address: int, size: int) -> int:
        """Stall cycles of one data read from flash."""
        line_bytes = self.data.line_bytes
        first, last = address // line_bytes, (address + size - 1) // line_bytes
        misses = (not self.data.access(first)) + (last != first and not self.data.access(last))
        self.data_reads += 1 + (last != first)  # line accesses, as the caches count them
        self.data_misses += misses
        return misses * self.board.wait_states

    def summary(self) -> dict:
        """Accesses and misses of each cache, for the report."""
        shared = self.data is self.instructions
        return {"instruction_line_accesses": self.instructions.accesses
                - (self.data_reads if shared else 0),
                "instruction_line_misses": self.instructions.misses
                - (self.data_misses if shared else 0),
                "data_reads": self.data_reads, "data_misses": self.data_misses,
                "shared_cache": shared}
