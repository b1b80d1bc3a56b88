"""The accuracy-drop report: every artifact against the float Keras model on the test split."""

import gzip
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from edgeship.convert.activations import delivered_kinds
from edgeship.convert.xnnpack import report_lines as xnnpack_report_lines
from edgeship.reports import REPORT_SCHEMA_VERSION, markdown_table
from edgeship.run_dir import ArtifactKind

# Which runtime evaluates each artifact format for the report (validate covers the rest).
REPORT_BACKENDS = {".keras": "keras", ".h5": "keras", ".tflite": "litert", ".onnx": "onnxruntime"}


@dataclass(frozen=True)
class ArtifactScore:
    """One row of the accuracy-drop report."""

    name: str
    file: str
    backend: str
    accuracy: float
    drop_pp: float
    agreement: float
    bytes: int
    gzipped_bytes: int
    sparsity: float | None
    class_accuracy_change_pp: list[float]


def gzipped_size(path: str | Path) -> int:
    """Bytes after gzip -9 (a fixed mtime so the figure is reproducible)."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0))


def predict(artifact_path: Path, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities of an artifact through its report backend."""
    from edgeship.backend_registry import open_backend

    backend_name = REPORT_BACKENDS[artifact_path.suffix.lower()]
    outputs = []
    with open_backend(backend_name, artifact_path) as backend:
        for start in range(0, len(images), batch_size):
            outputs.append(backend.infer(images[start:start + batch_size]))
    return np.concatenate(outputs)


def class_accuracy(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class top-1 accuracy (NaN for a class absent from the labels)."""
    accuracy = np.full(num_classes, np.nan)
    for label in range(num_classes):
        mask = labels == label
        if mask.any():
            accuracy[label] = float(np.mean(predicted[mask] == label))
    return accuracy


def score_artifacts(reference_path: Path, artifacts: dict[str, Path], images: np.ndarray,
                    labels: np.ndarray, num_classes: int,
                    sparsity: dict[str, float | None]) -> list[ArtifactScore]:
    """Score the reference (float Keras) model and every artifact on the same test images.

    Args:
        reference_path: the float Keras model every drop is measured against.
        artifacts: report name -> artifact path (the reference may be among them).
        images: test images with the recorded preprocessing.
        labels: test labels.
        num_classes: class count.
        sparsity: report name -> measured weight sparsity (None where not measured).

    Returns:
        One ArtifactScore per artifact, in the given order.
    """
    reference_top1 = np.argmax(predict(reference_path, images), axis=1)
    reference_accuracy = float(np.mean(reference_top1 == labels))
    reference_classes = class_accuracy(reference_top1, labels, num_classes)
    scores = []
    for name, path in artifacts.items():
        top1 = (reference_top1 if path == reference_path
                else np.argmax(predict(path, images), axis=1))
        accuracy = float(np.mean(top1 == labels))
        change = (class_accuracy(top1, labels, num_classes) - reference_classes) * 100
        scores.append(ArtifactScore(
            name=name, file=path.name, backend=REPORT_BACKENDS[path.suffix.lower()],
            accuracy=accuracy, drop_pp=(reference_accuracy - accuracy) * 100,
            agreement=float(np.mean(top1 == reference_top1)), bytes=path.stat().st_size,
            gzipped_bytes=gzipped_size(path), sparsity=sparsity.get(name),
            class_accuracy_change_pp=[None if np.isnan(v) else round(float(v), 4) for v in change]))
    return scores


def report_payload(scores: list[ArtifactScore], context: dict) -> dict:
    """The JSON report: schema version, context (options, versions, hashes) and the rows."""
    return {"schema_version": REPORT_SCHEMA_VERSION, **context,
            "artifacts": [asdict(score) for score in scores]}


def render_markdown(scores: list[ArtifactScore], class_names: list[str], context: dict) -> str:
    """A table a person reads in five seconds, then the per-class changes."""
    float_tflite = next((s for s in scores if ArtifactKind.of(s.file) is ArtifactKind.FLOAT_TFLITE), None)
    rows = []
    for score in scores:
        ratio = (f"{score.bytes / float_tflite.bytes:.3f}" if float_tflite else "")
        gz_ratio = (f"{score.gzipped_bytes / float_tflite.gzipped_bytes:.3f}" if float_tflite else "")
        rows.append([
            f"`{score.file}`", score.backend, f"{score.accuracy * 100:.2f}%",
            f"{score.drop_pp:+.2f}", f"{score.agreement * 100:.2f}%", f"{score.bytes:,}", ratio,
            f"{score.gzipped_bytes:,}", gz_ratio,
            "—" if score.sparsity is None else f"{score.sparsity * 100:.1f}%"])
    lines = [
        "# Accuracy-drop report", "",
        f"Reference: float Keras model `{context['reference']}`; test split of "
        f"`{context['dataset']['name']}` ({context['test_images']} images). Drop is in percentage "
        "points (positive = worse than the float model); agreement is top-1 agreement with it; "
        "size ratios are against `model_float.tflite`.", "",
        markdown_table(["artifact", "runtime", "top-1", "drop (pp)", "agreement", "bytes",
                        "× float", "gzipped", "gz × float", "sparsity"], rows),
    ]
    gate = context.get("max_drop_pp")
    choice = context.get("activations")
    delivered = delivered_kinds(choice["delivered"] if choice else None)
    if gate is not None:
        failed = [s for s in scores if ArtifactKind.of(s.file) in delivered
                  and s.drop_pp > gate]
        verdict = ("FAIL: " + ", ".join(f"{s.file} drops {s.drop_pp:.2f} pp" for s in failed)
                   if failed else "pass")
        names = ", ".join(f"`{s.file}`" for s in scores if ArtifactKind.of(s.file) in delivered)
        lines += [f"Gate `--max-drop {gate}` on the delivered quantized artifacts ({names}): "
                  f"**{verdict}**", ""]
    lines += _granularity_lines(context)
    lines += activation_lines(choice)
    lines += xnnpack_report_lines(context.get("xnnpack"))
    change_rows = []
    for index, class_name in enumerate(class_names):
        change_rows.append([class_name] + [
            "—" if s.class_accuracy_change_pp[index] is None
            else f"{s.class_accuracy_change_pp[index]:+.1f}" for s in scores[1:]])
    if len(scores) > 1:
        lines += ["## Per-class accuracy change (pp) against the float model", "",
                  markdown_table(["class"] + [f"`{s.file}`" for s in scores[1:]], change_rows)]
    options = context.get("options", {})
    lines += ["## Options", "", "```json", _json(options), "```", ""]
    return "\n".join(lines)


def activation_lines(choice: dict | None) -> list[str]:
    """--activations: what was delivered, the per-layer ranking and choice, each auto step's
    recovery, and size and TFLite Micro arena for int8, mixed and full int16."""
    if not choice:
        return []
    accuracy = choice["accuracy"]
    lines = ["## Activations: int8 / int16", "",
             f"`--activations {choice['requested']}`: {choice['reason']}. Accuracies below are "
             f"on {choice['selection_images']} seeded training images (seed "
             f"{choice['selection_seed']}), never the test split.", ""]
    rows = [[name, f"{accuracy[name] * 100:.2f}%",
             f"{(accuracy['float'] - accuracy[name]) * 100:+.2f}",
             f"{choice['footprint'][name]['bytes']:,}" if name in choice["footprint"] else "—",
             (f"{choice['footprint'][name]['arena_bytes']:,}"
              if name in choice["footprint"] else "—")]
            for name in ("float", "int8", "mixed", "int16") if name in accuracy]
    lines += [markdown_table(["activations", "top-1 (training images)", "drop (pp)", "bytes",
                              "TFLite Micro arena bytes"], rows), ""]
    int16 = set(choice["int16_layers"])
    if choice["ranking"]:
        lines += ["Layers by per-layer error of `model_int8.tflite` (SQNR against the float "
                  "model, worst first, as `edgeship inspect` ranks them):", "",
                  markdown_table(["op", "layer (output tensor)", "SQNR (dB)", "delivered"],
                                 [[f"{layer['index']} {layer['op']}", f"`{layer['output']}`",
                                   f"{layer['sqnr_db']:.2f}",
                                   "int16" if layer["output"] in int16 else "int8"]
                                  for layer in choice["ranking"]]), ""]
    if choice["steps"]:
        lines += ["Auto steps (each group of ranked layers moved to int16 activations):", "",
                  markdown_table(["step", "int16 layers", "top-1", "recovered (pp)", "bytes"],
                                 [[str(number), str(len(step["int16_layers"])),
                                   f"{step['accuracy'] * 100:.2f}%",
                                   f"{step['recovered_pp']:+.2f}", f"{step['bytes']:,}"]
                                  for number, step in enumerate(choice["steps"], 1)]), ""]
    if int16 and choice["requested"] == "auto":
        lines += [f"int16 layers of `{choice['delivered']}`: "
                  + ", ".join(f"`{name}`" for name in choice["int16_layers"]), ""]
    return lines


def _granularity_lines(context: dict) -> list[str]:
    """Each delivered int8 file's weight granularity, the measurements behind it, and which
    of the fine-tuned and post-training files became model_int8.tflite and why."""
    lines = []
    delivery = context.get("delivery")
    if delivery:
        lines += [f"**Delivered `model_int8.tflite`: the {delivery['delivered']} file.** "
                  f"{delivery['reason'][0].upper()}{delivery['reason'][1:]}.", ""]
    found = context.get("delivered_granularity") or {}
    if found:
        lines += [markdown_table(["int8 file", "weight granularity (read from the file)"],
                                 [[f"`{name}`", granularity] for name, granularity in found.items()]),
                  ""]
    for key, title in (("weight_granularity", "Post-training int8"),
                       ("fine_tuned_weight_granularity", "Fine-tuned int8")):
        choice = context.get(key)
        if not choice:
            continue
        lines += [f"{title} weights: **{choice['chosen']}**, {choice['reason']}.", ""]
        if choice["candidates"]:
            rows = [[_candidate_label(candidate, choice), f"{candidate['bytes']:,}",
                     f"{candidate['output_error']:.5f}", str(candidate["disagreements"])]
                    for candidate in choice["candidates"]]
            lines += [markdown_table([f"{title.lower()}", "bytes", "output error",
                                      "top-1 disagreements"], rows),
                      "", "Output error: mean total-variation distance of the class "
                      "probabilities from the float model's.", ""]
        mixed = [candidate for candidate in choice["candidates"]
                 if candidate["granularity"] == "mixed"]
        if mixed and choice["chosen"] == "mixed":
            kept = [name for name in choice.get("layers", [])
                    if name not in mixed[0]["per_tensor_layers"]]
            lines += [f"Layers kept per-channel: {', '.join(f'`{name}`' for name in kept)}.", ""]
    return lines


def _candidate_label(candidate: dict, choice: dict) -> str:
    if candidate["granularity"] != "mixed":
        return candidate["granularity"]
    return (f"mixed ({len(candidate['per_tensor_layers'])} of {choice['weighted_layers']} layers "
            "per-tensor)")


def _json(payload) -> str:
    import json

    return json.dumps(payload, indent=2, sort_keys=True)
