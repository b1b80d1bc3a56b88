"""Weight quantization granularity of the int8 TFLite: per-channel, per-tensor, or chosen by measurement.

TFLite's converter quantizes every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED weight tensor
per output channel.
Each channel then costs a float32 scale and an int64 zero point, for the weights and again for
the int32 bias: 24 bytes a channel that a small model cannot amortise (about 5.5 KB of lenet5's
72 KB int8 file). Per-tensor weights drop that overhead, and cost accuracy only where the
channels' weight ranges differ a lot (depthwise layers after batch-norm folding, typically).

`auto` converts both ways and keeps per-tensor only when its class probabilities stay as close to
the float model's as per-channel's do, within OUTPUT_ERROR_TOLERANCE, on a seeded sample of the
training split (never the test split, so the accuracy-drop report is not tuned on its own data).
The measurement is recorded in the report, and quantization-aware training follows the choice.
"""

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GRANULARITIES = ("auto", "per-channel", "per-tensor")
# Per-tensor is kept when its mean output error is at most 10% above per-channel's.
OUTPUT_ERROR_TOLERANCE = 0.10
SELECTION_IMAGES = 1000


@dataclass(frozen=True)
class Candidate:
    """One conversion measured against the float TFLite model on the selection images.

    Attributes:
        granularity: "per-channel" or "per-tensor".
        bytes: size of the int8 file.
        output_error: mean total-variation distance between its class probabilities and the
            float model's (0: identical, 1: disjoint).
        disagreements: selection images whose top-1 class differs from the float model's.
    """

    granularity: str
    bytes: int
    output_error: float
    disagreements: int


@dataclass(frozen=True)
class GranularityChoice:
    """What was asked, what the int8 files use, and the measurement behind an `auto` choice."""

    requested: str
    chosen: str
    selection_images: int = 0
    selection_seed: int | None = None
    tolerance: float | None = None
    candidates: tuple[Candidate, ...] = ()

    @property
    def per_tensor(self) -> bool:
        return self.chosen == "per-tensor"

    def reason(self) -> str:
        if self.requested != "auto":
            return f"as requested (--weight-granularity {self.requested})"
        by_name = {candidate.granularity: candidate for candidate in self.candidates}
        channel, tensor = by_name["per-channel"], by_name["per-tensor"]
        relation = ("within" if within_tolerance(tensor.output_error, channel.output_error)
                    else "beyond")
        return (f"auto: per-tensor's output error {tensor.output_error:.5f} is {relation} "
                f"{self.tolerance:.0%} of per-channel's {channel.output_error:.5f} on "
                f"{self.selection_images} training images ({tensor.bytes:,} vs "
                f"{channel.bytes:,} bytes)")

    def to_dict(self) -> dict:
        return {"requested": self.requested, "chosen": self.chosen,
                "selection_images": self.selection_images, "selection_seed": self.selection_seed,
                "tolerance": self.tolerance, "reason": self.reason(),
                "candidates": [vars(candidate) for candidate in self.candidates]}


def within_tolerance(per_tensor_error: float, per_channel_error: float) -> bool:
    """The `auto` rule: per-tensor's output error at most OUTPUT_ERROR_TOLERANCE above per-channel's."""
    return per_tensor_error <= per_channel_error * (1 + OUTPUT_ERROR_TOLERANCE) + 1e-7


def selection_indices(num_train: int, seed: int, count: int = SELECTION_IMAGES) -> np.ndarray:
    """Seeded sample of training-split indices on which `auto` compares the two conversions."""
    rng = np.random.default_rng([seed, 0x6772616E])  # its own stream, apart from calibration's
    return np.sort(rng.permutation(num_train)[:count])


def class_probabilities(outputs: np.ndarray, already_probabilities: bool) -> np.ndarray:
    """Softmax of logits, or probability rows as they are."""
    if already_probabilities:
        return outputs
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def looks_like_probabilities(outputs: np.ndarray) -> bool:
    """Rows of non-negative values summing to 1 (a softmax output), as opposed to logits."""
    return bool(np.all(outputs >= -1e-6) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))


def output_error(probabilities: np.ndarray, reference: np.ndarray) -> float:
    """Mean total-variation distance between two sets of class-probability rows."""
    return float(np.mean(0.5 * np.abs(probabilities - reference).sum(axis=1)))


def choose(requested: str, export: Callable[[bool], bytes], float_tflite: Path,
           train_images: np.ndarray, seed: int) -> tuple[GranularityChoice, bytes]:
    """Convert with the requested granularity, or measure both and pick for `auto`.

    Args:
        requested: "auto", "per-channel" or "per-tensor".
        export: per_tensor flag -> int8 .tflite bytes (same calibration both times).
        float_tflite: the float .tflite the candidates are measured against.
        train_images: the training split with the recorded preprocessing.
        seed: seeds the selection sample.

    Returns:
        The choice (with its measurement for `auto`) and the chosen int8 file's bytes.
    """
    if requested not in GRANULARITIES:
        raise ValueError(f"weight granularity must be one of {', '.join(GRANULARITIES)}, "
                         f"got {requested!r}")
    if requested != "auto":
        return (GranularityChoice(requested=requested, chosen=requested),
                export(requested == "per-tensor"))
    from edgeship.convert.report import predict

    images = train_images[selection_indices(len(train_images), seed)]
    float_outputs = predict(float_tflite, images)
    probabilities_out = looks_like_probabilities(float_outputs)
    reference = class_probabilities(float_outputs, probabilities_out)
    reference_top1 = np.argmax(reference, axis=1)
    candidates, files = [], {}
    with tempfile.TemporaryDirectory(prefix="edgeship-granularity-") as folder:
        for granularity in ("per-channel", "per-tensor"):
            data = export(granularity == "per-tensor")
            path = Path(folder) / f"{granularity}.tflite"
            path.write_bytes(data)
            probabilities = class_probabilities(predict(path, images), probabilities_out)
            files[granularity] = data
            candidates.append(Candidate(
                granularity=granularity, bytes=len(data),
                output_error=round(output_error(probabilities, reference), 7),
                disagreements=int(np.sum(np.argmax(probabilities, axis=1) != reference_top1))))
    channel, tensor = candidates
    keep_tensor = (tensor.bytes < channel.bytes
                   and within_tolerance(tensor.output_error, channel.output_error))
    chosen = "per-tensor" if keep_tensor else "per-channel"
    choice = GranularityChoice(requested="auto", chosen=chosen, selection_images=len(images),
                               selection_seed=seed, tolerance=OUTPUT_ERROR_TOLERANCE,
                               candidates=tuple(candidates))
    return choice, files[chosen]
