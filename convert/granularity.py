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
When whole-model per-tensor misses that bound, `auto` looks for a mix: the per-channel file with
the weight and bias tensors of the layers that tolerate it taken from the per-tensor file (same
calibration, so every activation tensor's scale is identical in both). Each layer's cost is
measured alone (error added per byte saved), layers are ranked by it, and a binary search over
the ranked prefix finds the largest set whose measured error is within the bound. The
measurement is recorded in the report.

A choice measured on the post-training file does not carry over to a fine-tuned one: tfmot
folds batch norm into the conv and depthwise kernels while it trains, and one fake-quantization
range per folded kernel can wreck quantization-aware training where post-training per-tensor
weights were fine. `choose_fine_tuned` applies the same rule to the fine-tuned files themselves.
"""

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.errors import UserInputError
from edgeship.tflite_graph import builtin_code, read_model, write_model

GRANULARITIES = ("auto", "per-channel", "per-tensor")
# Weight (input 1) and bias (input 2) of these builtin ops carry per-channel scales.
WEIGHTED_OPS = {3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 9: "FULLY_CONNECTED"}
# Per-tensor is kept when its mean output error is at most 10% above per-channel's.
OUTPUT_ERROR_TOLERANCE = 0.10
SELECTION_IMAGES = 1000


@dataclass(frozen=True)
class Candidate:
    """One conversion measured against the float TFLite model on the selection images.

    Attributes:
        granularity: "per-channel", "per-tensor" or "mixed".
        bytes: size of the int8 file.
        output_error: mean total-variation distance between its class probabilities and the
            float model's (0: identical, 1: disjoint).
        disagreements: selection images whose top-1 class differs from the float model's.
    """

    granularity: str
    bytes: int
    output_error: float
    disagreements: int
    per_tensor_layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class GranularityChoice:
    """What was asked, what the int8 files use, and the measurement behind an `auto` choice."""

    requested: str
    chosen: str
    layers: tuple[str, ...] = ()
    mix_searched: bool = False
    selection_images: int = 0
    selection_seed: int | None = None
    tolerance: float | None = None
    candidates: tuple[Candidate, ...] = ()
    basis: str = ""
    measured_on: str = "post-training"

    @property
    def weighted_layers(self) -> int:
        return len(self.layers)

    @property
    def per_tensor(self) -> bool:
        return self.chosen == "per-tensor"

    def reason(self) -> str:
        if self.basis:
            return self.basis
        if self.requested != "auto":
            return f"as requested (--weight-granularity {self.requested})"
        by_name = {candidate.granularity: candidate for candidate in self.candidates}
        channel, tensor = by_name["per-channel"], by_name["per-tensor"]
        relation = ("within" if within_tolerance(tensor.output_error, channel.output_error,
                                                 self.tolerance) else "beyond")
        reason = (f"auto: per-tensor's output error {tensor.output_error:.5f} is {relation} "
                  f"{self.tolerance:.0%} of per-channel's {channel.output_error:.5f} on "
                  f"{self.selection_images} training images ({tensor.bytes:,} vs "
                  f"{channel.bytes:,} bytes)")
        if tensor.bytes >= channel.bytes:
            reason += "; per-tensor is not smaller"
        mixed = by_name.get("mixed")
        if mixed is not None:
            return (f"{reason}; mixed: {len(mixed.per_tensor_layers)} of {self.weighted_layers} "
                    f"layers per-tensor, output error {mixed.output_error:.5f} ({mixed.bytes:,} "
                    "bytes)")
        if self.mix_searched:
            return f"{reason}; no layer can be per-tensor alone within the bound"
        return reason

    def to_dict(self) -> dict:
        return {"requested": self.requested, "chosen": self.chosen,
                "weighted_layers": self.weighted_layers, "layers": list(self.layers),
                "mix_searched": self.mix_searched,
                "selection_images": self.selection_images, "selection_seed": self.selection_seed,
                "tolerance": self.tolerance, "reason": self.reason(),
                "measured_on": self.measured_on,
                "candidates": [{**vars(candidate),
                                "per_tensor_layers": list(candidate.per_tensor_layers)}
                               for candidate in self.candidates]}


def within_tolerance(per_tensor_error: float, per_channel_error: float,
                     tolerance: float = OUTPUT_ERROR_TOLERANCE) -> bool:
    """The `auto` rule: per-tensor's (or a mix's) output error at most tolerance above per-channel's."""
    return per_tensor_error <= per_channel_error * (1 + tolerance) + 1e-7


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
           train_images: np.ndarray, seed: int,
           tolerance: float = OUTPUT_ERROR_TOLERANCE) -> tuple[GranularityChoice, bytes]:
    """Convert with the requested granularity, or measure and pick for `auto`.

    Args:
        requested: "auto", "per-channel" or "per-tensor".
        export: per_tensor flag -> int8 .tflite bytes (same calibration both times).
        float_tflite: the float .tflite the candidates are measured against.
        train_images: the training split with the recorded preprocessing.
        seed: seeds the selection sample.
        tolerance: how much more output error than per-channel's a per-tensor or mixed file
            may have (a fraction).

    Returns:
        The choice (with its measurement for `auto`) and the chosen int8 file's bytes.
    """
    if requested not in GRANULARITIES:
        raise UserInputError(f"weight granularity must be one of {', '.join(GRANULARITIES)}, "
                         f"got {requested!r}")
    if requested != "auto":
        return (GranularityChoice(requested=requested, chosen=requested),
                export(requested == "per-tensor"))
    images = train_images[selection_indices(len(train_images), seed)]
    with tempfile.TemporaryDirectory(prefix="edgeship-granularity-") as folder:
        measure = _Measurer(float_tflite, images, Path(folder))
        files = {"per-channel": export(False), "per-tensor": export(True)}
        channel = measure("per-channel", files["per-channel"])
        tensor = measure("per-tensor", files["per-tensor"])
        candidates = [channel, tensor]
        layers = weighted_layers(files["per-channel"])
        searched = False
        if per_tensor_wins(tensor, channel, tolerance):
            chosen = "per-tensor"
        else:
            searched, mixed, files["mixed"] = _search_mix(
                files["per-channel"], files["per-tensor"], layers, channel, tolerance, measure)
            chosen = "mixed" if mixed is not None else "per-channel"
            candidates += [mixed] if mixed is not None else []
    choice = GranularityChoice(requested="auto", chosen=chosen, layers=tuple(layers),
                               mix_searched=searched,
                               selection_images=len(images), selection_seed=seed,
                               tolerance=tolerance, candidates=tuple(candidates))
    return choice, files[chosen]


def per_tensor_wins(tensor: Candidate, channel: Candidate,
                    tolerance: float = OUTPUT_ERROR_TOLERANCE) -> bool:
    """Per-tensor is kept when it is smaller and within the output-error bound."""
    return tensor.bytes < channel.bytes and within_tolerance(
        tensor.output_error, channel.output_error, tolerance)


def choose_fine_tuned(requested: str, post_training: GranularityChoice,
                      train_and_export: Callable[[bool], tuple[bytes, bytes]],
                      train_images: np.ndarray, seed: int,
                      tolerance: float = OUTPUT_ERROR_TOLERANCE
                      ) -> tuple[GranularityChoice, bytes, bytes]:
    """Granularity of a quantization-aware fine-tuned int8 file, measured on fine-tuned files.

    QAT trains one granularity for the whole model, so a choice is a training run. With
    `auto`, per-channel (tfmot's default scheme) is always trained; per-tensor is trained too
    only when post-training int8 was best per-tensor for the whole model (after a mixed or
    per-channel choice, per-tensor already costs fidelity before any training). Each
    fine-tuned file is then measured against its own fine-tuned float weights (what
    quantization cost it, not what the fine-tune changed from the trained model) on the same
    selection images, and the post-training rule picks between them.

    Args:
        requested: "auto", "per-channel" or "per-tensor".
        post_training: the choice `choose` made for the post-training file.
        train_and_export: per_tensor flag -> (fine-tuned int8 .tflite bytes, the same
            fine-tuned weights as a float .tflite): a training run.
        train_images: the training split with the recorded preprocessing.
        seed: seeds the selection sample (the post-training measurement's images).
        tolerance: as in `choose`.

    Returns:
        The fine-tuned file's choice (measured_on "fine-tuned"), its bytes and its float
        reference's bytes.
    """
    if requested != "auto":
        return (GranularityChoice(requested=requested, chosen=requested,
                                  measured_on="fine-tuned"),
                *train_and_export(requested == "per-tensor"))
    if post_training.chosen != "per-tensor":
        basis = (f"auto: post-training int8 is {post_training.chosen}, so per-tensor weights "
                 "already cost fidelity before fine-tuning; quantization-aware training trains "
                 "tfmot's default scheme (conv and depthwise weights per channel, dense per tensor)")
        return (GranularityChoice(requested="auto", chosen="per-channel", basis=basis,
                                  measured_on="fine-tuned"),
                *train_and_export(False))
    images = train_images[selection_indices(len(train_images), seed)]
    files = {"per-channel": train_and_export(False), "per-tensor": train_and_export(True)}
    candidates = {}
    with tempfile.TemporaryDirectory(prefix="edgeship-granularity-") as folder:
        for granularity, (int8_bytes, float_bytes) in files.items():
            reference = Path(folder) / f"{granularity}_float.tflite"
            reference.write_bytes(float_bytes)
            candidates[granularity] = _Measurer(reference, images, Path(folder))(
                granularity, int8_bytes)
    channel, tensor = candidates["per-channel"], candidates["per-tensor"]
    chosen = "per-tensor" if per_tensor_wins(tensor, channel, tolerance) else "per-channel"
    choice = GranularityChoice(requested="auto", chosen=chosen,
                               layers=tuple(weighted_layers(files["per-channel"][0])),
                               selection_images=len(images), selection_seed=seed,
                               tolerance=tolerance, candidates=(channel, tensor),
                               measured_on="fine-tuned")
    return (choice, *files[chosen])


class _Measurer:
    """Output error and top-1 disagreements of int8 files against the float model's outputs."""

    def __init__(self, float_tflite: Path, images: np.ndarray, folder: Path):
        from edgeship.convert.predict import predict

        self._predict = predict
        self._images = images
        self._folder = folder
        float_outputs = predict(float_tflite, images)
        self._probabilities_out = looks_like_probabilities(float_outputs)
        self._reference = class_probabilities(float_outputs, self._probabilities_out)
        self._reference_top1 = np.argmax(self._reference, axis=1)

    def __call__(self, granularity: str, data: bytes, per_tensor_layers=()) -> Candidate:
        path = self._folder / "candidate.tflite"
        path.write_bytes(data)
        probabilities = class_probabilities(self._predict(path, self._images),
                                            self._probabilities_out)
        return Candidate(
            granularity=granularity, bytes=len(data),
            output_error=round(output_error(probabilities, self._reference), 7),
            disagreements=int(np.sum(np.argmax(probabilities, axis=1) != self._reference_top1)),
            per_tensor_layers=tuple(per_tensor_layers))


def _search_mix(per_channel: bytes, per_tensor: bytes, layers: list[str], channel: Candidate,
                tolerance: float, measure) -> tuple[bool, Candidate | None, bytes | None]:
    """The largest cost-ranked set of layers that can be per-tensor within the bound, measured.

    Returns (searched, mix, bytes): searched is False when the two files cannot be spliced
    (their graphs or activation scales differ); mix is None when no set of at least one layer
    is within the bound and smaller than the per-channel file.
    """
    try:
        splice_per_tensor_layers(per_channel, per_tensor, ())
    except ValueError:
        return False, None, None
    costs = []
    for index, layer in enumerate(layers):
        alone = measure("mixed", splice_per_tensor_layers(per_channel, per_tensor, {layer}),
                        (layer,))
        saved = channel.bytes - alone.bytes
        costs.append(((alone.output_error - channel.output_error) / max(saved, 1), index, layer))
    ranked = [layer for _, _, layer in sorted(costs)]
    best, best_bytes = None, None
    low, high = 0, len(ranked)  # prefix length low passes (0: per-channel); high does not
    while high - low > 1:
        middle = (low + high) // 2
        chosen = set(ranked[:middle])
        data = splice_per_tensor_layers(per_channel, per_tensor, chosen)
        candidate = measure("mixed", data, [layer for layer in layers if layer in chosen])
        if (candidate.bytes < channel.bytes
                and within_tolerance(candidate.output_error, channel.output_error, tolerance)):
            low, best, best_bytes = middle, candidate, data
        else:
            high = middle
    return True, best, best_bytes


def weighted_layers(tflite_bytes: bytes) -> list[str]:
    """Names of the weight tensors of every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED op."""
    model = read_model(tflite_bytes)
    graph = model.subgraphs[0]
    return [graph.tensors[inputs[1]].name.decode()
            for _, inputs in _weighted_ops(model)]


def splice_per_tensor_layers(per_channel: bytes, per_tensor: bytes, layers) -> bytes:
    """The per-channel file with the named layers' weight and bias tensors from the per-tensor file.

    Both files must come from one model and one calibration: same ops, same tensor shapes and
    types, and the same quantization on every tensor that is not a weight or a bias. A weight's
    int8 values and scale and its bias's int32 values and scale (input scale x weight scale)
    move together, so each layer computes exactly what it computes in the per-tensor file.

    Args:
        per_channel: the int8 file with per-channel weights.
        per_tensor: the same conversion with per-tensor weights.
        layers: weight tensor names (see weighted_layers) to take from the per-tensor file.

    Returns:
        The spliced .tflite bytes.

    Raises:
        ValueError: the files differ in anything but weight granularity, or a name is unknown.
    """
    base, donor = read_model(per_channel), read_model(per_tensor)
    base_graph, donor_graph = base.subgraphs[0], donor.subgraphs[0]
    base_ops, donor_ops = _weighted_ops(base), _weighted_ops(donor)
    if (len(base.subgraphs) != 1 or len(donor.subgraphs) != 1
            or len(base_graph.operators) != len(donor_graph.operators)
            or len(base_graph.tensors) != len(donor_graph.tensors)
            or [inputs for _, inputs in base_ops] != [inputs for _, inputs in donor_ops]):
        raise ValueError("the two int8 files do not have the same graph")
    swapped = {inputs[position] for _, inputs in base_ops for position in (1, 2)
               if len(inputs) > position and inputs[position] >= 0}
    for index, (mine, theirs) in enumerate(zip(base_graph.tensors, donor_graph.tensors)):
        if (mine.type != theirs.type or list(mine.shape) != list(theirs.shape)
                or (index not in swapped and not _same_quantization(mine, theirs))):
            raise ValueError(f"tensor {mine.name!r} differs between the two int8 files")
    names = {base_graph.tensors[inputs[1]].name.decode(): inputs for _, inputs in base_ops}
    unknown = sorted(set(layers) - set(names))
    if unknown:
        raise ValueError(f"no weighted layer named {', '.join(unknown)}")
    for name in layers:
        for position in (1, 2):
            inputs = names[name]
            if len(inputs) <= position or inputs[position] < 0:
                continue
            mine, theirs = base_graph.tensors[inputs[position]], donor_graph.tensors[inputs[position]]
            mine.quantization = theirs.quantization
            base.buffers[mine.buffer].data = donor.buffers[theirs.buffer].data
    return write_model(base)


def _weighted_ops(model) -> list[tuple[int, list[int]]]:
    graph = model.subgraphs[0]
    found = []
    for index, op in enumerate(graph.operators):
        if builtin_code(model, op) in WEIGHTED_OPS and len(op.inputs) > 1:
            found.append((index, [int(tensor) for tensor in op.inputs]))
    return found


def _same_quantization(first, second) -> bool:
    def parts(tensor):
        quantization = tensor.quantization
        if quantization is None or quantization.scale is None:
            return None
        return (np.asarray(quantization.scale).tolist(),
                np.asarray(quantization.zeroPoint).tolist(), quantization.quantizedDimension)

    return parts(first) == parts(second)
