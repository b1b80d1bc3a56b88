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


def test_a_seed_trains_the_same_weights_whatever_the_core_count(tmp_path):
    """`--threads` (2 by default) fixes TensorFlow's per-op thread count, which otherwise
    follows the cores the process may use: one core here stands for a smaller machine.
    Control: another thread count on the same cores trains other weights, so the equality
    is the pin's doing."""
    import os
    import subprocess
    import sys

    from tests.helpers import REPO

    def trained(name, *extra, cores=None):
        out = tmp_path / name
        pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
        completed = subprocess.run(
            [sys.executable, "-m", "edgeship.cli", "train", "--model", "lenet5", "--dataset",
             "mnist5k", "--epochs", "1", "--seed", "3", "--out", str(out), *extra],
            capture_output=True, text=True, timeout=600, cwd=REPO, preexec_fn=pin)
        assert completed.returncode == 0, completed.stderr[-2000:]
        return sha256_file(out / "model.keras")

    one_core = trained("one_core", cores={min(os.sched_getaffinity(0))})
    assert trained("all_cores") == one_core
    assert trained("one_thread", "--threads", "1") != one_core


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
    ("batch_norm_statistics", "exact", "batch-norm statistics"), ("threads", -1, "threads"),
])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(model="lenet5", dataset=DatasetSpec(name="mnist5k"), out="x", **{field: value})


def test_recalibrate_batch_norm_sets_population_moments_and_keeps_frozen_layers():
    import tf_keras

    from edgeship.train.fit import recalibrate_batch_norm

    inputs = tf_keras.Input((6, 6, 2))
    features = tf_keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = tf_keras.layers.BatchNormalization(name="live")(features)
    x = tf_keras.layers.ReLU()(x)
    frozen = tf_keras.layers.BatchNormalization(name="frozen")
    x = frozen(x)
    frozen.trainable = False
    outputs = tf_keras.layers.Dense(3)(tf_keras.layers.GlobalAveragePooling2D()(x))
    model = tf_keras.Model(inputs, outputs)
    frozen.moving_mean.assign([0.5, 0.25, -1.0, 2.0])
    images = np.random.default_rng(3).normal(2.0, 0.1, size=(300, 6, 6, 2)).astype("float32")

    assert recalibrate_batch_norm(model, images, batch_size=64) == 1
    conv_output = tf_keras.Model(inputs, features).predict(images, verbose=0).astype(np.float64)
    live = model.get_layer("live")
    np.testing.assert_allclose(live.moving_mean.numpy(), conv_output.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(live.moving_variance.numpy(), conv_output.var(axis=(0, 1, 2)),
                               rtol=1e-3)
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), [0.5, 0.25, -1.0, 2.0])
    np.testing.assert_array_equal(frozen.moving_variance.numpy(), np.ones(4))


def test_dscnn_is_judged_and_saved_with_population_batch_norm_statistics(tmp_path, mnist5k):
    # Keras' running averages left this model at 0.10 test accuracy after 2 epochs (0.94 in
    # training mode) and made val_loss rise, so early stopping restored epoch 1.
    config = TrainConfig(model="dscnn", dataset=mnist5k.spec, out=str(tmp_path), epochs=2,
                         early_stopping=1)
    result = train(config, dataset=mnist5k)
    assert result.epochs_run == 2
    assert result.test_accuracy >= 0.9
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["val_accuracy"][0] >= 0.85
    assert history["val_loss"][1] < history["val_loss"][0]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    batch_norm = manifest["train"]["batch_norm"]
    assert {key: batch_norm[key] for key in ("statistics", "layers", "images")} == {
        "statistics": "population", "layers": 9, "images": 1024}
    assert len(batch_norm["statistics_sha256"]) == 64
    import tf_keras

    saved = tf_keras.models.load_model(tmp_path / "model.keras")
    accuracy = (saved.predict(mnist5k.x_test, verbose=0).argmax(axis=1) == mnist5k.y_test).mean()
    assert accuracy == pytest.approx(result.test_accuracy, abs=1e-6)
