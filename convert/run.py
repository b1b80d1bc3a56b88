"""`edgeship convert`: prune -> QAT -> export, artifact checks, and the accuracy-drop report."""

import dataclasses
import functools
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeship.artifacts import write_bytes_atomic, write_json_atomic, write_text_atomic
from edgeship.console import say
from edgeship.convert import activations, finetune, keras3, xnnpack
from edgeship.convert import granularity as weight_granularity
from edgeship.convert.onnx import check_onnx, export_onnx, quantize_onnx
from edgeship.convert.prune import PruneConfig, prune
from edgeship.convert.qat import QatConfig, quantize_aware_finetune, strip_quantization
from edgeship.convert.report import (
    decomposition_line,
    render_markdown,
    report_payload,
    score_artifacts,
)
from edgeship.convert.tflite import (
    IO_TYPES,
    check_tflite,
    describe_io,
    export_tflite,
    weight_counts,
    weight_scale_counts,
    weight_sparsity,
)
from edgeship.deps import TRAINING_THREADS, import_tf_keras, pin_training_threads
from edgeship.errors import CheckFailedError, UserInputError
from edgeship.options import option
from edgeship.records import ConvertRecord, DatasetRecord, ModelRecord, TrainRecord, XnnpackRecord
from edgeship.reports import tool_versions
from edgeship.run_dir import ArtifactKind, RunDir
from edgeship.train.datasets import Dataset, DatasetSpec, class_balanced_indices
from edgeship.train.stage_data import (
    CACHE_FOLDER_NAME,
    RowDataset,
    bounded_train_sample,
    close_dataset,
    open_run_dataset,
    open_stage_dataset,
)

MODEL_SUFFIXES = (".keras", ".h5")


@dataclass(frozen=True)
class ConvertConfig:
    """Everything `edgeship convert` needs.

    Attributes:
        source: a run directory from `edgeship train`, or a .keras/.h5 model file.
        int8: write the full-integer int8 TFLite (and int8 ONNX with onnx=True).
        qat_epochs: quantization-aware fine-tuning epochs (0: post-training quantization only).
        prune_sparsity: magnitude-pruning target in (0, 1), or None.
        prune_structure: "M:N" structured sparsity (e.g. "2:4"), or None.
        prune_epochs: fine-tuning epochs over which pruning reaches its target.
        onnx: write model.onnx (and model_int8.onnx with int8=True).
        dataset: dataset spec; required for a bare model file, else the run's recorded one.
        calibration_samples: class-balanced training images that calibrate int8 ranges.
        io_type: input/output type of the int8 TFLite: int8, uint8 or float32.
        weight_granularity: "auto" (per-tensor weights where measured to cost no fidelity, for
            the whole model or per layer), "per-channel" or "per-tensor"; see
            convert/granularity.py.
        max_drop_pp: fail (exit 1) when a delivered int8 artifact's accuracy drop exceeds this.
        activations: "int8" (default), "int16" (the whole model 16x8: model_int16.tflite) or
            "auto" (int16 activations on the worst layers when int8 drops more than
            max_drop_pp: model_mixed.tflite); see convert/activations.py.
        qat_learning_rate: Adam learning rate of quantization-aware fine-tuning.
        prune_allowance_pp: a pruned int8 file ships as model_int8.tflite unless it scores more
            than this many points below post-training int8 on the selection images (a QAT-only
            file must score at least as well); see convert/finetune.py.
        out: output directory (default: the run directory, or the model file's folder).
        seed: seeds calibration sampling and fine-tuning.
    """

    source: str
    int8: bool = option(True, help="full-integer int8 TFLite (and int8 ONNX with --onnx)")
    qat_epochs: int = option(0, flag="qat", metavar="EPOCHS",
                             help="quantization-aware fine-tuning epochs")
    prune_sparsity: float | None = option(None, flag="prune", metavar="SPARSITY",
                                          help="magnitude-pruning target sparsity in (0, 1)")
    prune_structure: str | None = option(None, metavar="M:N", help="structured sparsity, e.g. 2:4")
    prune_epochs: int = option(2, help="fine-tuning epochs over which pruning reaches its target")
    onnx: bool = option(False, help="also write float and int8 ONNX")
    dataset: DatasetSpec | None = None
    calibration_samples: int = option(500, help="class-balanced training images that calibrate "
                                      "the int8 ranges")
    io_type: str = option("int8", flag="io", choices=IO_TYPES,
                          help="input/output type of the int8 TFLite")
    weight_granularity: str = option(
        "auto", choices=weight_granularity.GRANULARITIES,
        help="int8 weight scales per output channel, per tensor, or auto: per-tensor where "
        "measured to cost no fidelity (smaller file), for the whole model or layer by layer")
    max_drop_pp: float | None = option(None, flag="max-drop", metavar="PP",
                                       help="exit 1 when an int8 artifact loses more than PP "
                                       "points of accuracy")
    activations: str = option(
        "int8", choices=activations.ACTIVATIONS,
        help="int8 activations; int16 (16x8) for the whole model; or auto: int16 on the layers "
        "with the worst per-layer error, a group at a time, until the drop on training images "
        "is within --max-drop (delivers model_mixed.tflite)")
    xnnpack: str = option(
        "exact", choices=xnnpack.REWRITE_MODES,
        help="also write model_int8_xnnpack.tflite, the int8 file rewritten for LiteRT's XNNPACK "
        "delegate (phones): exact = only rewrites with identical int8 results (a one-channel "
        "convolution through SPACE_TO_DEPTH); rounding = also int8 average pooling as a "
        "depthwise convolution XNNPACK runs (a half-way mean may round one quantum the other "
        "way); off = no such file")
    qat_learning_rate: float = option(1e-4, metavar="LR", help="Adam learning rate of "
                                      "quantization-aware fine-tuning")
    prune_allowance_pp: float = option(1.0, flag="prune-allowance", metavar="PP",
                                       help="a pruned int8 model ships unless it scores more "
                                       "than PP points below post-training int8 on training "
                                       "images")
    out: str | None = None
    seed: int = option(0, help="seed of calibration sampling and fine-tuning")
    threads: int = option(TRAINING_THREADS, metavar="N",
                          help="TensorFlow threads per op in the QAT and pruning fine-tunes (0: "
                          "every core); fixed by default, as train's --threads, so a fine-tune "
                          "gives the same weights on any machine with the same CPU features")

    def __post_init__(self):
        if self.qat_epochs < 0:
            raise UserInputError(f"QAT epochs must be >= 0, got {self.qat_epochs}")
        if self.prune_sparsity is not None and not 0 < self.prune_sparsity < 1:
            raise UserInputError(f"prune sparsity must be in (0, 1), got {self.prune_sparsity}")
        if self.prune_structure is not None:
            PruneConfig(sparsity=0.5, structure=self.prune_structure)
        if self.threads < 0:
            raise UserInputError(f"threads must be >= 0 (0: every core), got {self.threads}")
        if self.calibration_samples < 1:
            raise UserInputError(f"calibration samples must be >= 1, got {self.calibration_samples}")
        if self.io_type not in IO_TYPES:
            raise UserInputError(f"io type must be one of {', '.join(IO_TYPES)}, got {self.io_type!r}")
        if self.weight_granularity not in weight_granularity.GRANULARITIES:
            raise UserInputError(f"weight granularity must be one of "
                             f"{', '.join(weight_granularity.GRANULARITIES)}, "
                             f"got {self.weight_granularity!r}")
        if self.max_drop_pp is not None and self.max_drop_pp < 0:
            raise UserInputError(f"max drop must be >= 0 pp, got {self.max_drop_pp}")
        if self.prune_allowance_pp < 0:
            raise UserInputError(f"prune allowance must be >= 0 pp, got {self.prune_allowance_pp}")
        if not self.qat_learning_rate > 0:
            raise UserInputError(f"QAT learning rate must be > 0, got {self.qat_learning_rate}")
        if self.activations not in activations.ACTIVATIONS:
            raise UserInputError(f"activations must be one of {', '.join(activations.ACTIVATIONS)}, "
                             f"got {self.activations!r}")
        if self.activations != "int8" and not self.int8:
            raise UserInputError(f"--activations {self.activations} quantizes from the int8 "
                             "calibration; add --int8")
        if self.qat_epochs and not self.int8:
            raise UserInputError("--qat trains for int8 export; add --int8")

    @property
    def pruning(self) -> bool:
        return self.prune_sparsity is not None or self.prune_structure is not None

    def to_dict(self) -> dict:
        payload = asdict(self)
        payload["dataset"] = self.dataset.to_dict() if self.dataset else None
        return payload


@dataclass(frozen=True)
class ConvertResult:
    out_dir: Path
    artifacts: dict[str, Path]
    report: dict


def run_convert(config: ConvertConfig) -> ConvertResult:
    """Convert a trained model into float/int8 TFLite and ONNX and report the accuracy drop.

    Returns:
        The written artifacts and the report payload.

    Raises:
        UserInputError: unusable model, dataset or options (nothing is half-written).
        CheckFailedError: --max-drop was exceeded (artifacts and reports are written first).
    """
    source = Path(config.source)
    model_path, out_dir, dataset_spec, trained = _resolve_source(source, config)
    if config.int8 and (config.pruning or config.qat_epochs > 0):
        threads = pin_training_threads(config.threads)  # before TensorFlow first runs
        if threads != config.threads:
            say(f"warning: TensorFlow already runs in this process with "
                f"{threads or 'its default'} threads per op; --threads {config.threads} cannot "
                "take effect, and the fine-tuned weights may differ from a fresh process's")
    if trained is not None and source.is_dir():
        dataset = open_run_dataset(source, config.dataset)
    else:
        dataset = open_stage_dataset(dataset_spec, cache_folder=out_dir / CACHE_FOLDER_NAME)
    try:
        return _convert(config, model_path, out_dir, dataset_spec, trained, dataset)
    finally:
        close_dataset(dataset)


def _convert(config: ConvertConfig, model_path: Path, out_dir: Path, dataset_spec: DatasetSpec,
             trained: TrainRecord | None, dataset: Dataset | RowDataset) -> ConvertResult:
    """run_convert on an opened dataset (arrays, or a streamed split's rows); trained: the
    output directory's train record (None: a bare model file, recorded here)."""
    _, tf_keras = import_tf_keras()
    fine_tuned = config.int8 and (config.pruning or config.qat_epochs > 0)
    keras3_export = None
    if keras3.is_keras3_file(model_path):  # tf_keras cannot load it; see convert/keras3.py
        keras3_export = keras3.export_with_keras3(model_path, dataset.x_test[:keras3.CHECK_IMAGES])
        _check_model_fits(keras3_export.input_shapes, keras3_export.output_shapes, dataset,
                          model_path)
        rebuild = keras3.rebuild_verified(keras3_export, required=fine_tuned or config.onnx)
        model = rebuild.model  # None: plain post-training int8 needs no tf_keras model
        export_original = keras3_export.export_tflite
    else:
        model = _load_model(tf_keras, model_path)
        _check_model_fits([tensor.shape for tensor in model.inputs],
                          [tensor.shape for tensor in model.outputs], dataset, model_path)
        export_original = functools.partial(export_tflite, model)
    if config.calibration_samples > len(dataset.x_train):
        raise UserInputError(f"--calibration-samples {config.calibration_samples} exceeds the "
                             f"{len(dataset.x_train)} images of the training split")
    calibration_index = class_balanced_indices(dataset.y_train, config.calibration_samples,
                                               config.seed)
    calibration = dataset.x_train[calibration_index]
    calibration_classes = len(np.unique(dataset.y_train[calibration_index]))
    if config.int8 and calibration_classes < dataset.num_classes:
        say(f"warning: the calibration sample holds {calibration_classes} of "
            f"{dataset.num_classes} classes; int8 ranges may clip the activations of the "
            "others (raise --calibration-samples)")
    out_dir.mkdir(parents=True, exist_ok=True)
    reference_path = model_path
    if keras3_export is not None and model is not None:
        reference_path = keras3.save_rebuilt(model, out_dir / keras3.REBUILT_MODEL_NAME)

    written: dict[str, Path] = {}
    sparsity: dict[str, float | None] = {}
    float_bytes = export_original()
    written["float_tflite"] = write_bytes_atomic(out_dir / ArtifactKind.FLOAT_TFLITE.file_name, float_bytes)
    check_tflite(float_bytes, dataset.x_test[0])
    int8_io = None
    granularity = fine_tuned_granularity = delivery = activation_choice = xnnpack_record = None
    if config.int8:
        granularity, ptq_bytes = weight_granularity.choose(
            config.weight_granularity,
            lambda per_tensor: export_original(calibration, config.io_type, per_tensor),
            written["float_tflite"], dataset.x_train, config.seed)
        int8_bytes = ptq_bytes
        if fine_tuned:
            fine_tuned_granularity, tuned_bytes, tuned_float_bytes = _fine_tune(
                tf_keras, model, config, dataset, calibration, granularity)
            # The fine-tuned weights in float: the reference of the int8 files made from them.
            written["finetuned_float_tflite"] = write_bytes_atomic(
                out_dir / ArtifactKind.FINETUNED_FLOAT_TFLITE.file_name, tuned_float_bytes)
            check_tflite(tuned_float_bytes, dataset.x_test[0])
            delivery = finetune.choose_delivery(
                ptq_bytes, tuned_bytes, finetune.describe_fine_tune(
                    config.qat_epochs, config.prune_sparsity, config.prune_structure),
                dataset.x_train, dataset.y_train, config.seed,
                allowance_pp=config.prune_allowance_pp if config.pruning else 0.0)
            delivered = tuned_bytes if delivery.delivered == finetune.FINE_TUNED else ptq_bytes
            kept = ptq_bytes if delivery.delivered == finetune.FINE_TUNED else tuned_bytes
            written[delivery.kept_key] = write_bytes_atomic(out_dir / delivery.kept_name, kept)
            check_tflite(kept, dataset.x_test[0])
            sparsity[delivery.kept_key] = _file_sparsity(kept)
            int8_bytes = delivered
            if delivery.delivered != finetune.FINE_TUNED:
                say(f"convert: {delivery.reason()}")
        written["int8_tflite"] = write_bytes_atomic(out_dir / ArtifactKind.INT8_TFLITE.file_name, int8_bytes)
        check_tflite(int8_bytes, dataset.x_test[0])
        sparsity["int8_tflite"] = _file_sparsity(int8_bytes)
        int8_io = {role: quant.to_dict() for role, quant in describe_io(int8_bytes).items()}
        if config.activations != "int8":
            # From the weights model_int8.tflite holds: the fine-tuned ones when it is the
            # fine-tuned file, so the layers are ranked on what quantization cost (issue 28).
            tuned_delivered = delivery is not None and delivery.delivered == finetune.FINE_TUNED
            activation_choice = _convert_activations(
                config, written, dataset, calibration,
                written["finetuned_float_tflite" if tuned_delivered else "float_tflite"])
        if ArtifactKind.INT8_TFLITE in activations.delivered_kinds(
                activation_choice.delivered if activation_choice else None):
            xnnpack_record = _write_xnnpack_file(config.xnnpack, written, int8_bytes, dataset)
    if config.onnx:
        onnx_bytes = export_onnx(model, dataset.input_shape)
        written["onnx"] = write_bytes_atomic(out_dir / ArtifactKind.FLOAT_ONNX.file_name, onnx_bytes)
        check_onnx(written["onnx"], dataset.x_test[0])
        if config.int8:
            int8_onnx = quantize_onnx(onnx_bytes, calibration)
            written["int8_onnx"] = write_bytes_atomic(out_dir / ArtifactKind.INT8_ONNX.file_name, int8_onnx)
            check_onnx(written["int8_onnx"], dataset.x_test[0])

    if keras3_export is not None and model is None:
        reference_path = written["float_tflite"]  # no tf_keras rebuild: the direct float export
    scored = ({"keras": reference_path, **written} if reference_path not in written.values()
              else written)
    fine_tuned_files = _fine_tuned_files(delivery, written)
    float_references = _float_references(written, fine_tuned_files)
    scores = score_artifacts(reference_path, scored, dataset.x_test, dataset.y_test,
                             dataset.num_classes, sparsity, float_references)
    for score in scores:
        if score.file in fine_tuned_files and ArtifactKind.of(score.file).runtimes is None:
            say(f"convert: {decomposition_line(score, reference_path.name)}")
    keras3_entry = (keras3.describe(keras3_export, rebuild, fine_tuned, config.onnx)
                    if keras3_export is not None else None)
    context = {
        "reference": reference_path.name, "keras3": keras3_entry, "dataset": dataset_spec.to_dict(),
        "test_images": len(dataset.x_test), "options": config.to_dict(),
        "max_drop_pp": config.max_drop_pp, "int8_io": int8_io,
        "activations": activation_choice.to_dict() if activation_choice else None,
        "xnnpack": xnnpack_record.to_dict() if xnnpack_record else None,
        "weight_granularity": _granularity_record(granularity),
        "fine_tuned_weight_granularity": _granularity_record(fine_tuned_granularity),
        "delivery": delivery.to_dict() if delivery else None,
        "float_references": float_references,
        "delivered_granularity": _delivered_granularity(written),
        "per_layer_sparsity": {name: weight_sparsity(written[name].read_bytes())
                               for name in ("int8_tflite",) if name in written},
        "versions": tool_versions(),
    }
    payload = report_payload(scores, context)
    report_json = write_json_atomic(out_dir / "convert_report.json", payload)
    report_md = write_text_atomic(out_dir / "convert_report.md",
                                  render_markdown(scores, list(dataset.class_names), context)
                                  + (keras3.render_markdown(keras3_entry) if keras3_entry else ""))
    if trained is None:
        RunDir(out_dir).write(TrainRecord(
            dataset=DatasetRecord(spec=dataset_spec, preprocessing=dict(dataset.preprocessing),
                                  class_names=tuple(dataset.class_names),
                                  input_shape=tuple(dataset.input_shape)),
            model=ModelRecord(name=model_path.name, source=str(model_path.resolve()))))
    outputs = [*written.values(), report_json, report_md]
    if keras3_entry and keras3_entry["rebuilt_model"]:
        outputs.append(reference_path)  # the verified tf_keras rebuild of a Keras 3 model
    _remove_stale_outputs(out_dir, {path.name for path in outputs})
    RunDir(out_dir).write(ConvertRecord(
        options=config.to_dict(), int8_io=int8_io, versions=tool_versions(),
        weight_granularity=_granularity_record(granularity),
        fine_tuned_weight_granularity=_granularity_record(fine_tuned_granularity),
        delivery=delivery.to_dict() if delivery else None,
        fine_tuned_files=tuple(fine_tuned_files),
        float_references=float_references,
        rejected_files=tuple(([delivery.kept_name] if delivery
                              and delivery.delivered == finetune.POST_TRAINING else [])
                             + activations.replaced_files(activation_choice)),
        files={name: path.name for name, path in written.items()},
        accuracy={score.file: score.accuracy for score in scores},
        reference=reference_path.name, keras3=keras3_entry,
        activations=activation_choice.to_dict() if activation_choice else None,
        xnnpack=xnnpack_record,
    ), artifacts={path.name: path for path in outputs})
    _apply_gate(scores, config.max_drop_pp, activation_choice, reference_path.name)
    return ConvertResult(out_dir=out_dir, artifacts=written, report=payload)


def _remove_stale_outputs(out_dir: Path, current: set[str]) -> None:
    """Delete files an earlier convert made that this one did not (e.g. a dropped QAT variant)."""
    for name, path in RunDir(out_dir).stage_outputs("convert").items():
        if name not in current:
            path.unlink(missing_ok=True)


def _resolve_source(source: Path, config: ConvertConfig):
    """(model path, output dir, dataset spec, the train record or None) for a run dir or a
    model file (None: the output directory records no training yet)."""
    if source.is_dir():
        run_dir = RunDir(source)
        run_dir.manifest()  # none at all: one line saying so
        trained = run_dir.read(TrainRecord)
        if trained is None or not run_dir.has(ArtifactKind.KERAS_MODEL):
            raise UserInputError(f"{source} is not a trained run directory (no train entry or "
                                 "model.keras); pass a run from `edgeship train` or a .keras file")
        spec = config.dataset or trained.dataset.spec
        return run_dir.path_of(ArtifactKind.KERAS_MODEL), Path(config.out or source), spec, trained
    if not source.is_file():
        raise UserInputError(f"{source} does not exist")
    if source.suffix.lower() not in MODEL_SUFFIXES:
        raise UserInputError(f"{source.name} is not a Keras model (.keras or .h5) or a run directory")
    if config.dataset is None:
        raise UserInputError(f"converting the bare model {source.name} needs --dataset (the data "
                             "to calibrate and evaluate on)")
    out = Path(config.out or source.parent)
    return source, out, config.dataset, RunDir(out).read(TrainRecord)


def _load_model(tf_keras, model_path: Path):
    try:
        return tf_keras.models.load_model(model_path, compile=False)
    except Exception as error:  # corrupt zips, HDF5 errors, unknown layers: all bad input
        text = str(error).strip().splitlines()
        raise UserInputError(f"cannot load model {model_path}: "
                             f"{text[0] if text else type(error).__name__}") from error


def _copy_model(tf_keras, model):
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _check_model_fits(input_shapes: list, output_shapes: list, dataset: Dataset | RowDataset,
                      model_path: Path) -> None:
    """The model must take a defined image shape and emit one class vector."""
    if len(input_shapes) != 1 or len(output_shapes) != 1:
        raise UserInputError(f"{model_path.name} has {len(input_shapes)} inputs and "
                             f"{len(output_shapes)} outputs; edgeship converts classifiers with one each")
    input_shape = tuple(input_shapes[0][1:])
    if not input_shape or any(side is None for side in input_shape):
        raise UserInputError(f"{model_path.name} has no defined input shape ({input_shape}); "
                             "build it with a fixed Input(shape=...)")
    if tuple(input_shape) != dataset.input_shape:
        raise UserInputError(f"dataset images are {dataset.input_shape} but {model_path.name} takes "
                             f"{input_shape}; pass --image-size/--channels to match")
    output_shape = tuple(output_shapes[0])
    if len(output_shape) != 2 or output_shape[1] != dataset.num_classes:
        raise UserInputError(f"{model_path.name} outputs {output_shape}, not a class-probability or "
                             f"logit vector of the dataset's {dataset.num_classes} classes")


def _granularity_record(choice) -> dict | None:
    return None if choice is None else choice.to_dict()


def _fine_tune(tf_keras, model, config: ConvertConfig, dataset: Dataset | RowDataset,
               calibration: np.ndarray, post_training):
    """Prune and/or QAT a copy of the model; (granularity choice, int8 bytes, float bytes).

    The float bytes are the fine-tuned weights exported without quantization (for QAT, the
    chosen fine-tune with tfmot's wrappers stripped): the model the int8 file was quantized
    from, and so its float reference.

    A streamed dataset fine-tunes on a bounded sample of its training split
    (edgeship.train.stage_data.bounded_train_sample), never on the whole split in memory.

    The granularity is measured on the fine-tuned files, never carried over from the
    post-training measurement (see convert/granularity.py).
    """
    tuned = _copy_model(tf_keras, model)  # tfmot's wrappers train the layers they wrap
    x_tune, y_tune = bounded_train_sample(dataset, config.seed)
    if config.pruning:
        prune_config = PruneConfig(
            sparsity=config.prune_sparsity if config.prune_sparsity is not None else 0.5,
            structure=config.prune_structure, epochs=config.prune_epochs, seed=config.seed)
        tuned = prune(tuned, prune_config, x_tune, y_tune)
    if not config.qat_epochs:
        tuned_float = export_tflite(tuned)
        with tempfile.TemporaryDirectory(prefix="edgeship-finetuned-") as folder:
            # Both granularities quantize the pruned weights: measured against them.
            reference = Path(folder) / ArtifactKind.FINETUNED_FLOAT_TFLITE.file_name
            reference.write_bytes(tuned_float)
            choice, data = weight_granularity.choose(
                config.weight_granularity,
                lambda per_tensor: export_tflite(tuned, calibration, config.io_type, per_tensor),
                reference, dataset.x_train, config.seed)
        return dataclasses.replace(choice, measured_on="fine-tuned"), data, tuned_float

    def train_and_export(per_tensor: bool) -> tuple[bytes, bytes]:
        qat_model = quantize_aware_finetune(
            _copy_model(tf_keras, tuned),
            QatConfig(epochs=config.qat_epochs, preserve_sparsity=config.pruning,
                      per_tensor_weights=per_tensor, learning_rate=config.qat_learning_rate,
                      seed=config.seed), x_tune, y_tune, calibration)
        return (export_tflite(qat_model, calibration, config.io_type, per_tensor),
                export_tflite(strip_quantization(qat_model, tuned)))

    return weight_granularity.choose_fine_tuned(
        config.weight_granularity, post_training, train_and_export, dataset.x_train,
        config.seed)


def _fine_tuned_files(delivery, written: dict[str, Path]) -> list[str]:
    """The int8 files made from fine-tuned weights, rewrites of such a file included (the
    XNNPACK file is model_int8.tflite rewritten, so it inherits its source's reference)."""
    if delivery is None:
        return []
    if delivery.delivered != finetune.FINE_TUNED:
        return [delivery.kept_name]
    # The int16 or mixed file is quantized from the fine-tuned float weights too.
    rewritten = [path.name for path in written.values()
                 if ArtifactKind.of(path) in (ArtifactKind.XNNPACK_INT8_TFLITE,
                                              ArtifactKind.INT16_TFLITE,
                                              ArtifactKind.MIXED_TFLITE)]
    return [ArtifactKind.INT8_TFLITE.file_name, *rewritten]


def _float_references(written: dict[str, Path], fine_tuned_files: list[str]) -> dict[str, str]:
    """Each quantized file -> the float file it was quantized from.

    Fine-tuned files (and their rewrites) come from model_finetuned_float.tflite; the others
    from the trained model: model_float.tflite, or model.onnx for the int8 ONNX (always
    quantized from the trained model's ONNX export). inspect compares per layer with this
    file, validate and the drop report measure what quantization cost against it.
    """
    references = {}
    for path in written.values():
        kind = ArtifactKind.of(path)
        if kind is None or kind.precision == "float":
            continue
        if path.name in fine_tuned_files:
            references[path.name] = ArtifactKind.FINETUNED_FLOAT_TFLITE.file_name
        elif kind.format == "onnx":
            references[path.name] = ArtifactKind.FLOAT_ONNX.file_name
        else:
            references[path.name] = ArtifactKind.FLOAT_TFLITE.file_name
    return references


def _delivered_granularity(written: dict[str, Path]) -> dict[str, str]:
    """Each int8 .tflite's weight granularity, read from the file itself."""
    found = {}
    for path in written.values():
        kind = ArtifactKind.of(path)
        if (kind and kind.format == "tflite" and kind.precision == "int8"
                and kind.runtimes is None):  # the XNNPACK file adds pool weights
            counts = weight_scale_counts(path.read_bytes())
            per_tensor = sum(1 for count in counts.values() if count == 1)
            found[path.name] = ("per-tensor" if per_tensor == len(counts)
                                else "per-channel" if per_tensor == 0
                                else f"mixed ({per_tensor} of {len(counts)} layers per-tensor)")
    return found


def _file_sparsity(tflite_bytes: bytes) -> float:
    """Weight sparsity of an int8 file, weighted by each weight tensor's size."""
    per_tensor = weight_sparsity(tflite_bytes)
    counts = weight_counts(tflite_bytes)
    total = sum(counts[name] for name in per_tensor)
    return sum(per_tensor[name] * counts[name] for name in per_tensor) / total if total else 0.0


def _convert_activations(config: ConvertConfig, written: dict[str, Path], dataset,
                         calibration: np.ndarray, float_source: Path):
    """--activations int16|auto: write model_int16.tflite or model_mixed.tflite beside the
    int8 file (see convert/activations.py), quantized from float_source (the float file
    model_int8.tflite was made from); the choice, for the report and the manifest."""
    choice, data = activations.choose(
        config.activations, written["int8_tflite"], float_source, calibration,
        dataset.x_train, dataset.y_train, config.seed, config.max_drop_pp)
    if data is not None:
        kind = ArtifactKind.of(choice.delivered)
        key = kind.name.lower()
        written[key] = write_bytes_atomic(written["int8_tflite"].parent / kind.file_name, data)
        check_tflite(data, dataset.x_test[0])
    say(f"convert: {choice.reason()}")
    return choice


def _write_xnnpack_file(mode: str, written: dict[str, Path], int8_bytes: bytes,
                        dataset) -> XnnpackRecord:
    """model_int8_xnnpack.tflite where a rewrite applies (convert/xnnpack.py); its record."""
    data, rewrites = xnnpack.rewrite_for_xnnpack(int8_bytes, mode)
    kind = ArtifactKind.XNNPACK_INT8_TFLITE
    if rewrites:
        written[kind.name.lower()] = write_bytes_atomic(written["int8_tflite"].parent / kind.file_name, data)
        xnnpack.check_runs(data, dataset.x_test[0])
    return XnnpackRecord(mode=mode, rewrites=tuple(rewrite.describe() for rewrite in rewrites),
                         exact=all(rewrite.exact for rewrite in rewrites),
                         file=kind.file_name if rewrites else None)


def _apply_gate(scores, max_drop_pp: float | None, activation_choice=None,
                reference: str = ArtifactKind.KERAS_MODEL.file_name) -> None:
    """--max-drop applies to what is delivered, not to the file kept beside it, and to the
    total drop against the trained float model (a fine-tune's own gain or loss included)."""
    if max_drop_pp is None:
        return
    delivered = activations.delivered_kinds(activation_choice.delivered if activation_choice
                                            else None)
    failed = [score for score in scores if ArtifactKind.of(score.file) in delivered
              and score.drop_pp > max_drop_pp]
    if failed:
        details = "; ".join(f"{score.file} drops {score.drop_pp:.2f} pp" for score in failed)
        raise CheckFailedError(f"accuracy drop above --max-drop {max_drop_pp} pp: {details} "
                               f"(the total drop against {reference})")


def load_convert_report(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / "convert_report.json").read_text())
