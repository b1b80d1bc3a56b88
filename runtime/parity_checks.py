"""validate's comparisons: metrics and the bound applied to each, typed by kind of comparison.

- float vs float: |candidate - reference| <= atol + rtol * |reference| on every element;
- int8 vs int8: every op run alone on identical int8 inputs is bit-exact or within rounding
  (edgeship.runtime.op_parity), and the runtimes agree on the task (top-1 agreement, accuracy
  difference); end-to-end differences in quanta are reported, bound only when asked
  (Tolerances); generated code must equal the runtime it mirrors bit for bit;
- float vs int8: top-1 agreement with the reference and the accuracy drop.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeship.errors import UserInputError
from edgeship.onnx_saturation import saturating_ops
from edgeship.options import option
from edgeship.runtime.backends import REGISTRY, int8_reference_backend, open_backend

REFERENCE_INT8_BACKEND = int8_reference_backend()


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

    float_atol: float = option(1e-5, help="float vs float: absolute tolerance")
    float_rtol: float = option(1e-5, help="float vs float: relative tolerance")
    reference_min_exact: float | None = option(
        None, help="int8 on reference kernels, end to end: smallest fraction of equal elements "
        "(default: reported, not bound; per-op parity decides)")
    cross_max_quanta: int = option(1, help="int8 across implementations: the usual difference "
                                   "in quanta")
    cross_min_fraction: float | None = option(
        None, help="int8 across implementations, end to end: fraction within --cross-max-quanta "
        "(default: reported, not bound)")
    forbidden_quanta: int = option(3, help="int8 vs int8: a difference this large or larger "
                                   "is forbidden (see --max-forbidden-fraction)")
    max_forbidden_fraction: float | None = option(
        None, help="int8 vs int8, end to end: largest fraction of elements --forbidden-quanta or "
        "more apart (default: reported, not bound)")
    min_agreement: float = option(0.95, help="float vs int8: smallest top-1 agreement with the "
                                  "reference")
    max_drop_pp: float = option(2.0, flag="max-drop", metavar="PP",
                                help="float vs int8: largest accuracy drop in points")
    cross_min_agreement: float = option(0.95, help="int8 vs int8: smallest top-1 agreement "
                                        "between two runtimes")
    cross_max_accuracy_difference_pp: float = option(
        1.0, flag="cross-max-accuracy-difference", metavar="PP",
        help="int8 vs int8: largest accuracy difference between two runtimes, in points")
    per_op_images: int = option(32, metavar="N", help="test images each op is compared on across "
                                "runtimes with identical inputs (0: off)")

    def __post_init__(self):
        for name in ("float_atol", "float_rtol", "max_drop_pp", "cross_max_quanta",
                     "cross_max_accuracy_difference_pp", "per_op_images"):
            if getattr(self, name) < 0:
                raise UserInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.forbidden_quanta <= self.cross_max_quanta:
            raise UserInputError("forbidden_quanta must exceed cross_max_quanta")
        for name in ("reference_min_exact", "cross_min_fraction", "max_forbidden_fraction",
                     "min_agreement", "cross_min_agreement"):
            if getattr(self, name) is not None and not 0 <= getattr(self, name) <= 1:
                raise UserInputError(f"{name} must be in [0, 1], got {getattr(self, name)}")


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
        return (f"{self.comparison}: {self.metric} = {format_number(self.value)}, bound "
                f"{self.relation} {format_number(self.bound)} ({verdict}){cause}")



def format_number(value: float) -> str:
    """A check's value or bound: integers plain, anything else to four significant digits."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


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


# --- int8 outputs against the int8 reference ---------------------------------------------------

def integer_comparisons(results: list, tolerances: Tolerances,
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
        comparisons.extend(exact_target_comparisons(artifact, integer))
    return comparisons


def exact_target_comparisons(artifact: str, integer: list) -> list[dict]:
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
