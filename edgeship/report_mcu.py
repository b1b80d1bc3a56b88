"""The MCU section of report.html and report.md: what the int8 model costs on a microcontroller.

Beside TFLite Micro's figures (model bytes in flash, the tensor arena it measured) it shows
the profile stage's profile.json: edgeship's generated C compiled for a Cortex-M core and run
in an emulator, with per-op cycles *estimated* from the core's instruction timings (never a
measurement: flash wait states and caches are left out, see profile.json's cycle_model).
"""

import html

from edgeship.deps import require
from edgeship.figures import figure_png, pyplot
from edgeship.reports import markdown_table

CHART_NAME = "mcu_cycles.png"
VALUE_HEADERS = ["", "value"]


def footprint_rows(footprint: dict) -> list[list[str]]:
    """TFLite Micro's figures from firmware/model_footprint.json, as (what, value) rows."""
    margin = footprint.get("arena_margin", "").split(":")[0]
    return [["model in flash", f"{footprint.get('model_bytes', 0):,} B"],
            ["tensor arena, measured", f"{footprint.get('arena_bytes', 0):,} B"],
            ["tensor arena, compiled in", f"{footprint.get('arena_size', 0):,} B ({margin})"],
            ["ops", ", ".join(footprint.get("ops", []))]]


def _op_label(op: dict) -> str:
    return f"#{op['index']} {op['op']}"


def cycles_chart(profile: dict) -> bytes:
    """Estimated cycles per op in execution order, each bar labelled with its share."""
    plot = pyplot()
    ops = profile["ops"]
    cycles = [op["cycles"] for op in ops]
    total = sum(cycles) or 1.0
    figure, axis = plot.subplots(figsize=(7, 0.32 * max(len(ops), 3) + 1.2))
    axis.barh(range(len(ops)), cycles, color="#6a4fb3")
    axis.set_yticks(range(len(ops)), [_op_label(op) for op in ops], fontsize=8)
    for position, value in enumerate(cycles):
        axis.annotate(f"{value:,.0f} ({value / total:.0%})", (value, position), fontsize=7,
                      va="center", xytext=(3, 0), textcoords="offset points")
    axis.set_xlim(0, max(cycles + [1.0]) * 1.35)
    axis.xaxis.set_major_formatter(require("matplotlib.ticker").EngFormatter())
    axis.invert_yaxis()
    axis.set_xlabel("estimated cycles (Arm's instruction timings, zero-wait-state memory; "
                    "not measured)", fontsize=8)
    axis.set_title(f"estimated cycles per op on {profile['target']} ({profile['kernels']} "
                   "kernels)", fontsize=10)
    axis.grid(axis="x", alpha=0.3)
    return figure_png(figure)


def chart_caption(profile: dict) -> str:
    return (f"Estimated cycles per op of the generated C on {profile['target']} "
            f"({profile['kernels']} kernels): instructions counted in the emulator, cycles "
            "estimated from Arm's instruction timings (an estimate, not a measurement)")


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _bytes_breakdown(section: dict, parts: tuple[tuple[str, str], ...], suffix: str = "") -> str:
    details = ", ".join(f"{label} {section.get(key, 0):,}" for key, label in parts)
    return f"{section.get('total', 0):,} B ({details}{suffix})"


def _ram_breakdown(ram: dict) -> str:
    """The one static buffer (activations with the input, output and scratch planned inside
    it) plus the measured stack."""
    return (f"{ram.get('total', 0):,} B (one buffer of {ram.get('activations', 0):,}: "
            f"activations with input {ram.get('input', 0):,}, output {ram.get('output', 0):,} "
            f"and scratch {ram.get('scratch', 0):,} inside; stack {ram.get('stack', 0):,} "
            "measured)")


def profile_rows(profile: dict) -> list[list[str]]:
    """The profile's totals, flash and RAM as (what, value) rows."""
    total = profile["total"]
    clock = f"{profile['clock_mhz']:g} MHz"
    return [
        ["core", f"{profile['target']} at {clock}"],
        ["kernels", profile["kernels"]],
        ["estimated cycles per inference", f"{total['cycles']:,.0f}"],
        [f"estimated ms at {clock}", f"{total['ms']:.3f}"],
        ["estimated cycles per MAC", _ratio(total["cycles_per_mac"])],
        ["MACs", f"{total['macs']:,}"],
        ["instructions executed (emulated)", f"{total['instructions']:,}"],
        ["flash", _bytes_breakdown(profile["flash"], (("text", "code"),
                                                      ("rodata", "weights and constants"),
                                                      ("data", "data")))],
        ["RAM", _ram_breakdown(profile["ram"])],
    ]


def has_mcu_section(footprint: dict, profile: dict) -> bool:
    return bool(footprint or profile.get("ops"))


def render_mcu_md(footprint: dict, profile: dict, figures_dir: str) -> list[str]:
    """The MCU section's Markdown lines (the chart is FIGURES_DIR/CHART_NAME)."""
    if not has_mcu_section(footprint, profile):
        return []
    lines = ["## MCU", ""]
    if footprint:
        lines += ["### MCU footprint (TFLite Micro)", "",
                  markdown_table(VALUE_HEADERS, footprint_rows(footprint))]
    if profile.get("ops"):
        caption = chart_caption(profile)
        lines += ["### Generated C on an emulated Cortex-M core (edgeship profile)", "",
                  markdown_table(VALUE_HEADERS, profile_rows(profile)),
                  f"![{caption}]({figures_dir}/{CHART_NAME})", "",
                  markdown_table(["op", "type", "est. cycles", "est. ms", "MACs",
                                  "est. cycles/MAC"],
                                 [[op["index"], op["op"], f"{op['cycles']:,.0f}",
                                   f"{op['ms']:.3f}", f"{op['macs']:,}",
                                   _ratio(op["cycles_per_mac"])] for op in profile["ops"]])]
    return lines


def _html_table(table_id: str, headers: list[str], rows: list[list[str]]) -> str:
    escape = html.escape
    head = "".join(f"<th>{escape(cell)}</th>" for cell in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_mcu_html(footprint: dict, profile: dict, chart_data_uri: str | None) -> str:
    """The MCU section: the cycles chart beside TFLite Micro's and the generated C's figures."""
    if not has_mcu_section(footprint, profile):
        return ""
    escape = html.escape
    tables = ""
    if footprint:
        tables += ("<h3>MCU footprint (TFLite Micro)</h3>"
                   + _html_table("footprint", VALUE_HEADERS, footprint_rows(footprint)))
    figure = ""
    if profile.get("ops"):
        tables += ("<h3>Generated C on an emulated Cortex-M core</h3>"
                   + _html_table("mcu-profile", VALUE_HEADERS, profile_rows(profile)))
        caption = chart_caption(profile)
        if chart_data_uri:
            figure = (f"<figure><img alt='{escape(caption)}' data-name='{CHART_NAME}' "
                      f"src='{chart_data_uri}'><figcaption>{escape(caption)}</figcaption>"
                      "</figure>")
    return (f"<section id='mcu'><h2>MCU</h2><div class='mcu'>{figure}"
            f"<div>{tables}</div></div></section>")
