"""parity.md: validate's payload as Markdown (the verdict, pairs, int8 histograms, per-op
tables, checks and notes)."""

from edgeship.reports import markdown_table
from edgeship.runtime.parity_checks import format_number


def render_markdown(payload: dict) -> str:
    """parity.md: the verdict, every pair's metrics, the int8 histograms and each check."""
    reference = payload["reference"]
    dataset = payload["dataset"]
    verdict = "PASSED" if payload["passed"] else "FAILED"
    lines = [f"# Parity: {verdict}", "",
             (f"{dataset['images']} test images of `{dataset['spec']['name']}`; float reference: "
             f"`{reference['artifact']}` on `{reference['backend']}` (top-1 "
             f"{reference['accuracy']:.4f}). Device: {payload['device']}."), ""]
    backends_run = sorted({row["backend"] for row in payload["pairs"]})
    lines += [f"Backends run: {', '.join(backends_run)}.", "", "## Pairs", ""]
    rows = [[f"`{row['artifact']}`", row["backend"], row["precision"], f"{row['accuracy']:.4f}",
             f"{row['drop']:+.4f}", f"{row['agreement']:.4f}", f"{row['max_abs_error']:.3g}",
             f"{row['mean_abs_error']:.3g}", f"{row['cosine']:.6f}",
             row.get("reference") or "—", row.get("bounds", "")] for row in payload["pairs"]]
    lines.append(markdown_table(["artifact", "backend", "precision", "top-1", "drop",
                                 "agreement", "max abs err", "mean abs err", "cosine",
                                 "bound against", "bounds"], rows))
    lines += [(f"Drop, agreement and errors are against `{reference['artifact']}` on "
              f"`{reference['backend']}`; a fine-tuned file is bound against the float model it "
              "was quantized from as well (`bound against`)."), ""]
    if payload["integer_comparisons"]:
        lines += ["## int8 outputs in quanta", ""]
        rows = []
        for row in payload["integer_comparisons"]:
            histogram = row["histogram"]
            share = {key: histogram[key] / max(histogram["elements"], 1)
                     for key in ("exact", "off_by_1", "off_by_2", "off_by_3_or_more")}
            rows.append([f"`{row['artifact']}`", f"{row['backend']} vs {row['reference_backend']}",
                         f"{share['exact']:.2%}", f"{share['off_by_1']:.2%}",
                         f"{share['off_by_2'] + share['off_by_3_or_more']:.2%}",
                         histogram["max"]])
        lines.append(markdown_table(["artifact", "backends", "exact", "±1", "±2 or more",
                                     "max"], rows))
    for artifact, entry in payload.get("per_op", {}).items():
        lines += [f"## `{artifact}` op by op ({entry['images']} images, identical int8 inputs)", "",
                  "Each op run alone on each runtime with the reference kernels' own inputs, "
                  "compared with the reference kernels' output: bit-exact, rounding (at most one "
                  "quantum, unbiased; known cause in the JSON) or divergent.", ""]
        runtimes = list(dict.fromkeys(op["runtime"] for op in entry["ops"]))
        by_op: dict = {}
        for op in entry["ops"]:
            by_op.setdefault((op["index"], op["op"], op["output"]), {})[op["runtime"]] = op
        rows = [[str(index), name, f"`{output[:60]}`"] + [
            op_cell(cells.get(runtime)) for runtime in runtimes]
            for (index, name, output), cells in by_op.items()]
        lines += [markdown_table(["#", "op", "output tensor", *runtimes], rows), ""]
    lines += ["## Checks", ""]
    rows = []
    for row in (payload["pairs"] + payload["integer_comparisons"]
                + list(payload.get("per_op", {}).values())):
        for check in row.get("checks", []):
            rows.append([check["comparison"], check["kind"], check["metric"],
                         format_number(check["value"]), f"{check['relation']} {format_number(check['bound'])}",
                         "ok" if check["passed"] else "**FAILED**"])
    lines.append(markdown_table(["comparison", "kind", "metric", "value", "bound", "result"],
                                rows))
    if payload["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in payload["notes"]] + [""]
    return "\n".join(lines)


def op_cell(op: dict | None) -> str:
    """One op x runtime cell of the per-op tables: the verdict, with its size when not exact."""
    if op is None:
        return "—"
    if op["verdict"] in ("bit-exact", "not covered"):
        return op["verdict"]
    return f"{op['verdict']} (max {op['max_quanta']}, mean {op['mean_quanta']:+.3f})"
