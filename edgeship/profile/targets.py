"""The Cortex-M cores `edgeship profile` builds for: compiler flags, emulator CPU, default clock."""

from dataclasses import dataclass

from edgeship.errors import UserInputError
from edgeship.profile.cycle_model import TIMINGS, CoreTiming


@dataclass(frozen=True)
class Target:
    """One core.

    Attributes:
        name: the --target name.
        cpu_flags: arm-none-eabi-gcc flags that select the core (soft float everywhere: the
            generated C computes in integers, float only in a float model's boundary QUANTIZE and
            DEQUANTIZE ops, which soft float runs exactly; the FPU stays off, as after reset).
        unicorn_cpu: the name of unicorn's CPU model constant (UC_CPU_ARM_...), or None when the
            emulator has no model of the core.
        clock_mhz: default clock for the ms estimate, a typical board's.
        board: that board, for the report.
    """

    name: str
    cpu_flags: tuple[str, ...]
    unicorn_cpu: str | None
    clock_mhz: float
    board: str

    @property
    def timing(self) -> CoreTiming:
        return TIMINGS[self.name]


TARGETS: dict[str, Target] = {
    "cortex-m0plus": Target("cortex-m0plus", ("-mcpu=cortex-m0plus", "-mthumb",
                                              "-mfloat-abi=soft"),
                            "UC_CPU_ARM_CORTEX_M0", 48.0, "SAMD21 / STM32G0 class (48 MHz)"),
    "cortex-m4": Target("cortex-m4", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"),
                        "UC_CPU_ARM_CORTEX_M4", 120.0,
                        "NUCLEO-L4R5ZI, the MLPerf Tiny reference board (120 MHz)"),
    "cortex-m7": Target("cortex-m7", ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=soft"),
                        "UC_CPU_ARM_CORTEX_M7", 216.0, "STM32F7 class (216 MHz)"),
    "cortex-m33": Target("cortex-m33", ("-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=soft"),
                         "UC_CPU_ARM_CORTEX_M33", 160.0, "STM32U5 class (160 MHz)"),
    "cortex-m55": Target("cortex-m55", ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=soft"),
                         None, 160.0, "Corstone-300 class"),
}


def get_target(name: str) -> Target:
    """The target of that name, or one line saying which exist and which can be profiled.

    Raises:
        UserInputError: unknown name, or a core the emulator cannot run.
    """
    target = TARGETS.get(name)
    if target is None:
        raise UserInputError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    if target.unicorn_cpu is None or name not in TIMINGS:
        raise UserInputError(
            f"target {name} cannot be profiled: the emulator (unicorn 2.1) has no {name} model "
            f"(QEMU's mps3-an547 runs it, but without per-op counts); profile one of "
            f"{', '.join(t for t, v in TARGETS.items() if v.unicorn_cpu)}")
    return target
