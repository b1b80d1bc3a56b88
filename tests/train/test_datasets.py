import gzip
from pathlib import Path

import numpy as np
import pytest

from edgeship.errors import UserInputError
from edgeship.train import datasets as datasets_module
from edgeship.train.datasets import (
    DatasetSpec,
    class_balanced_indices,
    keras_cache_dir,
    load_dataset,
)


def test_mnist5k_shapes_and_stratified_split(mnist5k):
    assert mnist5k.x_train.shape == (4000, 28, 28, 1)
    assert mnist5k.x_test.shape == (1000, 28, 28, 1)
    assert mnist5k.x_train.dtype == np.float32
    assert 0.0 <= mnist5k.x_train.min() and mnist5k.x_train.max() <= 1.0
    assert mnist5k.class_names == tuple(str(d) for d in range(10))
    assert mnist5k.input_shape == (28, 28, 1)
    train_share = np.bincount(mnist5k.y_train, minlength=10) / 4000
    test_share = np.bincount(mnist5k.y_test, minlength=10) / 1000
    np.testing.assert_allclose(train_share, test_share, atol=0.002)
    assert mnist5k.preprocessing["scale"] == pytest.approx(1 / 255)


def test_split_is_seeded(mnist5k):
    again = load_dataset(DatasetSpec(name="mnist5k", seed=0))
    other = load_dataset(DatasetSpec(name="mnist5k", seed=1))
    np.testing.assert_array_equal(again.y_test, mnist5k.y_test)
    assert not np.array_equal(other.y_test, mnist5k.y_test)


def test_digits_resized_to_rgb():
    data = load_dataset(DatasetSpec(name="digits", image_size=(16, 16), channels=3))
    assert data.x_train.shape[1:] == (16, 16, 3)
    assert len(data.x_train) + len(data.x_test) == 1797
    assert data.x_test.shape[0] == pytest.approx(1797 * 0.2, abs=1)
    assert data.x_train.max() <= 1.0 + 1e-6


def test_spec_round_trips():
    spec = DatasetSpec(name="digits", seed=3, test_size=0.25, image_size=(16, 16), channels=3)
    assert DatasetSpec.from_dict(spec.to_dict()) == spec


def _write_mnist_cache(tmp_path, images=20):
    rng = np.random.default_rng(0)
    folder = tmp_path / "datasets"
    folder.mkdir(parents=True)
    np.savez(folder / "mnist.npz",
             x_train=rng.integers(0, 256, (images, 28, 28), dtype=np.uint8),
             y_train=np.arange(images) % 10,
             x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
             y_test=np.arange(10) % 10)


def test_keras_mnist_reads_cached_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    _write_mnist_cache(tmp_path)
    assert keras_cache_dir() == tmp_path / "datasets"
    data = load_dataset("mnist")
    assert data.x_train.shape == (20, 28, 28, 1)
    assert data.x_test.shape == (10, 28, 28, 1)


def _write_idx_folder(folder, counts=(("train", 12), ("t10k", 6)), first_label=0):
    folder.mkdir(parents=True)
    for prefix, count in counts:
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as stream:
            stream.write(b"\0" * 8 + bytes((first_label + i) % 10 for i in range(count)))
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as stream:
            stream.write(b"\0" * 16 + bytes(range(256)) * (count * 784 // 256) + b"\1" * (count * 784 % 256))


def test_fashion_mnist_reads_cached_files(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(datasets_module, "system_datasets_dir", lambda: tmp_path / "none")
    _write_idx_folder(tmp_path / "datasets" / "fashion-mnist")
    data = load_dataset("fashion_mnist")
    assert data.x_train.shape == (12, 28, 28, 1)
    assert data.class_names[9] == "Ankle boot"


def test_fashion_mnist_falls_back_to_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setattr(datasets_module, "system_datasets_dir", lambda: tmp_path / "share")
    _write_idx_folder(tmp_path / "share" / "fashion-mnist", counts=(("train", 14), ("t10k", 4)))
    data = load_dataset("fashion_mnist")
    assert data.x_train.shape == (14, 28, 28, 1)
    assert data.x_test.shape == (4, 28, 28, 1)
    assert not (tmp_path / "empty_home").exists()


def test_keras_cache_wins_over_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(datasets_module, "system_datasets_dir", lambda: tmp_path / "share")
    _write_idx_folder(tmp_path / "share" / "fashion-mnist", first_label=3)
    _write_idx_folder(tmp_path / "datasets" / "fashion-mnist")
    assert load_dataset("fashion_mnist").y_train[0] == 0


def test_mnist_reads_a_packaged_idx_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setattr(datasets_module, "system_datasets_dir", lambda: tmp_path / "share")
    _write_idx_folder(tmp_path / "share" / "mnist", first_label=2)
    data = load_dataset("mnist")
    assert data.x_train.shape == (12, 28, 28, 1)
    assert data.y_train[0] == 2


def test_fashion_mnist_offline_names_cache_and_package(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(datasets_module, "system_datasets_dir", lambda: tmp_path / "share")

    def offline(name, expected):
        raise UserInputError(f"could not download {name}; offline, place {expected}")

    monkeypatch.setattr(datasets_module, "_download_with_keras", offline)
    with pytest.raises(UserInputError, match=r"fashion-mnist.*dataset-fashion-mnist.*share/fashion-mnist"):
        load_dataset("fashion_mnist")


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_installed_debian_fashion_mnist_is_the_full_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    data = load_dataset("fashion_mnist")
    assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(data.y_test).tolist() == [1000] * 10


def test_keras_mnist_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(datasets_module, "system_datasets_dir", lambda: tmp_path / "share")
    with pytest.raises(UserInputError, match=r"place the file mnist\.npz in .*datasets"):
        load_dataset("mnist")


def _image_folder(tmp_path, classes=("cat", "dog"), per_class=6, mode="RGB", size=(20, 30)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (tmp_path / name).mkdir(parents=True)
        for index in range(per_class):
            shape = (size[0], size[1], 3) if mode == "RGB" else size
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
                tmp_path / name / f"{index}.png")
    return tmp_path


def test_folder_dataset_resizes_and_splits(tmp_path):
    root = _image_folder(tmp_path)
    data = load_dataset(DatasetSpec(name=f"folder:{root}", image_size=(32, 32), channels=3))
    assert data.class_names == ("cat", "dog")
    assert data.x_train.shape[1:] == (32, 32, 3)
    assert len(data.x_train) + len(data.x_test) == 12
    gray = load_dataset(DatasetSpec(name=f"folder:{root}"))
    assert gray.x_train.shape[1:] == (28, 28, 1)


def test_folder_needs_two_classes(tmp_path):
    root = _image_folder(tmp_path, classes=("only",))
    with pytest.raises(UserInputError, match="at least 2"):
        load_dataset(f"folder:{root}")


def test_folder_unreadable_image(tmp_path):
    root = _image_folder(tmp_path)
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserInputError, match="cannot read image .*broken.png"):
        load_dataset(f"folder:{root}")


def _npz(tmp_path, **overrides):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.random((30, 8, 8), dtype=np.float32), y_train=np.arange(30) % 3,
                  x_test=rng.random((9, 8, 8), dtype=np.float32), y_test=np.arange(9) % 3)
    arrays.update(overrides)
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_dataset(tmp_path):
    data = load_dataset(_npz(tmp_path))
    assert data.x_train.shape == (30, 8, 8, 1)
    assert data.num_classes == 3


@pytest.mark.parametrize("overrides, message", [
    (dict(y_train=np.arange(29) % 3), "x_train has 30 images but y_train has 29 labels"),
    (dict(y_test=np.array([0, 1, 2, 0, 1, 2, 0, 1, -1])), r"label\(s\) outside \[0, 3\)"),
    (dict(x_test=np.full((9, 8, 8), np.nan, np.float32)), "NaN or infinite"),
    (dict(x_train=np.zeros((0, 8, 8), np.float32), y_train=np.zeros(0, np.int64)), "x_train is empty"),
])
def test_npz_bad_input(tmp_path, overrides, message):
    with pytest.raises(UserInputError, match=message):
        load_dataset(_npz(tmp_path, **overrides))


def test_npz_labels_beyond_class_names(tmp_path):
    name = _npz(tmp_path, class_names=np.array(["a", "b"]))
    with pytest.raises(UserInputError, match=r"outside \[0, 2\)"):
        load_dataset(name)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UserInputError, match="valid datasets: mnist, fashion_mnist, digits, mnist5k"):
        load_dataset("imagenet")


def test_class_balanced_indices_are_seeded_and_balanced():
    labels = np.repeat(np.arange(5), [100, 50, 30, 200, 20])
    chosen = class_balanced_indices(labels, 100, seed=7)
    assert len(set(chosen.tolist())) == 100
    assert np.bincount(labels[chosen]).tolist() == [20, 20, 20, 20, 20]
    np.testing.assert_array_equal(chosen, class_balanced_indices(labels, 100, seed=7))
    with pytest.raises(UserInputError, match="only 400"):
        class_balanced_indices(labels, 401, seed=0)
