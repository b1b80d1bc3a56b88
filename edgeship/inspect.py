"""`edgeship inspect`: which layer loses accuracy, which runtime's kernel differs, and why.

Three measurements on real test images of a converted run:
1. per layer: each int8 tensor against the float model it was quantized from
   (edgeship.runtime.inspect): model_float.tflite for a post-training file,
   model_finetuned_float.tflite (the fine-tuned weights before int8) for a QAT or pruned one,
   so a fine-tune's own change of the weights is not counted as quantization error;
2. per op: each int8 runtime against the reference kernels on identical inputs
   (edgeship.runtime.op_parity);
3. attribution: the worst layers by SQNR restored to float one at a time, and the other weight
   granularity, each scored on accuracy (edgeship.convert.attribution) — what would help,
   measured.

It needs both convert (re-quantization) and runtime (backends), so it lives above them.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.errors import UserInputError
from edgeship.records import ConvertRecord, TrainRecord
from edgeship.run_dir import ArtifactKind, RunDir


@dataclass(frozen=True)
class InspectConfig:
    """What `edgeship inspect` looks at.

    Attributes:
        source: a run directory from train + convert (model_int8.tflite, model_float.tflite),
            or a bare int8 .tflite (per-op parity only: there is no float twin).
        dataset: for a bare .tflite, the dataset whose test images feed it (None: seeded
            random int8 inputs over the input's full range, said so in the report).
        images: test images for the per-layer and per-op comparisons.
        runtimes: int8 runtimes compared op by op with the reference kernels (empty: no
            per-op comparison).
        restore: how many of the worst layers (by SQNR) are restored to float one at a time
            (0: no attribution).
        attribution_images: test images each restored variant is scored on.
        max_drop_pp: the accuracy drop above which inspect says what helps (advice).
        seed: seeds the random inputs of a bare .tflite without a dataset.
    """

    source: str
    dataset: object = None  # a DatasetSpec (typed loosely: train is imported lazily)
    images: int = 100
    runtimes: tuple[str, ...] = ("litert", "tflm")
    restore: int = 5
    attribution_images: int = 1000
    max_drop_pp: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("images", "attribution_images"):
            if getattr(self, name) < 1:
                raise UserInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.restore < 0:
            raise UserInputError(f"restore must be >= 0, got {self.restore}")
        if self.max_drop_pp < 0:
            raise UserInputError(f"max drop must be >= 0 pp, got {self.max_drop_pp}")


def run_inspect(config: InspectConfig) -> dict:
    """Per-layer error, per-op parity and attribution; writes inspect.json and inspect.md.

    Returns:
        The inspect.json payload.

    Raises:
        UserInputError: not a converted run directory.
    """
    from edgeship.artifacts import write_json_atomic, write_text_atomic
    from edgeship.reports import REPORT_SCHEMA_VERSION, environment
    from edgeship.runtime.backends import open_backend
    from edgeship.runtime.inspect import layer_errors
    from edgeship.runtime.op_parity import per_op_parity, summarize
    from edgeship.runtime.parity import load_test_split

    source = Path(config.source)
    if source.is_file():
        return _inspect_file(source, config)
    run = RunDir(source)
    run_dir = run.path
    int8_path = run.path_of(ArtifactKind.INT8_TFLITE)
    if not int8_path.is_file() or not run.has(ArtifactKind.FLOAT_TFLITE):
        raise UserInputError(f"{run_dir} has no {int8_path.name} and "
                             f"{ArtifactKind.FLOAT_TFLITE.file_name}; run "
                             "`edgeship convert RUN_DIR --int8` first")
    float_path = run.path / run.float_reference(int8_path)
    images, _, dataset_entry = load_test_split(run, None, config.images)
    images = images[:]  # the first config.images rows as an array (a streamed split's too)
    layers = sorted(layer_errors(int8_path, float_path, images), key=lambda e: e.sqnr_db)
    with open_backend("litert-ref", int8_path) as backend:
        raw = backend.quantize_input(images)
    # No runtimes: per-layer error only (the pipeline's validate already compared every op).
    ops = per_op_parity(int8_path, raw, config.runtimes) if config.runtimes else []
    attribution = (_attribute(run, [layer.index for layer in layers], config)
                   if config.restore else None)
    payload = {"schema_version": REPORT_SCHEMA_VERSION, "run_dir": str(run_dir),
               "dataset": dataset_entry, "int8": int8_path.name, "float": float_path.name,
               "reference": describe_reference(float_path.name),
               "layers": [layer.to_dict() for layer in layers],
               "ops": [op.to_dict() for op in ops], "summary": summarize(ops),
               "attribution": attribution,
               "advice": _advice(run_dir, attribution, config.max_drop_pp),
               "environment": environment()}
    write_json_atomic(run_dir / "inspect.json", payload)
    write_text_atomic(run_dir / "inspect.md", render_markdown(payload))
    return payload


def describe_reference(float_name: str) -> str:
    """Why the per-layer error is measured against this float file (inspect.md, report)."""
    if ArtifactKind.of(float_name) is ArtifactKind.FINETUNED_FLOAT_TFLITE:
        return ("the fine-tuned float model: model_int8.tflite was quantized from the weights "
                "QAT or pruning left, not from model_float.tflite's")
    return "the float model: model_int8.tflite was quantized from its weights (post-training)"


def _inspect_file(path: Path, config: InspectConfig) -> dict:
    """A bare int8 .tflite: per-op parity on dataset images or seeded random int8 inputs."""
    from edgeship.artifacts import write_json_atomic, write_text_atomic
    from edgeship.model_check import check_model_file
    from edgeship.reports import REPORT_SCHEMA_VERSION, environment
    from edgeship.runtime.backends import open_backend
    from edgeship.runtime.op_parity import per_op_parity, summarize

    if path.suffix.lower() != ".tflite":
        raise UserInputError(f"{path.name} is not a .tflite file or a run directory")
    check_model_file(path)
    with open_backend("litert-ref", path) as backend:
        (info,) = backend.inputs()
        if not info.quantized:
            raise UserInputError(f"{path.name} takes {info.dtype} input; inspect compares "
                                 "full-integer (int8) models across runtimes")
        shape = tuple(side if side > 0 else 1 for side in info.shape[1:])
        if config.dataset is not None:
            from edgeship.train.stage_data import close_dataset, open_stage_dataset

            dataset = open_stage_dataset(config.dataset)  # streamed: decodes only these images
            close_dataset(dataset)
            if tuple(dataset.input_shape) != shape:
                raise UserInputError(f"dataset {dataset.spec.name} gives {dataset.input_shape} "
                                     f"images; {path.name} takes {shape}")
            raw = backend.quantize_input(dataset.x_test[:config.images])
            inputs = {"kind": "test split", "spec": dataset.spec.to_dict(), "images": len(raw)}
        else:
            limits = np.iinfo(np.dtype(info.dtype))
            rng = np.random.default_rng(config.seed)
            raw = rng.integers(limits.min, limits.max + 1, size=(config.images, *shape),
                               endpoint=False).astype(info.dtype)
            inputs = {"kind": f"random {info.dtype} over the full range, seed {config.seed}",
                      "images": len(raw)}
    ops = per_op_parity(path, raw, config.runtimes)
    payload = {"schema_version": REPORT_SCHEMA_VERSION, "model": str(path),
               "dataset": {"images": len(raw), **inputs}, "int8": path.name, "float": None,
               "layers": [], "ops": [op.to_dict() for op in ops], "summary": summarize(ops),
               "attribution": None, "advice": [], "environment": environment()}
    stem = path.with_suffix("")
    write_json_atomic(Path(f"{stem}_inspect.json"), payload)
    write_text_atomic(Path(f"{stem}_inspect.md"), render_markdown(payload))
    return payload


def _attribute(run: RunDir, worst_first: list[int], config: InspectConfig) -> dict | None:
    """Restore the worst layers (int8 op indices, worst first) to float one at a time.

    The int8 file's ops are matched to the calibrated float model's by position (a QAT file's
    tensor names differ from the float model's). None when there is no Keras model or the op
    sequences differ.
    """
    from edgeship.convert.attribution import attribute_layers, calibrate, quantizable_ops
    from edgeship.convert.tflite import weight_scale_counts
    from edgeship.deps import import_tf_keras
    from edgeship.tflite_graph import align_ops, graph_ops
    from edgeship.train.datasets import class_balanced_indices
    from edgeship.train.stage_data import close_dataset, open_run_dataset

    model_path = run.path / run.reference_model()
    train = run.read(TrainRecord)
    source = train.model.source if train else None
    if not model_path.is_file() and source and Path(source).is_file():
        model_path = Path(source)  # a bare model file converted into this folder
    if not model_path.is_file():
        return None
    _, tf_keras = import_tf_keras()
    model = tf_keras.models.load_model(model_path, compile=False)
    dataset = open_run_dataset(run.path)  # a streamed run: only the rows read below
    convert = run.read(ConvertRecord)
    options = convert.options if convert else {}
    samples = min(int(options.get("calibration_samples", 500)), len(dataset.x_train))
    calibration = dataset.x_train[class_balanced_indices(dataset.y_train, samples,
                                                         int(options.get("seed", 0)))]
    images = dataset.x_test[:config.attribution_images]
    labels = dataset.y_test[:config.attribution_images]
    close_dataset(dataset)
    int8_bytes = run.path_of(ArtifactKind.INT8_TFLITE).read_bytes()
    counts = weight_scale_counts(int8_bytes).values()
    per_tensor = bool(counts) and max(counts) == 1
    aligned = align_ops(graph_ops(int8_bytes),
                        quantizable_ops(calibrate(model, calibration)))
    if aligned is None:
        return None
    chosen = [aligned[index].output for index in worst_first if index in aligned][:config.restore]
    result = attribute_layers(model, calibration, images, labels, chosen, per_tensor)
    return {**result.to_dict(), "model": model_path.name,
            "baseline_granularity": "per-tensor" if per_tensor else "per-channel",
            "note": ("post-training quantization of the float model, re-quantized from the "
                     "calibrated model with TFLite's MLIR quantizer (float input and output)"
                     + ("; model_int8.tflite itself is the fine-tuned file, so these variants "
                        f"show where int8 strains {model_path.name}'s weights, not its own"
                        if ArtifactKind.of(run.float_reference(ArtifactKind.INT8_TFLITE.file_name))
                        is ArtifactKind.FINETUNED_FLOAT_TFLITE else ""))}


def _advice(run_dir: Path, attribution: dict | None, max_drop_pp: float) -> list[str]:
    """What helps, from the measurements, when the delivered int8 file loses too much."""
    report_path = run_dir / "convert_report.json"
    if not report_path.is_file() or attribution is None:
        return []
    import json

    rows = {row["file"]: row for row in json.loads(report_path.read_text())["artifacts"]}
    delivered = rows.get(ArtifactKind.INT8_TFLITE.file_name)
    if delivered is None or delivered["drop_pp"] <= max_drop_pp:
        return []
    advice = [f"{ArtifactKind.INT8_TFLITE.file_name} loses {delivered['drop_pp']:.2f} points (more than "
              f"{max_drop_pp:g}); measured on {attribution['images']} test images:"]
    for score in attribution["restored"][:3]:
        if score["recovered_pp"] > 0:
            advice.append(f"keeping {score['variant'][len('float: '):]} in float recovers "
                          f"{score['recovered_pp']:.2f} points (the most int16 activations "
                          "there could recover)")
    swap = attribution["granularity"]
    if swap["recovered_pp"] > 0:
        advice.append(f"{swap['variant']} recover {swap['recovered_pp']:.2f} points "
                      f"(`edgeship convert --weight-granularity "
                      f"{swap['variant'].split()[0]}`)")
    if len(advice) == 1:
        advice.append("no single layer or granularity change recovers accuracy: try "
                      "quantization-aware training (`edgeship convert --qat 1`)")
    return advice


def render_markdown(payload: dict) -> str:
    from edgeship.reports import markdown_table
    from edgeship.runtime.parity_report import op_cell

    if payload["float"]:
        reference = payload.get("reference")
        lines = ["# Inspect", "", f"`{payload['int8']}` against `{payload['float']}` on "
                 f"{payload['dataset']['images']} test images"
                 + (f" (float reference: {reference})." if reference else "."), ""]
    else:
        lines = ["# Inspect", "", f"`{payload['int8']}` alone ({payload['dataset']['images']} "
                 f"inputs: {payload['dataset']['kind']}); no float twin, so no per-layer "
                 "error or attribution.", ""]
    if payload["advice"]:
        lines += ["## What helps (measured)", ""] + [f"- {line}" for line in payload["advice"]]
        lines.append("")
    if payload["layers"]:
        lines += ["## Per-layer quantization error (worst first)", "",
              (f"Each op's int8 output (reference kernels) dequantized against "
               f"`{payload['float']}`'s output of the same op; errors in units of the int8 "
               "tensor's scale."), "",
              markdown_table(["#", "op", "output tensor", "SQNR (dB)", "cosine",
                              "mean error (quanta)", "max error (quanta)"],
                             [[str(layer["index"]), layer["op"], f"`{layer['output'][:60]}`",
                               f"{layer['sqnr_db']:.1f}", f"{layer['cosine']:.5f}",
                               f"{layer['mean_error_quanta']:.3f}",
                               f"{layer['max_error_quanta']:.2f}"]
                              for layer in payload["layers"]]), ""]
    attribution = payload.get("attribution")
    if attribution:
        baseline = attribution["baseline"]
        lines += ["## Attribution: one layer restored to float at a time", "",
                  f"{attribution['note']}; {attribution['images']} test images; all int8 "
                  f"({attribution['baseline_granularity']} weights): top-1 "
                  f"{baseline['accuracy']:.2%}, float {attribution['float_accuracy']:.2%}.", "",
                  markdown_table(["variant", "top-1", "recovered (pp)", "output error"],
                                 [[f"`{score['variant'][:70]}`", f"{score['accuracy']:.2%}",
                                   f"{score['recovered_pp']:+.2f}", f"{score['output_error']:.5f}"]
                                  for score in [baseline, *attribution["restored"],
                                                attribution["granularity"]]]), ""]
    if not payload["ops"]:
        return "\n".join(lines)
    lines += ["## Per-op runtime parity (identical int8 inputs, against the reference kernels)",
              ""]
    runtimes = list(dict.fromkeys(op["runtime"] for op in payload["ops"]))
    by_op: dict = {}
    for op in payload["ops"]:
        by_op.setdefault((op["index"], op["op"]), {})[op["runtime"]] = op
    lines += [markdown_table(["#", "op", *runtimes],
                             [[str(index), name, *[op_cell(cells.get(runtime))
                                                   for runtime in runtimes]]
                              for (index, name), cells in by_op.items()]), ""]
    causes = sorted({f"{op['runtime']} {op['op']}: {op['cause']}" for op in payload["ops"]
                     if op["cause"]})
    if causes:
        lines += ["Known causes:", ""] + [f"- {cause}" for cause in causes] + [""]
    return "\n".join(lines)


def sqnr_chart_values(payload: dict) -> list[tuple[str, float]]:
    """(layer label, SQNR dB) in graph order, for report.html's chart."""
    layers = sorted(payload.get("layers", []), key=lambda layer: layer["index"])
    return [(f"{layer['index']} {layer['op']}", layer["sqnr_db"]) for layer in layers
            if np.isfinite(layer["sqnr_db"])]
