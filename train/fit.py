"""`edgeship train`: fit a zoo model on a dataset and write a run directory.

The run directory is the hand-off to every later stage: model.keras, history.json,
training_curves.png and manifest.json (dataset spec with preprocessing, model and options,
seed, library versions, and the SHA-256 and size of every artifact).
"""

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeship.artifacts import save_keras, write_json_atomic, write_with
from edgeship.console import say
from edgeship.deps import TRAINING_THREADS, import_tf_keras, pin_training_threads, require
from edgeship.errors import UserInputError
from edgeship.options import option
from edgeship.records import DatasetRecord, ModelRecord, TrainRecord
from edgeship.reports import tool_versions
from edgeship.run_dir import ArtifactKind, RunDir
from edgeship.train.datasets import Dataset, DatasetSpec
from edgeship.train.models import MODEL_NAMES, ModelOptions, build_model
from edgeship.train.stream import (
    STREAMING_MODES,
    StreamingDataset,
    open_dataset,
    streaming_mode_from_environment,
    tf_batch_reader,
    write_split,
)

STRATEGIES = ("default", "mirrored", "multiworker")
BATCH_NORM_STATISTICS = ("population", "running")
BATCH_NORM_SAMPLES = 1024  # training images behind each recalibration of the moving statistics


@dataclass(frozen=True)
class TrainConfig:
    """Everything `edgeship train` needs; the CLI builds one from its flags."""

    model: str = option(help=f"zoo model: {', '.join(MODEL_NAMES)}")
    dataset: DatasetSpec
    out: str = option(help="run directory to write")
    epochs: int = option(5, help="training epochs")
    batch_size: int = option(32, help="images per training step")
    learning_rate: float = option(2e-3, help="Adam learning rate")
    seed: int = option(0, help="seed of weight init, shuffling and augmentation")
    threads: int = option(TRAINING_THREADS, metavar="N",
                          help="TensorFlow threads per op (0: every core). Fixed by default: "
                          "TensorFlow's results change with the thread count, so one --seed "
                          "trains the same weights on any machine with the same CPU features "
                          "only at one count")
    augment: bool = option(False, help="random shifts, rotations and zoom in the input pipeline")
    early_stopping: int = option(0, metavar="PATIENCE",
                                 help="stop after PATIENCE epochs without a better val_loss (0: off)")
    validation_split: float = option(0.1, help="fraction of the training split held out to "
                                     "validate each epoch")
    strategy: str = option("default", choices=STRATEGIES,
                           help="tf.distribute strategy (multiworker reads TF_CONFIG)")
    batch_norm_statistics: str = option(
        "population", choices=BATCH_NORM_STATISTICS,
        help="population (default): batch-norm moving statistics recomputed from 1,024 training "
        "images before each validation and at the end; running: Keras' moving averages as they are")
    model_options: ModelOptions = field(default_factory=ModelOptions)
    # "auto": folder/npz datasets too big for memory stream (EDGESHIP_STREAMING overrides auto)
    streaming: str = "auto"
    dataset_cache: bool = False  # streamed folders: decode once into RUN_DIR/dataset_cache/

    def __post_init__(self):
        if self.streaming not in STREAMING_MODES:
            raise UserInputError(f"streaming must be one of {', '.join(STREAMING_MODES)}, "
                             f"got {self.streaming!r}")
        if self.model not in MODEL_NAMES:
            raise UserInputError(f"unknown model {self.model!r}; valid models: {', '.join(MODEL_NAMES)}")
        if self.epochs < 1:
            raise UserInputError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserInputError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise UserInputError(f"learning rate must be > 0, got {self.learning_rate}")
        if self.threads < 0:
            raise UserInputError(f"threads must be >= 0 (0: every core), got {self.threads}")
        if self.early_stopping < 0:
            raise UserInputError(f"early-stopping patience must be >= 0, got {self.early_stopping}")
        if not 0 <= self.validation_split < 1:
            raise UserInputError(f"validation split must be in [0, 1), got {self.validation_split}")
        if self.early_stopping and self.validation_split == 0:
            raise UserInputError("early stopping needs a validation split > 0")
        if self.strategy not in STRATEGIES:
            raise UserInputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.batch_norm_statistics not in BATCH_NORM_STATISTICS:
            raise UserInputError(f"batch-norm statistics must be one of {', '.join(BATCH_NORM_STATISTICS)}, "
                             f"got {self.batch_norm_statistics!r}")

    def to_dict(self) -> dict:
        payload = asdict(self)
        payload["dataset"] = self.dataset.to_dict()
        return payload


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    test_accuracy: float
    test_loss: float
    epochs_run: int
    seconds: float
    batch_norm_sha256: str = ""  # of every batch-norm layer's moving statistics, as saved
    chief: bool = True  # False on a multi-worker run's other workers, which write no run directory


def train(config: TrainConfig, dataset: Dataset | None = None,
          callbacks: tuple = ()) -> TrainResult:
    """Train config.model on config.dataset and write the run directory.

    Args:
        config: the training configuration.
        dataset: an already loaded dataset matching config.dataset (saves reloading in tests).
        callbacks: more Keras callbacks for the fit (`edgeship tune`'s pruner stops poor
            trainings early with one).

    Returns:
        TrainResult with the test accuracy measured on the held-out split.
    """
    tf, tf_keras = import_tf_keras()
    threads = pin_training_threads(config.threads)  # before TensorFlow first runs
    if threads != config.threads:
        say(f"warning: TensorFlow already runs in this process with "
            f"{threads or 'its default'} threads per op; --threads {config.threads} cannot "
            "take effect, and the weights may differ from a fresh process's")
    streaming = config.streaming if config.streaming != "auto" else streaming_mode_from_environment()
    dataset = dataset or open_dataset(config.dataset, streaming)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} exists and is not a directory")
    tf_keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    fit_rows, val_rows = _validation_rows(len(dataset.y_train), config.validation_split, config.seed)

    strategy = _make_strategy(tf, config.strategy)
    chief = _is_chief(strategy)
    with strategy.scope():
        model = build_model(config.model, dataset.input_shape, dataset.num_classes,
                            config.model_options, seed=config.seed)
        model.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    streamed = isinstance(dataset, StreamingDataset)
    steps_per_epoch = None  # Keras counts an epoch's batches itself
    if streamed:
        if config.dataset_cache:
            dataset.source.build_cache((out if chief else _worker_folder(out)) / "dataset_cache")
        read_train = tf_batch_reader(tf, dataset.read_train, dataset.input_shape)
        y_fit = dataset.y_train[fit_rows]
        if config.strategy == "multiworker":  # shards its batches: keep tf.data's own shuffle
            train_data = _input_pipeline(tf, tf_keras, fit_rows, y_fit, config, read_train)
        else:
            train_data, steps_per_epoch = _streamed_input_pipeline(tf, tf_keras, fit_rows, y_fit,
                                                                   config, read_train)
        validation_data = (_streamed_batches(tf, val_rows, dataset.y_train[val_rows],
                                             config.batch_size, read_train) if len(val_rows) else None)
    else:
        x_fit, y_fit = dataset.x_train[fit_rows], dataset.y_train[fit_rows]
        x_val, y_val = dataset.x_train[val_rows], dataset.y_train[val_rows]
        train_data = _input_pipeline(tf, tf_keras, x_fit, y_fit, config)
        validation_data = (tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(config.batch_size)
                           if len(x_val) else None)
    extra_callbacks, callbacks = list(callbacks), []
    batch_norm = {"statistics": config.batch_norm_statistics, "layers": 0, "images": 0}
    batch_norm_layers = _trainable_batch_norm_layers(tf_keras, model)
    if config.batch_norm_statistics == "population" and batch_norm_layers:
        chosen = np.random.default_rng(config.seed).permutation(len(fit_rows))[:BATCH_NORM_SAMPLES]
        sample = dataset.read_train(fit_rows[chosen]) if streamed else x_fit[chosen]
        batch_norm.update(layers=len(batch_norm_layers), images=len(sample))
        callbacks.append(_population_statistics_callback(tf_keras, sample))
    if config.early_stopping:
        callbacks.append(tf_keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.early_stopping, restore_best_weights=True))
    callbacks.append(_epoch_line_callback(tf_keras, config.epochs))
    callbacks.extend(extra_callbacks)
    started = time.perf_counter()
    history = model.fit(train_data, validation_data=validation_data, epochs=config.epochs,
                        steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=0)
    seconds = time.perf_counter() - started
    if streamed:
        # Test batches of the training batch size: the peak of a streamed run is the training
        # batch's, whatever the size of the test split (256 images at 96x96x3 took more
        # memory than training itself).
        test_data = _streamed_batches(tf, np.arange(len(dataset.y_test)), dataset.y_test,
                                      config.batch_size,
                                      tf_batch_reader(tf, dataset.read_test, dataset.input_shape))
        test_loss, test_accuracy = model.evaluate(test_data, verbose=0)
        dataset.close()
        if chief and dataset.split is not None:
            write_split(out, dataset.split)
    else:
        test_loss, test_accuracy = model.evaluate(dataset.x_test, dataset.y_test,
                                                  batch_size=config.batch_size, verbose=0)
    batch_norm["statistics_sha256"] = batch_norm_statistics_sha256(model)
    if not chief:
        return _finish_worker(model, out, history, test_loss, test_accuracy, seconds,
                              batch_norm["statistics_sha256"])
    history_payload = {key: [float(value) for value in values]
                       for key, values in history.history.items()}

    out.mkdir(parents=True, exist_ok=True)
    run_dir = RunDir(out)
    model_path = save_keras(model, run_dir.path_of(ArtifactKind.KERAS_MODEL))
    history_path = write_json_atomic(out / "history.json", history_payload)
    curves_path = write_with(out / "training_curves.png",
                             lambda temp: plot_training_curves(history_payload, temp))
    run_dir.write(TrainRecord(
        config=config.to_dict(),
        dataset=DatasetRecord(spec=dataset.spec, preprocessing=dict(dataset.preprocessing),
                              class_names=tuple(dataset.class_names),
                              input_shape=tuple(dataset.input_shape),
                              train_images=len(dataset.y_train), test_images=len(dataset.y_test),
                              streamed=streamed),
        model=ModelRecord(name=config.model, options=asdict(config.model_options),
                          parameters=int(model.count_params())),
        seed=config.seed,
        batch_norm=batch_norm,
        epochs_run=len(history_payload.get("loss", [])),
        test_accuracy=float(test_accuracy),
        test_loss=float(test_loss),
        train_seconds=round(seconds, 3),
        versions=tool_versions(),
    ), artifacts={model_path.name: model_path, "history.json": history_path,
                  "training_curves.png": curves_path})
    return TrainResult(run_dir=out, test_accuracy=float(test_accuracy), test_loss=float(test_loss),
                       epochs_run=len(history_payload.get("loss", [])), seconds=seconds,
                       batch_norm_sha256=batch_norm["statistics_sha256"])


def batch_norm_statistics_sha256(model) -> str:
    """SHA-256 of every batch-norm layer's moving mean and variance (float32 bytes, layer order).

    Workers of a multi-worker run must end with the same statistics; this compares them.
    """
    import hashlib

    import tf_keras

    digest = hashlib.sha256()
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            for variable in (layer.moving_mean, layer.moving_variance):
                digest.update(np.asarray(variable.numpy(), np.float32).tobytes())
    return digest.hexdigest()


def _is_chief(strategy) -> bool:
    """Whether this process writes the run directory (always, unless a non-chief worker)."""
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def _worker_folder(out: Path) -> Path:
    """A non-chief worker's own scratch folder (never the run directory), one per process."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"edgeship_worker_{os.getpid()}_{out.name}"


def _finish_worker(model, out: Path, history, test_loss, test_accuracy, seconds,
                   statistics_sha256: str) -> TrainResult:
    """A non-chief worker saves into its own folder (saving may be collective), then removes it."""
    import shutil

    folder = _worker_folder(out)
    try:
        save_keras(model, folder / ArtifactKind.KERAS_MODEL.file_name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return TrainResult(run_dir=folder, test_accuracy=float(test_accuracy), test_loss=float(test_loss),
                       epochs_run=len(history.history.get("loss", [])), seconds=seconds,
                       batch_norm_sha256=statistics_sha256, chief=False)


def recalibrate_batch_norm(model, images: np.ndarray, batch_size: int = 256) -> int:
    """Set every trainable BatchNormalization's moving statistics to its inputs' population moments.

    Keras keeps an exponential moving average (momentum 0.99) that starts at mean 0 and variance
    1 and is never bias-corrected. When a layer's real input variance is far below 1 (0.004 at
    dscnn's stem on MNIST) the start value dominates for hundreds of steps, and the lag
    compounds through stacked layers: dscnn trained 3 epochs on mnist5k scored 0.964 in
    training mode and 0.155 in inference mode. One forward pass in training mode over images
    (each layer then sees inputs normalized the way training normalized them) gives each layer's
    mean and variance, pooled over every image and position, which replace the averages; this
    is "precise BN" (Wu and Johnson, 2021). Frozen layers (trainable False) keep theirs.

    Args:
        model: a single-input tf_keras functional or sequential model.
        images: preprocessed training images (never validation or test images).
        batch_size: images per forward pass.

    Returns:
        The number of layers whose statistics were replaced.
    """
    return BatchNormRecalibrator(model, batch_size)(images)


class BatchNormRecalibrator:
    """recalibrate_batch_norm with its compiled forward pass kept, for once-per-epoch use."""

    def __init__(self, model, batch_size: int = 256):
        import tensorflow as tf
        import tf_keras

        self.layers = _trainable_batch_norm_layers(tf_keras, model)
        self.batch_size = batch_size
        if not self.layers:
            return
        probe = tf_keras.Model(model.inputs, [layer.input for layer in self.layers])
        reduce_axes = [[axis for axis in range(len(layer.input.shape))
                        if axis not in [a % len(layer.input.shape) for a in layer.axis]]
                       for layer in self.layers]

        @tf.function(autograph=False, input_signature=[
            tf.TensorSpec([None, *model.inputs[0].shape[1:]], model.inputs[0].dtype)])
        def batch_moments(images):
            outputs = probe(images, training=True)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            moments = []
            for output, axes in zip(outputs, reduce_axes):
                mean = tf.reduce_mean(output, axis=axes, keepdims=True)
                squared_deviation = tf.reduce_sum(tf.square(output - mean), axis=axes)
                count = tf.size(output) // tf.size(squared_deviation)
                moments.append((tf.reshape(mean, [-1]), squared_deviation, count))
            return moments

        self._batch_moments = batch_moments

    def __call__(self, images: np.ndarray) -> int:
        if not self.layers or not len(images):
            return 0
        totals = [None] * len(self.layers)  # (count, mean, sum of squared deviations) per layer
        for start in range(0, len(images), self.batch_size):
            batch = self._batch_moments(images[start:start + self.batch_size])
            for index, (mean, squared_deviation, count) in enumerate(batch):
                current = (int(count), mean.numpy().astype(np.float64),
                           squared_deviation.numpy().astype(np.float64))
                totals[index] = current if totals[index] is None else _merge(totals[index], current)
        for layer, (count, mean, squared_deviation) in zip(self.layers, totals):
            layer.moving_mean.assign(mean.astype(np.float32))
            layer.moving_variance.assign((squared_deviation / count).astype(np.float32))
        return len(self.layers)


def _merge(first, second):
    """Chan et al.'s pairwise update: the moments of two groups pooled, stable in float64."""
    count_a, mean_a, deviation_a = first
    count_b, mean_b, deviation_b = second
    count = count_a + count_b
    delta = mean_b - mean_a
    return (count, mean_a + delta * count_b / count,
            deviation_a + deviation_b + delta * delta * count_a * count_b / count)


def _trainable_batch_norm_layers(tf_keras, model) -> list:
    return [layer for layer in model.layers
            if isinstance(layer, tf_keras.layers.BatchNormalization) and layer.trainable]


def _epoch_line_callback(tf_keras, epochs: int):
    """One console line per epoch (Keras' own logger prints two, and a progress bar on a TTY)."""
    clock = {}

    def begin(epoch, logs=None):
        clock["started"] = time.perf_counter()

    def end(epoch, logs=None):
        metrics = ", ".join(f"{name} {value:.4f}" for name, value in (logs or {}).items())
        print(f"epoch {epoch + 1}/{epochs}: {metrics} "
              f"({time.perf_counter() - clock['started']:.1f} s)", flush=True)

    return tf_keras.callbacks.LambdaCallback(on_epoch_begin=begin, on_epoch_end=end)


def _population_statistics_callback(tf_keras, images: np.ndarray):
    """Recalibrate batch norm before each validation pass and at each epoch's end.

    Before validation, so val_loss (and early stopping, which restores the weights of its best
    epoch, moving statistics included) judges the model inference will run.
    """

    class PopulationStatistics(tf_keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self._recalibrator = None
            self._current = False

        def on_epoch_begin(self, epoch, logs=None):
            self._current = False

        def on_test_begin(self, logs=None):
            self._recalibrate()

        def on_epoch_end(self, epoch, logs=None):
            self._recalibrate()

        def _recalibrate(self):
            if self._current:
                return
            if self._recalibrator is None:
                self._recalibrator = BatchNormRecalibrator(self.model)
            self._recalibrator(images)
            self._current = True

    return PopulationStatistics()


def _validation_rows(train_images: int, fraction: float, seed: int):
    """Seeded hold-out of the training split for validation (never the test split)."""
    count = round(train_images * fraction)
    order = np.random.default_rng(seed).permutation(train_images)
    return order[count:], order[:count]


def _streamed_batches(tf, rows, labels, batch_size: int, read_batch):
    """Rows in order, batched, each batch read by read_batch (validation and test)."""
    data = tf.data.Dataset.from_tensor_slices((rows, labels)).batch(batch_size)
    return _shard_by_data(tf, data.map(read_batch, num_parallel_calls=2, deterministic=True)
                          .prefetch(2))


def _shard_by_data(tf, data):
    """Multi-worker sharding by element: there are no files for tf.data to shard by."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options)


def _make_strategy(tf, name: str):
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _streamed_input_pipeline(tf, tf_keras, rows, labels, config: TrainConfig, read_batch):
    """The streamed training batches: the in-memory pipeline's order, in memory that stays bounded.

    tf.data's shuffle holds every element of its buffer as tensors, about 390 bytes a row for
    (row, label), so shuffling rows grew the process with the dataset (53 MB more at 144,000
    rows than at 9,000; multiworker runs, whose batches are sharded, still shuffle that way).
    A seeded shuffle's order does not depend on what it shuffles: each epoch's order is taken
    up front from the same shuffle over range(len(rows)), iterated as Keras iterates its
    training data (one iterator made and dropped before the first epoch's), and kept as int32
    (4 bytes a row an epoch); the batches gather rows and labels by it.

    Returns:
        (dataset of every epoch's batches, batches per epoch) for model.fit.
    """
    count = len(rows)
    shuffled = (tf.data.Dataset.range(count)
                .shuffle(count, seed=config.seed, reshuffle_each_iteration=True).batch(max(count, 1)))
    orders = np.zeros((config.epochs, count), np.int32)
    for epoch in range(-1, config.epochs):
        for order in shuffled:  # one element: the whole epoch's order
            if epoch >= 0:
                orders[epoch] = order.numpy()
    del shuffled
    row_table, label_table = tf.constant(rows), tf.constant(labels)
    data = (tf.data.Dataset.from_tensor_slices(orders)
            .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order)
                      .batch(config.batch_size))
            .map(lambda batch: (tf.gather(row_table, batch), tf.gather(label_table, batch))))
    data = _shard_by_data(tf, data.map(read_batch, num_parallel_calls=2, deterministic=True))
    return _augmented(tf_keras, data, config).prefetch(2), -(-count // config.batch_size)


def _input_pipeline(tf, tf_keras, images, labels, config: TrainConfig, read_batch=None):
    """tf.data pipeline; augmentation lives here, never as layers of the saved model.

    With read_batch, `images` are rows of a streamed split: the same seeded shuffle orders the
    rows, and read_batch turns each batch of rows into images (so both paths feed the same
    images in the same order).
    """
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    data = data.shuffle(len(images), seed=config.seed, reshuffle_each_iteration=True)
    data = data.batch(config.batch_size)
    if read_batch is not None:
        data = _shard_by_data(tf, data.map(read_batch, num_parallel_calls=2, deterministic=True))
    return _augmented(tf_keras, data, config).prefetch(2)


def _augmented(tf_keras, data, config: TrainConfig):
    """data with config.augment's random shifts, rotations and zoom applied to its images."""
    if not config.augment:
        return data
    augment = tf_keras.Sequential([
        tf_keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=config.seed),
        tf_keras.layers.RandomRotation(0.05, fill_mode="constant", seed=config.seed + 1),
        tf_keras.layers.RandomZoom(0.1, fill_mode="constant", seed=config.seed + 2),
    ], name="augment")
    return data.map(lambda x, y: (augment(x, training=True), y),
                    num_parallel_calls=1, deterministic=True)


def plot_training_curves(history: dict, path: str | Path) -> None:
    """Loss and accuracy per epoch, train and validation, side by side."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    pyplot = require("matplotlib.pyplot")
    figure, axes = pyplot.subplots(1, 2, figsize=(9, 3.5))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = history.get(prefix + metric)
            if values:
                axis.plot(range(1, len(values) + 1), values, marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    pyplot.close(figure)


def load_run_history(run_dir: str | Path) -> dict:
    """The per-epoch metrics a run recorded."""
    return json.loads((Path(run_dir) / "history.json").read_text())
