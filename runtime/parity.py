"""`edgeship validate`: the same test images through every artifact x backend pair, compared.

Each pair's outputs are compared with the float Keras reference, and int8 .tflite pairs also
with the int8 reference (the reference kernels) in quanta. The bound applied depends on the
kind of comparison, never one rtol for all:

- float vs float: |candidate - reference| <= atol + rtol * |reference| on every element;
- int8 vs int8: every op run alone on identical int8 inputs is bit-exact or within rounding
  (edgeship.runtime.op_parity), and the runtimes agree on the task (top-1 agreement, accuracy
  difference); end-to-end differences in quanta are reported, bound only when asked
  (Tolerances); generated code must equal the runtime it mirrors bit for bit;
- float vs int8: top-1 agreement with the reference and the accuracy drop.

This module knows backends only through `edgeship.runtime.backends`; it never imports a
runtime itself.
"""

import hashlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from edgeship.runtime.backends import (
    DEVICES,
    REGISTRY,
    backends_for,
    check_backend_name,
    default_backend_names,
    open_backend,
)

from edgeship.runtime.isolation import DEFAULT_TIMEOUT_S, call_isolated, check_timeout, is_trusted

from edgeship.artifacts import read_manifest, update_manifest, write_json_atomic, write_text_atomic
from edgeship.cpu_features import cpu_features
from edgeship.errors import UserInputError
from edgeship.model_check import check_tflite_file
from edgeship.onnx_saturation import saturating_ops
from edgeship.reports import REPORT_SCHEMA_VERSION, environment, markdown_table

REFERENCE_INT8_BACKEND = "litert-ref"
STANDARD_ARTIFACTS = ("model.keras", "model_float.tflite", "model_int8.tflite", "model.onnx",
                      "model_int8.onnx")
REFERENCE_MODEL = "model.keras"
GPU_BACKENDS = ("keras", "onnxruntime")


@dataclass(frozen=True)
class Tolerances:
    """Bounds by kind of comparison, each one overridable.

    int8 vs int8 rests on the per-op comparison (edgeship.runtime.op_parity): every op of the
    .tflite run alone on each runtime with the reference kernels' own int8 inputs must be
    bit-exact or within rounding (one quantum, unbiased), plus task-level bounds between the
    runtimes (top-1 agreement, accuracy difference). End-to-end element fractions grow with
    depth, data and softmax amplification (docs/results.md, inspect section), so they are
    reported, and bound only when a bound is set here (the strict reading: reference_min_exact
    1, max_forbidden_fraction 0).

    Attributes:
        float_atol, float_rtol: float vs float, element-wise like numpy.allclose.
        reference_min_exact: int8 vs int8 on reference kernels, end to end: fraction of
            elements equal (None: reported only).
        cross_max_quanta: int8 vs int8 across implementations: the usual difference...
        cross_min_fraction: ...which at least this fraction of elements must respect, end to
            end (None: reported only).
        forbidden_quanta: int8 vs int8, both kinds: a difference this large or larger...
        max_forbidden_fraction: ...is allowed on at most this fraction of elements, end to
            end (None: reported only).
        min_agreement: float vs int8: top-1 agreement with the float reference.
        max_drop_pp: float vs int8: top-1 accuracy drop against the reference, in
            percentage points (as `edgeship convert --max-drop`).
        cross_min_agreement: int8 vs int8: top-1 agreement between two runtimes.
        cross_max_accuracy_difference_pp: int8 vs int8: accuracy difference between two
            runtimes, in points.
        per_op_images: test images each op is compared on (0 turns the per-op check off).
    """

    float_atol: float = 1e-5
    float_rtol: float = 1e-5
    reference_min_exact: float | None = None
    cross_max_quanta: int = 1
    cross_min_fraction: float | None = None
    forbidden_quanta: int = 3
    max_forbidden_fraction: float | None = None
    min_agreement: float = 0.95
    max_drop_pp: float = 2.0
    cross_min_agreement: float = 0.95
    cross_max_accuracy_difference_pp: float = 1.0
    per_op_images: int = 32

    def __post_init__(self):
        for name in ("float_atol", "float_rtol", "max_drop_pp", "cross_max_quanta",
                     "cross_max_accuracy_difference_pp", "per_op_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.forbidden_quanta <= self.cross_max_quanta:
            raise ValueError("forbidden_quanta must exceed cross_max_quanta")
        for name in ("reference_min_exact", "cross_min_fraction", "max_forbidden_fraction",
                     "min_agreement", "cross_min_agreement"):
            if getattr(self, name) is not None and not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


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
    dataset: str | None = None
    backends: tuple[str, ...] = field(default_factory=default_backend_names)
    limit: int | None = None
    device: str = "cpu"
    tolerances: Tolerances = field(default_factory=Tolerances)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self):
        check_timeout(self.timeout_s)
        if not self.backends:
            raise ValueError("backends must name at least one backend")
        for name in self.backends:
            check_backend_name(name)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")


@dataclass(frozen=True)
class Check:
    """One bound applied to one measured value."""

    comparison: str
    kind: str
    metric: str
    value: float
    bound: float
    relation: str
    passed: bool
    cause: str = ""

    def describe(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        cause = f"; {self.cause}" if self.cause else ""
        return (f"{self.comparison}: {self.metric} = {_number(self.value)}, bound "
                f"{self.relation} {_number(self.bound)} ({verdict}){cause}")


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


# --- metrics ---------------------------------------------------------------------------------

def task_metrics(outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 accuracy, agreement with the reference and output error of one pair."""
    predictions = outputs.argmax(axis=1)
    reference_predictions = reference.argmax(axis=1)
    difference = np.abs(outputs.astype(np.float64) - reference.astype(np.float64))
    norms = np.linalg.norm(outputs, axis=1) * np.linalg.norm(reference, axis=1)
    dots = np.sum(outputs.astype(np.float64) * reference.astype(np.float64), axis=1)
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), 0.0)
    accuracy = float(np.mean(predictions == labels))
    reference_accuracy = float(np.mean(reference_predictions == labels))
    return {"accuracy": accuracy, "drop": reference_accuracy - accuracy,
            "agreement": float(np.mean(predictions == reference_predictions)),
            "max_abs_error": float(difference.max()), "mean_abs_error": float(difference.mean()),
            "cosine": float(cosine.mean()), "min_cosine": float(cosine.min())}


def quanta_histogram(candidate: np.ndarray, reference: np.ndarray) -> dict:
    """How many integer output elements differ by 0, 1, 2 and 3+ quanta, and the largest."""
    difference = np.abs(candidate.astype(np.int64) - reference.astype(np.int64)).ravel()
    offsets = np.bincount(np.minimum(difference, 3), minlength=4)
    return {"elements": int(difference.size), "exact": int(offsets[0]),
            "off_by_1": int(offsets[1]), "off_by_2": int(offsets[2]),
            "off_by_3_or_more": int(offsets[3]),
            "max": int(difference.max()) if difference.size else 0,
            "differences": {str(value): int(count) for value, count in
                            enumerate(np.bincount(difference)) if count}}


def float_checks(name: str, candidate: np.ndarray, reference: np.ndarray,
                 tolerances: Tolerances) -> list[Check]:
    """float vs float: every element within atol + rtol * |reference| (ratio <= 1)."""
    allowed = tolerances.float_atol + tolerances.float_rtol * np.abs(reference.astype(np.float64))
    ratio = float((np.abs(candidate.astype(np.float64) - reference) / allowed).max())
    return [Check(name, "float vs float", "max abs error / (atol + rtol * abs ref)", ratio, 1.0,
                  "<=", ratio <= 1.0)]


def int8_checks(name: str, histogram: dict, reference_kernels: bool,
                tolerances: Tolerances) -> list[Check]:
    """int8 vs int8 in quanta, end to end: bound only where the tolerances set a bound (the
    figures are always in the report's histogram)."""
    elements = max(histogram["elements"], 1)
    differences = {int(value): count for value, count in histogram["differences"].items()}
    forbidden = sum(count for value, count in differences.items()
                    if value >= tolerances.forbidden_quanta) / elements
    checks = []
    if reference_kernels:
        kind = "int8 vs int8 (reference kernels)"
        exact = histogram["exact"] / elements
        if tolerances.reference_min_exact is not None:
            checks.append(Check(name, kind, "fraction exact", exact,
                                tolerances.reference_min_exact, ">=",
                                exact >= tolerances.reference_min_exact))
    else:
        kind = "int8 vs int8 (across implementations)"
        within = sum(count for value, count in differences.items()
                     if value <= tolerances.cross_max_quanta) / elements
        if tolerances.cross_min_fraction is not None:
            checks.append(Check(name, kind,
                                f"fraction within {tolerances.cross_max_quanta} quantum", within,
                                tolerances.cross_min_fraction, ">=",
                                within >= tolerances.cross_min_fraction))
    if tolerances.max_forbidden_fraction is not None:
        checks.append(Check(name, kind, f"fraction {tolerances.forbidden_quanta}+ quanta off",
                            forbidden, tolerances.max_forbidden_fraction, "<=",
                            forbidden <= tolerances.max_forbidden_fraction))
    return checks


def cross_task_checks(name: str, candidate: np.ndarray, reference: np.ndarray,
                      labels: np.ndarray, tolerances: Tolerances) -> list[Check]:
    """int8 vs int8, task level: the two runtimes classify the same images the same way."""
    agreement = float(np.mean(candidate.argmax(1) == reference.argmax(1)))
    difference = abs(float(np.mean(candidate.argmax(1) == labels))
                      - float(np.mean(reference.argmax(1) == labels))) * 100
    kind = "int8 vs int8 (task)"
    return [Check(name, kind, "top-1 agreement", agreement, tolerances.cross_min_agreement, ">=",
                  agreement >= tolerances.cross_min_agreement),
            Check(name, kind, "accuracy difference (points)", difference,
                  tolerances.cross_max_accuracy_difference_pp, "<=",
                  difference <= tolerances.cross_max_accuracy_difference_pp + 1e-9)]


def per_op_checks(run_dir: Path, artifact: str, runtimes: tuple[str, ...], images: np.ndarray,
                  tolerances: Tolerances, notes: list[str]) -> tuple[list[Check], list[dict]]:
    """Every op of an int8 .tflite on each runtime, identical inputs: none may diverge."""
    from edgeship.runtime.op_parity import per_op_parity, summarize

    with open_backend(REFERENCE_INT8_BACKEND, run_dir / artifact) as backend:
        raw = backend.quantize_input(images[:tolerances.per_op_images])
    results = per_op_parity(run_dir / artifact, raw, runtimes)
    summary = summarize(results)
    checks = []
    for runtime in runtimes:
        entry = summary.get(runtime)
        if entry is None:
            continue
        if entry["not covered"]:
            uncovered = [f"op {r.index} {r.op} ({r.cause})" for r in results
                         if r.runtime == runtime and r.verdict == "not covered"]
            notes.append(f"{artifact} on {runtime}: per-op comparison does not cover "
                         + "; ".join(uncovered))
        checks.append(Check(f"{artifact} on {runtime} vs {REFERENCE_INT8_BACKEND}, op by op",
                            "int8 per op (identical inputs)", "divergent ops",
                            entry["divergent"], 0, "<=", entry["divergent"] == 0,
                            cause="; ".join(entry["divergent_ops"])))
    return checks, {"images": int(len(raw)), "ops": [result.to_dict() for result in results],
                    "checks": checks}


def task_checks(name: str, metrics: dict, tolerances: Tolerances,
                fine_tuned: bool = False) -> list[Check]:
    """float vs int8: the task is what must survive quantization, not each output value.

    A fine-tuned int8 model (QAT, pruning) has other weights than the float reference, so
    its agreement says nothing about quantization fidelity; only its accuracy drop is bound.
    """
    kind = "float vs int8 (fine-tuned)" if fine_tuned else "float vs int8"
    agreement = [] if fine_tuned else [
        Check(name, kind, "top-1 agreement", metrics["agreement"], tolerances.min_agreement,
              ">=", metrics["agreement"] >= tolerances.min_agreement)]
    return agreement + [
            Check(name, kind, "accuracy drop (points)", metrics["drop"] * 100,
                  tolerances.max_drop_pp, "<=", metrics["drop"] * 100 <= tolerances.max_drop_pp + 1e-9)]


def explain_onnx_saturation(path: Path, checks: list[Check], features: dict,
                            notes: list[str]) -> list[Check]:
    """Name the ops of an int8 ONNX whose 16-bit pair sums can saturate in ONNX Runtime.

    A note lists them whenever there are any (the file's outputs then depend on the CPU);
    the failed checks of the pair get the cause: those ops on this CPU's saturating kernels,
    or, on a CPU with VNNI, that saturation is ruled out here.

    Args:
        path: the int8 .onnx file.
        checks: the pair's checks against the float reference.
        features: edgeship.cpu_features.cpu_features() of the machine that ran ORT.
        notes: validate's notes, appended to.

    Returns:
        The checks, the failed ones with their cause.
    """
    risky = saturating_ops(path)
    if not risky:
        return checks
    ops = ", ".join(f"{bound.node} ({bound.op_type})" for bound in risky)
    saturating_here = features.get("int8_pair_sums") == "saturating-int16"
    where = ("this CPU has no VNNI, so ONNX Runtime's AVX2 kernels clip them here" if saturating_here
             else f"this CPU's int8 path is {features.get('int8_pair_sums')}, so not here")
    notes.append(f"{path.name}: {len(risky)} op(s) can saturate ONNX Runtime's 16-bit pair sums "
                 f"on x86-64 without VNNI ({where}): " + "; ".join(bound.describe() for bound in risky))
    if saturating_here:
        cause = (f"cause: 16-bit pair-sum saturation in {ops} (x86-64 without VNNI, "
                 "vpmaddubsw); re-quantize with 7-bit weights (reduce_range)")
    else:
        cause = (f"not pair-sum saturation: {ops} could saturate only without VNNI, and this "
                 "CPU has it")
    return [check if check.passed else replace(check, cause=cause) for check in checks]


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
    run_dir = Path(config.run_dir)
    manifest = read_manifest(run_dir)
    images, labels, dataset_entry = load_test_split(manifest, config.dataset, config.limit)
    notes: list[str] = []
    reference_key = (reference_model(run_dir, manifest), "keras")
    pairs = _plan_pairs(run_dir, manifest, config.backends, notes)
    pairs.sort(key=lambda pair: pair != reference_key)
    if not pairs:
        raise UserInputError(f"{run_dir} has no artifact that the backends "
                             f"{', '.join(config.backends)} open")
    if config.device == "gpu" and not any(backend in GPU_BACKENDS for _, backend in pairs):
        raise UserInputError(f"--device gpu applies to {', '.join(GPU_BACKENDS)}; none of them "
                             "is among the backends run")

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
    fine_tuned = fine_tuned_artifacts(manifest)
    for artifact in sorted(fine_tuned & {result.artifact for result in results}):
        notes.append(f"{artifact} comes from a fine-tuned (QAT or pruned) model, not from the "
                     "reference's weights: checked by accuracy drop only (its agreement with "
                     "the reference is reported, not bounded)")

    tolerances = config.tolerances
    checks: list[Check] = []
    pair_rows = []
    for result in results:
        metrics = task_metrics(result.outputs, reference.outputs, labels)
        entry = {"artifact": result.artifact, "backend": result.backend,
                 "precision": result.precision, "output": result.output_info,
                 "details": result.details, **metrics}
        name = f"{result.artifact} on {result.backend} vs {reference.artifact} on {reference.backend}"
        if result is not reference:
            entry["checks"] = (
                float_checks(name, result.outputs, reference.outputs, tolerances)
                if result.precision == "float"
                else task_checks(name, metrics, tolerances,
                                 fine_tuned=result.artifact in fine_tuned))
            if result.backend == "onnxruntime" and result.precision == "int8":
                entry["checks"] = explain_onnx_saturation(run_dir / result.artifact,
                                                          entry["checks"], cpu_features(), notes)
            checks.extend(entry["checks"])
        pair_rows.append(entry)

    integer_comparisons = _integer_comparisons(results, tolerances, notes, labels)
    for comparison in integer_comparisons:
        checks.extend(comparison["checks"])
    per_op = {}
    for artifact in dict.fromkeys(result.artifact for result in results):
        runtimes = tuple(result.backend for result in results if result.artifact == artifact
                         and result.precision == "int8" and Path(artifact).suffix == ".tflite"
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
        "integer_comparisons": [_plain(row) for row in integer_comparisons],
        "per_op": {artifact: _plain(entry) for artifact, entry in per_op.items()},
        "notes": notes,
        "passed": all(check.passed for check in checks),
        "failures": [check.describe() for check in checks if not check.passed],
        "environment": environment(),
    }
    json_path = write_json_atomic(run_dir / "parity.json", payload)
    markdown_path = write_text_atomic(run_dir / "parity.md", render_markdown(payload))
    update_manifest(run_dir, "validate", {
        "passed": payload["passed"], "failures": payload["failures"],
        "reference": payload["reference"], "dataset": dataset_entry,
        "pairs": [f"{row['artifact']} on {row['backend']}" for row in pair_rows],
        "versions": payload["environment"]["versions"],
    }, artifacts={"parity.json": json_path, "parity.md": markdown_path})
    return ParityReport(payload=payload, checks=tuple(checks), json_path=json_path,
                        markdown_path=markdown_path)


def load_test_split(manifest: dict, dataset_name: str | None, limit: int | None):
    """The run's test images (or another dataset's, shaped the same) and labels."""
    from edgeship.train.datasets import DatasetSpec, load_dataset

    try:
        spec_payload = dict(manifest["train"]["dataset"]["spec"])
        input_shape = tuple(manifest["train"]["dataset"]["input_shape"])
    except (KeyError, TypeError) as error:
        raise UserInputError("manifest.json has no train.dataset.spec: was this run made by "
                             "`edgeship train`?") from error
    if dataset_name:
        spec_payload["name"] = dataset_name
        spec_payload["image_size"] = list(input_shape[:2])
        spec_payload["channels"] = int(input_shape[2])
    dataset = load_dataset(DatasetSpec.from_dict(spec_payload))
    if tuple(dataset.input_shape) != input_shape:
        raise UserInputError(f"dataset {dataset.spec.name} gives {dataset.input_shape} images; "
                             f"the model takes {input_shape}")
    images, labels = dataset.x_test, dataset.y_test
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    images = np.ascontiguousarray(images, dtype=np.float32)
    entry = {"spec": dataset.spec.to_dict(), "split": "test", "images": len(images),
             "sha256": hashlib.sha256(images.tobytes()).hexdigest()}
    return images, labels, entry


def reference_model(run_dir: Path, manifest: dict) -> str:
    """The float Keras model convert measured against (a Keras 3 model's tf_keras rebuild)."""
    recorded = (manifest.get("convert") or {}).get("reference")
    if (isinstance(recorded, str) and Path(recorded).suffix in (".keras", ".h5")
            and (run_dir / recorded).is_file()):
        return recorded
    return REFERENCE_MODEL


def fine_tuned_artifacts(manifest: dict) -> set[str]:
    """Artifacts convert made from a QAT-tuned or pruned copy of the model."""
    convert = manifest.get("convert") or {}
    if "fine_tuned_files" in convert:
        return set(convert["fine_tuned_files"])
    options = convert.get("options") or {}  # a run converted before the list was recorded
    fine_tuned = bool(options.get("qat_epochs")) or options.get("prune_sparsity") is not None or (
        bool(options.get("prune_structure")))
    if not fine_tuned:
        return set()
    int8_file = (convert.get("files") or {}).get("int8_tflite")
    return {int8_file} if int8_file else set()


def rejected_artifacts(manifest: dict) -> set[str]:
    """Files convert kept beside the delivered model after they scored worse (not shipped)."""
    return set((manifest.get("convert") or {}).get("rejected_files") or [])


def _plan_pairs(run_dir: Path, manifest: dict, backends: tuple[str, ...], notes: list[str]):
    """(artifact, backend) pairs to run, reference first; notes say what was skipped."""
    artifacts = [name for name in STANDARD_ARTIFACTS if (run_dir / name).is_file()]
    for name in STANDARD_ARTIFACTS:
        if not (run_dir / name).is_file():
            notes.append(f"{name} is not in the run directory: skipped")
    rejected = rejected_artifacts(manifest)
    for name in sorted(rejected):
        notes.append(f"{name} scored worse than the file convert delivered and is not shipped: "
                     "skipped")
    for entry in manifest.get("artifacts", {}).values():
        path = entry.get("path", "") if isinstance(entry, dict) else ""
        if (path not in artifacts and path not in rejected
                and Path(path).suffix in (".keras", ".tflite", ".onnx") and "/" not in path and (run_dir / path).is_file()):
            artifacts.append(path)
    pairs = []
    for artifact in artifacts:
        for backend in backends_for(artifact, backends):
            if REGISTRY[backend].int8_only and "int8" not in artifact:
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


def _run_pair(run_dir: Path, artifact: str, backend_name: str, images: np.ndarray,
              device: str) -> _PairResult:
    pair_device = device if backend_name in GPU_BACKENDS else "cpu"
    with open_backend(backend_name, run_dir / artifact, device=pair_device) as backend:
        raw_inputs = backend.quantize_input(images)
        raw_outputs = np.asarray(backend.infer_raw(raw_inputs))
        outputs = backend.dequantize_output(raw_outputs)
        (input_info,), (output_info,) = backend.inputs(), backend.outputs()
        details = {**backend.details(), "device": pair_device}
    quantized = input_info.quantized or output_info.quantized or "int8" in Path(artifact).stem
    if outputs.ndim != 2:
        raise UserInputError(f"{artifact} on {backend_name} returns outputs of shape "
                             f"{outputs.shape}; validate compares classifiers (N, classes)")
    return _PairResult(artifact=artifact, backend=backend_name,
                       precision="int8" if quantized else "float", outputs=outputs,
                       raw_outputs=raw_outputs, output_info=output_info.to_dict(),
                       details=details)


def _integer_comparisons(results: list[_PairResult], tolerances: Tolerances,
                         notes: list[str], labels: np.ndarray) -> list[dict]:
    """Each int8 artifact's backends against the int8 reference of the same artifact."""
    comparisons = []
    for artifact in dict.fromkeys(result.artifact for result in results):
        integer = [result for result in results if result.artifact == artifact
                   and np.issubdtype(result.raw_outputs.dtype, np.integer)]
        if len(integer) < 2:
            continue
        reference = next((result for result in integer
                          if REGISTRY[result.backend].reference_kernels), integer[0])
        for result in integer:
            if result is reference:
                continue
            if result.output_info["scale"] != reference.output_info["scale"] or (
                    result.output_info["zero_point"] != reference.output_info["zero_point"]):
                notes.append(f"{artifact}: {result.backend} and {reference.backend} report "
                             "different output quantization; compared by task metrics only")
                continue
            both_reference = (REGISTRY[result.backend].reference_kernels
                              and REGISTRY[reference.backend].reference_kernels)
            name = f"{artifact} on {result.backend} vs {artifact} on {reference.backend}"
            histogram = quanta_histogram(result.raw_outputs, reference.raw_outputs)
            comparisons.append({
                "artifact": artifact, "backend": result.backend,
                "reference_backend": reference.backend, "histogram": histogram,
                "checks": int8_checks(name, histogram, both_reference, tolerances)
                + cross_task_checks(name, result.outputs, reference.outputs, labels, tolerances)})
        comparisons.extend(_exact_target_comparisons(artifact, integer))
    return comparisons


def _exact_target_comparisons(artifact: str, integer: list) -> list[dict]:
    """Generated code promises bit-exactness with the runtime it mirrors (c: TFLite Micro)."""
    comparisons = []
    for result in integer:
        target = REGISTRY[result.backend].exact_with
        partner = next((other for other in integer if other.backend == target), None)
        if partner is None:
            continue
        histogram = quanta_histogram(result.raw_outputs, partner.raw_outputs)
        exact = histogram["exact"] / max(histogram["elements"], 1)
        name = f"{artifact} on {result.backend} vs {artifact} on {partner.backend}"
        comparisons.append({
            "artifact": artifact, "backend": result.backend, "reference_backend": partner.backend,
            "histogram": histogram,
            "checks": [Check(name, "int8 vs int8 (bit-exact target)", "fraction exact", exact,
                             1.0, ">=", exact >= 1.0)]})
    return comparisons


# --- reports ---------------------------------------------------------------------------------

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
             f"{row['mean_abs_error']:.3g}", f"{row['cosine']:.6f}"] for row in payload["pairs"]]
    lines.append(markdown_table(["artifact", "backend", "precision", "top-1", "drop",
                                 "agreement", "max abs err", "mean abs err", "cosine"], rows))
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
                         _number(check["value"]), f"{check['relation']} {_number(check['bound'])}",
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


def _plain(row: dict) -> dict:
    return {key: ([asdict(check) for check in value] if key == "checks" else value)
            for key, value in row.items()}


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"

