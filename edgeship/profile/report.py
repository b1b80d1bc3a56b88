"""The profile's results, their JSON and table, and the regression gate against a baseline.

Instruction counts are exact and deterministic, so the gate can be tight (1% by default in CI
instead of the 10% a wall-clock gate needs).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from edgeship.errors import UserInputError
from edgeship.reports import markdown_table


@dataclass(frozen=True)
class OpProfile:
    """One op: instructions executed, estimated cycles, MACs, instruction classes."""

    index: int
    op: str
    macs: int
    instructions: int
    cycles: float
    classes: dict

    def to_dict(self, clock_mhz: float) -> dict:
        return {"index": self.index, "op": self.op, "macs": self.macs,
                "instructions": self.instructions, "cycles": self.cycles,
                "ms": cycles_to_ms(self.cycles, clock_mhz),
                "cycles_per_mac": per_mac(self.cycles, self.macs),
                "instructions_per_mac": per_mac(self.instructions, self.macs),
                "classes": dict(sorted(self.classes.items()))}


def cycles_to_ms(cycles: float, clock_mhz: float) -> float:
    return round(cycles / (clock_mhz * 1000.0), 6)


def per_mac(count: float, macs: int) -> float | None:
    return round(count / macs, 4) if macs else None


@dataclass(frozen=True)
class ProfileReport:
    """Everything `edgeship profile` measured and estimated (see profile_model)."""

    schema_version: int
    model: str
    model_sha256: str
    target: str
    board: str
    clock_mhz: float
    kernels: str
    compiler: dict
    emulator: dict
    cycle_model: dict
    input: dict
    output: list
    ops: tuple[OpProfile, ...]
    harness_instructions: int
    harness_cycles: float
    flash: dict
    ram: dict
    # (op index, op type, bytes live while it runs) in execution order: the memory plan's view.
    memory_timeline: tuple[tuple[int, str, int], ...] = ()

    @property
    def instructions(self) -> int:
        return sum(op.instructions for op in self.ops)

    @property
    def cycles(self) -> float:
        return sum(op.cycles for op in self.ops)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    def total(self) -> dict:
        return {"instructions": self.instructions, "cycles": self.cycles,
                "ms": cycles_to_ms(self.cycles, self.clock_mhz), "macs": self.macs,
                "cycles_per_mac": per_mac(self.cycles, self.macs),
                "instructions_per_mac": per_mac(self.instructions, self.macs)}

    @property
    def peak(self) -> tuple[int, str, int] | None:
        """The op during which the most bytes are live (the first of equals), or None."""
        return max(self.memory_timeline, key=lambda entry: entry[2], default=None)

    def memory(self) -> dict:
        """The memory timeline and its peak, for the JSON."""
        peak = self.peak
        return {"timeline": [{"index": index, "op": op, "live_bytes": live}
                             for index, op, live in self.memory_timeline],
                "peak": None if peak is None else {"index": peak[0], "op": peak[1],
                                                   "live_bytes": peak[2]},
                "note": "bytes of the tensors (and scratch) live while each op runs; the "
                        "static buffer (ram.activations) is at least the peak"}

    def to_dict(self) -> dict:
        return {"schema_version": self.schema_version, "tool": "edgeship profile",
                "model": self.model, "model_sha256": self.model_sha256, "target": self.target,
                "board": self.board, "clock_mhz": self.clock_mhz,
                "kernels": self.kernels, "compiler": self.compiler,
                "emulator": self.emulator, "cycle_model": self.cycle_model,
                "input": self.input, "output": self.output,
                "ops": [op.to_dict(self.clock_mhz) for op in self.ops],
                "total": self.total(),
                "harness": {"instructions": self.harness_instructions,
                            "cycles": self.harness_cycles,
                            "note": "start-up (.data copy, .bss clear) and the call, outside "
                                    "the model's numbers"},
                "flash": self.flash, "ram": self.ram, "memory": self.memory()}

    def summary_line(self) -> str:
        """One line: the total estimate, flash and RAM (what `edgeship codegen --target` prints)."""
        total = self.total()
        return (f"estimate on {self.target} at {self.clock_mhz:g} MHz ({self.kernels} kernels): "
                f"{total['cycles']:,.0f} cycles = {total['ms']:.3f} ms, "
                f"{total['instructions']:,} instructions (emulated), "
                + ("no MACs; " if total["cycles_per_mac"] is None
                   else f"{_ratio(total['cycles_per_mac'])} cycles/MAC; ")
                + f"flash {self.flash['total']:,} B, "
                f"RAM {self.ram['total']:,} B (`edgeship profile` for the per-op table)")

    def memory_model(self) -> str:
        """What the cycle estimate assumes of the memory: the board's flash model, or none."""
        board = self.cycle_model.get("board")
        if not board:
            return "zero-wait-state memory"
        stalls = self.cycle_model.get("memory_stall_cycles", 0)
        return (f"board {self.board}: flash wait states and caches modelled, "
                f"{stalls:,.0f} stall cycles included")

    def table(self) -> str:
        """The per-op table and the totals, as the console shows them."""
        live = {index: live_bytes for index, _, live_bytes in self.memory_timeline}
        peak = self.peak
        rows = [[op.index, op.op, f"{op.instructions:,}", f"{op.cycles:,.0f}",
                 f"{cycles_to_ms(op.cycles, self.clock_mhz):.3f}", f"{op.macs:,}",
                 _ratio(per_mac(op.cycles, op.macs)),
                 _live(live.get(op.index), peak is not None and op.index == peak[0])]
                for op in self.ops]
        total = self.total()
        rows.append(["", "total", f"{total['instructions']:,}", f"{total['cycles']:,.0f}",
                     f"{total['ms']:.3f}", f"{total['macs']:,}", _ratio(total["cycles_per_mac"]),
                     _live(None if peak is None else peak[2], False)])
        header = (f"{Path(self.model).name} ({self.kernels} kernels) on {self.target} at "
                  f"{self.clock_mhz:g} MHz (cycles and ms: an estimate from Arm's instruction "
                  f"timings, {self.memory_model()}; instructions: counted in the emulator)")
        memory = (f"flash {self.flash['total']:,} B (text {self.flash['text']:,}, rodata "
                  f"{self.flash['rodata']:,}, data {self.flash['data']:,}; harness "
                  f"{self.flash['harness']:,}); RAM {self.ram['total']:,} B (one static "
                  f"buffer of {self.ram['activations']:,} holding the activations, input "
                  f"{self.ram['input']:,}, output {self.ram['output']:,} and scratch "
                  f"{self.ram['scratch']:,}; "
                  + (f"recurrent state {self.ram['state']:,}; " if self.ram.get("state") else "")
                  + f"stack {self.ram['stack']:,} measured)")
        lines = [header, markdown_table(
            ["op", "type", "instructions", "est. cycles", "est. ms", "MACs", "cycles/MAC",
             "live B"], rows), memory]
        if peak is not None:
            lines.append(f"memory peak: op {peak[0]} ({peak[1]}), {peak[2]:,} B live "
                         "(live B: tensors and scratch live while the op runs)")
        return "\n".join(lines)


def _live(value: int | None, peak: bool) -> str:
    if value is None:
        return ""
    return f"{value:,}" + (" (peak)" if peak else "")


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def load_baseline(path: str | Path) -> dict:
    """A profile JSON written by --json.

    Raises:
        UserInputError: unreadable, or not a profile JSON.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UserInputError(f"--baseline {path}: not a readable JSON file ({error})") from error
    if not isinstance(data, dict) or data.get("tool") != "edgeship profile" \
            or not isinstance(data.get("ops"), list):
        raise UserInputError(f"--baseline {path} is not an `edgeship profile --json` file")
    return data


def regressions(report: ProfileReport, baseline: dict, max_regression: float) -> list[str]:
    """Ops (and the total) whose instructions or estimated cycles grew by more than
    max_regression (a fraction) over the baseline; each as one line naming the op.

    Raises:
        UserInputError: the baseline is for another target or another op sequence.
    """
    for what in ("target", "kernels"):
        if baseline.get(what, getattr(report, what)) != getattr(report, what):
            raise UserInputError(f"the baseline's {what} is {baseline.get(what)}, this "
                                 f"profile's {getattr(report, what)}; compare like with like")
    ops = [(op["index"], op["op"]) for op in baseline["ops"]]
    if ops != [(op.index, op.op) for op in report.ops]:
        raise UserInputError("the baseline's ops differ from this model's (another model?); "
                             "profile the same graph")
    pairs = [(f"op {op.index} {op.op}", op.instructions, op.cycles, old)
             for op, old in zip(report.ops, baseline["ops"])]
    total = report.total()
    pairs.append(("total", total["instructions"], total["cycles"], baseline["total"]))
    failed = []
    for name, instructions, cycles, old in pairs:
        for what, new, before in (("instructions", instructions, old["instructions"]),
                                  ("estimated cycles", cycles, old["cycles"])):
            if new > before * (1 + max_regression) and new > before:
                growth = f"+{(new / before - 1) * 100:.2f}%" if before else "from 0"
                failed.append(f"{name}: {what} {before:,.0f} -> {new:,.0f} ({growth}, "
                              f"allowed +{max_regression * 100:g}%)")
    return failed
