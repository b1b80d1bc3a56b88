"""KernelVariant, the interface every kernel variant implements, and the portable variant."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from edgeship.convert.codegen.lowering import LoweredOp, ScratchArg, SymbolArg, TensorArg
from edgeship.convert.codegen.lowering.sparse import PORTABLE_RULE, sparsify
from edgeship.convert.codegen.plan import scratch_key

_SECTION = re.compile(r"^/\* @section (\w+)(?: needs ([\w ]+))? \*/$")
_PACKAGE = "edgeship.convert.codegen.kernels"


@dataclass(frozen=True)
class KernelVariant:
    """One set of kernel implementations.

    Attributes:
        name: the variant's name, and its folder of C sources (kernels/<name>/).
        description: one line for reports.
        prefix: prefix of every kernel function (es_ -> es_conv_2d).
        fallback: the variant whose C supplies the families this one has no file for
            (None: every family must be in kernels/<name>/).
        specialize: run on each lowered op before memory planning (see LoweredOp.linear): may
            return the op with another kernel family, arguments and constants (weights
            re-laid out, stored sparse) and a scratch_bytes request. The kernel family it
            names must keep within the op's declared `overlap` (or drop it). With
            stage_limits, it takes a second argument: the most scratch bytes an op may use
            to stage constants in SRAM (None: the variant's default).
        stage_limits: smaller staging budgets to fall back on, largest first, when the plan
            must fit a RAM limit (codegen --max-ram); () when the variant stages nothing.
    """

    name: str
    description: str
    prefix: str = "es_"
    fallback: str | None = None
    specialize: Callable[..., LoweredOp] | None = None
    stage_limits: tuple[int, ...] = ()

    def specialize_ops(self, lowered: list[LoweredOp],
                       stage_bytes: int | None = None) -> list[LoweredOp]:
        """The ops as this variant computes them (unchanged without `specialize`);
        stage_bytes: the staging budget per op, for variants with stage_limits."""
        if self.specialize is None:
            return list(lowered)
        if not self.stage_limits:
            return [op if op.alias else self.specialize(op) for op in lowered]
        return [op if op.alias else self.specialize(op, stage_bytes) for op in lowered]

    def call(self, op: LoweredOp, pointer) -> str:
        """The C statement computing op; pointer(key) gives a buffer's C expression (a tensor
        index, or plan.scratch_key(op) for the op's scratch)."""
        return f"{self.prefix}{op.kernel}({', '.join(_argument(arg, pointer) for arg in op.arguments)});"

    def section(self, family: str) -> tuple[list[str], str]:
        """(sections it needs, C text) of one kernel family, from this variant or its fallback."""
        folders = [self.name] + ([self.fallback] if self.fallback else [])
        for folder in folders:
            path = resources.files(_PACKAGE).joinpath(folder).joinpath(f"{family}.c")
            if path.is_file():
                return _parse_section(path, family)
        raise ValueError(f"kernel variant {self.name} has no {family} kernel "
                         f"({family}.c in {' or '.join(folders)})")

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


def _parse_section(path, family: str) -> tuple[list[str], str]:
    lines = path.read_text().splitlines()
    for position, line in enumerate(lines):
        match = _SECTION.match(line.strip())
        if match:
            if match.group(1) != family:
                raise ValueError(f"{path} declares section {match.group(1)}, not {family}")
            body = "\n".join(lines[position + 1:]).strip() + "\n"
            return (match.group(2) or "").split(), body
    raise ValueError(f"{path} has no '@section {family}' line")


def _argument(argument, pointer) -> str:
    if isinstance(argument, TensorArg):
        return pointer(argument.tensor)
    if isinstance(argument, ScratchArg):
        return pointer(scratch_key(argument.op))
    if isinstance(argument, SymbolArg):
        return f"&{argument.name}" if argument.address else argument.name
    return str(int(argument))


def _portable_specialize(op: LoweredOp) -> LoweredOp:
    """Portable keeps its kernels, except layers mostly zero: those go sparse (lowering.sparse)."""
    return sparsify(op, PORTABLE_RULE) or op


PORTABLE = KernelVariant("portable", "TFLite's reference int8 arithmetic in plain C99; "
                         "mostly-zero layers stored sparse", specialize=_portable_specialize)
