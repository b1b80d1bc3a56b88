"""`edgeship pipeline`: train -> convert -> validate -> bench -> embed -> report, incrementally.

Each stage records in manifest.json a key: the hash of its options and of the artifacts it
reads. A re-run skips a stage whose key is unchanged and whose outputs are on disk with the
recorded SHA-256, so changing only the QAT epochs redoes conversion onward and a re-run with
nothing changed finishes in seconds. `--force` redoes everything. One pipeline at a time may
write a run directory (an exclusive lock on RUN_DIR/.edgeship.lock).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from edgeship.artifacts import (
    MANIFEST_NAME,
    forget_stage,
    remove_stale_temp_files,
    sha256_file,
    update_manifest,
)
from edgeship.convert.granularity import GRANULARITIES
from edgeship.train.fit import BATCH_NORM_STATISTICS
from edgeship.errors import CheckFailedError, UserInputError

STAGES = ("train", "convert", "validate", "bench", "embed", "report")
LOCK_NAME = ".edgeship.lock"
MODEL_ARTIFACTS = ("model.keras", "model_float.tflite", "model_ptq_int8.tflite",
                   "model_int8.tflite", "model.onnx", "model_int8.onnx")


@dataclass(frozen=True)
class PipelineConfig:
    """Every option of the pipeline; a TOML file holds the same keys (flags win).

    Attributes mirror `edgeship train` and `edgeship convert`; bench_runs and bench_warmup
    size the latency measurement, embed_samples the test images embedded for firmware.
    """

    model: str = "lenet5"
    dataset: str = "mnist5k"
    out: str = "runs/demo"
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 2e-3
    seed: int = 0
    augment: bool = False
    batch_norm_statistics: str = "population"
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    alpha: float = 0.35
    qat: int = 0
    prune: float | None = None
    prune_structure: str | None = None
    prune_epochs: int = 2
    onnx: bool = True
    calibration_samples: int = 500
    io: str = "int8"
    weight_granularity: str = "auto"
    max_drop: float | None = None
    validate_limit: int | None = None
    bench_runs: int = 100
    bench_warmup: int = 10
    embed_samples: int = 10
    force: bool = False

    def __post_init__(self):
        if self.bench_runs < 1:
            raise ValueError(f"bench runs must be >= 1, got {self.bench_runs}")
        if self.embed_samples < 0:
            raise ValueError(f"embed samples must be >= 0, got {self.embed_samples}")
        if self.weight_granularity not in GRANULARITIES:  # fail before training, not after
            raise ValueError(f"weight granularity must be one of {', '.join(GRANULARITIES)}, "
                             f"got {self.weight_granularity!r}")
        if self.batch_norm_statistics not in BATCH_NORM_STATISTICS:
            raise ValueError(f"batch-norm statistics must be one of "
                             f"{', '.join(BATCH_NORM_STATISTICS)}, got {self.batch_norm_statistics!r}")
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(self.image_size))


def load_config_file(path: str | os.PathLike) -> dict:
    """Read a pipeline TOML file into config keys (a [pipeline] table or top-level keys)."""
    path = Path(path)
    try:
        payload = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UserInputError(f"cannot read config {path}: {error}") from error
    payload = payload.get("pipeline", payload)
    known = {item.name for item in fields(PipelineConfig)}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise UserInputError(f"config {path}: unknown key(s) {', '.join(unknown)}; known keys: "
                             f"{', '.join(sorted(known))}")
    return {key.replace("-", "_"): value for key, value in payload.items()}


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
            log(f"[{index}/{len(STAGES)}] {stage.name} ...")
            _forget_stage(run_dir, stage.name)
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


def _dataset_spec(config: PipelineConfig):
    from edgeship.train.datasets import DatasetSpec

    return DatasetSpec(name=config.dataset, seed=config.seed, image_size=config.image_size,
                       channels=config.channels)


def _run_train(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.train.fit import TrainConfig, train
    from edgeship.train.models import ModelOptions

    result = train(TrainConfig(
        model=config.model, dataset=_dataset_spec(config), out=str(run_dir), epochs=config.epochs,
        batch_size=config.batch_size, learning_rate=config.learning_rate, seed=config.seed,
        augment=config.augment, batch_norm_statistics=config.batch_norm_statistics,
        model_options=ModelOptions(alpha=config.alpha)))
    return f"test accuracy {result.test_accuracy:.4f}"


def _run_convert(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.convert.run import ConvertConfig, run_convert

    result = run_convert(ConvertConfig(
        source=str(run_dir), int8=True, qat_epochs=config.qat, prune_sparsity=config.prune,
        prune_structure=config.prune_structure, prune_epochs=config.prune_epochs,
        onnx=config.onnx, calibration_samples=config.calibration_samples, io_type=config.io,
        weight_granularity=config.weight_granularity,
        max_drop_pp=config.max_drop, seed=config.seed))
    return f"{len(result.artifacts)} artifacts"


def _run_validate(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.runtime.backends import default_backend_names
    from edgeship.runtime.parity import ValidateConfig, validate_run

    backends = default_backend_names()
    note = ""
    if _codegen_supports(run_dir / "model_int8.tflite"):
        backends += ("c",)
    else:
        note = "; c backend skipped (no C compiler, or an op codegen does not support)"
    report = validate_run(ValidateConfig(run_dir=str(run_dir), backends=backends,
                                         limit=config.validate_limit))
    if not report.passed:
        raise CheckFailedError("; ".join(check.describe() for check in report.failures))
    from edgeship.inspect import InspectConfig, run_inspect

    # Per-layer error for report.html; validate compared the ops, attribution is inspect's.
    inspected = run_inspect(InspectConfig(source=str(run_dir), runtimes=(), restore=0))
    worst = inspected["layers"][0] if inspected["layers"] else None
    worst_note = (f"; worst layer {worst['op']} #{worst['index']} at {worst['sqnr_db']:.1f} dB SQNR"
                  if worst else "")
    return f"{len(report.checks)} checks passed{note}{worst_note}"


def _codegen_supports(model_path: Path) -> bool:
    """The generated-C backend joins validate when a host C compiler exists and every op of
    the int8 model has a generated kernel."""
    if not shutil.which("cc") or not model_path.is_file():
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
    from edgeship.runtime.bench import BenchConfig, bench, bench_document

    artifacts = [run_dir / name for name in MODEL_ARTIFACTS if (run_dir / name).is_file()]
    records = []
    for artifact in artifacts:
        backends = backends_for(artifact, default_backend_names())
        if "int8" in artifact.name and artifact.suffix == ".tflite" and _codegen_supports(artifact):
            backends += ("c",)  # the generated C, compiled -O2 on this host
        records.extend(bench(BenchConfig(
            artifacts=(str(artifact),), backends=backends, runs=config.bench_runs,
            warmup=config.bench_warmup, seed=config.seed)))
    path = write_json_atomic(run_dir / "bench.json", bench_document(records))
    update_manifest(run_dir, "bench", {"runs": config.bench_runs, "warmup": config.bench_warmup},
                    artifacts={"bench.json": path})
    return f"{len(records)} measurements"


def _run_embed(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.convert.embed import EmbedConfig, embed_model

    result = embed_model(EmbedConfig(model=str(run_dir / "model_int8.tflite"),
                                     out=str(run_dir / "firmware"), name="model",
                                     samples=config.embed_samples, seed=config.seed))
    update_manifest(run_dir, "embed", {"arena_bytes": result.arena_bytes,
                                       "arena_size": result.arena_size, "ops": list(result.ops)},
                    artifacts={f"firmware/{path.name}": path for path in result.files})
    return (f"{result.model_bytes:,} model bytes, TFLM arena {result.arena_bytes:,} bytes "
            f"measured, {len(result.ops)} ops")


def _run_report(config: PipelineConfig, run_dir: Path) -> str:
    from edgeship.report_page import write_reports

    paths = write_reports(run_dir, reproduce=reproduce_commands(config))
    return ", ".join(path.name for path in paths)


def reproduce_commands(config: PipelineConfig) -> list[str]:
    """The pipeline command, then the stage commands, that recreate this run exactly.

    Generated from the config's fields, so an option cannot be left out: the pipeline command
    names every option that differs from its default, and parses back to the same config
    (tests/edgeship/test_pipeline.py). The train command passes the split seed explicitly
    (the pipeline splits the dataset with its seed; `edgeship train` defaults to 0).
    """
    defaults = PipelineConfig()
    flags = []
    for item in fields(PipelineConfig):
        value = getattr(config, item.name)
        if item.name == "force" or (value == getattr(defaults, item.name)
                                    and item.name not in ("model", "dataset", "out")):
            continue
        flags.append(_flag(item.name, value))
    pipeline = "edgeship pipeline " + " ".join(flag for flag in flags if flag) + " --force"
    train = ["edgeship train", _flag("model", config.model), _flag("dataset", config.dataset),
             _flag("epochs", config.epochs), _flag("batch_size", config.batch_size),
             _flag("learning_rate", config.learning_rate), _flag("seed", config.seed),
             _flag("split_seed", config.seed), _flag("augment", config.augment),
             _flag("batch_norm_statistics", config.batch_norm_statistics),
             _flag("image_size", config.image_size), _flag("channels", config.channels),
             _flag("alpha", config.alpha), _flag("out", config.out)]
    convert = [f"edgeship convert {config.out} --int8", _flag("qat", config.qat or None),
               _flag("prune", config.prune), _flag("prune_structure", config.prune_structure),
               _flag("prune_epochs", config.prune_epochs), "--onnx" if config.onnx else "",
               _flag("calibration_samples", config.calibration_samples),
               _flag("io", config.io), _flag("weight_granularity", config.weight_granularity),
               _flag("max_drop", config.max_drop), _flag("seed", config.seed)]
    validate = [f"edgeship validate {config.out}", _flag("limit", config.validate_limit)]
    bench = [f"edgeship bench {config.out}/model_int8.tflite {config.out}/model_float.tflite",
             _flag("runs", config.bench_runs), _flag("warmup", config.bench_warmup)]
    return [pipeline] + [" ".join(part for part in command if part)
                         for command in (train, convert, validate, bench)]


def _flag(name: str, value) -> str:
    """One option as a command-line flag ("" for an unset option or a false switch)."""
    flag = "--" + name.replace("_", "-")
    if value is None or value is False:
        return "--no-onnx" if name == "onnx" and value is False else ""
    if value is True:
        return flag
    if isinstance(value, tuple):
        return f"{flag} {'x'.join(str(side) for side in value)}"
    return f"{flag} {value}"


def _artifact_names(names: tuple[str, ...]) -> Callable[[Path], list[str]]:
    return lambda run_dir: [name for name in names if (run_dir / name).is_file()]


def _stage_plan(config: PipelineConfig) -> list[_Stage]:
    train_keys = ("model", "dataset", "epochs", "batch_size", "learning_rate", "seed", "augment",
                  "batch_norm_statistics", "image_size", "channels", "alpha")
    convert_keys = ("qat", "prune", "prune_structure", "prune_epochs", "onnx",
                    "calibration_samples", "io", "weight_granularity", "max_drop", "seed")
    pick = lambda keys: (lambda c: {key: getattr(c, key) for key in keys})  # noqa: E731
    every_artifact = _artifact_names(MODEL_ARTIFACTS)
    return [
        _Stage("train", _run_train, pick(train_keys), lambda run_dir: []),
        _Stage("convert", _run_convert, pick(convert_keys), _artifact_names(("model.keras",))),
        _Stage("validate", _run_validate, pick(("validate_limit",)), every_artifact),
        _Stage("bench", _run_bench, pick(("bench_runs", "bench_warmup", "seed")), every_artifact),
        _Stage("embed", _run_embed, pick(("embed_samples",)),
               _artifact_names(("model_int8.tflite",))),
        _Stage("report", _run_report, lambda c: {"out": c.out, **pick(train_keys + convert_keys)(c)},
               _artifact_names(MODEL_ARTIFACTS + ("convert_report.json", "parity.json",
                                                  "bench.json", "history.json"))),
    ]


# --- keys and records ------------------------------------------------------------------------

def _stage_key(name: str, options: dict, inputs: list[str]) -> dict:
    return {"options": json.loads(json.dumps(options, default=list)), "inputs": sorted(inputs)}


def _manifest(run_dir: Path) -> dict:
    path = run_dir / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def _key_digest(run_dir: Path, key: dict) -> str:
    """Hash of the stage's options and of the current bytes of each input artifact."""
    hashes = {name: sha256_file(run_dir / name) for name in key["inputs"]}
    text = json.dumps({"options": key["options"], "inputs": hashes}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _up_to_date(run_dir: Path, stage: str, key: dict) -> bool:
    manifest = _manifest(run_dir)
    recorded = manifest.get("pipeline", {}).get(stage)
    if not recorded or recorded.get("key") != _key_digest(run_dir, key):
        return False
    for name in recorded.get("outputs", []):
        info = manifest.get("artifacts", {}).get(name)
        path = run_dir / name
        if info is None or not path.is_file() or sha256_file(path) != info.get("sha256"):
            return False
    return True


def _forget_stage(run_dir: Path, stage: str) -> None:
    """Before a stage reruns, drop its records and old outputs: a kill mid-stage then leaves
    no stale hash, and a file the new options no longer make does not linger."""
    manifest = forget_stage(run_dir, stage, remove_files=True)
    if stage in manifest.get("pipeline", {}):
        stages = dict(manifest["pipeline"])
        del stages[stage]
        update_manifest(run_dir, "pipeline", stages)


def _record_stage(run_dir: Path, stage: str, key: dict, seconds: float, note: str) -> None:
    manifest = _manifest(run_dir)
    outputs = [name for name, info in manifest.get("artifacts", {}).items()
               if info.get("stage") == stage]
    stages = dict(manifest.get("pipeline", {}))
    stages[stage] = {"key": _key_digest(run_dir, key), "outputs": outputs,
                     "seconds": round(seconds, 3), "note": note}
    # Later stages depend on this one's outputs; their keys change with the hashes anyway.
    update_manifest(run_dir, "pipeline", stages)


def _failures_recorded(run_dir: Path, already: list[str]) -> list[str]:
    """Failed checks of skipped stages still count: the run is not green until they pass."""
    manifest = _manifest(run_dir)
    failures = []
    for stage, entry in manifest.get("pipeline", {}).items():
        note = entry.get("note", "")
        if note.startswith("check failed") and not any(item.startswith(stage) for item in already):
            failures.append(f"{stage}: {note}")
    return failures


def config_from_sources(file_values: dict, flag_values: dict) -> PipelineConfig:
    """Defaults < config file < flags given on the command line."""
    merged = {**file_values, **{key: value for key, value in flag_values.items()
                                if value is not None}}
    return replace(PipelineConfig(), **merged)

