import json

import numpy as np
import pytest

from edgeship.artifacts import sha256_file
from edgeship.train.datasets import DatasetSpec, load_dataset
from edgeship.train.fit import TrainConfig, train


def test_lenet5_reaches_090_in_three_epochs(trained_run):
    assert trained_run.test_accuracy >= 0.90
    assert trained_run.epochs_run == 3


def test_run_directory_has_the_four_files_with_hashes(trained_run):
    run_dir = trained_run.run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for name in ("model.keras", "history.json", "training_curves.png"):
        entry = manifest["artifacts"][name]
        assert entry["sha256"] == sha256_file(run_dir / name)
        assert entry["bytes"] == (run_dir / name).stat().st_size > 0
    train_entry = manifest["train"]
    assert train_entry["dataset"]["spec"]["name"] == "mnist5k"
    assert train_entry["dataset"]["preprocessing"]["scale"] == pytest.approx(1 / 255)
    assert train_entry["model"]["name"] == "lenet5"
    assert train_entry["versions"]["tensorflow"].startswith("2.")
    assert train_entry["test_accuracy"] == pytest.approx(trained_run.test_accuracy)
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == 3 and len(history["val_accuracy"]) == 3
    assert (run_dir / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetSpec(name="digits", seed=0))


def test_seeded_training_is_reproducible(tmp_path, digits):
    results = []
    for index in range(2):
        config = TrainConfig(model="simple_cnn", dataset=digits.spec, out=str(tmp_path / str(index)),
                             epochs=2, seed=5)
        results.append(train(config, dataset=digits))
    assert results[0].test_accuracy == results[1].test_accuracy
    assert results[0].test_loss == results[1].test_loss
    history = [json.loads((tmp_path / str(i) / "history.json").read_text()) for i in range(2)]
    assert history[0] == history[1]


def test_augment_and_early_stopping_and_mirrored(tmp_path, digits):
    config = TrainConfig(model="simple_cnn", dataset=digits.spec, out=str(tmp_path), epochs=3,
                         augment=True, early_stopping=1, strategy="mirrored", seed=1)
    result = train(config, dataset=digits)
    assert 1 <= result.epochs_run <= 3
    assert result.test_accuracy > 0.5
    import tf_keras

    saved = tf_keras.models.load_model(tmp_path / "model.keras")
    # Augmentation lives in the input pipeline, never in the saved model.
    assert not [layer for layer in saved.layers if layer.name.startswith("random")]
    np.testing.assert_array_equal(saved.predict(digits.x_test[:4], verbose=0).shape, (4, 10))


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs"), ("validation_split", 1.0, "validation split"),
    ("strategy", "tpu", "strategy"), ("learning_rate", -1.0, "learning rate"),
])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(model="lenet5", dataset=DatasetSpec(name="mnist5k"), out="x", **{field: value})
