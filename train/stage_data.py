"""The dataset as the stages after training read it: whole arrays when small, rows when streamed.

`open_stage_dataset` returns the in-memory `Dataset` when the data fits (the path every small
run takes), otherwise a `RowDataset`: the same fields, but `x_train` and `x_test` are
`ImageRows`, which read only the rows asked for (`len()`, `[int]`, `[slice]`, `[int array]`,
`batches()`). Code written against `Dataset` (calibration indices, `x_test[0]`, scoring in
batches of 256) therefore reads a streamed split batch by batch without change, and gets the
same float32 values the in-memory arrays hold at the same rows.

With a cache folder the test split, which convert, validate and inspect each read whole,
is decoded once into a uint8 file there (`test_KEY.u8`, or the rows of the training run's
full cache when `dataset_cache` made one) and read back by row; without one (serve-demo,
firmware samples: a few images) the asked rows are decoded on demand.
"""

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.train.datasets import Dataset, DatasetSpec, _shape_images, class_balanced_indices
from edgeship.train.stream import (
    MEMORY_BUDGET_BYTES,
    FolderSource,
    StreamingDataset,
    _open_npz_member,
    cache_key,
    open_dataset,
    read_split,
    streaming_mode_from_environment,
)

CACHE_FOLDER_NAME = "dataset_cache"  # in the run directory, beside train's dataset_cache files
BATCH_ROWS = 1024  # rows per batch when a stage walks a whole streamed split


@dataclass(frozen=True)
class RowFile:
    """Reads rows of a uint8 image file (one image after another); picklable (a path)."""

    path: str
    first_row: int
    image_shape: tuple[int, int, int]
    scale: float

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        row_bytes = int(np.prod(self.image_shape))
        out = np.empty((len(rows), *self.image_shape), np.uint8)
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            index = 0
            while index < len(rows):  # consecutive rows in one read
                end = index + 1
                while end < len(rows) and rows[end] == rows[end - 1] + 1:
                    end += 1
                data = os.pread(descriptor, (end - index) * row_bytes,
                                (self.first_row + int(rows[index])) * row_bytes)
                out[index:end] = np.frombuffer(data, np.uint8).reshape(end - index, *self.image_shape)
                index = end
        finally:
            os.close(descriptor)
        return (out.astype(np.float32) * self.scale).astype(np.float32)


@dataclass(frozen=True)
class NpzRows:
    """Reads rows of an npz member (memory-mapped when stored uncompressed); picklable."""

    path: str
    member: str
    spec: DatasetSpec
    scale: float

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        array = _open_npz_member(Path(self.path), self.member)
        raw = np.stack([np.asarray(array[int(row)]) for row in rows])
        return (_shape_images(raw.astype(np.float32), self.spec) * self.scale).astype(np.float32)


class ImageRows:
    """One split's float32 images, read by row where a stage used an array.

    Supports len(), .shape, .ndim, .dtype, indexing by an int, a slice or an integer array
    (each reads only those rows and returns a numpy array), and batches().
    """

    ndim = 4
    dtype = np.dtype(np.float32)

    def __init__(self, read, count: int, image_shape: tuple[int, int, int]):
        self.read = read  # rows (int64 array) -> float32 (len(rows), *image_shape)
        self.count = int(count)
        self.image_shape = tuple(int(side) for side in image_shape)

    def __len__(self) -> int:
        return self.count

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.count, *self.image_shape)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            index = int(key) + (self.count if key < 0 else 0)
            if not 0 <= index < self.count:
                raise IndexError(f"row {key} of {self.count}")
            return self.read(np.array([index], np.int64))[0]
        rows = (np.arange(self.count)[key] if isinstance(key, slice)
                else np.asarray(key, np.int64).reshape(-1))
        if len(rows) == 0:
            return np.empty((0, *self.image_shape), np.float32)
        if rows.min() < 0 or rows.max() >= self.count:
            raise IndexError(f"rows outside 0..{self.count - 1}")
        return self.read(rows)

    def head(self, count: int | None) -> "ImageRows":
        """The first `count` rows (all when None), still read on demand."""
        return self if count is None else ImageRows(self.read, min(count, self.count),
                                                    self.image_shape)

    def batches(self, batch_size: int = BATCH_ROWS) -> Iterator[np.ndarray]:
        """Every row in order, batch_size at a time."""
        for start in range(0, self.count, batch_size):
            yield self.read(np.arange(start, min(start + batch_size, self.count)))

    def sha256(self) -> str:
        """The same digest as hashlib.sha256(the whole float32 array's bytes)."""
        digest = hashlib.sha256()
        for batch in self.batches():
            digest.update(np.ascontiguousarray(batch, np.float32).tobytes())
        return digest.hexdigest()


@dataclass
class RowDataset:
    """A streamed dataset with Dataset's fields; x_train/x_test read rows on demand."""

    x_train: ImageRows
    y_train: np.ndarray
    x_test: ImageRows
    y_test: np.ndarray
    class_names: tuple[str, ...]
    spec: DatasetSpec
    preprocessing: dict
    input_shape: tuple[int, int, int]
    streamed: StreamingDataset

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def close(self) -> None:
        self.streamed.close()


def batches_of(images, batch_size: int = BATCH_ROWS) -> Iterator[np.ndarray]:
    """An in-memory array as one batch (today's numerics), ImageRows batch by batch."""
    if isinstance(images, ImageRows):
        yield from images.batches(batch_size)
    else:
        yield images


def bounded_train_sample(dataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training images and labels for fine-tuning (convert's pruning and QAT).

    An in-memory Dataset gives its whole training split. A streamed one gives a class-balanced
    seeded sample (class_balanced_indices) of as many training images as fit
    MEMORY_BUDGET_BYTES as float32 (1 GB: 9,709 images of 96x96x3), or all of them when fewer.
    """
    if not isinstance(dataset.x_train, ImageRows):
        return dataset.x_train, dataset.y_train
    count = min(len(dataset.y_train),
                max(1, MEMORY_BUDGET_BYTES // (4 * int(np.prod(dataset.input_shape)))))
    rows = class_balanced_indices(dataset.y_train, count, seed)
    return dataset.x_train[rows], dataset.y_train[rows]


def close_dataset(dataset) -> None:
    """Stop a RowDataset's decode workers; nothing to do for an in-memory Dataset."""
    if isinstance(dataset, RowDataset):
        dataset.close()


def open_stage_dataset(spec: DatasetSpec, run_dir: str | os.PathLike | None = None,
                       streamed: bool = False, cache_folder: str | os.PathLike | None = None,
                       workers: int = 0) -> Dataset | RowDataset:
    """The dataset a later stage reads: in memory when it fits, else read by row.

    Args:
        spec: the run's dataset spec.
        run_dir: a run directory whose dataset_split.json (the split train recorded) to follow.
        streamed: the run was trained streamed (manifest train.dataset.streamed): stream here
            too unless EDGESHIP_STREAMING says otherwise.
        cache_folder: where to keep the decoded test split (uint8); None decodes on demand.
        workers: decode processes for folder datasets; 0 uses every core.

    Returns:
        The in-memory Dataset, or a RowDataset (close it when done: close_dataset).
    """
    mode = streaming_mode_from_environment()
    if mode == "auto" and streamed:
        mode = "on"
    split = (read_split(run_dir) if run_dir is not None and spec.name.startswith("folder:")
             else None)
    dataset = open_dataset(spec, mode, workers=workers, split=split)
    if isinstance(dataset, Dataset):
        return dataset
    scale = float(dataset.preprocessing["scale"])
    shape = tuple(dataset.input_shape)
    train_rows = ImageRows(dataset.read_train, len(dataset.y_train), shape)
    if isinstance(dataset.source, FolderSource):
        test_read = (test_row_file(dataset.source, Path(cache_folder), scale)
                     if cache_folder is not None else dataset.read_test)
    else:
        test_read = NpzRows(spec.name[len("npz:"):], "x_test", spec, scale)
    return RowDataset(x_train=train_rows, y_train=dataset.y_train,
                      x_test=ImageRows(test_read, len(dataset.y_test), shape),
                      y_test=dataset.y_test, class_names=dataset.class_names, spec=spec,
                      preprocessing=dataset.preprocessing, input_shape=shape, streamed=dataset)


def test_row_file(source: FolderSource, folder: Path, scale: float) -> RowFile:
    """The test split as a uint8 file in `folder`: train's full cache when it is there, else
    test_KEY.u8, decoded once (in parallel) and kept for the next stage."""
    shape = source.shape
    every = source.count("train") + source.count("test")
    full = folder / f"pixels_{cache_key(source.paths('train', 'test'), shape)}.u8"  # build_cache's
    if full.is_file() and full.stat().st_size == every * int(np.prod(shape)):
        return RowFile(str(full), source.count("train"), shape, scale)
    path = source.decode_to_file(("test",),
                                 folder / f"test_{cache_key(source.paths('test'), shape)}.u8")
    return RowFile(str(path), 0, shape, scale)


def open_run_dataset(run_dir: str | os.PathLike, spec: DatasetSpec | None = None,
                     cache: bool = True, workers: int = 0) -> Dataset | RowDataset:
    """open_stage_dataset for a run directory: the spec, split and streamed flag train recorded.

    Args:
        run_dir: the run directory (its manifest has a train entry).
        spec: another dataset spec to read instead of the run's (the run's split is then not
            followed unless it names the same dataset).
        cache: keep the decoded test split in RUN/dataset_cache (False: decode asked rows only).
        workers: decode processes for folder datasets; 0 uses every core.
    """
    from edgeship.run_dir import RunDir

    run = RunDir(run_dir)
    recorded = run.dataset()
    own_spec = recorded.spec
    spec = spec or own_spec
    streamed = recorded.streamed
    return open_stage_dataset(spec, run_dir=run.path if spec.name == own_spec.name else None,
                              streamed=streamed,
                              cache_folder=run.path / CACHE_FOLDER_NAME if cache else None,
                              workers=workers)
