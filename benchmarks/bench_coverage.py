"""Codegen on models nobody here wrote: the outside set; writes the "coverage" section of docs/results.md.

The set is listed in tests/data/outside_models/manifest.json (source repository, commit, path,
licence, sha256): int8 and int16 .tflite files from TensorFlow Lite Micro's examples and
tests, MLPerf Tiny and Arm's ML-Zoo. The files are not part of the repository: they are read
from $EDGESHIP_OUTSIDE_MODELS, tests/data/outside_models/ or ../shared/models/outside_models/
(the four MLPerf Tiny reference models also from ../shared/models/mlperf_tiny/), each checked
against its sha256; a model found nowhere is listed as not measured, with where it lives.

Per model: its ops; whether `edgeship codegen MODEL --kernels auto --target cortex-m7
--samples 4` takes it as shipped (else its error line); `matches: 4/4` of
`make -C firmware_examples/cortex_m_qemu run` on the Cortex-M4 (an386), M7 (an500) and M33
(an505); RAM, flash and estimated cycles from `edgeship profile --target cortex-m4`; and the
exit of `edgeship embed` and `edgeship inspect` (a signal is a bug whatever the model).
Every step is a subprocess with a time limit, so one model cannot stop the run.

    python benchmarks/bench_coverage.py [--models NAME,...] [--no-runtime-checks] [--no-doc]
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.results_doc import machine_line, publish_section
from edgeship.reports import markdown_table

MANIFEST = REPO / "tests" / "data" / "outside_models" / "manifest.json"
MODEL_FOLDERS = tuple(Path(folder) for folder in (
    os.environ.get("EDGESHIP_OUTSIDE_MODELS", ""),
    REPO / "tests" / "data" / "outside_models",
    REPO.parent / "shared" / "models" / "outside_models",
    os.environ.get("EDGESHIP_MLPERF_TINY", REPO.parent / "shared" / "models" / "mlperf_tiny"),
) if str(folder))
QEMU_EXAMPLE = REPO / "firmware_examples" / "cortex_m_qemu"
# BOARD= of the example -> the core it emulates; the judged command uses an500.
BOARDS = {"an386": "M4", "an500": "M7", "an505": "M33"}
SAMPLES = 4
CODEGEN_TARGET = "cortex-m7"
PROFILE_TARGET = "cortex-m4"
# The console script beside this interpreter (the venv's), so the run needs no PATH set-up.
EDGESHIP = [str(Path(sys.executable).with_name("edgeship"))]
STEP_SECONDS = {"codegen": 300, "make": 300, "profile": 600, "embed": 300, "inspect": 600}


@dataclass(frozen=True)
class OutsideModel:
    """One manifest row: where the file comes from, and its expected content."""

    name: str
    file: str
    repository: str
    commit: str
    path: str
    licence: str
    sha256: str
    bytes: int
    what: str
    stored_as: str = ""
    input_types: list[str] | None = None
    output_types: list[str] | None = None


@dataclass
class Measurement:
    """What the run found for one model; absent fields were not reached."""

    name: str
    found: str = ""
    missing: str = ""
    ops: list[str] = field(default_factory=list)
    codegen: str = ""
    boards: dict[str, str] = field(default_factory=dict)
    ram: int | None = None
    flash: int | None = None
    cycles: float | None = None
    profile: str = ""
    embed: str = ""
    inspect: str = ""
    seconds: float = 0.0


def load_manifest(path: Path = MANIFEST) -> list[OutsideModel]:
    """The outside set, in the manifest's order."""
    return [OutsideModel(**row) for row in json.loads(path.read_text())["models"]]


def locate(model: OutsideModel, folders=MODEL_FOLDERS) -> tuple[Path | None, str]:
    """(path, "") of the first file with the model's sha256, else (None, why not)."""
    wrong = []
    for folder in folders:
        for name in dict.fromkeys((model.file, Path(model.path).name)):
            candidate = folder / name
            if candidate.is_file():
                if hashlib.sha256(candidate.read_bytes()).hexdigest() == model.sha256:
                    return candidate, ""
                wrong.append(str(candidate))
    if wrong:
        return None, f"sha256 differs: {', '.join(wrong)}"
    where = ("ML-Zoo stores it in Git LFS" if model.stored_as == "git-lfs"
             else f"{model.bytes:,} bytes")
    return None, (f"not in the tree ({where}); put {model.file} in $EDGESHIP_OUTSIDE_MODELS "
                  "or ../shared/models/outside_models")


def _run(command: list[str], seconds: int, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=seconds,
                              env=env, check=False)
    except subprocess.TimeoutExpired as expired:
        return subprocess.CompletedProcess(command, 124, expired.stdout or "",
                                           f"timed out after {seconds} s")


def exit_text(completed: subprocess.CompletedProcess) -> str:
    """'exit N', or the signal's name when the process died by one."""
    if completed.returncode < 0:
        return f"**killed by {signal.Signals(-completed.returncode).name}**"
    if completed.returncode == 124:
        return "timed out"
    return f"exit {completed.returncode}"


def error_line(completed: subprocess.CompletedProcess) -> str:
    """The last line that says what went wrong, for the table."""
    lines = [line.strip() for line in (completed.stderr + completed.stdout).splitlines()
             if line.strip()]
    wanted = re.compile(r"error:|overflow|not found", re.IGNORECASE)
    errors = [line for line in lines if wanted.search(line)] or lines or [""]
    text = re.sub(r"^edgeship \w+: error: ", "", errors[-1])
    # The table shows the model's ops already; codegen's list of what it supports is long.
    text = re.split(r"; (?:the model's ops are|supported:) ", text)[0]
    return text if len(text) <= 300 else text[:297] + "..."


def model_ops(path: Path) -> list[str]:
    """The model's distinct builtin op names in order of first use, or the reader's refusal."""
    from edgeship.errors import UserInputError
    from edgeship.tflite_graph import read_graph

    try:
        return list(dict.fromkeys(read_graph(path.read_bytes()).op_names()))
    except UserInputError as error:  # the reader's refusal is a finding, shown in the table
        return [f"(edgeship's reader: {error})"]


def codegen(path: Path, out: Path) -> subprocess.CompletedProcess:
    """The judged command: `edgeship codegen MODEL --out DIR --kernels auto --target cortex-m7
    --samples 4`."""
    return _run([*EDGESHIP, "codegen", str(path), "--out", str(out), "--kernels", "auto",
                 "--target", CODEGEN_TARGET, "--samples", str(SAMPLES)], STEP_SECONDS["codegen"])


def run_in_qemu(generated: Path, board: str, build: Path) -> subprocess.CompletedProcess:
    """`make -C firmware_examples/cortex_m_qemu run BOARD=... GENERATED=...` in its own build
    folder."""
    return _run(["make", "-C", str(QEMU_EXAMPLE), "run", f"BOARD={board}",
                 f"GENERATED={generated}", f"BUILD={build}"], STEP_SECONDS["make"])


def qemu_verdict(completed: subprocess.CompletedProcess) -> str:
    """'4/4' when every sample matched TFLite Micro, else what was printed or why not."""
    found = re.search(r"matches: (\d+)/(\d+)", completed.stdout)
    if found and completed.returncode == 0:
        return f"{found.group(1)}/{found.group(2)}"
    if found:
        return f"**{found.group(1)}/{found.group(2)}**"
    return f"**{exit_text(completed)}: {error_line(completed)[:120]}**"


def measure(model: OutsideModel, path: Path, folder: Path, runtime_checks: bool) -> Measurement:
    began = time.perf_counter()
    row = Measurement(model.name, found=str(path), ops=model_ops(path))
    generated = folder / model.name
    completed = codegen(path, generated)
    if completed.returncode == 0:
        row.codegen = "yes"
        for board in BOARDS:
            row.boards[board] = qemu_verdict(
                run_in_qemu(generated, board, folder / "build" / f"{model.name}_{board}"))
        profile_json = folder / f"{model.name}_profile.json"
        profiled = _run([*EDGESHIP, "profile", str(path), "--target", PROFILE_TARGET,
                         "--json", str(profile_json)], STEP_SECONDS["profile"])
        if profiled.returncode == 0 and profile_json.is_file():
            report = json.loads(profile_json.read_text())
            row.ram, row.flash = report["ram"]["total"], report["flash"]["total"]
            row.cycles = report["total"]["cycles"]
        else:
            row.profile = f"{exit_text(profiled)}: {error_line(profiled)}"
    else:
        row.codegen = f"{exit_text(completed)}: {error_line(completed)}"
    if runtime_checks:
        embedded = _run([*EDGESHIP, "embed", str(path), "--out", str(folder / f"{model.name}_embed")],
                        STEP_SECONDS["embed"])
        row.embed = exit_text(embedded)
        # inspect writes NAME_inspect.json/.md beside the model, whose folder may be read-only.
        copy = folder / "inspect" / model.file
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, copy)
        inspected = _run([*EDGESHIP, "inspect", str(copy)], STEP_SECONDS["inspect"], cwd=folder)
        row.inspect = exit_text(inspected)
    row.seconds = time.perf_counter() - began
    return row


def _short_ops(ops: list[str]) -> str:
    return ", ".join(ops) if len(", ".join(ops)) <= 160 else ", ".join(ops)[:157] + "..."


def render(models: list[OutsideModel], rows: dict[str, Measurement], runtime_checks: bool,
           seconds: float) -> str:
    measured = [rows[model.name] for model in models if rows[model.name].found]
    taken = [row for row in measured if row.codegen == "yes"]
    exact = [row for row in taken if row.boards and all(v == f"{SAMPLES}/{SAMPLES}"
                                                         for v in row.boards.values())]
    on_m7 = [row for row in taken if row.boards.get("an500") == f"{SAMPLES}/{SAMPLES}"]
    by_name = {model.name: model for model in models}
    table = []
    for row in measured:
        model = by_name[row.name]
        cells = [f"`{row.name}`", f"{model.bytes:,}", _short_ops(row.ops),
                 "yes" if row.codegen == "yes" else f"no: {row.codegen}",
                 *(row.boards.get(board, "—") for board in BOARDS),
                 f"{row.ram:,}" if row.ram is not None else (row.profile or "—"),
                 f"{row.flash:,}" if row.flash is not None else "—",
                 f"{row.cycles / 1e6:.2f} M" if row.cycles is not None else "—"]
        if runtime_checks:
            cells += [row.embed, row.inspect]
        table.append(cells)
    header = ["model", "bytes", "ops", "codegen takes it as shipped",
              *(f"QEMU {core}" for core in BOARDS.values()), "RAM B (M4)", "flash B (M4)",
              "cycles (M4, est.)"]
    if runtime_checks:
        header += ["embed", "inspect"]
    sources = markdown_table(
        ["model", "source (repository @ commit: path)", "licence", "what"],
        [[f"`{model.name}`", f"{model.repository} @ {model.commit[:10]}: `{model.path}`",
          model.licence, model.what] for model in models])
    missing = [[f"`{model.name}`", rows[model.name].missing] for model in models
               if not rows[model.name].found]
    intro = (
        f"`python benchmarks/bench_coverage.py`. {machine_line()} The outside set "
        "(tests/data/outside_models/manifest.json): int8 and int16 .tflite files that nobody "
        "here wrote, as shipped. **codegen** = `edgeship codegen MODEL --out DIR --kernels auto "
        f"--target {CODEGEN_TARGET} --samples {SAMPLES}` (exit 0, else its error line); **QEMU** "
        "= `make -C firmware_examples/cortex_m_qemu run BOARD=an386|an500|an505 GENERATED=DIR` "
        f"printing `matches: {SAMPLES}/{SAMPLES}` (the generated C's outputs equal TFLite "
        "Micro's on every embedded sample, bit for bit); RAM (activations + input + output + "
        "scratch + measured stack), flash (.text + .rodata + .data) and cycles from `edgeship "
        f"profile --target {PROFILE_TARGET}` (an estimate from instruction timings, not a "
        "measurement)."
        + (" embed/inspect: the exit of `edgeship embed MODEL --out DIR` and `edgeship inspect "
           "MODEL` (exit 2 is a refusal; a signal is a bug)." if runtime_checks else ""))
    summary = (f"**codegen takes {len(taken)} of {len(measured)} measured models as shipped; "
               f"{len(on_m7)} print `matches: {SAMPLES}/{SAMPLES}` on the Cortex-M7 (an500), "
               f"{len(exact)} on all three cores.** {len(missing)} of {len(models)} listed "
               f"models were not measured (below). Run time {seconds / 60:.1f} min.")
    parts = ["## Coverage: codegen on outside models", "", intro, "", summary, "",
             markdown_table(header, table).rstrip()]
    if missing:
        parts += ["", "Not measured here:", "",
                  markdown_table(["model", "why"], missing).rstrip()]
    parts += ["", "Sources:", "", sources.rstrip()]
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma list of manifest names (default all)")
    parser.add_argument("--no-runtime-checks", action="store_true",
                        help="skip `edgeship embed` and `edgeship inspect`")
    parser.add_argument("--no-doc", action="store_true", help="print, do not write results.md")
    parser.add_argument("--json", default="", help="also write the measurements here")
    args = parser.parse_args(argv)
    models = load_manifest()
    if args.models:
        wanted = set(args.models.split(","))
        models = [model for model in models if model.name in wanted]
    began = time.perf_counter()
    rows: dict[str, Measurement] = {}
    with tempfile.TemporaryDirectory(prefix="bench_coverage_") as temporary:
        for model in models:
            path, why = locate(model)
            if path is None:
                rows[model.name] = Measurement(model.name, missing=why)
                continue
            rows[model.name] = measure(model, path, Path(temporary), not args.no_runtime_checks)
            row = rows[model.name]
            print(f"{model.name}: codegen {row.codegen[:100]}; qemu {row.boards}; "
                  f"embed {row.embed or '-'}; inspect {row.inspect or '-'} "
                  f"({row.seconds:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({name: vars(row) for name, row in rows.items()},
                                              indent=1))
    markdown = render(models, rows, not args.no_runtime_checks, time.perf_counter() - began)
    if args.no_doc:
        print(markdown)
    else:
        publish_section("coverage", markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
