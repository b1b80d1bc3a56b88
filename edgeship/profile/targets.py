"""The cores `edgeship profile` can run: edgeship.targets' Targets the emulator has a model of.

The Target itself (compiler flags, emulator CPU, timing table, DSP extension, board and
clock) is in edgeship's core, shared with codegen; this module only refuses the cores the
emulator cannot run.
"""

from edgeship.errors import UserInputError
from edgeship.targets import PROFILE_TARGETS, TARGETS, Target
from edgeship.targets import get_target as get_core_target

__all__ = ["PROFILE_TARGETS", "TARGETS", "Target", "get_target"]


def get_target(name: str) -> Target:
    """The target of that name, or one line saying which exist and which can be profiled.

    Raises:
        UserInputError: unknown name, or a core the emulator cannot run.
    """
    target = get_core_target(name)
    if not target.profilable:
        raise UserInputError(
            f"target {name} cannot be profiled: the emulator (unicorn 2.1) has no {name} model "
            f"(QEMU's mps3-an547 runs the M55, but without per-op counts); profile one of "
            f"{', '.join(PROFILE_TARGETS)}")
    return target
