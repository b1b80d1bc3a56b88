"""Kernel variants: which C computes each kernel family, chosen per target at emission.

A lowered op names its kernel family ("conv_2d") and its arguments; a KernelVariant turns
that into the C call and supplies the C source of the families a model uses. Each variant's
sources are package data in kernels/<variant>/<family>.c, one file per family, starting
(after any leading comment) with the line `/* @section FAMILY [needs OTHER...] */`.

Today there is one variant, "portable": TFLite's reference integer arithmetic in plain C99,
bit-exact with TFLite Micro on any CPU.
"""

import re
from dataclasses import dataclass
from importlib import resources

from edgeship.convert.codegen.lowering import LoweredOp, SymbolArg, TensorArg

_SECTION = re.compile(r"^/\* @section (\w+)(?: needs ([\w ]+))? \*/$")


@dataclass(frozen=True)
class KernelVariant:
    """One set of kernel implementations.

    Attributes:
        name: the variant's name ("portable").
        description: one line for reports.
        prefix: prefix of every kernel function (es_ -> es_conv_2d).
    """

    name: str
    description: str
    prefix: str = "es_"

    def call(self, op: LoweredOp, pointer) -> str:
        """The C statement computing op; pointer(tensor index) gives a buffer's C expression."""
        return f"{self.prefix}{op.kernel}({', '.join(_argument(arg, pointer) for arg in op.arguments)});"

    def section(self, family: str) -> tuple[list[str], str]:
        """(sections it needs, C text) of one kernel family."""
        path = resources.files(__name__).joinpath(self.name).joinpath(f"{family}.c")
        if not path.is_file():
            raise ValueError(f"kernel variant {self.name} has no {family} kernel ({family}.c)")
        text = path.read_text()
        lines = text.splitlines()
        for position, line in enumerate(lines):
            match = _SECTION.match(line.strip())
            if match:
                if match.group(1) != family:
                    raise ValueError(f"{path} declares section {match.group(1)}, not {family}")
                body = "\n".join(lines[position + 1:]).strip() + "\n"
                return (match.group(2) or "").split(), body
        raise ValueError(f"{path} has no '@section {family}' line")

    def sources(self, lowered: list[LoweredOp]) -> str:
        """The C of every kernel family the ops use, each after the sections it needs."""
        wanted: dict[str, str] = {}

        def add(family: str) -> None:
            if family in wanted:
                return
            needs, body = self.section(family)
            for dependency in needs:
                add(dependency)
            wanted[family] = body

        add("common")  # <stdint.h>/<string.h>: the output copy needs memcpy even with no kernel
        for op in lowered:
            if op.kernel is not None:
                add(op.kernel)
        return "\n".join(wanted.values())


def _argument(argument, pointer) -> str:
    if isinstance(argument, TensorArg):
        return pointer(argument.tensor)
    if isinstance(argument, SymbolArg):
        return f"&{argument.name}" if argument.address else argument.name
    return str(int(argument))


KERNEL_VARIANTS: dict[str, KernelVariant] = {
    "portable": KernelVariant("portable", "TFLite's reference int8 arithmetic in plain C99"),
}


def kernel_variant(name: str) -> KernelVariant:
    """The registered variant called name (ValueError naming the known ones otherwise)."""
    if name not in KERNEL_VARIANTS:
        raise ValueError(f"unknown kernel variant {name!r}; known: {', '.join(KERNEL_VARIANTS)}")
    return KERNEL_VARIANTS[name]
