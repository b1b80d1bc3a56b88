"""The report a person opens to decide whether the int8 model ships: report.html and report.md.

report.html is self-contained (images embedded as data URIs, no scripts or fonts fetched);
report.md carries the same tables and links the same images written to report_files/.
The MCU section (TFLite Micro's figures and the profile stage's estimated cycles) is rendered
by edgeship.report_mcu.
"""

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.artifacts import write_bytes_atomic, write_text_atomic
from edgeship.deps import require
from edgeship.figures import figure_png, pyplot
from edgeship.records import ConvertRecord, ReportRecord, TrainRecord, ValidateRecord
from edgeship.reports import markdown_table
from edgeship.run_dir import PREDICTIONS_NAME, ArtifactKind, RunDir, precision_of

FIGURES_DIR = "report_files"
CHANGED_GRID_LIMIT = 24


@dataclass(frozen=True)
class Row:
    """One variant x backend line of the summary table."""

    artifact: str
    backend: str
    bytes: int | None
    gzipped_bytes: int | None
    accuracy: float | None
    drop_pp: float | None
    agreement: float | None
    p50_us: float | None
    arena_bytes: int | None
    execution: str = ""  # where the work ran: delegate partitions or int8/float kernels


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def collect_rows(run_dir: Path) -> list[Row]:
    """Join the convert report (sizes), parity (accuracy per backend) and bench (latency and
    where the work ran: bench's `execution`, else the same from validate's backend details)."""
    from edgeship.runtime.bench import describe_execution, execution_summary

    convert = {row["file"]: row for row in _load_json(run_dir / "convert_report.json")
               .get("artifacts", [])}
    parity = _load_json(run_dir / "parity.json").get("pairs", [])
    bench = {}
    for record in _load_json(run_dir / "bench.json").get("records", []):
        if record.get("batch") == 1 and record.get("threads") == 1:
            bench[(record["artifact"], record["backend"])] = record
    pairs = [(pair["artifact"], pair["backend"], pair) for pair in parity]
    if not pairs:
        pairs = [(name, row["backend"], None) for name, row in convert.items()]
    rows = []
    for artifact, backend, pair in pairs:
        sizes = convert.get(artifact, {})
        if pair is not None:
            accuracy, drop, agreement = pair["accuracy"], pair["drop"] * 100, pair["agreement"]
            arena = (pair.get("details") or {}).get("arena", {}).get("total_bytes")
        else:
            row = convert[artifact]
            accuracy, drop, agreement, arena = row["accuracy"], row["drop_pp"], row["agreement"], None
        path = run_dir / artifact
        record = bench.get((artifact, backend), {})
        execution = record.get("execution") or execution_summary(
            (pair or {}).get("details") or {})
        rows.append(Row(artifact=artifact, backend=backend,
                        bytes=sizes.get("bytes") or (path.stat().st_size if path.is_file() else None),
                        gzipped_bytes=sizes.get("gzipped_bytes"), accuracy=accuracy,
                        drop_pp=drop, agreement=agreement,
                        p50_us=record["latency_us"]["p50"] if record else None,
                        arena_bytes=arena, execution=describe_execution(execution)))
    return rows


def _fmt(value, pattern: str, missing: str = "—") -> str:
    return missing if value is None else format(value, pattern)


def _table_rows(rows: list[Row]) -> list[list[str]]:
    return [[row.artifact, row.backend, _fmt(row.bytes, ","), _fmt(row.gzipped_bytes, ","),
             _fmt(None if row.accuracy is None else row.accuracy * 100, ".2f") + "%",
             _fmt(row.drop_pp, "+.2f"),
             _fmt(None if row.agreement is None else row.agreement * 100, ".2f") + "%",
             _fmt(row.p50_us, ",.1f"), _fmt(row.arena_bytes, ","), row.execution or "—"]
            for row in rows]


TABLE_HEADERS = ["variant", "backend", "bytes", "gzipped", "top-1", "drop (pp)", "agreement",
                 "p50 (µs)", "TFLM arena (bytes)", "delegation / kernels"]


def speed_lines(rows: list[Row], cpu: dict | None = None) -> list[str]:
    """One sentence per runtime: each int8 file's p50 against the float file's, batch 1, and
    the host CPU's int8 features beside them (bench.json's "cpu").

    Read from bench.json's rows; the files are timed one after another in one bench run, so a
    busy machine can move a ratio near 1 either way (benchmarks/bench_int8_speed.py alternates
    them in rounds for docs/results.md).
    """
    lines = []
    for backend in dict.fromkeys(row.backend for row in rows):
        timed = [row for row in rows if row.backend == backend and row.p50_us is not None]
        floats = [row for row in timed if precision_of(row.artifact) == "float"]
        int8s = [row for row in timed if precision_of(row.artifact) == "int8"]
        if not floats or not int8s:
            continue
        reference = floats[0]
        parts = [f"{row.artifact} {row.p50_us:,.1f} µs ({row.p50_us / reference.p50_us:.2f}x, "
                 f"{'faster' if row.p50_us < reference.p50_us else 'slower'})" for row in int8s]
        lines.append(f"int8 vs float on {backend} (p50, batch 1, one thread): "
                     f"{reference.artifact} {reference.p50_us:,.1f} µs; " + "; ".join(parts) + ".")
    if lines and cpu:
        lines.append(_cpu_line(cpu))
    return lines


def _cpu_line(cpu: dict) -> str:
    """What the desktop ratios above depend on, and where the phone-like measurement is."""
    def said(value) -> str:
        return "unknown" if value is None else ("yes" if value else "no")

    return (f"Host CPU: {cpu.get('machine', '?')}, AVX2 {said(cpu.get('avx2'))}, AVX512 "
            f"{said(cpu.get('avx512'))}, VNNI {said(cpu.get('vnni'))} (int8 pair sums: "
            f"{cpu.get('int8_pair_sums', 'unknown')}). Without VNNI, int8 often runs slower "
            "than float on desktop x86; a phone's NEON is closer to the browser's WebAssembly "
            "SIMD128: docs/results.md, web_int8_speed (`python benchmarks/bench_web.py`).")


def summary_table(run_dir: str | Path) -> str:
    """The summary table as Markdown, printed at the end of the pipeline."""
    rows = collect_rows(Path(run_dir))
    return markdown_table(TABLE_HEADERS, _table_rows(rows)) if rows else "(no results yet)\n"


# --- figures ---------------------------------------------------------------------------------

def _bar_chart(rows: list[Row], value, title: str, unit: str, log: bool = False) -> bytes:
    plot = pyplot()
    usable = [row for row in rows if value(row) is not None]
    figure, axis = plot.subplots(figsize=(8, 0.35 * max(len(usable), 3) + 1))
    labels = [f"{row.artifact} · {row.backend}" for row in usable]
    axis.barh(range(len(usable)), [value(row) for row in usable], color="#3a7bd5")
    axis.set_yticks(range(len(usable)), labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel(unit)
    axis.set_title(title)
    if log:
        _log_axis(axis)
    axis.grid(axis="x", alpha=0.3)
    return figure_png(figure)


def _drop_chart(rows: list[Row]) -> bytes:
    """Drop in points around a zero line: a 0.3-point loss is visible, unlike on a 0-100 axis."""
    plot = pyplot()
    usable = [row for row in rows if row.drop_pp is not None]
    figure, axis = plot.subplots(figsize=(8, 0.35 * max(len(usable), 3) + 1))
    drops = [row.drop_pp for row in usable]
    axis.barh(range(len(usable)), drops,
              color=["#c62828" if drop > 0 else "#1a7f37" for drop in drops])
    axis.set_yticks(range(len(usable)), [f"{row.artifact} · {row.backend}" for row in usable],
                    fontsize=8)
    for position, drop in enumerate(drops):
        axis.annotate(f"{drop:+.2f}", (drop, position), fontsize=7, va="center",
                      xytext=(3 if drop >= 0 else -3, 0), textcoords="offset points",
                      ha="left" if drop >= 0 else "right")
    axis.axvline(0, color="#222", linewidth=0.8)
    limit = max([abs(drop) for drop in drops] + [0.5]) * 1.3
    axis.set_xlim(-limit, limit)
    axis.invert_yaxis()
    axis.set_xlabel("accuracy drop against the float reference (points)")
    axis.set_title("top-1 accuracy drop on the test split")
    axis.grid(axis="x", alpha=0.3)
    return figure_png(figure)


def _sqnr_chart(inspected: dict) -> bytes:
    """SQNR per layer in graph order, the worst bar in red."""
    from edgeship.inspect import sqnr_chart_values

    values = sqnr_chart_values(inspected)
    plot = pyplot()
    figure, axis = plot.subplots(figsize=(8, 0.3 * max(len(values), 3) + 1))
    worst = min(range(len(values)), key=lambda i: values[i][1]) if values else -1
    axis.barh(range(len(values)), [value for _, value in values],
              color=["#c62828" if i == worst else "#3a7bd5" for i in range(len(values))])
    axis.set_yticks(range(len(values)), [label for label, _ in values], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("SQNR (dB)")
    axis.set_title("int8 vs float, per layer")
    axis.grid(axis="x", alpha=0.3)
    return figure_png(figure)


def _log_axis(axis) -> None:
    """Log x axis with plain labels on the decades only (minor labels overlap)."""
    ticker = require("matplotlib.ticker")
    axis.set_xscale("log")
    axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.xaxis.set_minor_formatter(ticker.NullFormatter())


def _latency_distribution(run_dir: Path) -> bytes | None:
    """Box plot per measurement from the timed runs' percentiles (min, p50, p90, p99, max)."""
    records = [record for record in _load_json(run_dir / "bench.json").get("records", [])
               if record.get("batch") == 1]
    if not records:
        return None
    plot = pyplot()
    statistics = []
    for record in records:
        latency = record["latency_us"]
        statistics.append({"label": f"{record['artifact']} · {record['backend']}",
                           "whislo": latency["min"], "q1": latency["min"], "med": latency["p50"],
                           "q3": latency["p90"], "whishi": latency["p99"],
                           "fliers": [latency["max"]]})
    figure, axis = plot.subplots(figsize=(8, 0.35 * len(records) + 1.2))
    axis.bxp(statistics, vert=False, showfliers=True)
    _log_axis(axis)
    axis.set_xlabel("latency per batch-1 inference (µs, log): box min..p90, line p50, "
                    "whisker p99, dot max")
    axis.set_title(f"latency distribution ({records[0]['runs']} timed runs each)")
    axis.tick_params(axis="y", labelsize=8)
    return figure_png(figure)


@dataclass(frozen=True)
class Predictions:
    """What validate stored in predictions.npz for the float reference and the delivered int8
    model: top-1 per test image, the labels and the images whose prediction changed."""

    labels: np.ndarray
    float_top1: np.ndarray
    int8_top1: np.ndarray
    class_names: list[str]
    images: dict[int, np.ndarray]


def read_predictions(run_dir: Path) -> Predictions | None:
    """The reference's and model_int8.tflite's predictions (on litert when validate ran it),
    or None before validate stored any."""
    path = run_dir / PREDICTIONS_NAME
    if not path.is_file():
        return None
    with np.load(path) as stored:
        pairs = list(zip(stored["artifacts"].tolist(), stored["backends"].tolist()))
        int8_file = ArtifactKind.INT8_TFLITE.file_name
        int8_rows = [index for index, (artifact, backend) in enumerate(pairs)
                     if artifact == int8_file]
        if not int8_rows:
            return None
        int8_row = next((index for index in int8_rows if pairs[index][1] == "litert"),
                        int8_rows[0])
        top1 = stored["top1"]
        return Predictions(
            labels=stored["labels"], float_top1=top1[int(stored["reference"])],
            int8_top1=top1[int8_row], class_names=stored["class_names"].tolist(),
            images=dict(zip(stored["changed_indices"].tolist(),
                            stored["changed_images"].astype(np.float32))))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def _confusion_figure(int8_matrix: np.ndarray, difference: np.ndarray, names: list[str]) -> bytes:
    plot = pyplot()
    figure, axes = plot.subplots(1, 2, figsize=(11, 4.8))
    limit = max(1, int(np.abs(difference).max()))
    for axis, matrix, title, cmap, bounds in (
            (axes[0], int8_matrix, "int8 confusion matrix", "Blues", (0, int8_matrix.max())),
            (axes[1], difference, "int8 minus float", "RdBu_r", (-limit, limit))):
        image = axis.imshow(matrix, cmap=cmap, vmin=bounds[0], vmax=bounds[1])
        axis.set_title(title)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        axis.set_yticks(range(len(names)), names, fontsize=7)
        for (row, column), value in np.ndenumerate(matrix):
            if value:
                axis.text(column, row, str(value), ha="center", va="center", fontsize=6)
        figure.colorbar(image, ax=axis, fraction=0.046)
    return figure_png(figure)


def _changed_grid(predictions: Predictions) -> tuple[bytes | None, int]:
    changed = np.flatnonzero(predictions.float_top1 != predictions.int8_top1)
    shown = [index for index in changed.tolist() if index in predictions.images]
    if not shown:
        return None, len(changed)
    plot = pyplot()
    shown = shown[:CHANGED_GRID_LIMIT]
    columns = min(8, len(shown))
    rows = int(np.ceil(len(shown) / columns))
    figure, axes = plot.subplots(rows, columns, figsize=(1.5 * columns, 1.9 * rows),
                                   squeeze=False)
    names = predictions.class_names
    for axis in axes.ravel():
        axis.axis("off")
    for axis, index in zip(axes.ravel(), shown):
        image = predictions.images[index]
        axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
        axis.set_title(f"true {names[predictions.labels[index]]}\nfloat "
                       f"{names[predictions.float_top1[index]]} "
                       f"int8 {names[predictions.int8_top1[index]]}", fontsize=7)
    return figure_png(figure), len(changed)


# --- pages -----------------------------------------------------------------------------------

def write_reports(run_dir: str | Path, reproduce: list[str]) -> list[Path]:
    """Render report.html (self-contained) and report.md (+ report_files/*.png).

    Args:
        run_dir: a run directory after convert, validate and bench.
        reproduce: the commands that reproduce the run, shown verbatim.

    Returns:
        The written paths.
    """
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    rows = collect_rows(run_dir)
    figures: list[tuple[str, str, bytes]] = []  # (file name, caption, png)
    curves = run_dir / "training_curves.png"
    if curves.is_file():
        figures.append(("training_curves.png", "Training curves (loss and accuracy per epoch)",
                        curves.read_bytes()))
    figures.append(("accuracy.png", ("Accuracy drop against the float reference per variant and "
                    "backend (points; right of zero is worse, left is better)"),
                    _drop_chart(rows)))
    if any(row.p50_us is not None for row in rows):
        figures.append(("latency.png", "p50 latency per variant and backend (batch 1, 1 thread)",
                        _bar_chart(rows, lambda r: r.p50_us, "p50 latency", "µs (log)", log=True)))
        distribution = _latency_distribution(run_dir)
        if distribution:
            figures.append(("latency_distribution.png", "Latency distribution", distribution))
    inspected = _load_json(run_dir / "inspect.json")
    if inspected.get("layers"):
        figures.append(("layer_sqnr.png", ("Per-layer quantization error of model_int8.tflite "
                        f"(SQNR against {inspected.get('float') or 'the float model'}'s tensor, the "
                        "float model it was quantized from; lower is worse; see inspect.md)"),
                        _sqnr_chart(inspected)))
    changed_count = 0
    predictions = read_predictions(run_dir)
    if predictions is not None:
        classes = len(predictions.class_names)
        int8_matrix = confusion_matrix(predictions.labels, predictions.int8_top1, classes)
        difference = int8_matrix - confusion_matrix(predictions.labels, predictions.float_top1,
                                                    classes)
        figures.append(("confusion.png", ("int8 confusion matrix and its difference from the float "
                        "model's"), _confusion_figure(int8_matrix, difference,
                                                     predictions.class_names)))
        grid, changed_count = _changed_grid(predictions)
        if grid is not None:
            figures.append(("changed.png", (f"Test images whose prediction changed between float "
                            f"and int8 ({changed_count}, first {min(changed_count, CHANGED_GRID_LIMIT)} "
                            "shown)"), grid))
    context = _context(run, reproduce, changed_count)
    written = list(figures)
    if context["profile"].get("ops"):  # drawn inside the MCU section, not with the figures
        from edgeship.report_mcu import CHART_NAME, chart_caption, cycles_chart

        context["mcu_chart"] = cycles_chart(context["profile"])
        written.append((CHART_NAME, chart_caption(context["profile"]), context["mcu_chart"]))
    figure_paths = [write_bytes_atomic(run_dir / FIGURES_DIR / name, data)
                    for name, _, data in written]
    html_path = write_text_atomic(run_dir / "report.html", render_html(rows, figures, context))
    md_path = write_text_atomic(run_dir / "report.md", render_md(rows, figures, context))
    run.write(ReportRecord(figures=tuple(name for name, _, _ in written)),
              artifacts={"report.html": html_path, "report.md": md_path,
                               **{f"{FIGURES_DIR}/{p.name}": p for p in figure_paths}})
    return [html_path, md_path]


def _context(run: RunDir, reproduce: list[str], changed_count: int) -> dict:
    run_dir = run.path
    train, convert = run.read(TrainRecord), run.read(ConvertRecord)
    validate = run.read(ValidateRecord)
    embed = _load_json(run_dir / "firmware" / "model_footprint.json")
    versions = (convert.versions if convert else {}) or (train.versions if train else {})
    return {
        "title": f"edgeship report: {train.model.name if train else '?'} on "
                 f"{train.dataset.spec.name if train else '?'}",
        "run_dir": str(run_dir), "reproduce": reproduce, "versions": dict(versions),
        "hashes": {name: digest for name, digest in sorted(run.artifact_hashes().items())
                   if name.startswith("model") or name.endswith((".tflite", ".onnx"))},
        "validate": {"passed": validate.passed if validate else None,
                     "failures": list(validate.failures) if validate else []},
        "int8_io": convert.int8_io if convert else None,
        "changed": changed_count, "footprint": embed,
        "profile": _load_json(run_dir / "profile.json"), "mcu_chart": None,
        "test_accuracy": train.test_accuracy if train else None,
        "drop_split": drop_split_rows(_load_json(run_dir / "convert_report.json")),
        "cpu": _load_json(run_dir / "bench.json").get("cpu"),
    }


DROP_SPLIT_HEADERS = ["file", "float reference", "fine-tuning (pp)", "quantization (pp)",
                      "total drop (pp)"]


def drop_split_rows(convert_report: dict) -> list[list[str]]:
    """The convert report's drop of each quantized file split into fine-tuning and
    quantization (edgeship.convert.report); empty for a report without the split."""
    def points(value):
        return "—" if value is None else f"{value:+.2f}"

    return [[row["file"], row["float_reference"], points(row.get("fine_tuning_pp")),
             points(row.get("quantization_pp")), points(row["drop_pp"])]
            for row in convert_report.get("artifacts", []) if row.get("float_reference")]


def _drop_split_intro(context: dict) -> str:
    return ("Accuracy drop by cause, on the test split (convert_report.md): quantization is each "
            "file against the float model it was quantized from; fine-tuning is the fine-tuned "
            "float model against the trained one; the total is what `--max-drop` gates.")


def render_md(rows: list[Row], figures, context: dict) -> str:
    lines = [f"# {context['title']}", "", _verdict(context), "", "## Summary", "",
             markdown_table(TABLE_HEADERS, _table_rows(rows))]
    if context["drop_split"]:
        lines += ["## Fine-tuning and quantization", "", _drop_split_intro(context), "",
                  markdown_table(DROP_SPLIT_HEADERS, context["drop_split"])]
    lines += [line for sentence in speed_lines(rows, context.get("cpu")) for line in (sentence, "")]
    for name, caption, _ in figures:
        lines += [f"## {caption}", "", f"![{caption}]({FIGURES_DIR}/{name})", ""]
    from edgeship.report_mcu import render_mcu_md

    lines += render_mcu_md(context["footprint"], context["profile"], FIGURES_DIR)
    lines += ["## Reproduce", "", "```bash", *context["reproduce"], "```", "",
              "## Library versions", "",
              markdown_table(["library", "version"], sorted(context["versions"].items())),
              "## Artifact SHA-256", "",
              markdown_table(["artifact", "sha256"], sorted(context["hashes"].items()))]
    return "\n".join(lines)


def _verdict(context: dict) -> str:
    passed = context["validate"]["passed"]
    if passed is None:
        return "Parity: not validated."
    if passed:
        return "Parity: **every check passed** across the backends."
    return "Parity: **FAILED**: " + "; ".join(context["validate"]["failures"])


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(rows: list[Row], figures, context: dict) -> str:
    escape = html.escape
    table = ["<table id='summary'><thead><tr>"
             + "".join(f"<th>{escape(h)}</th>" for h in TABLE_HEADERS) + "</tr></thead><tbody>"]
    for cells in _table_rows(rows):
        table.append("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in cells) + "</tr>")
    table.append("</tbody></table>")
    sections = []
    for name, caption, data in figures:
        sections.append(f"<figure><img alt='{escape(caption)}' data-name='{escape(name)}' "
                        f"src='{_data_uri(data)}'><figcaption>{escape(caption)}"
                        "</figcaption></figure>")
    from edgeship.report_mcu import render_mcu_html

    mcu = render_mcu_html(context["footprint"], context["profile"],
                          _data_uri(context["mcu_chart"]) if context["mcu_chart"] else None)
    versions = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>"
                       for k, v in sorted(context["versions"].items()))
    hashes = "".join(f"<tr><td>{escape(k)}</td><td><code>{escape(v)}</code></td></tr>"
                     for k, v in sorted(context["hashes"].items()))
    verdict_class = "pass" if context["validate"]["passed"] else "fail"
    split = ""
    if context["drop_split"]:
        split = ("<h2>Fine-tuning and quantization</h2><p>"
                 + escape(_drop_split_intro(context).replace("`", "")) + "</p><table id='drop-split'>"
                 "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in DROP_SPLIT_HEADERS)
                 + "</tr></thead><tbody>"
                 + "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in cells)
                           + "</tr>" for cells in context["drop_split"]) + "</tbody></table>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(context['title'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
th:first-child, td:first-child, td:nth-child(2) {{ text-align: left; }}
thead {{ background: #f0f4fa; }}
figure {{ margin: 1.5rem 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
.pass {{ color: #1a7f37; }} .fail {{ color: #c62828; }}
pre {{ background: #f6f8fa; padding: 0.8rem; overflow-x: auto; }}
.mcu {{ display: flex; gap: 1.5rem; align-items: flex-start; flex-wrap: wrap; }}
.mcu > figure {{ flex: 3 1 480px; margin: 0; }} .mcu > div {{ flex: 2 1 320px; }}
.mcu td:last-child, #summary td:last-child {{ text-align: left; }}
</style></head><body>
<h1>{escape(context['title'])}</h1>
<p class="{verdict_class}">{escape(_verdict(context).replace('**', ''))}</p>
<h2>Summary</h2>
{''.join(table)}
{''.join(f"<p class='speed'>{escape(line)}</p>" for line in speed_lines(rows, context.get('cpu')))}
{split}
{''.join(sections)}
{mcu}
<h2>Reproduce</h2><pre>{escape(chr(10).join(context['reproduce']))}</pre>
<h2>Library versions</h2><table>{versions}</table>
<h2>Artifact SHA-256</h2><table>{hashes}</table>
</body></html>
"""
