"""`edgeship validate`: the same test images through every artifact x backend pair, compared.

Each pair's outputs are compared with the float Keras reference, and int8 .tflite pairs also
with the int8 reference (the reference kernels) in quanta; the bound applied depends on the
kind of comparison, never one rtol for all (edgeship.runtime.parity_checks). A fine-tuned (QAT
or pruned) int8 file, and any rewrite of it, is bound against the float model it was quantized
from (model_finetuned_float.tflite), not against the weights from before the fine-tune; parity.md
names each pair's reference and bounds. Writes
parity.json, parity.md (edgeship.runtime.parity_report) and predictions.npz, every pair's top-1
per test image, from which report.html draws its confusion matrix and changed predictions.

This module knows backends only through `edgeship.runtime.backends`; it never imports a
runtime itself.
"""

import hashlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeship.artifacts import write_json_atomic, write_text_atomic, write_with
from edgeship.cpu_features import cpu_features
from edgeship.errors import UserInputError
from edgeship.model_check import check_tflite_file
from edgeship.options import comma_list, option
from edgeship.records import ConvertRecord, ValidatedDataset, ValidatedReference, ValidateRecord
from edgeship.reports import REPORT_SCHEMA_VERSION, environment
from edgeship.run_dir import (
    MODEL_ARTIFACTS,
    PREDICTIONS_NAME,
    ArtifactKind,
    RunDir,
    is_quantized,
    precision_of,
)
from edgeship.runtime.backends import (
    DEVICES,
    REGISTRY,
    backends_for,
    check_backend_name,
    default_backend_names,
    gpu_backend_names,
    open_backend,
)
from edgeship.runtime.isolation import (
    DEFAULT_TIMEOUT_S,
    TIMEOUT_HELP,
    call_isolated,
    check_timeout,
    is_trusted,
)
from edgeship.runtime.parity_checks import (
    REFERENCE_INT8_BACKEND,
    Check,
    Tolerances,
    explain_onnx_saturation,
    float_checks,
    format_number,
    integer_comparisons,
    per_op_checks,
    task_checks,
    task_metrics,
)
from edgeship.runtime.parity_report import render_markdown

# Test images predictions.npz keeps per pair among those whose top-1 differs from the reference
# (report.html's changed-prediction grid shows them).
CHANGED_IMAGES_KEPT = 24


@dataclass(frozen=True)
class ValidateConfig:
    """What `edgeship validate` runs.

    Attributes:
        run_dir: a run directory made by train + convert.
        dataset: dataset name replacing the manifest's (same image size and channels);
            None uses the run's own test split.
        backends: backend names to run; the default is every default-registered one.
        limit: use only the first N test images (None: all).
        device: "cpu" or "gpu" for the backends that have a GPU path (keras, onnxruntime).
        tolerances: bounds by kind of comparison.
        timeout_s: time limit of each artifact x backend pair run in a child process (the
            artifacts whose hash the run's manifest does not record; see
            edgeship.runtime.isolation).
    """

    run_dir: str
    dataset: str | None = option(None, help="another dataset shaped like the run's (default: "
                                 "the run's test split)")
    backends: tuple[str, ...] = option(
        factory=default_backend_names, parse=comma_list, metavar="LIST", aliases=("backend",),
        help="comma-separated backends (default: keras,litert,litert-ref,tflm,onnxruntime)")
    limit: int | None = option(None, metavar="N", help="use the first N test images")
    device: str = option("cpu", choices=DEVICES, help="device of keras and onnxruntime; gpu "
                         "without a GPU exits 2")
    tolerances: Tolerances = field(default_factory=Tolerances)
    timeout_s: float = option(DEFAULT_TIMEOUT_S, flag="timeout", metavar="SECONDS",
                              help=TIMEOUT_HELP)

    def __post_init__(self):
        check_timeout(self.timeout_s)
        if not self.backends:
            raise UserInputError("backends must name at least one backend")
        for name in self.backends:
            check_backend_name(name)
        if self.limit is not None and self.limit < 1:
            raise UserInputError(f"limit must be >= 1, got {self.limit}")
        if self.device not in DEVICES:
            raise UserInputError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")


@dataclass(frozen=True)
class ParityReport:
    """What validate measured; `passed` is False when any check failed."""

    payload: dict
    checks: tuple[Check, ...]
    json_path: Path
    markdown_path: Path

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed)


@dataclass
class _PairResult:
    artifact: str
    backend: str
    precision: str
    outputs: np.ndarray
    raw_outputs: np.ndarray
    output_info: dict
    details: dict


# --- the run ---------------------------------------------------------------------------------

def validate_run(config: ValidateConfig) -> ParityReport:
    """Run every artifact x backend pair on the test split and write parity.json/.md.

    Args:
        config: the run directory, backends, image limit, device and tolerances.

    Returns:
        The ParityReport; `report.passed` is the verdict (the CLI exits 1 when False).

    Raises:
        UserInputError: not a run directory, no artifacts, a backend that cannot open.
    """
    run = RunDir(config.run_dir)
    run_dir = run.path
    run.manifest()  # a directory without one: one bad-input line saying so
    convert = run.read(ConvertRecord)
    images, labels, dataset_entry = load_test_split(run, config.dataset, config.limit)
    notes: list[str] = []
    reference_key = (run.reference_model(), "keras")
    pairs = _plan_pairs(run, convert, config.backends, notes)
    pairs.sort(key=lambda pair: pair != reference_key)
    if not pairs:
        raise UserInputError(f"{run_dir} has no artifact that the backends "
                             f"{', '.join(config.backends)} open")
    if config.device == "gpu" and not any("gpu" in REGISTRY[backend].devices
                                          for _, backend in pairs):
        raise UserInputError(f"--device gpu applies to {', '.join(gpu_backend_names())}; none "
                             "of them is among the backends run")

    results = [_run_pair_guarded(run_dir, artifact, backend, images, config.device,
                                 config.timeout_s)
               for artifact, backend in pairs]
    by_key = {(result.artifact, result.backend): result for result in results}
    reference = by_key.get(reference_key)
    if reference is None:
        reference = next((result for result in results if result.precision == "float"), None)
        if reference is None:
            raise UserInputError(f"validate needs a float reference: {reference_key[0]} with the "
                                 "keras backend, or a float artifact")
        notes.append(f"{reference_key[0]} on keras was not run; the float reference is "
                     f"{reference.artifact} on {reference.backend}")
    fine_tuned = fine_tuned_artifacts(convert)
    tuned_reference = fine_tuned_reference(results)
    for artifact in sorted(fine_tuned & {result.artifact for result in results}):
        if tuned_reference is not None:
            notes.append(f"{artifact} comes from a fine-tuned (QAT or pruned) model: bound "
                         f"against {_pair_name(tuned_reference)}, the float model it was "
                         "quantized from (top-1 agreement, accuracy drop), and by its total "
                         f"accuracy drop against {_pair_name(reference)} (its agreement with "
                         f"{reference.artifact} is reported, not bounded)")
        else:
            notes.append(f"{artifact} comes from a fine-tuned (QAT or pruned) model, not from "
                         f"the reference's weights, and {FINE_TUNED_FLOAT} was not run: checked "
                         "by accuracy drop only (its agreement with the reference is reported, "
                         "not bounded)")
    if tuned_reference is not None:
        notes.append(f"{FINE_TUNED_FLOAT}: the fine-tuned weights in float, the reference of the "
                     f"fine-tuned int8 files; its drop against {reference.artifact} is what "
                     "fine-tuning changed (reported, not bounded: convert --max-drop gates the "
                     "total)")

    tolerances = config.tolerances
    checks: list[Check] = []
    pair_rows = []
    for result in results:
        metrics = task_metrics(result.outputs, reference.outputs, labels)
        entry = {"artifact": result.artifact, "backend": result.backend,
                 "precision": result.precision, "output": result.output_info,
                 "details": result.details, **metrics}
        name = f"{result.artifact} on {result.backend} vs {_pair_name(reference)}"
        if result is reference or result is tuned_reference:
            entry["reference"] = None
        elif result.artifact == FINE_TUNED_FLOAT:  # the same file on another backend
            entry["reference"] = _pair_name(tuned_reference)
            entry["checks"] = float_checks(
                f"{result.artifact} on {result.backend} vs {_pair_name(tuned_reference)}",
                result.outputs, tuned_reference.outputs, tolerances)
        elif result.precision == "float":
            entry["reference"] = _pair_name(reference)
            entry["checks"] = float_checks(name, result.outputs, reference.outputs, tolerances)
        elif result.artifact in fine_tuned and tuned_reference is not None:
            tuned_metrics = task_metrics(result.outputs, tuned_reference.outputs, labels)
            entry["reference"] = _pair_name(tuned_reference)
            entry["reference_metrics"] = {"reference": _pair_name(tuned_reference),
                                          **tuned_metrics}
            entry["checks"] = (
                task_checks(f"{result.artifact} on {result.backend} vs "
                            f"{_pair_name(tuned_reference)}", tuned_metrics, tolerances)
                + task_checks(name, metrics, tolerances, fine_tuned=True))
        else:
            entry["reference"] = _pair_name(reference)
            entry["checks"] = task_checks(name, metrics, tolerances,
                                          fine_tuned=result.artifact in fine_tuned)
        if "checks" in entry:
            if REGISTRY[result.backend].pair_sum_saturation and result.precision == "int8":
                entry["checks"] = explain_onnx_saturation(run_dir / result.artifact,
                                                          entry["checks"], cpu_features(), notes)
            checks.extend(entry["checks"])
        pair_rows.append(entry)

    integers = integer_comparisons(results, tolerances, notes, labels)
    for comparison in integers:
        checks.extend(comparison["checks"])
    for (artifact, backend), check in rewrite_checks(results, convert, notes):
        row = next(row for row in pair_rows
                   if (row["artifact"], row["backend"]) == (artifact, backend))
        row["checks"] = [*row.get("checks", []), check]
        checks.append(check)
    roles = {_pair_name(reference): "the float reference"}
    if tuned_reference is not None:
        roles[_pair_name(tuned_reference)] = ("the fine-tuned files' float reference (its drop "
                                              "is fine-tuning's: reported, not bounded)")
    for row in pair_rows:
        row["bounds"] = roles.get(f"{row['artifact']} on {row['backend']}") or describe_bounds(
            row.get("checks", []))
    per_op = {}
    for artifact in dict.fromkeys(result.artifact for result in results):
        if ArtifactKind.of(artifact) is ArtifactKind.XNNPACK_INT8_TFLITE:
            continue  # its ops are model_int8.tflite's, compared op by op there
        runtimes = tuple(result.backend for result in results if result.artifact == artifact
                         and is_quantized(result.precision) and Path(artifact).suffix == ".tflite"
                         and result.backend != REFERENCE_INT8_BACKEND)
        if runtimes and tolerances.per_op_images:
            op_checks, per_op[artifact] = per_op_checks(run_dir, artifact, runtimes, images,
                                                        tolerances, notes)
            checks.extend(op_checks)

    payload = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "run_dir": str(run_dir),
        "dataset": dataset_entry,
        "reference": {"artifact": reference.artifact, "backend": reference.backend,
                      "accuracy": float(np.mean(reference.outputs.argmax(1) == labels))},
        "device": config.device,
        "cpu": cpu_features(),
        "backends": list(config.backends),
        "tolerances": asdict(tolerances),
        "pairs": [_plain(row) for row in pair_rows],
        "integer_comparisons": [_plain(row) for row in integers],
        "per_op": {artifact: _plain(entry) for artifact, entry in per_op.items()},
        "notes": notes,
        "passed": all(check.passed for check in checks),
        "failures": [check.describe() for check in checks if not check.passed],
        "environment": environment(),
    }
    json_path = write_json_atomic(run_dir / "parity.json", payload)
    markdown_path = write_text_atomic(run_dir / "parity.md", render_markdown(payload))
    predictions_path = write_predictions(run_dir / PREDICTIONS_NAME, results, reference, labels,
                                         images, run.class_names())
    run.write(ValidateRecord(
        passed=payload["passed"], failures=tuple(payload["failures"]),
        reference=ValidatedReference(**payload["reference"]),
        dataset=ValidatedDataset.from_dict(dataset_entry),
        pairs=tuple(f"{row['artifact']} on {row['backend']}" for row in pair_rows),
        versions=payload["environment"]["versions"],
    ), artifacts={"parity.json": json_path, "parity.md": markdown_path,
                  PREDICTIONS_NAME: predictions_path})
    return ParityReport(payload=payload, checks=tuple(checks), json_path=json_path,
                        markdown_path=markdown_path)


def load_test_split(run: RunDir, dataset_name: str | None, limit: int | None):
    """The run's test images (or another dataset's, shaped the same), labels and their record.

    The images are one float32 array when the dataset fits in memory; when the run streamed
    its dataset they are `ImageRows` (edgeship.train.stage_data) over the test split decoded
    once into RUN/dataset_cache, which every pair reads batch by batch.
    """
    from edgeship.train.stage_data import ImageRows, close_dataset, open_run_dataset

    spec = run.dataset_spec()
    input_shape = run.input_shape()
    if dataset_name:
        spec = replace(spec, name=dataset_name, image_size=tuple(input_shape[:2]),
                       channels=int(input_shape[2]))
    dataset = open_run_dataset(run.path, spec)
    close_dataset(dataset)  # the test rows read from their cache file, not through the pool
    if tuple(dataset.input_shape) != input_shape:
        raise UserInputError(f"dataset {dataset.spec.name} gives {dataset.input_shape} images; "
                             f"the model takes {input_shape}")
    images, labels = dataset.x_test, dataset.y_test
    if limit is not None:
        labels = labels[:limit]
        images = images.head(limit) if isinstance(images, ImageRows) else images[:limit]
    if isinstance(images, ImageRows):
        digest = images.sha256()
    else:
        images = np.ascontiguousarray(images, dtype=np.float32)
        digest = hashlib.sha256(images.tobytes()).hexdigest()
    entry = {"spec": dataset.spec.to_dict(), "split": "test", "images": len(images),
             "sha256": digest}
    return images, labels, entry


FINE_TUNED_FLOAT = ArtifactKind.FINETUNED_FLOAT_TFLITE.file_name


def fine_tuned_artifacts(convert: ConvertRecord | None) -> set[str]:
    """Artifacts convert made from a QAT-tuned or pruned copy of the model, and rewrites of
    them (the XNNPACK file of a fine-tuned model_int8.tflite is bound as its source is)."""
    if convert is None:
        return set()
    files = convert.files
    if convert.fine_tuned_files is not None:
        found = set(convert.fine_tuned_files)
    else:
        options = convert.options  # a run converted before the list was recorded
        fine_tuned = (bool(options.get("qat_epochs")) or options.get("prune_sparsity") is not None
                      or bool(options.get("prune_structure")))
        int8_file = files.get("int8_tflite")
        found = {int8_file} if fine_tuned and int8_file else set()
    rewritten = files.get(ArtifactKind.XNNPACK_INT8_TFLITE.name.lower())
    if ArtifactKind.INT8_TFLITE.file_name in found and rewritten:
        found.add(rewritten)  # recorded before rewrites were listed with their source
    return found


def fine_tuned_reference(results: list[_PairResult]) -> "_PairResult | None":
    """model_finetuned_float.tflite on litert (else the first backend that ran it), or None."""
    runs = [result for result in results if result.artifact == FINE_TUNED_FLOAT]
    return next((result for result in runs if result.backend == "litert"),
                runs[0] if runs else None)


def describe_bounds(checks: list[Check]) -> str:
    """parity.md's bounds cell: each bound with the pair it is measured against."""
    if not checks:
        return "reported, not bounded"
    return "; ".join(f"{check.metric} {check.relation} {format_number(check.bound)}"
                     + (f" vs {check.comparison.split(' vs ', 1)[1]}"
                        if " vs " in check.comparison else "")
                     for check in checks)


def _pair_name(result: _PairResult) -> str:
    return f"{result.artifact} on {result.backend}"


def rejected_artifacts(convert: ConvertRecord | None) -> set[str]:
    """Files convert kept beside the delivered model after they scored worse (not shipped)."""
    return set(convert.rejected_files) if convert else set()


def _plan_pairs(run: RunDir, convert: ConvertRecord | None, backends: tuple[str, ...],
                notes: list[str]):
    """(artifact, backend) pairs to run, reference first; notes say what was skipped."""
    run_dir = run.path
    rejected = rejected_artifacts(convert)
    artifacts = [kind.file_name for kind in run.existing() if kind.file_name not in rejected]
    for kind in MODEL_ARTIFACTS:
        if (not run.has(kind) and not kind.kept_aside and not kind.reference_only
                and kind.precision not in ("int16", "mixed")):
            notes.append(f"{kind.file_name} is not in the run directory: skipped")
    for name in sorted(rejected):
        notes.append(f"{name} scored worse than the file convert delivered and is not shipped: "
                     "skipped")
    for path in run.recorded_paths():
        if (path not in artifacts and path not in rejected
                and Path(path).suffix in (".keras", ".tflite", ".onnx") and "/" not in path and (run_dir / path).is_file()):
            artifacts.append(path)
    pairs = []
    for artifact in artifacts:
        runtimes = (ArtifactKind.of(artifact).runtimes if ArtifactKind.of(artifact) else None)
        for backend in backends_for(artifact, backends):
            if runtimes is not None and backend not in runtimes:
                notes.append(f"{artifact} on {backend}: the file is made for "
                             f"{', '.join(runtimes)} only: skipped")
                continue
            if REGISTRY[backend].int8_only and not is_quantized(_precision(run_dir / artifact)):
                notes.append(f"{artifact} on {backend}: {backend} runs full-integer models only: "
                             "skipped")
                continue
            pairs.append((artifact, backend))
    for backend in backends:
        if not any(pair_backend == backend for _, pair_backend in pairs):
            notes.append(f"backend {backend}: no artifact it opens ("
                         f"{', '.join(REGISTRY[backend].suffixes)}): skipped")
    return pairs


def _run_pair_guarded(run_dir: Path, artifact: str, backend_name: str, images: np.ndarray,
                      device: str, timeout_s: float) -> _PairResult:
    """_run_pair in this process for the run's own artifacts; in a child process with a time
    limit for any file the manifest does not vouch for (replaced or copied in)."""
    path = run_dir / artifact
    if is_trusted(path):
        return _run_pair(run_dir, artifact, backend_name, images, device)
    if path.suffix.lower() == ".tflite":
        check_tflite_file(path)  # pure Python: refuse a malformed file before any child starts
    return call_isolated(_run_pair, (run_dir, artifact, backend_name, images, device),
                         timeout_s, f"{artifact} on {backend_name}")


def _run_pair(run_dir: Path, artifact: str, backend_name: str, images, device: str) -> _PairResult:
    """One artifact on one backend over the test images: an array at once, ImageRows (a
    streamed split) batch by batch (the keras backend's 256-image chunks either way)."""
    from edgeship.train.stage_data import batches_of

    pair_device = device if device in REGISTRY[backend_name].devices else "cpu"
    with open_backend(backend_name, run_dir / artifact, device=pair_device) as backend:
        raw_outputs = np.concatenate([np.asarray(backend.infer_raw(backend.quantize_input(batch)))
                                      for batch in batches_of(images)])
        outputs = backend.dequantize_output(raw_outputs)
        (input_info,), (output_info,) = backend.inputs(), backend.outputs()
        details = {**backend.details(), "device": pair_device}
    quantized = (input_info.quantized or output_info.quantized
                 or is_quantized(precision_of(artifact)))
    if outputs.ndim != 2:
        raise UserInputError(f"{artifact} on {backend_name} returns outputs of shape "
                             f"{outputs.shape}; validate compares classifiers (N, classes)")
    return _PairResult(artifact=artifact, backend=backend_name,
                       precision=_quantized_precision(artifact) if quantized else "float",
                       outputs=outputs,
                       raw_outputs=raw_outputs, output_info=output_info.to_dict(),
                       details=details)


def _plain(row: dict) -> dict:
    return {key: ([asdict(check) for check in value] if key == "checks" else value)
            for key, value in row.items()}


def _quantized_precision(artifact: str) -> str:
    """"int8", "int16" or "mixed" from the artifact's kind; "int8" for another quantized file."""
    known = precision_of(artifact)
    return known if is_quantized(known) else "int8"


def _precision(path: Path) -> str:
    """An artifact's precision: its kind's, or for another file what its tensors say."""
    known = precision_of(path)
    if known is not None or path.suffix.lower() != ".tflite":
        return known or "float"
    from edgeship.tflite_graph import read_model, tensor_dtype

    tensors = read_model(path.read_bytes()).subgraphs[0].tensors
    return ("int8" if any(tensor_dtype(tensor) in ("int8", "uint8", "int16") for tensor in tensors)
            else "float")


def rewrite_checks(results: list[_PairResult], convert: ConvertRecord | None, notes: list[str]
                   ) -> list[tuple[tuple[str, str], Check]]:
    """model_int8_xnnpack.tflite against model_int8.tflite on the same backend.

    Where convert recorded only exact rewrites (convert/xnnpack.py), every raw output must be
    identical; otherwise the differing outputs are reported and the task bounds apply.
    """
    exact = bool(convert and convert.xnnpack and convert.xnnpack.exact)
    rewritten, source = ArtifactKind.XNNPACK_INT8_TFLITE.file_name, ArtifactKind.INT8_TFLITE.file_name
    by_key = {(result.artifact, result.backend): result for result in results}
    checks = []
    for (artifact, backend), result in by_key.items():
        base = by_key.get((source, backend))
        if artifact != rewritten or base is None:
            continue
        differing = int(np.count_nonzero(result.raw_outputs != base.raw_outputs))
        comparison = f"{rewritten} vs {source} on {backend}"
        if exact:
            checks.append(((artifact, backend), Check(
                comparison, "int8 rewrite vs its source", "raw outputs that differ", differing, 0,
                "<=", differing == 0, "" if differing == 0 else "an exact rewrite changed results")))
        else:
            notes.append(f"{comparison}: {differing} of {result.raw_outputs.size} raw outputs "
                         "differ (--xnnpack rounding: half-way average-pool means)")
    return checks


def write_predictions(path: Path, results: list[_PairResult], reference: _PairResult,
                      labels: np.ndarray, images: np.ndarray, class_names: list[str]) -> Path:
    """predictions.npz: every pair's top-1 per test image, the labels, and the images whose
    top-1 differs from the reference's (up to CHANGED_IMAGES_KEPT per pair), so the report
    draws confusion matrices and changed predictions without running a model.

    Arrays: labels (N,), artifacts and backends (P,), top1 (P, N), reference (index of the
    reference pair), class_names, changed_indices (M,) and changed_images (M, H, W, C) float16.
    """
    top1 = np.stack([result.outputs.argmax(axis=1) for result in results]).astype(np.int32)
    reference_top1 = reference.outputs.argmax(axis=1)
    kept: dict[int, None] = {}
    for row in top1:
        kept.update(dict.fromkeys(np.flatnonzero(row != reference_top1)[:CHANGED_IMAGES_KEPT]
                                  .tolist()))
    changed = np.array(sorted(kept), dtype=np.int64)
    arrays = {
        "labels": np.asarray(labels, dtype=np.int64), "top1": top1,
        "artifacts": np.array([result.artifact for result in results]),
        "backends": np.array([result.backend for result in results]),
        "reference": np.array(results.index(reference)),
        "class_names": np.array([str(name) for name in class_names]),
        "changed_indices": changed, "changed_images": images[changed].astype(np.float16),
    }
    return write_with(path, lambda temp: np.savez_compressed(temp, **arrays))
