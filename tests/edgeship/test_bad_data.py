"""Hostile or unusable data through the real CLI: the exact message and exit status."""

import shutil

import numpy as np
import pytest

from tests.helpers import run_cli_in_process as run_cli


def _npz(tmp_path, **overrides):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
                  y_train=np.arange(40) % 4,
                  x_test=rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
                  y_test=np.arange(12) % 4)
    arrays.update(overrides)
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


def _last_line(result):
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("overrides, message", [
    (dict(x_train=np.full((40, 28, 28), np.inf, np.float32)),
     "x_train contains NaN or infinite values"),
    (dict(x_test=np.full((12, 28, 28), np.nan, np.float32)),
     "x_test contains NaN or infinite values"),
    (dict(x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, np.int64)),
     "x_train is empty"),
    (dict(y_train=-(np.arange(40) % 4)), "train label(s) outside"),
    (dict(y_test=np.arange(12) % 4 + 3), "test label(s) outside [0, 4)"),
    (dict(x_train=np.zeros((40, 6, 6), np.uint8), x_test=np.zeros((12, 6, 6), np.uint8)),
     "input 6x6x1 is too small for lenet5"),
    (dict(x_train=np.zeros((40, 28, 28, 2), np.uint8)), "expected (N, H, W) or (N, H, W, 1|3)"),
])
def test_train_rejects_bad_data(tmp_path, overrides, message):
    result = run_cli("train", "--model", "lenet5", "--dataset", _npz(tmp_path, **overrides),
                     "--epochs", "1", "--out", tmp_path / "run")
    assert result.returncode == 2, result.stderr[-1000:]
    assert message in _last_line(result)
    assert _last_line(result).startswith("edgeship train: error:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_convert_rejects_images_with_other_channels(tmp_path, trained_run):
    shutil.copytree(trained_run.run_dir, tmp_path / "run")
    result = run_cli("convert", tmp_path / "run", "--int8", "--dataset", "digits",
                     "--image-size", "28", "--channels", "3")
    assert result.returncode == 2
    assert _last_line(result) == ("edgeship convert: error: dataset images are (28, 28, 3) but "
                                  "model.keras takes (28, 28, 1); pass --image-size/--channels "
                                  "to match")


def test_single_class_calibration_warns(tmp_path, trained_run):
    shutil.copytree(trained_run.run_dir, tmp_path / "run")
    result = run_cli("convert", tmp_path / "run", "--int8", "--calibration-samples", "1")
    assert result.returncode == 0, result.stderr[-1000:]
    assert ("warning: the calibration sample holds 1 of 10 classes; int8 ranges may clip the "
            "activations of the others (raise --calibration-samples)") in result.stderr


def _folder_dataset(root, images_per_class):
    from PIL import Image

    for name, count in images_per_class.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            Image.new("L", (28, 28), color=index * 20).save(root / name / f"{index}.png")
    return root


@pytest.mark.parametrize("images_per_class, message", [
    ({}, "folder dataset {root} has 0 class sub-folder(s); it needs at least 2 (one folder of "
         "images per class)"),
    ({"cat": 4, "dog": 0}, "class folder {root}/dog holds no images (.png, .jpg, .jpeg, .bmp, "
                           ".gif, .pgm, .ppm, .tif, .tiff, .webp)"),
])
def test_train_rejects_an_empty_folder_dataset(tmp_path, images_per_class, message):
    root = _folder_dataset(tmp_path / "images", images_per_class)
    root.mkdir(exist_ok=True)
    if "dog" in images_per_class:
        (root / "dog" / "notes.txt").write_text("not an image")
    result = run_cli("train", "--model", "lenet5", "--dataset", f"folder:{root}",
                     "--epochs", "1", "--out", tmp_path / "run")
    assert result.returncode == 2
    assert _last_line(result) == "edgeship train: error: " + message.format(root=root)
    assert not (tmp_path / "run").exists()
