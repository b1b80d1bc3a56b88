"""edgeship from Python: the CLI's commands as functions, for models trained in a notebook.

Each function builds the same config dataclass the CLI builds (same option names and
defaults: the dataclass fields, with the CLI's short names accepted as aliases), calls the
same library function, and returns a result whose `table` prints as the CLI's summary and
converts to a pandas DataFrame. Errors are the CLI's one-line messages as exceptions:
`UserInputError` (bad input: exit 2 on the CLI), `CheckFailedError` (a gate failed: exit 1; the
result is attached as `error.result`), `ToolFailureError` (a converter failed: exit 3). No
function here exits the interpreter.

    import edgeship
    (x_train, y_train), (x_test, y_test) = edgeship.load_data("fashion_mnist")
    ...  # build and fit a Keras model
    result = edgeship.convert(model, data=((x_train, y_train), (x_test, y_test)), out="runs/nb")
    print(result)

TensorFlow is imported only inside the calls (`import edgeship` stays light).
"""

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeship.artifacts import write_bytes_atomic
from edgeship.errors import CheckFailedError, UserInputError
from edgeship.tables import Table

# The CLI's short option names that differ from the config field they set.
ALIASES = {
    "qat": "qat_epochs", "prune": "prune_sparsity", "io": "io_type", "max_drop": "max_drop_pp",
    "backend": "backends", "calibration": "calibration_samples", "limit": "limit",
    "prune_allowance": "prune_allowance_pp",
}
DATA_FILE = "dataset.npz"


def _config(config_class, fixed: dict, options: dict):
    """The config dataclass from fixed fields plus user options (aliases resolved, checked)."""
    names = {item.name for item in dataclasses.fields(config_class)}
    values = dict(fixed)
    for key, value in options.items():
        name = ALIASES.get(key, key)
        if name not in names or name in fixed:
            valid = sorted(names - set(fixed))
            raise UserInputError(f"unknown option {key!r} for {config_class.__name__}; valid: "
                                 f"{', '.join(valid)}")
        if isinstance(value, list):
            value = tuple(value)
        if name in ("backends", "artifacts", "runtimes") and isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        values[name] = value
    try:
        return config_class(**values)
    except (TypeError, ValueError) as error:
        raise UserInputError(f"{config_class.__name__}: {error}") from error


# --- data ---------------------------------------------------------------------------------------

def load_data(name: str, **spec_options) -> tuple[tuple[np.ndarray, np.ndarray],
                                                   tuple[np.ndarray, np.ndarray]]:
    """A dataset as Keras' `load_data()` returns it, with edgeship's preprocessing applied.

    Args:
        name: any dataset `edgeship train --dataset` takes (mnist5k, fashion_mnist, digits,
            folder:PATH, npz:PATH, ...).
        **spec_options: DatasetSpec fields (seed, test_size, image_size, channels).

    Returns:
        ((x_train, y_train), (x_test, y_test)): float32 NHWC images scaled as the CLI scales
        them, int64 labels. `dataset_class_names(name)` gives the class names.

    Every image is decoded into memory (4 bytes per pixel and channel: 100,000 96x96 RGB
    images take 11 GB). A folder or npz dataset bigger than memory goes by name to
    `train(dataset=...)`, `convert` and `validate`, which stream it.
    """
    dataset = _load(name, spec_options)
    return (dataset.x_train, dataset.y_train), (dataset.x_test, dataset.y_test)


def dataset_class_names(name: str, **spec_options) -> tuple[str, ...]:
    """The class names of a dataset, in label order (a large folder's without decoding it)."""
    from edgeship.train.datasets import DatasetSpec
    from edgeship.train.stage_data import close_dataset, open_stage_dataset

    dataset = open_stage_dataset(_config(DatasetSpec, {"name": name}, spec_options))
    close_dataset(dataset)
    return dataset.class_names


def _load(name: str, spec_options: dict):
    from edgeship.train.datasets import DatasetSpec, load_dataset

    return load_dataset(_config(DatasetSpec, {"name": name}, spec_options))


def _arrays(data, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, labels or None) from a pair of arrays, one array, or a tf.data.Dataset."""
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = np.asarray(data[0]), np.asarray(data[1])
    elif isinstance(data, np.ndarray):
        images, labels = data, None
    elif hasattr(data, "as_numpy_iterator"):
        images, labels = _dataset_arrays(data, what)
    else:
        raise UserInputError(f"{what} must be (images, labels) numpy arrays, an images array or a "
                             f"tf.data.Dataset, got {type(data).__name__}")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if labels is not None:
        labels = labels.reshape(-1)
        if np.issubdtype(labels.dtype, np.floating) and labels.ndim == 1 and np.all(labels % 1 == 0):
            labels = labels.astype(np.int64)
        if len(labels) != len(images):
            raise UserInputError(f"{what}: {len(images)} images but {len(labels)} labels")
    return images.astype(np.float32), labels


def _dataset_arrays(data, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Concatenates a tf.data.Dataset of images or (images, labels), batched or not."""
    image_parts, label_parts = [], []
    for element in data.as_numpy_iterator():
        images, labels = (element[0], element[1]) if isinstance(element, tuple) else (element, None)
        images = np.asarray(images)
        batched = images.ndim == 4 or (labels is not None and np.ndim(labels) >= 1)
        image_parts.append(images if batched else images[np.newaxis])
        if labels is not None:
            label_parts.append(np.atleast_1d(np.asarray(labels)))
    if not image_parts:
        raise UserInputError(f"{what}: the tf.data.Dataset is empty")
    return (np.concatenate(image_parts),
            np.concatenate(label_parts) if label_parts else None)


# Training images kept beside a converted model when nothing fine-tunes: calibration (500 by
# default) and the weight-granularity choice (1,000) read no more.
KEPT_TRAINING_IMAGES = 2000


def _write_dataset(out_dir: Path, data, calibration, class_names, fine_tune: bool = False,
                   seed: int = 0) -> str:
    """Writes what later stages need of the notebook's arrays as the run's npz dataset.

    The test split whole (convert's report and validate score it), and of the training split
    a seeded class-balanced sample of KEPT_TRAINING_IMAGES (calibration and the granularity
    choice), or all of it when QAT or pruning fine-tunes on it. Values are kept exactly as
    given: as uint8 with raw_max 255 when the loader reads every one back bit for bit (images
    scaled by 1/255), else as float32.
    """
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], tuple):
        (x_train, y_train), test = data
        train_images, train_labels = _arrays((x_train, y_train), "data[0] (training split)")
        test_images, test_labels = _arrays(test, "data[1] (test split)")
    else:
        test_images, test_labels = _arrays(data, "data")
        if calibration is None:
            raise UserInputError("pass calibration=TRAINING_IMAGES (or data=((x_train, y_train), "
                                 "(x_test, y_test))): int8 ranges are calibrated on training "
                                 "images, never on the evaluation split")
        train_images, train_labels = _arrays(calibration, "calibration")
    if test_labels is None:
        raise UserInputError("data needs labels: pass (x_test, y_test)")
    if train_labels is None:
        train_labels = np.zeros(len(train_images), dtype=np.int64)
    count = int(max(test_labels.max(), train_labels.max())) + 1
    names = [str(name) for name in class_names] if class_names is not None else [
        str(index) for index in range(count)]
    if len(names) < count:
        raise UserInputError(f"class_names has {len(names)} names but the labels go up to "
                             f"{count - 1}")
    if not fine_tune and len(train_images) > KEPT_TRAINING_IMAGES:
        from edgeship.train.datasets import class_balanced_indices

        kept = np.sort(class_balanced_indices(train_labels, KEPT_TRAINING_IMAGES, seed))
        train_images, train_labels = train_images[kept], train_labels[kept]
    import io

    stored, raw_max = _exact_uint8(train_images, test_images)
    buffer = io.BytesIO()
    np.savez(buffer, x_train=stored[0], y_train=train_labels.astype(np.int64),
             x_test=stored[1], y_test=test_labels.astype(np.int64),
             class_names=np.array(names), raw_max=np.float32(raw_max))
    path = write_bytes_atomic(out_dir / DATA_FILE, buffer.getvalue())
    return f"npz:{path.resolve()}"


def _exact_uint8(*splits: np.ndarray) -> tuple[tuple[np.ndarray, ...], float]:
    """The splits as uint8 (raw_max 255) when the npz loader's `raw * (1 / 255)` in float32
    gives back every value bit for bit, else unchanged (raw_max 1): a quarter of the bytes for
    images scaled from 8-bit pixels, never a changed value."""
    packed = []
    for images in splits:
        levels = np.rint(images.astype(np.float64) * 255.0)
        if images.dtype != np.float32 or levels.min() < 0 or levels.max() > 255:
            return splits, 1.0
        raw = levels.astype(np.uint8)
        if not np.array_equal((raw.astype(np.float32) * (1.0 / 255.0)).astype(np.float32)
                              .view(np.uint32), images.view(np.uint32)):
            return splits, 1.0
        packed.append(raw)
    return tuple(packed), 255.0


def _save_model(model, out_dir: Path) -> Path:
    """Saves a tf_keras or Keras 3 model object as out_dir/model.keras."""
    from edgeship.run_dir import ArtifactKind

    path = out_dir / ArtifactKind.KERAS_MODEL.file_name
    module = type(model).__module__
    if not hasattr(model, "save") or not (module.startswith(("tf_keras", "keras", "tensorflow"))):
        raise UserInputError(f"model must be a Keras model, a .keras/.h5 file or a run directory, "
                             f"got {type(model).__name__}")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.keras")
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


# --- results ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    """What a call measured: `table` (prints as the CLI's summary), `paths` and the raw report."""

    table: Table
    paths: dict[str, Path] = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return str(self.table)

    def _repr_html_(self) -> str:
        return self.table._repr_html_()

    def to_pandas(self):
        return self.table.to_pandas()


@dataclass(frozen=True)
class ConvertResult(Result):
    """`drop_pp`: the delivered int8 TFLite's accuracy drop in points (None without --int8)."""

    out_dir: Path | None = None

    @property
    def drop_pp(self) -> float | None:
        from edgeship.run_dir import ArtifactKind

        for row in self.report.get("artifacts", []):
            if row["file"] == ArtifactKind.INT8_TFLITE.file_name:
                return row["drop_pp"]
        return None


def _raise_failed(message: str, result: Result) -> None:
    error = CheckFailedError(message)
    error.result = result
    raise error


# --- commands -----------------------------------------------------------------------------------

def train(model: str = "lenet5", dataset: str = "mnist5k", out: str | os.PathLike = "runs/train",
          **options) -> Result:
    """`edgeship train`: a zoo model on a dataset; options are TrainConfig fields."""
    from edgeship.train.datasets import DatasetSpec
    from edgeship.train.fit import TrainConfig
    from edgeship.train.fit import train as train_model

    spec_fields = {item.name for item in dataclasses.fields(DatasetSpec)} - {"name"}
    spec_options = {key: options.pop(key) for key in list(options) if key in spec_fields}
    if "split_seed" in options:
        spec_options["seed"] = options.pop("split_seed")
    config = _config(TrainConfig, {"model": model, "out": str(out),
                                   "dataset": _config(DatasetSpec, {"name": dataset}, spec_options)},
                     options)
    result = train_model(config)
    record = {"run_dir": str(result.run_dir), "test_accuracy": result.test_accuracy,
              "test_loss": result.test_loss, "epochs_run": result.epochs_run,
              "seconds": result.seconds}
    return Result(Table.from_records(f"edgeship train {model} on {dataset}", [record],
                                     tuple(record)),
                  {"run_dir": Path(result.run_dir)}, record)


def convert(model, data=None, *, calibration=None, class_names=None,
            out: str | os.PathLike | None = None, **options) -> ConvertResult:
    """`edgeship convert` on a model object, a .keras/.h5 file or a run directory.

    Args:
        model: a tf_keras or Keras 3 model object (saved as OUT/model.keras), a .keras/.h5
            path, or a run directory from `edgeship train`.
        data: evaluation data: a dataset name (as --dataset), ((x_train, y_train), (x_test,
            y_test)), (x_test, y_test) numpy arrays or a tf.data.Dataset of (images, labels).
            Arrays are used exactly as given (the model's own preprocessing) and kept in OUT's
            dataset.npz only as far as later stages need them: the test split, and a 2,000-image
            class-balanced training sample unless QAT or pruning fine-tunes on the whole
            split (uint8 when the values are 8-bit pixels / 255, exactly). None: the run's
            recorded dataset.
        calibration: training images (array or tf.data.Dataset) when `data` holds only the
            test split: int8 ranges and fine-tuning use them, never the test split.
        class_names: names of the classes, in label order (arrays only).
        out: output directory (required for a model object).
        **options: ConvertConfig fields (int8, qat_epochs, prune_sparsity, onnx, io_type,
            weight_granularity, max_drop_pp, ...) or the CLI's names (qat, prune, io, max_drop).

    Returns:
        ConvertResult: the accuracy-drop table (one row per artifact), `drop_pp`, written paths.

    Raises:
        UserInputError, CheckFailedError (max_drop exceeded; files are written), ToolFailureError.
    """
    from edgeship.convert.run import ConvertConfig, run_convert
    from edgeship.train.datasets import DatasetSpec

    is_object = not isinstance(model, (str, os.PathLike))
    if is_object and out is None:
        raise UserInputError("out= is required when converting a model object (the folder where "
                             "model.keras, the artifacts and the report go)")
    out_dir = Path(out) if out is not None else None
    dataset = None
    if is_object:
        out_dir.mkdir(parents=True, exist_ok=True)
        source = str(_save_model(model, out_dir))
    else:
        source = str(model)
    if isinstance(data, str):
        dataset = DatasetSpec(name=data)
    elif isinstance(data, DatasetSpec):
        dataset = data
    elif data is not None:
        target = out_dir or (Path(source) if Path(source).is_dir() else Path(source).parent)
        target.mkdir(parents=True, exist_ok=True)
        fine_tune = bool(options.get("qat_epochs", options.get("qat", 0))
                         or options.get("prune_sparsity", options.get("prune")))
        dataset = DatasetSpec(name=_write_dataset(target, data, calibration, class_names,
                                                  fine_tune, int(options.get("seed", 0))))
    elif is_object:
        raise UserInputError("data= is required with a model object: a dataset name or "
                             "((x_train, y_train), (x_test, y_test)) arrays")
    config = _config(ConvertConfig, {"source": source, "dataset": dataset,
                                     "out": str(out_dir) if out_dir else None}, options)
    try:
        converted = run_convert(config)
    except CheckFailedError as error:
        result = _convert_result(Path(config.out or Path(source).parent), None)
        error.result = result
        raise
    return _convert_result(converted.out_dir, converted)


def _convert_result(out_dir: Path, converted) -> ConvertResult:
    from edgeship.convert.run import load_convert_report

    report = converted.report if converted is not None else load_convert_report(out_dir)
    columns = ("file", "backend", "accuracy", "drop_pp", "agreement", "bytes", "gzipped_bytes",
               "sparsity")
    table = Table.from_records(f"accuracy drop against {report.get('reference', 'the float model')}",
                               report.get("artifacts", []), columns)
    paths = dict(converted.artifacts) if converted is not None else {}
    return ConvertResult(table, paths, report, out_dir=Path(out_dir))


def validate(run: str | os.PathLike, **options) -> Result:
    """`edgeship validate`: every artifact x backend pair; options are ValidateConfig fields.

    Raises:
        CheckFailedError when a check fails (the result is `error.result`).
    """
    from edgeship.runtime.parity import ValidateConfig, validate_run

    report = validate_run(_config(ValidateConfig, {"run_dir": str(run)}, options))
    payload = report.payload
    table = Table.from_records(f"parity against {payload['reference']['artifact']} on "
                               f"{payload['reference']['backend']}", payload["pairs"],
                               ("artifact", "backend", "precision", "accuracy", "drop",
                                "agreement", "max_abs_error", "cosine"))
    result = Result(table, {"parity.json": report.json_path, "parity.md": report.markdown_path},
                    payload)
    if not report.passed:
        _raise_failed("validate failed: " + "; ".join(payload["failures"][:3]), result)
    return result


def bench(artifacts, **options) -> Result:
    """`edgeship bench`: latency of model files; options are BenchConfig fields plus
    `baseline` (a JSON file) and `max_regression` (a fraction), as on the CLI."""
    from edgeship.runtime.bench import BenchConfig, compare_to_baseline, load_baseline
    from edgeship.runtime.bench import bench as measure

    baseline = options.pop("baseline", None)
    max_regression = options.pop("max_regression", 0.10)
    if isinstance(artifacts, (str, os.PathLike)):
        artifacts = (artifacts,)
    for key in ("threads", "batch"):
        if isinstance(options.get(key), int):
            options[key] = (options[key],)
    records = measure(_config(BenchConfig, {"artifacts": tuple(str(path) for path in artifacts)},
                              options))
    rows = [{"artifact": record["artifact"], "backend": record["backend"],
             "threads": record["threads"], "batch": record["batch"],
             **{f"{key}_us": record["latency_us"][key] for key in ("p50", "p90", "p99")},
             "images_per_s": record["throughput_images_per_s"]} for record in records]
    result = Result(Table.from_records("latency", rows, tuple(rows[0]) if rows else ()),
                    {}, {"records": records})
    if baseline is not None:
        comparisons, _ = compare_to_baseline(records, load_baseline(baseline), max_regression)
        regressed = [comparison.describe() for comparison in comparisons if not comparison.passed]
        if regressed:
            _raise_failed("latency regression: " + "; ".join(regressed), result)
    return result


def inspect(source: str | os.PathLike, **options) -> Result:
    """`edgeship inspect`: per-layer error, per-op runtimes, attribution (InspectConfig fields)."""
    from edgeship.inspect import InspectConfig, run_inspect

    if isinstance(options.get("dataset"), str):
        from edgeship.train.datasets import DatasetSpec

        options["dataset"] = DatasetSpec(name=options["dataset"])
    payload = run_inspect(_config(InspectConfig, {"source": str(source)}, options))
    if payload.get("layers"):
        table = Table.from_records("per-layer quantization error (worst SQNR first)",
                                   payload["layers"], ("index", "op", "sqnr_db", "cosine",
                                                       "mean_error_quanta", "max_error_quanta"))
    else:
        table = Table.from_records("per-op comparison with the reference kernels",
                                   payload.get("ops", []), ("index", "op", "runtime", "verdict"))
    source = Path(source)
    stem = "inspect" if source.is_dir() else f"{source.stem}_inspect"
    folder = source if source.is_dir() else source.parent
    return Result(table, {suffix: folder / f"{stem}.{suffix}" for suffix in ("json", "md")},
                  payload)


def codegen(model: str | os.PathLike, out: str | os.PathLike, **options) -> Result:
    """`edgeship codegen`: standalone C for an int8 .tflite (CodegenConfig fields)."""
    from edgeship.firmware import CodegenConfig, generate_c

    generated = generate_c(_config(CodegenConfig, {"model": str(model), "out": str(out)}, options))
    report = generated.to_dict()
    record = {key: value for key, value in report.items() if isinstance(value, (int, float, str))}
    return Result(Table.from_records("generated C", [record], tuple(record)),
                  {path.name: path for path in generated.files}, report)


def profile(model: str | os.PathLike, **options) -> Result:
    """`edgeship profile`: the generated C on an emulated Cortex-M (ProfileConfig fields:
    target, kernels, clock_mhz, input, seed, cmsis_nn); one row per op, and a total row.

    Cycles and ms are an estimate from Arm's instruction timings; instructions are counted.
    `baseline` (a profile JSON) and `max_regression` (default 0.01) gate as on the CLI."""
    from edgeship.profile.report import load_baseline, regressions
    from edgeship.profile.run import ProfileConfig, profile_model

    baseline = options.pop("baseline", None)
    max_regression = options.pop("max_regression", 0.01)
    report = profile_model(_config(ProfileConfig, {"model": str(model)}, options))
    payload = report.to_dict()
    rows = [{key: op.get(key) for key in ("index", "op", "instructions", "cycles", "ms", "macs",
                                          "cycles_per_mac")} for op in payload["ops"]]
    rows.append({"op": "total", **{key: payload["total"][key] for key in
                                   ("instructions", "cycles", "ms", "macs", "cycles_per_mac")}})
    result = Result(Table.from_records(f"{Path(model).name} on {report.target} at "
                                       f"{report.clock_mhz:g} MHz ({report.kernels} kernels; "
                                       "cycles estimated)", rows,
                                       ("index", "op", "instructions", "cycles", "ms", "macs",
                                        "cycles_per_mac")), {}, payload)
    if baseline is not None:
        failed = regressions(report, load_baseline(baseline), max_regression)
        if failed:
            _raise_failed("profile regression: " + "; ".join(failed), result)
    return result


def tune(dataset: str | None = None, out: str | os.PathLike | None = None, *,
         config: str | os.PathLike | None = None, space: dict | None = None,
         resume: bool = False, show: bool = False, **options) -> Result:
    """`edgeship tune`: the most accurate model within RAM, flash and latency budgets.

    Args:
        dataset: any --dataset (mnist5k, folder:PATH, ...); not needed with resume or show.
        out: the tune folder (study.db, trials/, tune_report.html/.json).
        config: a TOML file with [tune] and [space] tables, as on the CLI (arguments win).
        space: SearchSpace fields -> choices (families, widths, prune_sparsities, ...).
        resume: go on with the study in `out` (or `storage`) with its own settings.
        show: only write the report of the study as it stands.
        **options: TuneConfig fields as on the CLI (target, max_ram="64KB" or bytes,
            max_flash, max_ms, min_accuracy, trials, epochs, sampler, seed, storage, ...) and
            the dataset options (split_seed, test_size, image_size, channels).

    Returns:
        The Pareto front as a table; `report` is tune_report.json's payload.

    Raises:
        CheckFailedError: no trained model met every budget (the report is written; the
            result is `error.result`).
    """
    from edgeship.cli_tune import tune_settings
    from edgeship.tune_space import SearchSpace
    from edgeship.tuning import resume_tune, run_tune, show_tune

    values = {**options, "dataset": dataset, "out": str(out) if out is not None else None}
    settings, file_space = tune_settings(values, str(config) if config else None)
    if settings.out is None:
        raise UserInputError("tune needs out= (the tune folder)")
    try:
        if show:
            outcome = show_tune(settings)
        elif resume:
            outcome = resume_tune(settings, options)
        else:
            if settings.dataset is None:
                raise UserInputError("tune needs dataset= (or resume=True/show=True on a study "
                                     "in out=)")
            outcome = run_tune(settings, _config(SearchSpace, {}, {**file_space,
                                                                   **(space or {})}))
    except CheckFailedError as error:
        outcome = getattr(error, "outcome", None)
        if outcome is not None:
            error.result = _tune_result(outcome)
        raise
    return _tune_result(outcome)


def _tune_result(outcome) -> Result:
    from edgeship.tune_report import front_rows

    rows = front_rows(outcome.report)
    return Result(Table.from_records("Pareto front: every budget met", rows,
                                     tuple(rows[0]) if rows else ("trial",)),
                  {"tune_report.json": outcome.json_path, "tune_report.html": outcome.html_path},
                  outcome.report)
