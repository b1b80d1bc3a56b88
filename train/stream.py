"""Datasets bigger than memory: a folder or npz read in batches, never as one array.

`open_dataset` returns the in-memory `Dataset` when the decoded float32 images fit
`MEMORY_BUDGET_BYTES`, otherwise a `StreamingDataset` (`streaming="on"` or the environment
variable EDGESHIP_STREAMING=on forces it, e.g. to test it on a small folder). A streaming
dataset keeps file names (one buffer, `FileNames`) and labels (int64 arrays) only, never a
Python object per image; pixels come from `read_train`/`read_test`, which decode with the
same `decode_image` as the in-memory path (a pool of worker processes, since PIL holds the
GIL for most of a small image's decode) or read an on-disk uint8 cache.

The folder split is the in-memory path's seeded stratified split applied to the file list, so
both paths put the same files in the test split and feed training the same images in the same
order. `write_split` records it by file (dataset_split.json in the run directory);
`iter_test_batches` and `calibration_samples` let later stages read a run's batches from it.
"""

import array
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.artifacts import atomic_path
from edgeship.errors import UserInputError
from edgeship.train.datasets import (
    Dataset,
    DatasetSpec,
    _check_labels,
    _shape_images,
    _split,
    class_balanced_indices,
    decode_image,
    folder_image_shape,
    list_folder_files,
    load_dataset,
)

STREAMING_ENV = "EDGESHIP_STREAMING"
STREAMING_MODES = ("auto", "on", "off")
MEMORY_BUDGET_BYTES = 1 << 30  # decoded float32 images above this stream instead
SPLIT_FILE_NAME = "dataset_split.json"
DECODE_CHUNK = 64  # at most this many files per task sent to a decode worker
MIN_DECODE_CHUNK = 8  # fewer files than twice this decode in the calling process


def streaming_mode_from_environment() -> str:
    """EDGESHIP_STREAMING (auto, on, off); "auto" when unset."""
    mode = os.environ.get(STREAMING_ENV, "auto").strip().lower() or "auto"
    if mode not in STREAMING_MODES:
        raise UserInputError(f"{STREAMING_ENV}={mode!r}; use one of {', '.join(STREAMING_MODES)}")
    return mode


class FileNames:
    """File names (relative paths) kept as one UTF-8 buffer and an offsets array.

    A list of str costs about 75 bytes a name in Python objects, a list of Path several
    hundred; this costs the name's bytes plus 8, so a split of 200,000 files stays a few MB.
    Indexing by an int gives a str; iteration gives every name in order.
    """

    def __init__(self, names: Iterable[str] = ()):
        buffer, ends = bytearray(), array.array("q")  # no Python int per name on the way
        for name in names:
            buffer += name.encode("utf-8", "surrogateescape")
            ends.append(len(buffer))
        self._data = bytes(buffer)
        self._ends = np.frombuffer(ends, np.int64).copy()

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> str:
        index = int(index)
        if index < 0:
            index += len(self._ends)
        if not 0 <= index < len(self._ends):
            raise IndexError(f"file {index} of {len(self._ends)}")
        start = int(self._ends[index - 1]) if index else 0
        return self._data[start:int(self._ends[index])].decode("utf-8", "surrogateescape")

    def __iter__(self) -> Iterator[str]:
        start = 0
        for first in range(0, len(self._ends), 4096):  # Python ints for a chunk at a time
            for end in self._ends[first:first + 4096].tolist():
                yield self._data[start:end].decode("utf-8", "surrogateescape")
                start = end

    def __eq__(self, other) -> bool:
        if not isinstance(other, FileNames):
            return NotImplemented
        return self._data == other._data and np.array_equal(self._ends, other._ends)

    def __repr__(self) -> str:
        return f"FileNames({len(self)} files)"


@dataclass(frozen=True, eq=False)
class FileSplit:
    """A folder dataset's train and test files (relative to root) with their int64 labels."""

    root: str
    class_names: tuple[str, ...]
    train_files: FileNames
    train_labels: np.ndarray
    test_files: FileNames
    test_labels: np.ndarray

    def __eq__(self, other) -> bool:
        if not isinstance(other, FileSplit):
            return NotImplemented
        return (self.root == other.root and self.class_names == other.class_names
                and self.train_files == other.train_files and self.test_files == other.test_files
                and np.array_equal(self.train_labels, other.train_labels)
                and np.array_equal(self.test_labels, other.test_labels))

    def parts(self) -> dict[str, tuple[FileNames, np.ndarray]]:
        return {"train": (self.train_files, self.train_labels),
                "test": (self.test_files, self.test_labels)}

    def to_dict(self) -> dict:
        return {"root": self.root, "class_names": list(self.class_names),
                **{part: [[name, int(label)] for name, label in zip(files, labels.tolist())]
                   for part, (files, labels) in self.parts().items()}}

    @classmethod
    def from_dict(cls, payload: dict) -> "FileSplit":
        train, test = payload["train"], payload["test"]
        return cls(root=str(payload["root"]), class_names=tuple(payload["class_names"]),
                   train_files=FileNames(str(name) for name, _ in train),
                   train_labels=np.fromiter((int(label) for _, label in train), np.int64,
                                            len(train)),
                   test_files=FileNames(str(name) for name, _ in test),
                   test_labels=np.fromiter((int(label) for _, label in test), np.int64,
                                           len(test)))


def split_folder(spec: DatasetSpec) -> FileSplit:
    """The seeded stratified split of a folder dataset, by file (no image is decoded)."""
    root = Path(spec.name[len("folder:"):])
    files, labels, class_names = list_folder_files(root)
    train_rows, _, test_rows, _, _ = _split(np.arange(len(files)), labels, 255.0, spec,
                                             default_test_size=0.2)
    relative = FileNames(path.relative_to(root).as_posix() for path in files)
    del files  # a Path object per file: the largest thing this builds
    return FileSplit(root=str(root), class_names=class_names,
                     train_files=FileNames(relative[row] for row in train_rows),
                     train_labels=labels[train_rows].astype(np.int64),
                     test_files=FileNames(relative[row] for row in test_rows),
                     test_labels=labels[test_rows].astype(np.int64))


def write_split(run_dir: str | os.PathLike, split: FileSplit) -> Path:
    """Record the split by file in the run directory, for every later stage.

    Written a file per line as it goes (the JSON to_dict gives), so a split of any size takes
    no more memory here.
    """
    path = Path(run_dir) / SPLIT_FILE_NAME
    with atomic_path(path) as temp, open(temp, "w", encoding="utf-8") as stream:
        stream.write(f'{{\n  "class_names": {json.dumps(list(split.class_names))},\n'
                     f'  "root": {json.dumps(split.root)},\n')
        for number, (part, (files, labels)) in enumerate(split.parts().items()):
            stream.write(f'  "{part}": [')
            for index, (name, label) in enumerate(zip(files, labels)):
                stream.write(f'{"," if index else ""}\n    [{json.dumps(name)}, {int(label)}]')
            stream.write("\n  ]" if len(files) else "]")
            stream.write(",\n" if number == 0 else "\n}\n")
    return path


def read_split(run_dir: str | os.PathLike) -> FileSplit | None:
    """The split a run recorded, or None when it recorded none."""
    path = Path(run_dir) / SPLIT_FILE_NAME
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as stream:
            return FileSplit.from_dict(json.load(stream))
    except (ValueError, KeyError, TypeError) as error:
        raise UserInputError(f"{path} is not a dataset split edgeship wrote ({error})") from error


def _decode_files(paths: list[str], shape: tuple[int, int, int]) -> np.ndarray:
    """Worker task: decode a chunk of files into one uint8 array."""
    out = np.empty((len(paths), *shape), np.uint8)
    for index, path in enumerate(paths):
        out[index] = decode_image(Path(path), shape)
    return out


def _decode_into(cache_name: str, first_row: int, paths: list[str], shape) -> int:
    """Worker task: decode a chunk and write it at its rows of the cache file."""
    pixels = _decode_files(paths, shape)
    descriptor = os.open(cache_name, os.O_WRONLY)
    try:
        os.pwrite(descriptor, pixels.tobytes(), first_row * pixels[0].nbytes)
    finally:
        os.close(descriptor)
    return len(paths)


def cache_key(paths: Iterable[str], shape) -> str:
    """Names a cache file by the files it holds and their decoded shape.

    The SHA-256 of json.dumps([paths, list(shape)]), hashed a path at a time.
    """
    digest = hashlib.sha256(b"[[")
    for index, path in enumerate(paths):
        digest.update(((", " if index else "") + json.dumps(path)).encode())
    digest.update(f"], {json.dumps(list(shape))}]".encode())
    return digest.hexdigest()[:16]


def _map_in_order(executor, function, tasks: Iterable[tuple], in_flight: int) -> Iterator:
    """executor.map without submitting every task at once: at most in_flight wait at a time."""
    pending = []
    for task in tasks:
        pending.append(executor.submit(function, *task))
        if len(pending) >= in_flight:
            yield pending.pop(0).result()
    for future in pending:
        yield future.result()


class FolderSource:
    """Pixels of a folder dataset's files, decoded on demand or read from a uint8 cache file.

    Holds the split's compact FileNames and makes a path only for the rows being read.
    """

    def __init__(self, split: FileSplit, shape: tuple[int, int, int], workers: int):
        self.shape = shape
        self.root = str(Path(split.root))  # joined as text: pathlib interns every part it parses
        self.files = {"train": split.train_files, "test": split.test_files}
        self.workers = max(1, workers)
        self._pool = None
        self._cache = None  # (file descriptor, {split: first row})

    def count(self, part: str) -> int:
        return len(self.files[part])

    def path(self, part: str, row: int) -> str:
        return os.path.join(self.root, self.files[part][row])

    def paths(self, *parts: str) -> Iterator[str]:
        """Every path of the parts named, in order, one at a time."""
        for part in parts:
            for name in self.files[part]:
                yield os.path.join(self.root, name)

    def _executor(self):
        if self._pool is None:
            import multiprocessing

            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def read(self, part: str, rows: np.ndarray) -> np.ndarray:
        """uint8 (len(rows), height, width, channels) of the split's rows, in the order given."""
        rows = np.asarray(rows, np.int64)
        if self._cache is not None:
            descriptor, first = self._cache
            row_bytes = int(np.prod(self.shape))
            out = np.empty((len(rows), *self.shape), np.uint8)
            for index, row in enumerate(rows):
                data = os.pread(descriptor, row_bytes, (first[part] + int(row)) * row_bytes)
                out[index] = np.frombuffer(data, np.uint8).reshape(self.shape)
            return out
        paths = [self.path(part, row) for row in rows]
        if self.workers == 1 or len(paths) < 2 * MIN_DECODE_CHUNK:
            return _decode_files(paths, self.shape)
        size = min(DECODE_CHUNK, max(MIN_DECODE_CHUNK, -(-len(paths) // self.workers)))
        chunks = [paths[start:start + size] for start in range(0, len(paths), size)]
        return np.concatenate(list(self._executor().map(_decode_files, chunks,
                                                        [self.shape] * len(chunks))))

    def build_cache(self, folder: Path) -> Path:
        """Decode every file once (in parallel) into folder/pixels_KEY.u8 and read from it after.

        The key hashes the file list and image shape, so a changed folder gets a new cache.
        """
        name = f"pixels_{cache_key(self.paths('train', 'test'), self.shape)}.u8"
        cache_path = self.decode_to_file(("train", "test"), Path(folder) / name)
        self._cache = (os.open(cache_path, os.O_RDONLY), {"train": 0, "test": self.count("train")})
        return cache_path

    def decode_to_file(self, parts: tuple[str, ...], cache_path: Path) -> Path:
        """The parts' files decoded (in parallel) into one uint8 file, row after row; kept when
        complete."""
        row_bytes = int(np.prod(self.shape))
        rows = sum(self.count(part) for part in parts)
        if not (cache_path.is_file() and cache_path.stat().st_size == rows * row_bytes):
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache_path) as temp:
                with open(temp, "wb") as stream:
                    stream.truncate(rows * row_bytes)
                tasks = self._decode_tasks(str(temp), parts)
                if self.workers == 1:
                    for task in tasks:
                        _decode_into(*task)
                else:
                    for _ in _map_in_order(self._executor(), _decode_into, tasks,
                                           4 * self.workers):
                        pass
        return cache_path

    def _decode_tasks(self, file_name: str, parts: tuple[str, ...]) -> Iterator[tuple]:
        """(file, first row, DECODE_CHUNK paths, shape) for every chunk, made as they are sent."""
        chunk, first_row = [], 0
        for path in self.paths(*parts):
            chunk.append(path)
            if len(chunk) == DECODE_CHUNK:
                yield file_name, first_row, chunk, self.shape
                chunk, first_row = [], first_row + DECODE_CHUNK
        if chunk:
            yield file_name, first_row, chunk, self.shape

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._cache is not None:
            os.close(self._cache[0])
            self._cache = None


class NpzSource:
    """Rows of an npz dataset's arrays, memory-mapped when stored uncompressed."""

    def __init__(self, path: Path):
        self.arrays = {part: _open_npz_member(path, f"x_{part}") for part in ("train", "test")}

    def read(self, part: str, rows: np.ndarray) -> np.ndarray:
        array = self.arrays[part]
        rows = np.asarray(rows, np.int64)
        return np.stack([np.asarray(array[int(row)]) for row in rows]) if len(rows) else array[:0]

    def close(self) -> None:
        self.arrays = {}


def _open_npz_member(path: Path, name: str) -> np.ndarray:
    """np.memmap of an uncompressed npz member (np.load ignores mmap_mode for npz files)."""
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(f"{name}.npy")
        except KeyError as error:
            raise UserInputError(f"npz dataset {path} lacks array {name}") from error
        if info.compress_type != zipfile.ZIP_STORED:
            with archive.open(info) as member:
                return np.lib.format.read_array(member, allow_pickle=False)
    with open(path, "rb") as stream:
        stream.seek(info.header_offset)
        local_header = stream.read(30)
        name_length = int.from_bytes(local_header[26:28], "little")
        extra_length = int.from_bytes(local_header[28:30], "little")
        stream.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(stream)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(stream)
        offset = stream.tell()
    if fortran_order or dtype.hasobject:
        raise UserInputError(f"npz dataset {path}: {name} must be a C-ordered numeric array")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


@dataclass
class StreamingDataset:
    """A dataset read in batches: labels in memory, pixels from `source` on demand.

    read_train/read_test return float32 model inputs (`x = raw * scale + offset`), exactly what
    the in-memory Dataset holds at the same rows.
    """

    spec: DatasetSpec
    class_names: tuple[str, ...]
    preprocessing: dict
    input_shape: tuple[int, int, int]
    y_train: np.ndarray
    y_test: np.ndarray
    source: FolderSource | NpzSource
    split: FileSplit | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _read(self, part: str, rows) -> np.ndarray:
        raw = self.source.read(part, rows)
        if isinstance(self.source, NpzSource):
            raw = _shape_images(raw.astype(np.float32), self.spec)
        return (raw.astype(np.float32) * self.preprocessing["scale"]).astype(np.float32)

    def read_train(self, rows) -> np.ndarray:
        return self._read("train", rows)

    def read_test(self, rows) -> np.ndarray:
        return self._read("test", rows)

    def test_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(images, labels) of the test split in order, batch_size at a time."""
        for start in range(0, len(self.y_test), batch_size):
            rows = np.arange(start, min(start + batch_size, len(self.y_test)))
            yield self.read_test(rows), self.y_test[rows]

    def close(self) -> None:
        self.source.close()


def open_dataset(spec: DatasetSpec, streaming: str = "auto", workers: int = 0,
                 split: FileSplit | None = None) -> Dataset | StreamingDataset:
    """The dataset in memory when it fits MEMORY_BUDGET_BYTES (or streaming="off"), else streamed.

    Args:
        spec: what to load.
        streaming: "auto", "on" (folder and npz datasets only) or "off".
        workers: decode processes for folder datasets; 0 uses every core.
        split: a recorded FileSplit to read instead of splitting the folder again.

    Returns:
        A Dataset, or a StreamingDataset for a folder or npz dataset that streams.
    """
    if streaming not in STREAMING_MODES:
        raise UserInputError(f"streaming must be one of {', '.join(STREAMING_MODES)}, got {streaming!r}")
    streamable = spec.name.startswith(("folder:", "npz:"))
    if streaming == "off" or not streamable:
        return load_dataset(spec)
    if spec.name.startswith("npz:"):
        path = Path(spec.name[len("npz:"):])
        if not path.is_file():
            raise UserInputError(f"npz dataset {path} does not exist")
        source = NpzSource(path)
        train_shape = source.arrays["train"].shape
        if streaming == "auto" and np.prod(train_shape) * 4 <= MEMORY_BUDGET_BYTES:
            source.close()
            return load_dataset(spec)
        return _open_npz(spec, path, source)
    split = split or split_folder(spec)
    shape = folder_image_shape(spec)
    images = len(split.train_files) + len(split.test_files)
    if streaming == "auto" and images * int(np.prod(shape)) * 4 <= MEMORY_BUDGET_BYTES:
        return load_dataset(spec)
    y_train, y_test = split.train_labels, split.test_labels
    _check_labels(y_train, y_test, len(split.class_names), spec.name)
    return StreamingDataset(
        spec=spec, class_names=split.class_names, preprocessing=_preprocessing(255.0, shape),
        input_shape=shape, y_train=y_train, y_test=y_test,
        source=FolderSource(split, shape, workers or os.cpu_count() or 1), split=split)


def _open_npz(spec: DatasetSpec, path: Path, source: NpzSource) -> StreamingDataset:
    with np.load(path, allow_pickle=False) as arrays:
        missing = [key for key in ("y_train", "y_test") if key not in arrays]
        if missing:
            raise UserInputError(f"npz dataset {path} lacks array(s) {', '.join(missing)}")
        y_train, y_test = arrays["y_train"].astype(np.int64), arrays["y_test"].astype(np.int64)
        class_names = ([str(name) for name in arrays["class_names"]] if "class_names" in arrays
                       else [str(index) for index in range(int(max(np.max(y_train), 0)) + 1)])
        stated_raw_max = float(arrays["raw_max"]) if "raw_max" in arrays else None
    x_train = source.arrays["train"]
    for part, y in (("train", y_train), ("test", y_test)):
        x = source.arrays[part]
        if len(x) != len(y) or x.ndim not in (3, 4) or not np.issubdtype(x.dtype, np.number):
            raise UserInputError(f"npz dataset {path}: x_{part} {x.shape} {x.dtype} does not fit "
                                 f"y_{part} ({len(y)} labels); expected numeric (N, H, W[, 1|3])")
    _check_labels(y_train, y_test, len(class_names), spec.name)
    raw_max = stated_raw_max or (255.0 if x_train.dtype == np.uint8 else _chunked_max(x_train))
    probe = _shape_images(np.asarray(x_train[:1], np.float32), spec)
    preprocessing = _preprocessing(raw_max, probe.shape[1:])
    return StreamingDataset(spec=spec, class_names=tuple(class_names), preprocessing=preprocessing,
                            input_shape=tuple(int(side) for side in probe.shape[1:]),
                            y_train=y_train, y_test=y_test, source=source)


def _chunked_max(array: np.ndarray, rows: int = 4096) -> float:
    """The in-memory path's raw_max (255 when any value exceeds 1, else 1), chunk by chunk."""
    for start in range(0, len(array), rows):
        chunk = np.asarray(array[start:start + rows])
        if not np.all(np.isfinite(chunk)):
            raise UserInputError("npz dataset: x_train contains NaN or infinite values")
        if float(np.max(chunk)) > 1.0:
            return 255.0
    return 1.0


def _preprocessing(raw_max: float, shape) -> dict:
    """The same recorded preprocessing load_dataset produces."""
    return {"scale": 1.0 / raw_max, "offset": 0.0, "raw_max": raw_max, "layout": "NHWC",
            "dtype": "float32", "image_size": [int(shape[0]), int(shape[1])],
            "channels": int(shape[2]), "formula": "x = raw * scale + offset"}


def tf_batch_reader(tf, read, shape):
    """A tf.data map function: (rows, labels) -> (float32 images read by `read`, labels).

    The images come from `read` (e.g. StreamingDataset.read_train) in a numpy_function, so
    tf.data overlaps reading and decoding the next batches with training on this one.
    """
    def read_batch(rows, labels):
        images = tf.numpy_function(read, [rows], tf.float32, stateful=False)
        images.set_shape([None, *shape])
        return images, labels

    return read_batch


def _open_for_stage(spec: DatasetSpec, run_dir: str | os.PathLike | None, workers: int):
    split = read_split(run_dir) if run_dir is not None and spec.name.startswith("folder:") else None
    return open_dataset(spec, streaming="on" if spec.name.startswith(("folder:", "npz:")) else "off",
                        workers=workers, split=split)


def iter_test_batches(spec: DatasetSpec, batch_size: int, run_dir: str | os.PathLike | None = None,
                      workers: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The test split as (float32 images, int64 labels) batches, in the in-memory path's order.

    Args:
        spec: the run's dataset spec (manifest["train"]["dataset"]["spec"]).
        batch_size: images per batch.
        run_dir: a run directory whose recorded dataset_split.json to follow, if it has one.
        workers: decode processes for folder datasets; 0 uses every core.

    Yields:
        (images, labels) with the recorded preprocessing applied.
    """
    dataset = _open_for_stage(spec, run_dir, workers)
    if isinstance(dataset, Dataset):
        for start in range(0, len(dataset.y_test), batch_size):
            yield (dataset.x_test[start:start + batch_size], dataset.y_test[start:start + batch_size])
        return
    try:
        yield from dataset.test_batches(batch_size)
    finally:
        dataset.close()


def calibration_samples(spec: DatasetSpec, count: int, seed: int,
                        run_dir: str | os.PathLike | None = None, workers: int = 0) -> np.ndarray:
    """The class-balanced training images convert calibrates on, without loading the split.

    Same images as `x_train[class_balanced_indices(y_train, count, seed)]` on the in-memory
    Dataset.
    """
    dataset = _open_for_stage(spec, run_dir, workers)
    if isinstance(dataset, Dataset):
        return dataset.x_train[class_balanced_indices(dataset.y_train, count, seed)]
    try:
        return dataset.read_train(class_balanced_indices(dataset.y_train, count, seed))
    finally:
        dataset.close()
