"""The accuracy-drop report: every artifact against the float Keras model on the test split.

A quantized file's drop is also split by cause against the float file it was quantized from
(convert records it: `float_references`): for a fine-tuned (QAT or pruned) file, fine-tuning
is the fine-tuned float model against the trained one and quantization is the int8 file
against the fine-tuned float model; the two add up to the total drop that --max-drop gates.
"""

import gzip
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edgeship.backend_registry import primary_backend
from edgeship.convert.activations import delivered_kinds
from edgeship.convert.predict import predict
from edgeship.convert.xnnpack import report_lines as xnnpack_report_lines
from edgeship.reports import REPORT_SCHEMA_VERSION, markdown_table
from edgeship.run_dir import ArtifactKind


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
    # The float file this one was quantized from, and the drop split by cause (see above):
    # fine_tuning_pp is None for a post-training file, both are None for a float file.
    float_reference: str | None = None
    fine_tuning_pp: float | None = None
    quantization_pp: float | None = None
    reference_agreement: float | None = None


def gzipped_size(path: str | Path) -> int:
    """Bytes after gzip -9 (a fixed mtime so the figure is reproducible)."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0))


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
                    sparsity: dict[str, float | None],
                    float_references: dict[str, str] | None = None) -> list[ArtifactScore]:
    """Score the reference (float Keras) model and every artifact on the same test images.

    Args:
        reference_path: the float Keras model every drop is measured against.
        artifacts: report name -> artifact path (the reference may be among them).
        images: test images with the recorded preprocessing.
        labels: test labels.
        num_classes: class count.
        sparsity: report name -> measured weight sparsity (None where not measured).
        float_references: quantized file name -> the float file name it was quantized from
            (among the artifacts); its drop is then split into fine-tuning and quantization.

    Returns:
        One ArtifactScore per artifact, in the given order.
    """
    reference_top1 = np.argmax(predict(reference_path, images), axis=1)
    reference_accuracy = float(np.mean(reference_top1 == labels))
    reference_classes = class_accuracy(reference_top1, labels, num_classes)
    scores = []
    top1_by_file = {}
    for name, path in artifacts.items():
        top1 = (reference_top1 if path == reference_path
                else np.argmax(predict(path, images), axis=1))
        top1_by_file[path.name] = top1
        accuracy = float(np.mean(top1 == labels))
        change = (class_accuracy(top1, labels, num_classes) - reference_classes) * 100
        scores.append(ArtifactScore(
            name=name, file=path.name, backend=primary_backend(path),
            accuracy=accuracy, drop_pp=(reference_accuracy - accuracy) * 100,
            agreement=float(np.mean(top1 == reference_top1)), bytes=path.stat().st_size,
            gzipped_bytes=gzipped_size(path), sparsity=sparsity.get(name),
            class_accuracy_change_pp=[None if np.isnan(v) else round(float(v), 4) for v in change]))
    return [_split_drop(score, (float_references or {}).get(score.file), top1_by_file, labels,
                        reference_accuracy) for score in scores]


def _split_drop(score: ArtifactScore, float_reference: str | None, top1_by_file: dict,
                labels: np.ndarray, reference_accuracy: float) -> ArtifactScore:
    """The score with its drop split into fine-tuning and quantization (see the module)."""
    if float_reference is None or float_reference not in top1_by_file:
        return score
    from edgeship.run_dir import ArtifactKind

    reference_top1 = top1_by_file[float_reference]
    float_accuracy = float(np.mean(reference_top1 == labels))
    fine_tuned = ArtifactKind.of(float_reference) is ArtifactKind.FINETUNED_FLOAT_TFLITE
    return replace(
        score, float_reference=float_reference,
        fine_tuning_pp=(reference_accuracy - float_accuracy) * 100 if fine_tuned else None,
        quantization_pp=(float_accuracy - score.accuracy) * 100,
        reference_agreement=float(np.mean(top1_by_file[score.file] == reference_top1)))


def decomposition_line(score: ArtifactScore, reference: str) -> str:
    """One console line: a fine-tuned file's total drop as fine-tuning plus quantization."""
    return (f"{score.file} drops {score.drop_pp:+.2f} pp against {reference} = fine-tuning "
            f"{score.fine_tuning_pp:+.2f} pp ({score.float_reference}) + quantization "
            f"{score.quantization_pp:+.2f} pp (against {score.float_reference}, top-1 agreement "
            f"{score.reference_agreement:.2%})")


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
            f"{score.drop_pp:+.2f}", _pp(score.fine_tuning_pp), _pp(score.quantization_pp),
            f"`{score.float_reference}`" if score.float_reference else "—",
            f"{score.agreement * 100:.2f}%", f"{score.bytes:,}", ratio,
            f"{score.gzipped_bytes:,}", gz_ratio,
            "—" if score.sparsity is None else f"{score.sparsity * 100:.1f}%"])
    lines = [
        "# Accuracy-drop report", "",
        (f"Reference: float Keras model `{context['reference']}`; test split of "
        f"`{context['dataset']['name']}` ({context['test_images']} images). Drop is in percentage "
        "points (positive = worse than the float model); agreement is top-1 agreement with it; "
        "size ratios are against `model_float.tflite`. Each quantized file's drop is split by "
        "cause against the float file it was quantized from (its float reference): "
        "quantization is the file against that reference; for a fine-tuned file (QAT, "
        "pruning), whose reference is `model_finetuned_float.tflite` (the fine-tuned weights "
        "before int8), fine-tuning is that model against the trained float model, and "
        "fine-tuning + quantization = drop."), "",
        markdown_table(["artifact", "runtime", "top-1", "drop (pp)", "fine-tuning (pp)",
                        "quantization (pp)", "float reference", "agreement", "bytes",
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
        lines += [(f"Gate `--max-drop {gate}` on the delivered quantized artifacts ({names}), "
                  f"on the total drop against `{context['reference']}` (fine-tuning included): "
                  f"**{verdict}**"), ""]
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


def _pp(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


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
