"""The library call behind `edgeship profile`: generate, compile, emulate, count.

    profile_model(ProfileConfig(model="kws_int8.tflite", target="cortex-m4")) -> ProfileReport
"""

import hashlib
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeship.convert.codegen.kernels import KERNEL_CHOICES
from edgeship.errors import UserInputError
from edgeship.options import option
from edgeship.profile.boards import get_board
from edgeship.profile.emulator import OUTSIDE, CycleLimitReached, emulate
from edgeship.profile.firmware import MODEL_NAME, build_firmware, section_bytes
from edgeship.profile.report import OpProfile, ProfileReport
from edgeship.profile.targets import TARGETS, get_target
from edgeship.quantization import quantize_values

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ProfileConfig:
    """What to profile and how.

    Attributes:
        model: the full-int8 .tflite.
        target: the core (see edgeship.profile.targets.TARGETS).
        clock_mhz: clock for the ms estimate; None takes the target's typical board clock.
        input: a .npy input (float, quantized with the model's input scale, or int8 as it is);
            None makes a seeded random int8 input.
        seed: seed of the random input.
        kernels: codegen's kernel variant, or "auto" (as codegen and the pipeline's profile
            stage resolve it: dsp on a core with the DSP extension, else portable).
        cmsis_nn: the CMSIS-NN folder, for kernels="cmsis-nn".
        board: a board of edgeship.profile.boards: its flash wait states and caches are
            modelled, and its clock is the default; None: the core on zero-wait memory.
    """

    model: str = option(positional=True, metavar="MODEL", help="full-int8 .tflite")
    target: str = option("cortex-m4", choices=tuple(TARGETS),
                         help="Cortex-M core to compile for and emulate (with --board, the "
                              "board's core)")
    clock_mhz: float | None = option(None, help="clock for the ms estimate (default: the "
                                     "board's, else the target's typical board, 120 for "
                                     "cortex-m4)")
    input: str | None = option(None, metavar="NPY", help=".npy input (float or int8); default "
                               "a seeded random int8 input")
    seed: int = option(0, help="seed of the random input")
    kernels: str = option("auto", choices=KERNEL_CHOICES,
                          help="codegen's kernel variant (auto: dsp on cores with the DSP "
                               "extension, else portable; as codegen resolves it)")
    cmsis_nn: str | None = option(None, metavar="DIR", help="CMSIS-NN folder, for --kernels "
                                  "cmsis-nn")
    board: str | None = option(None, help="model this board's flash wait states and caches "
                               "(nucleo-l4r5zi, nucleo-h7a3zi, nucleo-u575zi; "
                               "edgeship/profile/boards.py); default: zero-wait memory")

    def __post_init__(self):
        if self.clock_mhz is not None and not self.clock_mhz > 0:
            raise UserInputError(f"clock must be > 0 MHz, got {self.clock_mhz}")
        if self.kernels == "cmsis-nn" and not self.cmsis_nn:
            raise UserInputError("kernels cmsis-nn needs the CMSIS-NN folder (--cmsis-nn DIR)")
        if self.board is not None:
            core = get_board(self.board).core
            if core != self.target:
                raise UserInputError(f"board {self.board} has a {core}, not a {self.target}; "
                                     f"pass --target {core}")
        if self.kernels not in KERNEL_CHOICES:
            raise UserInputError(f"codegen has no {self.kernels!r} kernels; choose one of "
                                 f"{', '.join(KERNEL_CHOICES)}")

    @property
    def variant(self) -> str:
        """The kernel variant profiled: `kernels` with "auto" resolved for the target."""
        from edgeship.convert.codegen.kernels import resolve_kernels

        return resolve_kernels(self.kernels, self.target)


def model_input(config: ProfileConfig, size: int, scale: float, zero_point: int,
                dtype: str = "int8") -> tuple[bytes, dict]:
    """The input bytes (int8, int16, uint8 or float32 values, as the model takes) and where
    they came from. Random float32 inputs cover the range the model's input QUANTIZE maps
    (firmware_sources.random_inputs).

    Raises:
        UserInputError: unreadable .npy or the wrong number of values.
    """
    kind = np.dtype(dtype)
    if config.input is None and kind == np.float32:
        from edgeship.convert.firmware_sources import random_inputs
        from edgeship.tflite_graph import read_graph

        values = random_inputs(read_graph(Path(config.model).read_bytes()), 1,
                               config.seed).reshape(-1)
        described = {"source": f"seeded random {dtype}", "seed": config.seed}
    elif config.input is None:
        low, high = np.iinfo(kind).min, np.iinfo(kind).max
        values = np.random.default_rng(config.seed).integers(low, high + 1, size, dtype=kind)
        described = {"source": f"seeded random {dtype}", "seed": config.seed}
    else:
        try:
            array = np.load(config.input, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise UserInputError(f"--input {config.input}: not a readable .npy ({error})"
                                 ) from error
        if array.size != size:
            raise UserInputError(f"--input {config.input} holds {array.size} values; the "
                                 f"model takes {size}")
        if array.dtype == kind:
            values = array.reshape(-1)
        elif kind == np.float32 and np.issubdtype(array.dtype, np.floating):
            values = array.reshape(-1).astype(np.float32)  # a float model input takes it as is
        elif np.issubdtype(array.dtype, np.floating):
            values = quantize_values(array.reshape(-1).astype(np.float64), scale, zero_point,
                                     dtype)
        else:
            raise UserInputError(f"--input {config.input} is {array.dtype}; give float "
                                 f"(quantized with the model's input scale) or {dtype}")
        described = {"source": str(config.input), "dtype": str(array.dtype)}
    data = values.astype(kind).tobytes()
    return data, {**described, "sha256": hashlib.sha256(data).hexdigest()}


class ProfileStopped(Exception):
    """profile_model stopped at its cycle limit: what is known by then.

    Attributes:
        cycles: estimated cycles when it stopped (a lower bound of the whole run's).
        ms: those cycles at the clock.
        ram: the static buffer's bytes (activations, I/O, scratch; the stack not measured).
        flash: code + weights of the linked program.
    """

    def __init__(self, cycles: float, ms: float, ram: int, flash: int):
        super().__init__(f"over {ms:.3g} ms: stopped after {cycles:,.0f} estimated cycles")
        self.cycles, self.ms, self.ram, self.flash = cycles, ms, ram, flash


def profile_model(config: ProfileConfig, build_dir: Path | None = None,
                  max_ms: float | None = None, max_ram: int | None = None) -> ProfileReport:
    """Profile an int8 .tflite on an emulated Cortex-M core.

    Args:
        config: the model, target and input.
        build_dir: keep the generated C and the firmware (profile.elf) there; by default
            they go to a temporary folder that is removed.
        max_ms: stop the emulation once the estimate passes this many ms at the clock
            (ProfileStopped): a caller asking only whether a latency budget is met.
        max_ram: profile the C `codegen --max-ram` would generate (kernels that stage
            constants in SRAM stage less until the RAM buffer fits) when the default C's buffer
            is larger; when even that does not fit, the default C, whose RAM shows the miss.

    Returns:
        Per-op and total instructions and estimated cycles, flash and RAM.

    Raises:
        UserInputError: missing or unsupported model, bad input, a target the emulator lacks.
        MissingDependencyError: the Arm toolchain, unicorn, capstone or pyelftools is missing.
        ToolFailureError: the generated C failed to build or the firmware faulted.
    """
    from edgeship.convert.codegen import CodegenConfig, generate_c

    target = get_target(config.target)
    board = get_board(config.board) if config.board else None
    model_path = Path(config.model)
    if not model_path.is_file():
        raise UserInputError(f"model {model_path} does not exist")
    model_bytes = model_path.read_bytes()
    clock_mhz = (config.clock_mhz if config.clock_mhz is not None
                 else board.clock_mhz if board else target.clock_mhz)
    with tempfile.TemporaryDirectory(prefix="edgeship-profile-") as temporary:
        work = Path(build_dir or temporary)
        work.mkdir(parents=True, exist_ok=True)
        codegen = CodegenConfig(model=str(model_path), out=str(work / "src"), name=MODEL_NAME,
                                kernels=config.variant, target=target.name,
                                cmsis_nn=config.cmsis_nn)
        generated = generate_c(codegen)
        if max_ram is not None and generated.arena_bytes > max_ram:
            try:  # refused before any file is written: the default C stays
                generated = generate_c(replace(codegen, max_ram=max_ram))
            except UserInputError:
                pass
        io_types = (generated.input.dtype, generated.output.dtype)
        input_bytes, input_described = model_input(config, generated.input.size,
                                                   generated.input.scale,
                                                   generated.input.zero_point, io_types[0])
        firmware = build_firmware(work / "src", target, work,
                                  generated.c_sources, generated.include_dirs, io_types)
        flash = {name.strip("."): section_bytes(firmware.elf, (name,))
                 for name in (".text", ".rodata", ".data")}
        try:
            run = emulate(firmware.elf, target, input_bytes, io_types[1], board,
                          cycle_limit=None if max_ms is None else max_ms * clock_mhz * 1000)
        except CycleLimitReached as stopped:
            raise ProfileStopped(stopped.cycles, stopped.cycles / (clock_mhz * 1000),
                                 generated.arena_bytes, sum(flash.values())) from None
    graph_ops = generated.op_records
    ops = []
    for op in graph_ops:
        count = run.ops.get(op.index)
        ops.append(OpProfile(index=op.index, op=op.op, macs=op.macs,
                             instructions=count.instructions if count else 0,
                             cycles=count.cycles if count else 0.0,
                             classes=count.classes if count else {}))
    outside = run.ops.get(OUTSIDE)
    # Code after the last boundary (the model's return) counts with the harness.
    after = run.ops.get(len(graph_ops))
    harness_instructions = sum(count.instructions for count in (outside, after) if count)
    harness_cycles = sum(count.cycles for count in (outside, after) if count)
    flash["total"] = sum(flash.values())
    flash["harness"] = firmware.harness_flash
    # One static buffer holds the activations, the input, the output and the scratch buffers,
    # planned together: the parts overlap in time, so the RAM is that buffer plus the stack
    # (and a recurrent model's state, kept beside it between invokes).
    ram = {"activations": generated.arena_bytes, "input": generated.input_bytes,
           "output": generated.output_bytes, "scratch": generated.scratch_bytes,
           "state": generated.state_bytes, "stack": run.stack_bytes,
           "total": generated.arena_bytes + generated.state_bytes + run.stack_bytes}
    import unicorn

    return ProfileReport(
        schema_version=SCHEMA_VERSION, model=str(model_path),
        model_sha256=hashlib.sha256(model_bytes).hexdigest(), target=target.name,
        board=board.title if board else target.board_at(clock_mhz), clock_mhz=clock_mhz,
        compiler={"version": firmware.compiler, "compile_flags": list(firmware.compile_flags),
                  "link_flags": list(firmware.link_flags),
                  "hook_inserted_by_profile": firmware.hook_inserted},
        emulator={"name": "unicorn", "version": unicorn.__version__,
                  "cpu_model": target.unicorn_cpu, "basic_blocks": run.blocks},
        kernels=config.variant,
        cycle_model={"kind": "estimate from the core's instruction timings, not a measurement",
                     **target.timing.to_dict(), **_board_model(board, run)},
        input=input_described, output=run.output.tolist(), ops=tuple(ops),
        harness_instructions=harness_instructions, harness_cycles=harness_cycles,
        flash=flash, ram=ram,
        memory_timeline=tuple(zip((op.index for op in graph_ops), (op.op for op in graph_ops),
                                  generated.memory_timeline)))


def _board_model(board, run) -> dict:
    """The cycle model's board entries: none without a board (zero-wait memory)."""
    if board is None:
        return {"board": None}
    return {"board": board.to_dict(),
            "memory_stall_cycles": sum(count.stall_cycles for count in run.ops.values()),
            "memory": run.memory}
