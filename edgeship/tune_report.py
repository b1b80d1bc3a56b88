"""tune_report.json and tune_report.html: the Pareto front, every trial, what was discarded.

The front is the trained trials that meet every budget and that no other such trial beats on
validation accuracy, estimated ms and RAM at once. Each front entry names its run directory,
accuracy (test split, as every edgeship report), ms, RAM and flash (bytes) of the delivered
file as `edgeship profile` measures it, and the `edgeship pipeline` command that remakes it.
"""

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

from edgeship.artifacts import write_json_atomic, write_text_atomic
from edgeship.deps import require
from edgeship.reports import tool_versions

SCHEMA_VERSION = 1
REPORT_JSON = "tune_report.json"
REPORT_HTML = "tune_report.html"
BUDGETS = ("ram", "flash", "ms", "min_accuracy")


@dataclass(frozen=True)
class TuneOutcome:
    """What a tune wrote: the report payload and its files."""

    report: dict
    json_path: Path
    html_path: Path

    @property
    def front(self) -> list[dict]:
        return self.report["front"]


def trial_records(study) -> list[dict]:
    """One plain-JSON record per trial of the study (surplus trials left out)."""
    records = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if attrs.get("surplus"):
            continue
        state = trial.state.name.lower()
        status = attrs.get("status") or ("killed or failed" if state == "fail" else state)
        records.append({
            "trial": trial.number, "state": state, "status": status,
            "candidate": attrs.get("candidate", ""), "params": dict(trial.params),
            "run_dir": attrs.get("run_dir"), "worker": attrs.get("worker"),
            "estimate": attrs.get("estimate"), "measured": attrs.get("measured"),
            "exceeded": attrs.get("exceeded", []), "error": attrs.get("error"),
            "retry_of": attrs.get("retry_of"), "same_as": attrs.get("same_as"),
            "epoch_accuracy": attrs.get("epoch_accuracy"),
            "pruned_at_epoch": attrs.get("pruned_at_epoch") if status == "pruned" else None,
            "seconds": (round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1)
                        if trial.datetime_complete and trial.datetime_start else None)})
    return records


def _meets(record: dict) -> bool:
    return record["status"] == "trained" and not record["exceeded"] and record["measured"]


def _dominates(first: dict, second: dict) -> bool:
    a, b = first["measured"], second["measured"]
    better_or_equal = (a["validation_accuracy"] >= b["validation_accuracy"]
                       and a["ms"] <= b["ms"] and a["ram"] <= b["ram"])
    strictly = (a["validation_accuracy"] > b["validation_accuracy"] or a["ms"] < b["ms"]
                or a["ram"] < b["ram"])
    return better_or_equal and strictly


def pareto_front(records: list[dict]) -> list[dict]:
    """Front entries of the trials meeting every budget, most accurate first."""
    feasible = [record for record in records if _meets(record)]
    front, seen = [], set()
    for record in feasible:
        if any(_dominates(other, record) for other in feasible):
            continue
        measured = record["measured"]
        signature = (measured["validation_accuracy"], measured["ms"], measured["ram"])
        if signature in seen:  # the same numbers twice: the earlier trial stands for both
            continue
        seen.add(signature)
        front.append({"trial": record["trial"], "run_dir": record["run_dir"],
                      "candidate": record["candidate"], "params": record["params"],
                      "accuracy": measured["accuracy"],
                      "validation_accuracy": measured["validation_accuracy"],
                      "ms": measured["ms"], "ram": measured["ram"], "flash": measured["flash"],
                      "model": measured["model"], "kernels": measured["kernels"],
                      "reproduce": measured["reproduce"],
                      "profile_command": measured["profile_command"]})
    return sorted(front, key=lambda entry: (-entry["validation_accuracy"], entry["ms"]))


def recorded_pipeline(entry: dict) -> dict:
    """What the full pipeline left in a front model's run directory (report, its accuracy)."""
    run_dir = Path(entry["run_dir"])
    report = run_dir / "report.html"
    if not report.is_file():
        return {"note": "full pipeline not run"}
    summary = {"report": str(report)}
    convert = run_dir / "convert_report.json"
    if convert.is_file():
        rows = json.loads(convert.read_text()).get("artifacts", [])
        name = Path(entry["model"]).name
        accuracy = next((row["accuracy"] for row in rows if row["file"] == name), None)
        summary["accuracy"] = accuracy
        summary["reproduced"] = accuracy is not None and abs(accuracy - entry["accuracy"]) < 1e-9
    return summary


def _counts(records: list[dict]) -> dict:
    counts = {"trials": len(records), "trained": 0, "discarded": 0, "pruned": 0, "failed": 0,
              "meeting_budgets": 0}
    for record in records:
        if record["status"] in ("trained", "discarded", "pruned"):
            counts[record["status"]] += 1
        else:
            counts["failed"] += 1
        counts["meeting_budgets"] += bool(_meets(record))
    return counts


def _discarded_by(records: list[dict]) -> dict:
    """budget -> {"untrained": count discarded by the cheap check, "trained": count over it
    after training} (a candidate over two budgets counts under both)."""
    table = {name: {"untrained": 0, "trained": 0} for name in BUDGETS}
    for record in records:
        if record["status"] not in ("discarded", "trained"):
            continue
        for name in record["exceeded"]:
            table[name]["untrained" if record["status"] == "discarded" else "trained"] += 1
    return table


def _seconds_per_discard(records: list[dict]) -> dict:
    seconds = [record["estimate"]["seconds"] for record in records
               if record["status"] == "discarded" and record["estimate"]]
    return {"count": len(seconds), "mean": round(sum(seconds) / len(seconds), 2) if seconds
            else None, "max": round(max(seconds), 2) if seconds else None}


def write_report(config, study, records: list[dict], front: list[dict], storage: str):
    out = Path(config.out)
    payload = {
        "schema_version": SCHEMA_VERSION, "versions": tool_versions(),
        "study": {"name": config.study_name, "storage": storage,
                  "sampler": config.sampler, "directions": ["validation accuracy up", "ms down",
                                                            "RAM down"]},
        "config": config.to_dict() | {"storage": storage},
        "space": study.user_attrs.get("space"), "budgets": config.budgets() | (
            {"min_accuracy": config.min_accuracy} if config.min_accuracy is not None else {}),
        "counts": _counts(records), "discarded_by": _discarded_by(records),
        "seconds_per_discarded_candidate": _seconds_per_discard(records),
        "front": front, "trials": records,
    }
    json_path = write_json_atomic(out / REPORT_JSON, payload)
    html_path = write_text_atomic(out / REPORT_HTML, render_html(payload))
    return TuneOutcome(report=payload, json_path=json_path, html_path=html_path)


def front_rows(payload: dict) -> list[dict]:
    """The front as table rows (the CLI's summary and the API's Table)."""
    return [{"trial": entry["trial"], "model": entry["candidate"],
             "validation_accuracy": entry["validation_accuracy"], "accuracy": entry["accuracy"],
             "ms": round(entry["ms"], 3), "ram": entry["ram"], "flash": entry["flash"],
             "run_dir": entry["run_dir"]} for entry in payload["front"]]


# --- html ------------------------------------------------------------------------------------

def _front_chart(payload: dict) -> bytes:
    """Accuracy against estimated ms, RAM as colour; budget lines; the front ringed."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    pyplot = require("matplotlib.pyplot")
    trained = [record for record in payload["trials"] if record["status"] == "trained"]
    budgets = payload["budgets"]
    figure, axis = pyplot.subplots(figsize=(7.5, 4.5))
    if trained:
        rams = [record["measured"]["ram"] for record in trained]
        points = axis.scatter([record["measured"]["ms"] for record in trained],
                              [record["measured"]["validation_accuracy"] for record in trained],
                              c=rams, cmap="viridis", s=46,
                              edgecolors=["none" if _meets(record) else "red"
                                          for record in trained], linewidths=1.5)
        colorbar = figure.colorbar(points, ax=axis)
        colorbar.set_label("RAM (bytes)")
        if "ram" in budgets and min(rams) <= budgets["ram"] <= max(rams):
            colorbar.ax.axhline(budgets["ram"], color="red", linewidth=2)
    front = payload["front"]
    axis.scatter([entry["ms"] for entry in front], [entry["validation_accuracy"] for entry in front],
                 s=170, facecolors="none", edgecolors="black", linewidths=1.5,
                 label="Pareto front (meets every budget)")
    if "ms" in budgets:
        axis.axvline(budgets["ms"], color="red", linestyle="--", label="ms budget")
    if "min_accuracy" in budgets:
        axis.axhline(budgets["min_accuracy"], color="red", linestyle=":",
                     label="accuracy floor")
    axis.set_xlabel("estimated ms on the target")
    axis.set_ylabel("int8 validation accuracy")
    axis.set_title("trained trials (red edge: over a budget; red line on the colour bar: RAM "
                   "budget)", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    pyplot.close(figure)
    return buffer.getvalue()


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def render_html(payload: dict) -> str:
    png = base64.b64encode(_front_chart(payload)).decode("ascii")
    budgets = payload["budgets"]
    budget_text = ", ".join(f"{name} {value:,}" if isinstance(value, int) else f"{name} {value}"
                            for name, value in budgets.items()) or "none"
    front_rows_html = [[entry["trial"], html.escape(entry["candidate"]),
                        _number(entry["validation_accuracy"]), _number(entry["accuracy"]),
                        _number(entry["ms"], 3), _number(entry["ram"]), _number(entry["flash"]),
                        html.escape(entry.get("pipeline", {}).get("report")
                                    or entry.get("pipeline", {}).get("note", "")),
                        (f"<code>{html.escape(entry['reproduce'])}</code><br>"
                        f"<code>{html.escape(entry['profile_command'])}</code>")]
                       for entry in payload["front"]]
    trial_rows = []
    for record in payload["trials"]:
        numbers = record["measured"] or record["estimate"] or {}
        status = record["status"]
        if record.get("pruned_at_epoch"):
            status += f" after epoch {record['pruned_at_epoch']}"
        if record["retry_of"] is not None:
            status += f" (retry of {record['retry_of']})"
        if record.get("same_as") is not None:
            status += f" (as trial {record['same_as']})"
        trial_rows.append([record["trial"], html.escape(record["candidate"]),
                           html.escape(status),
                           html.escape(", ".join(record["exceeded"]) or "-"),
                           _number((record["measured"] or {}).get("validation_accuracy")),
                           _number(numbers.get("ms"), 3), _number(numbers.get("ram")),
                           _number(numbers.get("flash")),
                           html.escape((record["estimate"] or {}).get("source", "")
                                       if not record["measured"] else "profile of the trained "
                                       "model"), _number(record["seconds"], 1)])
    discarded = [[name, counts["untrained"], counts["trained"]]
                 for name, counts in payload["discarded_by"].items()
                 if name in budgets or counts["untrained"] or counts["trained"]]
    counts = payload["counts"]
    per_discard = payload["seconds_per_discarded_candidate"]
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>edgeship tune: {html.escape(payload['config']['target'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;
margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:left}}
code{{font-size:12px}}</style></head><body>
<h1>edgeship tune on {html.escape(payload['config']['target'])}</h1>
<p>Budgets: {html.escape(budget_text)} (RAM and flash in bytes). Study
{html.escape(payload['study']['name'])} in <code>{html.escape(payload['study']['storage'])}</code>,
sampler {html.escape(payload['study']['sampler'])}: {counts['trials']} trials,
{counts['trained']} trained, {counts['discarded']} discarded untrained,
{counts.get('pruned', 0)} pruned (training stopped early: validation accuracy below the trained
trials' median at that epoch), {counts['failed']} failed,
{counts['meeting_budgets']} meeting every budget. A discarded candidate took
{_number(per_discard['mean'], 2)} s on average ({_number(per_discard['max'], 2)} s at most).
Cycles and ms are estimates from Arm's instruction timings (edgeship profile), not measurements.</p>
<h2>Pareto front</h2>
<img alt="accuracy against estimated ms" src="data:image/png;base64,{png}">
{_table(['trial', 'model', 'validation acc.', 'test acc.', 'ms', 'RAM B', 'flash B',
         'full pipeline', 'reproduce'], front_rows_html)}
<h2>Discarded, by budget</h2>
<p>Untrained: by the cheap check before training; trained: over the budget once trained and
converted.</p>
{_table(['budget', 'untrained', 'trained'], discarded)}
<h2>Trials</h2>
{_table(['trial', 'model', 'status', 'over', 'validation acc.', 'ms', 'RAM B', 'flash B',
         'numbers from', 'seconds'], trial_rows)}
</body></html>
"""
