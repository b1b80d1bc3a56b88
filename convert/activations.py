"""int16 activations (16x8: int16 activations, int8 weights) for the whole model or per layer.

Full int8 is right for most CNNs, but a wide dynamic range (unnormalized features fed to a
Normalization layer, audio features, regression outputs) loses real accuracy in 8-bit
activations. TFLite's converter makes 16x8 only for a whole model, so the files here come from
ai-edge-quantizer's per-op static recipes applied to the float file model_int8.tflite was
quantized from (model_float.tflite, or model_finetuned_float.tflite when the delivered int8 file
is the fine-tuned one, so a QAT model is ranked on what quantization cost, not on what the
fine-tune changed): every op int8 except
the chosen ones, which get int16 activations (int8 channelwise weights); the quantizer puts the
QUANTIZE ops between int8 and int16 parts, and the graph input (output) is int16 when the first
(last) op is. One calibration sample, the one convert calibrates int8 with, sets every range.

`--activations auto` starts from model_int8.tflite. When its drop on the seeded selection images
(training split, the sample granularity and fine-tune delivery measure on; never the test split)
exceeds the bound, the layers are ranked by per-layer error against the float model (SQNR worst
first, the ranking `edgeship inspect` shows) and moved to int16 one group at a time until the
drop is within the bound; when no step gets there, the step with the best accuracy (the fewest
int16 layers among equals) is kept, so no gain is left on the table.
"""

import math
import re
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeship.convert import granularity as weight_granularity
from edgeship.deps import require
from edgeship.errors import UserInputError
from edgeship.run_dir import DELIVERED_INT8, ArtifactKind

ACTIVATIONS = ("int8", "int16", "auto")
# auto moves the ranked layers in at most this many groups (each a full quantize and score).
AUTO_STEPS = 4
# The drop auto aims for when --max-drop is not given (points, on the selection images).
DEFAULT_BOUND_PP = 1.0
# Ops that only move or reshape data: they follow the precision of their producer's group.
_DATA_MOVEMENT_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "CONCATENATION",
                      "PAD", "STRIDED_SLICE", "SLICE", "GATHER"}
# Elementwise ops that, with a constant operand, rescale one activation (Normalization layers).
_ELEMENTWISE_OPS = {"ADD", "SUB", "MUL", "DIV"}


@dataclass(frozen=True)
class Step:
    """One candidate of the auto search: these layers in int16, scored on selection images.

    Attributes:
        int16_layers: output tensor names of the ops with int16 activations (float model's).
        accuracy: top-1 on the selection images.
        recovered_pp: points gained over model_int8.tflite on the same images.
        bytes: file size.
    """

    int16_layers: tuple[str, ...]
    accuracy: float
    recovered_pp: float
    bytes: int

    def to_dict(self) -> dict:
        return {**asdict(self), "int16_layers": list(self.int16_layers)}


@dataclass(frozen=True)
class ActivationChoice:
    """What --activations made, and the measurements behind it.

    Attributes:
        requested: "int16" or "auto".
        delivered: the quantized .tflite convert delivers (its --max-drop gate applies to it).
        bound_pp: the drop auto aimed for (the --max-drop given, else DEFAULT_BOUND_PP).
        selection_images: seeded training images every file was scored on.
        selection_seed: the seed of that sample.
        accuracy: "float"/"int8"/"mixed"/"int16" -> top-1 on those images.
        ranking: every layer, worst per-layer error (int8 file) first.
        int16_layers: the layers of the delivered file with int16 activations.
        steps: the auto search, in order (empty for int16).
        footprint: "int8"/"mixed"/"int16" -> {"bytes", "arena_bytes"} (TFLite Micro's arena).
    """

    requested: str
    delivered: str
    bound_pp: float
    selection_images: int
    selection_seed: int
    accuracy: dict[str, float]
    ranking: tuple = ()
    int16_layers: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    footprint: dict[str, dict] = field(default_factory=dict)

    def reason(self) -> str:
        drop = (self.accuracy["float"] - self.accuracy["int8"]) * 100
        base = (f"model_int8.tflite drops {drop:.2f} pp on {self.selection_images} training "
                f"images (bound {self.bound_pp:g} pp)")
        if self.requested == "int16":
            return f"--activations int16: every layer has int16 activations ({base})"
        if self.delivered == ArtifactKind.INT8_TFLITE.file_name:
            return f"{base}: int8 is enough, no layer moved to int16"
        mixed = (self.accuracy["float"] - self.accuracy["mixed"]) * 100
        return (f"{base}; {len(self.int16_layers)} layer(s) in int16 drop {mixed:.2f} pp: "
                f"{self.delivered} is delivered")

    def to_dict(self) -> dict:
        return {"requested": self.requested, "delivered": self.delivered,
                "bound_pp": self.bound_pp, "selection_images": self.selection_images,
                "selection_seed": self.selection_seed, "accuracy": dict(self.accuracy),
                "ranking": [layer.to_dict() for layer in self.ranking],
                "int16_layers": list(self.int16_layers),
                "steps": [step.to_dict() for step in self.steps],
                "footprint": self.footprint, "reason": self.reason()}


def delivered_kinds(delivered_file: str | None) -> tuple[ArtifactKind, ...]:
    """The quantized files convert delivers (the ones --max-drop gates): the int16 or mixed
    file where --activations made one (model_int8.tflite then stays as the int8 baseline),
    else the int8 ones."""
    if delivered_file is None or delivered_file == ArtifactKind.INT8_TFLITE.file_name:
        return DELIVERED_INT8
    return (ArtifactKind.of(delivered_file), ArtifactKind.INT8_ONNX)


def replaced_files(choice: "ActivationChoice | None") -> list[str]:
    """model_int8.tflite when an int16 or mixed file is delivered instead: it stays as the
    baseline the report compares against, and validate skips it as not shipped."""
    if choice is None or choice.delivered == ArtifactKind.INT8_TFLITE.file_name:
        return []
    return [ArtifactKind.INT8_TFLITE.file_name]


def quantize_mixed(float_tflite: Path, calibration: np.ndarray, int16_ops) -> bytes:
    """The float model quantized with int16 activations on int16_ops and int8 elsewhere.

    Args:
        float_tflite: model_float.tflite.
        calibration: the images convert calibrates int8 with.
        int16_ops: indices of the float model's ops that get int16 activations, or "all".

    Returns:
        The .tflite bytes (integer I/O: int16 where the first/last op runs int16).
    """
    quantizer_module = require("ai_edge_quantizer.quantizer")
    qtyping = require("ai_edge_quantizer.qtyping")
    from edgeship.tflite_graph import graph_ops, read_model

    data = float_tflite.read_bytes()
    model = read_model(data)
    graph = model.subgraphs[0]
    names = [tensor.name.decode() for tensor in graph.tensors]
    ops = graph_ops(data)
    chosen = {op.index for op in ops} if int16_ops == "all" else set(int16_ops)
    quantizer = quantizer_module.Quantizer(str(float_tflite))
    channelwise = qtyping.QuantGranularity.CHANNELWISE

    def add(regex: str, operation: str, bits: int) -> None:
        quantizer.add_static_config(regex, operation, activation_num_bits=bits,
                                    weight_num_bits=8, weight_granularity=channelwise)

    add(".*", "*", 8)
    for op in ops:  # the scope of an op is its output names, each followed by ";"
        if op.index in chosen:
            add(f"^{re.escape(names[op.output_tensor])};$", "*", 16)
    inputs = _op_inputs(data)
    floats = _float_tensors(data)
    consumers = {tensor for op in ops for tensor in inputs[op.index]}
    first = [op.index for op in ops if op.output_tensor in floats  # not SHAPE and the like
             and set(inputs[op.index]) & set(graph.inputs.tolist())]
    if first and all(index in chosen for index in first):
        for tensor in graph.inputs.tolist():
            if tensor in consumers:
                add(f"^{re.escape(names[tensor])};?$", "INPUT", 16)
    interpreter_module = require("ai_edge_litert.interpreter")
    signatures = interpreter_module.Interpreter(model_content=data).get_signature_list()
    if len(signatures) != 1:
        raise UserInputError(f"{float_tflite.name} has {len(signatures)} signatures; per-layer "
                             "int16 needs exactly one")
    key, signature = next(iter(signatures.items()))
    input_name = signature["inputs"][0]
    # One batch: its min and max are the whole sample's, as TFLite's converter calibrates
    # (one image at a time, ai-edge-quantizer keeps a moving average, which clips outliers).
    samples = [{input_name: np.asarray(calibration, np.float32)}]
    with _quiet():
        result = quantizer.quantize(quantizer.calibrate({key: samples}))
    return bytes(result.quantized_model)


def rank_layers(int8_path: Path, float_path: Path, images: np.ndarray) -> list:
    """Every quantized op of the int8 file (edgeship.layer_error.LayerError), worst SQNR
    against the float model first, indexed by the float model's op (as quantize_mixed takes)."""
    from edgeship.layer_error import layer_errors
    from edgeship.tflite_graph import align_ops, graph_ops

    errors = layer_errors(int8_path, float_path, images)
    aligned = align_ops(graph_ops(int8_path.read_bytes()), graph_ops(float_path.read_bytes()))
    layers = [replace(error, index=aligned[error.index].index) for error in errors]
    return sorted(layers, key=lambda layer: (layer.sqnr_db, layer.index))


def groups_of(ranking: list) -> list[list]:
    """The ranked layers in at most AUTO_STEPS groups, worst first."""
    size = max(1, math.ceil(len(ranking) / AUTO_STEPS))
    return [ranking[start:start + size] for start in range(0, len(ranking), size)]


def choose(requested: str, int8_path: Path, float_path: Path, calibration: np.ndarray,
           train_images: np.ndarray, train_labels: np.ndarray, seed: int,
           max_drop_pp: float | None) -> tuple[ActivationChoice, bytes | None]:
    """Make the int16 or mixed file --activations asks for, measured on selection images.

    Args:
        requested: "int16" or "auto".
        int8_path: model_int8.tflite as written.
        float_path: the float file model_int8.tflite was quantized from.
        calibration: convert's calibration images.
        train_images: the training split with the recorded preprocessing.
        train_labels: its labels.
        seed: seeds the selection sample.
        max_drop_pp: --max-drop (None: auto aims for DEFAULT_BOUND_PP).

    Returns:
        The choice, and the bytes of the file to write as choice.delivered (None when
        model_int8.tflite is delivered).
    """
    if requested not in ("int16", "auto"):
        raise UserInputError(f"activations must be int16 or auto here, got {requested!r}")
    index = weight_granularity.selection_indices(len(train_images), seed)
    images, labels = train_images[index], np.asarray(train_labels)[index]
    bound = DEFAULT_BOUND_PP if max_drop_pp is None else max_drop_pp
    with tempfile.TemporaryDirectory(prefix="edgeship-activations-") as folder:
        scorer = _Scorer(images, labels, Path(folder))
        accuracy = {"float": scorer.accuracy(float_path), "int8": scorer.accuracy(int8_path)}
        full = quantize_mixed(float_path, calibration, "all")
        full_path = scorer.write("int16", full)
        accuracy["int16"] = scorer.accuracy(full_path)
        footprint = {"int8": _footprint(int8_path), "int16": _footprint(full_path)}
        common = {"bound_pp": bound, "selection_images": len(images), "selection_seed": seed}
        if requested == "int16":
            names = tuple(_op_outputs(float_path).values())
            return ActivationChoice(requested="int16",
                                    delivered=ArtifactKind.INT16_TFLITE.file_name,
                                    accuracy=accuracy, int16_layers=names, footprint=footprint,
                                    **common), full
        ranking = rank_layers(int8_path, float_path, images)
        steps: list[Step] = []
        best: tuple[Step, bytes] | None = None
        moved: list = []
        within = (accuracy["float"] - accuracy["int8"]) * 100 <= bound + 1e-9
        for group in ([] if within else groups_of(ranking)):
            moved += group
            int16_ops = _with_data_movement(float_path, {layer.index for layer in moved})
            if steps and len(int16_ops) == len(steps[-1].int16_layers):
                continue  # the group was already pulled in by an earlier one
            data = quantize_mixed(float_path, calibration, int16_ops)
            step_accuracy = scorer.accuracy(scorer.write(f"step{len(steps)}", data))
            outputs = _op_outputs(float_path)
            step = Step(int16_layers=tuple(outputs[index] for index in sorted(int16_ops)),
                        accuracy=step_accuracy,
                        recovered_pp=round((step_accuracy - accuracy["int8"]) * 100, 4),
                        bytes=len(data))
            steps.append(step)
            if best is None or step.accuracy > best[0].accuracy + 1e-12:
                best = (step, data)
            if (accuracy["float"] - step_accuracy) * 100 <= bound + 1e-9:
                break
        if best is None or best[0].accuracy <= accuracy["int8"]:
            return ActivationChoice(requested="auto",
                                    delivered=ArtifactKind.INT8_TFLITE.file_name,
                                    accuracy=accuracy, ranking=tuple(ranking),
                                    steps=tuple(steps), footprint=footprint, **common), None
        step, data = best
        accuracy["mixed"] = step.accuracy
        footprint["mixed"] = _footprint(scorer.write("mixed", data))
        return ActivationChoice(requested="auto", delivered=ArtifactKind.MIXED_TFLITE.file_name,
                                accuracy=accuracy, ranking=tuple(ranking),
                                int16_layers=step.int16_layers, steps=tuple(steps),
                                footprint=footprint, **common), data


class _Scorer:
    """Top-1 of .tflite files on the selection images (LiteRT, through the report's predict)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, folder: Path):
        self.images, self.labels, self.folder = images, labels, folder

    def write(self, name: str, data: bytes) -> Path:
        path = self.folder / f"{name}.tflite"
        path.write_bytes(data)
        return path

    def accuracy(self, path: Path) -> float:
        from edgeship.convert.predict import predict

        top1 = np.argmax(predict(path, self.images), axis=1)
        return round(float(np.mean(top1 == self.labels)), 6)


def _footprint(path: Path) -> dict:
    """File bytes and TFLite Micro's measured arena bytes."""
    from edgeship.backend_registry import open_backend

    with open_backend("tflm", path) as backend:
        arena = backend.arena_usage().get("total_bytes")
    return {"bytes": path.stat().st_size, "arena_bytes": arena}


def _op_outputs(float_path: Path) -> dict[int, str]:
    """op index -> its output tensor's name (the Keras layer names live in it)."""
    from edgeship.tflite_graph import graph_ops

    return {op.index: op.output for op in graph_ops(float_path.read_bytes())}


def _with_data_movement(float_path: Path, chosen: set[int]) -> set[int]:
    """chosen, plus the ops whose precision decides theirs.

    Producers: a chosen op's input chain back through data-movement ops and elementwise ops
    with a constant operand (a Normalization or rescaling layer), since int16 activations
    cannot restore what an int8 input already lost (raw features into Normalization: the
    error shows at the MUL, it is made at the graph input). Consumers: the data-movement ops
    a chosen op feeds, so no QUANTIZE pair is spent around an op that computes nothing.
    """
    from edgeship.tflite_graph import graph_ops

    data = float_path.read_bytes()
    ops, inputs = graph_ops(data), _op_inputs(data)
    by_index = {op.index: op for op in ops}
    producer = {op.output_tensor: op.index for op in ops}
    constants, floats = _constants(data), _float_tensors(data)
    result = set(chosen)
    pending = list(chosen)
    while pending:
        for tensor in inputs[pending.pop()]:
            source = producer.get(tensor)
            if source is None or source in result:
                continue
            activations = [t for t in inputs[source] if t not in constants and t in floats]
            if by_index[source].op in _DATA_MOVEMENT_OPS | _ELEMENTWISE_OPS and len(activations) == 1:
                result.add(source)
                pending.append(source)
    for op in ops:  # graph order: a chain of reshapes follows its producer
        if op.op in _DATA_MOVEMENT_OPS and any(producer.get(tensor) in result
                                                for tensor in inputs[op.index]):
            result.add(op.index)
    return result


def _float_tensors(tflite_bytes: bytes) -> set[int]:
    """Indices of the float32 tensors (activations; int32 shape arithmetic left out)."""
    from edgeship.tflite_graph import read_model

    tensors = read_model(tflite_bytes).subgraphs[0].tensors
    return {index for index, tensor in enumerate(tensors) if tensor.type == 0}  # FLOAT32


def _constants(tflite_bytes: bytes) -> set[int]:
    """Indices of tensors with data in the file (weights, biases, normalization constants)."""
    from edgeship.tflite_graph import read_model

    model = read_model(tflite_bytes)
    return {index for index, tensor in enumerate(model.subgraphs[0].tensors)
            if tensor.buffer < len(model.buffers) and model.buffers[tensor.buffer].data is not None
            and len(model.buffers[tensor.buffer].data) > 0}


def _op_inputs(tflite_bytes: bytes) -> dict[int, list[int]]:
    """op index -> its input tensor indices (optional inputs, -1, left out)."""
    from edgeship.tflite_graph import read_model

    operators = read_model(tflite_bytes).subgraphs[0].operators
    return {index: [int(tensor) for tensor in op.inputs if tensor >= 0]
            for index, op in enumerate(operators)}


class _quiet:
    """ai-edge-quantizer prints progress bars and summaries on stdout: into the log instead."""

    def __enter__(self):
        import contextlib
        import io
        import logging

        self._buffer = io.StringIO()
        self._redirect = contextlib.redirect_stdout(self._buffer)
        self._redirect.__enter__()
        self._logger = logging.getLogger("edgeship")
        return self

    def __exit__(self, *exc_info):
        self._redirect.__exit__(*exc_info)
        text = self._buffer.getvalue().strip()
        if text:
            self._logger.debug("ai-edge-quantizer: %s", text)
