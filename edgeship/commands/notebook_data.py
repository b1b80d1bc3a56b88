"""The notebook's data and model as a run folder holds them (`edgeship.api.convert`'s data=).

Only what later stages need is kept: the test split, and a bounded training sample unless
fine-tuning reads the whole split.
"""

import os
from pathlib import Path

import numpy as np

from edgeship.artifacts import write_bytes_atomic
from edgeship.errors import UserInputError

DATA_FILE = "dataset.npz"


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


def write_dataset(out_dir: Path, data, calibration, class_names, fine_tune: bool = False,
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


def save_model(model, out_dir: Path) -> Path:
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
