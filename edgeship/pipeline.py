"""`edgeship pipeline`: train -> convert -> validate -> bench -> embed -> profile -> report,
incrementally.

Each stage records in manifest.json a key: the hash of its options and of the artifacts it
reads. A re-run skips a stage whose key is unchanged and whose outputs are on disk with the
recorded SHA-256, so changing only the QAT epochs redoes conversion onward and a re-run with
nothing changed finishes in seconds. `--force` redoes everything. One pipeline at a time may
write a run directory (an exclusive lock on RUN_DIR/.edgeship.lock). A stage that cannot run
here (the profile stage without the Arm toolchain or the emulator, or turned off) is skipped
with one line and never fails the run.
"""

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from edgeship.artifacts import remove_stale_temp_files, sha256_file
from edgeship.errors import CheckFailedError, UserInputError
from edgeship.pipeline_config import PipelineConfig, reproduce_commands
from edgeship.run_dir import (
    MODEL_ARTIFACTS,
    PREDICTIONS_NAME,
    ArtifactKind,
    ManifestRecord,
    RunDir,
)

STAGES = ("train", "convert", "validate", "bench", "embed", "profile", "report")
PROFILE_NAME = "profile.json"
LOCK_NAME = ".edgeship.lock"
# The one command that gives the profile stage its compiler (scripts/demo.sh runs it as root).
ARM_TOOLCHAIN_INSTALL = "sudo apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi"


@dataclass
class StageOutcome:
    name: str
    ran: bool
    seconds: float
    note: str = ""


@dataclass
class PipelineResult:
    run_dir: Path
    stages: list[StageOutcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    report_path: Path | None = None
    summary: str = ""


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Exclusive, non-blocking lock: a second pipeline on the same --out refuses clearly."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_NAME, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserInputError(f"another edgeship pipeline is writing {run_dir} (lock "
                                 f"{run_dir / LOCK_NAME}); wait for it or use another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def run_pipeline(config: PipelineConfig, log: Callable[[str], None] = print) -> PipelineResult:
    """Run every stage whose inputs or options changed, then write report.html and report.md.

    Returns:
        The PipelineResult; `failures` lists failed checks (validate, accuracy gate).

    Raises:
        UserInputError: bad options or data (no stage leaves a half-written file).
    """
    run_dir = Path(config.out)
    result = PipelineResult(run_dir=run_dir)
    with run_lock(run_dir):
        for stale in remove_stale_temp_files(run_dir):  # a killed run's half-written files
            log(f"removed {stale.relative_to(run_dir)}, left by an interrupted run")
        for index, stage in enumerate(_stage_plan(config), start=1):
            key = _stage_key(stage.name, stage.options(config), stage.inputs(run_dir))
            if not config.force and _up_to_date(run_dir, stage.name, key):
                log(f"[{index}/{len(STAGES)}] {stage.name}: up to date, skipped")
                result.stages.append(StageOutcome(stage.name, False, 0.0))
                continue
            _forget_stage(run_dir, stage.name)
            reason = stage.unavailable(config, run_dir)
            if reason:  # its old outputs are gone: the report shows no stale numbers
                log(f"[{index}/{len(STAGES)}] {stage.name}: skipped ({reason})")
                result.stages.append(StageOutcome(stage.name, False, 0.0, reason))
                continue
            log(f"[{index}/{len(STAGES)}] {stage.name} ...")
            started = time.perf_counter()
            try:
                note = stage.run(config, run_dir) or ""
            except CheckFailedError as failure:
                note = f"check failed: {failure}"
                result.failures.append(f"{stage.name}: {failure}")
            seconds = time.perf_counter() - started
            _record_stage(run_dir, stage.name, key, seconds, note)
            log(f"[{index}/{len(STAGES)}] {stage.name}: done in {seconds:.1f} s"
                + (f" ({note})" if note else ""))
            result.stages.append(StageOutcome(stage.name, True, seconds, note))
        result.failures.extend(_failures_recorded(run_dir, result.failures))
    from edgeship.report_page import summary_table

    result.report_path = run_dir / "report.html"
    result.summary = summary_table(run_dir)
    return result


# --- stages ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Stage:
    name: str
    run: Callable[[PipelineConfig, Path], str | None]
    options: Callable[[PipelineConfig], dict]
    inputs: Callable[[Path], list[str]]
    # Why the stage cannot run here (one line), or None: it runs.
    unavailable: Callable[[PipelineConfig, Path], str | None] = lambda config, run_dir: None


def _run_train(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.train.fit import train

    result = train(config.train)
    return f"test accuracy {result.test_accuracy:.4f}"


def _run_convert(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.convert.run import run_convert

    result = run_convert(config.convert)
    return f"{len(result.artifacts)} artifacts"


def _run_validate(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.runtime.backends import default_backend_names
    from edgeship.runtime.parity import validate_run

    validate = config.validate
    note = ""
    if validate.backends == default_backend_names():  # not chosen: add the generated C
        if _codegen_supports(RunDir(run_dir).path_of(ArtifactKind.INT8_TFLITE)):
            validate = replace(validate, backends=validate.backends + ("c",))
        else:
            note = "; c backend skipped (no C compiler, or an op codegen does not support)"
    report = validate_run(validate)
    if not report.passed:
        raise CheckFailedError("; ".join(check.describe() for check in report.failures))
    from edgeship.inspect import InspectConfig, run_inspect

    # Per-layer error for report.html; validate compared the ops, attribution is inspect's.
    inspected = run_inspect(InspectConfig(source=str(run_dir), runtimes=(), restore=0))
    worst = inspected["layers"][0] if inspected["layers"] else None
    worst_note = (f"; worst layer {worst['op']} #{worst['index']} at {worst['sqnr_db']:.1f} dB SQNR "
                  f"against {inspected['float']}" if worst else "")
    return f"{len(report.checks)} checks passed{note}{worst_note}"


def _codegen_supports(model_path: Path) -> bool:
    """The generated-C backend joins validate when a host C compiler exists and every op of
    the int8 model has a generated kernel."""
    return bool(shutil.which("cc")) and _codegen_lowers(model_path)


def _codegen_lowers(model_path: Path) -> bool:
    """Every op of the model has a generated kernel."""
    if not model_path.is_file():
        return False
    from edgeship.convert.codegen import lower_graph, read_graph

    try:
        lower_graph(read_graph(model_path.read_bytes()))
    except UserInputError:
        return False
    return True


def _run_bench(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.artifacts import write_json_atomic
    from edgeship.runtime.backends import backends_for, default_backend_names
    from edgeship.runtime.bench import bench, bench_document

    run = RunDir(run_dir)
    plan = []
    for kind in run.existing():
        if kind.reference_only:  # a reference for validate and inspect, not a file to ship
            continue
        artifact = run.path_of(kind)
        backends = tuple(name for name in backends_for(artifact, default_backend_names())
                         if kind.runtimes is None or name in kind.runtimes)
        if (kind.format == "tflite" and kind.precision == "int8" and kind.runtimes is None
                and _codegen_supports(artifact)):
            backends += ("c",)  # the generated C, compiled -O2 on this host
        plan.append((artifact, backends))
    # one bench over every file, in rounds: the report compares them side by side
    from edgeship.commands.bench import BenchRecord

    records = bench(config.bench, plan=plan)
    path = write_json_atomic(run_dir / "bench.json", bench_document(records))
    run.write(BenchRecord(runs=config.bench.runs, warmup=config.bench.warmup),
              artifacts={"bench.json": path})
    return f"{len(records)} measurements"


def _run_embed(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.firmware import EmbedConfig, embed_model

    result = embed_model(EmbedConfig(model=str(RunDir(run_dir).path_of(ArtifactKind.INT8_TFLITE)),
                                     out=str(run_dir / "firmware"), name="model",
                                     samples=config.embed_samples, seed=config.train.seed))
    from edgeship.commands.embed import EmbedRecord

    RunDir(run_dir).write(EmbedRecord(arena_bytes=result.arena_bytes,
                                      arena_size=result.arena_size, ops=tuple(result.ops)),
                          artifacts={f"firmware/{path.name}": path for path in result.files})
    return (f"{result.model_bytes:,} model bytes, TFLM arena {result.arena_bytes:,} bytes "
            f"measured, {len(result.ops)} ops")


def _profile_unavailable(config: PipelineConfig, run_dir: Path) -> str | None:
    """Why the profile stage cannot run: turned off, a missing tool, or an op codegen lacks."""
    if not config.profile.enabled:
        return "turned off: --no-profile"
    if shutil.which("arm-none-eabi-gcc") is None:
        return (f"arm-none-eabi-gcc not found; `{ARM_TOOLCHAIN_INSTALL}` enables the MCU "
                "estimate")
    missing = [package for module, package in (("unicorn", "unicorn"), ("capstone", "capstone"),
                                               ("elftools", "pyelftools"))
               if importlib.util.find_spec(module) is None]
    if missing:
        return f"the emulator is not installed; pip install {' '.join(missing)}"
    if not _codegen_lowers(RunDir(run_dir).path_of(ArtifactKind.INT8_TFLITE)):
        return "an op of model_int8.tflite has no generated C kernel"
    return None


def _run_profile(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.artifacts import write_json_atomic
    from edgeship.commands.profile import ProfileRecord
    from edgeship.profile.run import profile_model

    run = RunDir(run_dir)
    # the stage is `edgeship profile` on the run's int8 model, with the same options
    report = profile_model(replace(config.profile,
                                   model=str(run.path_of(ArtifactKind.INT8_TFLITE))))
    profile = report.to_dict()
    profile["model"] = ArtifactKind.INT8_TFLITE.file_name  # a copied run keeps its meaning
    path = write_json_atomic(run_dir / PROFILE_NAME, profile)
    total = profile["total"]
    run.write(ProfileRecord.of(report), artifacts={PROFILE_NAME: path})
    per_mac = (f", {total['cycles_per_mac']:.2f} cycles/MAC"
               if total["cycles_per_mac"] is not None else "")
    return (f"{total['cycles'] / 1e6:.2f} M cycles estimated = {total['ms']:.2f} ms on "
            f"{report.target} at {report.clock_mhz:g} MHz ({report.kernels} kernels){per_mac}; "
            f"flash {report.flash['total']:,} B, RAM {report.ram['total']:,} B")


def _run_report(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.report_page import write_reports

    paths = write_reports(run_dir, reproduce=reproduce_commands(config))
    return ", ".join(path.name for path in paths)


def _artifact_names(kinds: tuple[ArtifactKind, ...],
                    others: tuple[str, ...] = ()) -> Callable[[Path], list[str]]:
    names = tuple(kind.file_name for kind in kinds) + others
    return lambda run_dir: [name for name in names if (run_dir / name).is_file()]


# Fields that name the run directory: a copied run directory stays up to date.
_RUN_DIR_FIELDS = ("out", "source", "run_dir", "artifacts")


def _options(stage_config) -> dict:
    return {name: value for name, value in asdict(stage_config).items()
            if name not in _RUN_DIR_FIELDS}


def _stage_plan(config: PipelineConfig) -> list[_Stage]:
    every_artifact = _artifact_names(MODEL_ARTIFACTS)
    return [
        _Stage("train", _run_train, lambda c: _options(c.train), lambda run_dir: []),
        _Stage("convert", _run_convert, lambda c: _options(c.convert),
               _artifact_names((ArtifactKind.KERAS_MODEL,))),
        _Stage("validate", _run_validate, lambda c: _options(c.validate), every_artifact),
        _Stage("bench", _run_bench, lambda c: _options(c.bench), every_artifact),
        _Stage("embed", _run_embed, lambda c: {"samples": c.embed_samples, "seed": c.train.seed},
               _artifact_names((ArtifactKind.INT8_TFLITE,))),
        _Stage("profile", _run_profile,
               lambda c: {key: value for key, value in _options(c.profile).items()
                          if key != "model"},  # the run's own model_int8.tflite
               _artifact_names((ArtifactKind.INT8_TFLITE,)), _profile_unavailable),
        _Stage("report", _run_report, lambda c: {"reproduce": reproduce_commands(c)},
               _artifact_names(MODEL_ARTIFACTS, ("convert_report.json", "parity.json",
                                                 PREDICTIONS_NAME, "bench.json",
                                                 "history.json", PROFILE_NAME))),
    ]


# --- keys and records ------------------------------------------------------------------------

def _stage_key(name: str, options: dict, inputs: list[str]) -> dict:
    return {"options": json.loads(json.dumps(options, default=list)), "inputs": sorted(inputs)}


def _key_digest(run_dir: Path, key: dict) -> str:
    """Hash of the stage's options and of the current bytes of each input artifact."""
    hashes = {name: sha256_file(run_dir / name) for name in key["inputs"]}
    text = json.dumps({"options": key["options"], "inputs": hashes}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class StageRecord(ManifestRecord):
    """One stage's run as the pipeline records it."""

    key: str  # hash of the stage's options and input files (_key_digest)
    outputs: tuple[str, ...]  # the artifacts it wrote, hashed in the manifest
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class PipelineRecord(ManifestRecord):
    """The manifest's "pipeline" section: stage name -> StageRecord (stored flat)."""

    SECTION: ClassVar[str] = "pipeline"
    stages: dict[str, StageRecord] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {name: stage.to_dict() for name, stage in self.stages.items()}

    @classmethod
    def from_dict(cls, entry: dict) -> "PipelineRecord":
        return cls({name: StageRecord.from_dict(stage) for name, stage in entry.items()
                    if isinstance(stage, dict)})


def _stage_records(run_dir: Path) -> dict[str, StageRecord]:
    recorded = RunDir(run_dir).read(PipelineRecord)
    return dict(recorded.stages) if recorded else {}


def _up_to_date(run_dir: Path, stage: str, key: dict) -> bool:
    run = RunDir(run_dir)
    recorded = _stage_records(run_dir).get(stage)
    if recorded is None or recorded.key != _key_digest(run_dir, key):
        return False
    hashes = run.artifact_hashes()
    for name in recorded.outputs:
        path = run_dir / name
        if name not in hashes or not path.is_file() or sha256_file(path) != hashes[name]:
            return False
    return True


def _forget_stage(run_dir: Path, stage: str) -> None:
    """Before a stage reruns, drop its records and old outputs: a kill mid-stage then leaves
    no stale hash, and a file the new options no longer make does not linger."""
    run = RunDir(run_dir)
    run.forget(stage, remove_files=True)
    stages = _stage_records(run_dir)
    if stages.pop(stage, None) is not None:
        run.write(PipelineRecord(stages))


def _record_stage(run_dir: Path, stage: str, key: dict, seconds: float, note: str) -> None:
    run = RunDir(run_dir)
    stages = _stage_records(run_dir)
    stages[stage] = StageRecord(key=_key_digest(run_dir, key),
                                outputs=tuple(run.stage_outputs(stage)),
                                seconds=round(seconds, 3), note=note)
    # Later stages depend on this one's outputs; their keys change with the hashes anyway.
    run.write(PipelineRecord(stages))


def _failures_recorded(run_dir: Path, already: list[str]) -> list[str]:
    """Failed checks of skipped stages still count: the run is not green until they pass."""
    return [f"{stage}: {record.note}" for stage, record in _stage_records(run_dir).items()
            if record.note.startswith("check failed")
            and not any(item.startswith(stage) for item in already)]
