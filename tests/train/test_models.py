import numpy as np
import pytest

from edgeship.errors import UserInputError
from edgeship.train.models import MIN_INPUT_SIDE, MODEL_NAMES, ModelOptions, build_model


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_zoo_model_builds_and_trains_one_step(name, shape):
    if min(shape[:2]) < MIN_INPUT_SIDE[name]:
        with pytest.raises(UserInputError, match=f"too small for {name}"):
            build_model(name, shape, 10)
        return
    import tf_keras

    model = build_model(name, shape, 10, seed=0)
    assert tuple(model.input_shape[1:]) == shape
    assert model.output_shape == (None, 10)
    model.compile(optimizer=tf_keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((8, *shape), dtype=np.float32)
    y = rng.integers(0, 10, 8)
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert any(changed)
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_dscnn_is_mcu_sized():
    assert build_model("dscnn", (28, 28, 1), 10).count_params() < 50_000


def test_mobilenet_v2_width_and_gray_input():
    model = build_model("mobilenet_v2", (32, 32, 1), 4, ModelOptions(alpha=0.35))
    assert model.input_shape == (None, 32, 32, 1)
    assert model.count_params() < 500_000
    assert all("model" not in type(layer).__name__.lower() for layer in model.layers)
    # From scratch, batch norm must settle within a small run's steps (not keras' 0.999).
    momenta = {layer.momentum for layer in model.layers if hasattr(layer, "moving_mean")}
    assert momenta == {0.99}


def test_mobilenet_v2_weights_and_freeze(tmp_path):
    donor = build_model("mobilenet_v2", (32, 32, 3), 5, ModelOptions(alpha=0.35), seed=1)
    weights = tmp_path / "backbone.h5"
    donor.save_weights(str(weights))
    model = build_model("mobilenet_v2", (32, 32, 1), 3,
                        ModelOptions(alpha=0.35, weights=str(weights), freeze=20), seed=2)
    # One gray channel is concatenated three times into the RGB the backbone takes.
    gray_to_rgb = model.get_layer("gray_to_rgb")
    assert tuple(gray_to_rgb.output_shape[1:]) == (32, 32, 3)
    image = np.random.default_rng(0).random((1, 32, 32, 1), np.float32)
    repeated = gray_to_rgb([image, image, image]).numpy()
    np.testing.assert_array_equal(repeated, np.repeat(image, 3, axis=-1))
    assert model.get_layer("Conv1").input is gray_to_rgb.output  # it feeds the backbone
    frozen = [layer for layer in model.layers if not layer.trainable]
    assert len(frozen) >= 19
    # A pretrained backbone keeps keras' batch-norm momentum.
    assert {layer.momentum for layer in model.layers if hasattr(layer, "moving_mean")} == {0.999}
    np.testing.assert_array_equal(model.get_layer("Conv1").get_weights()[0],
                                  donor.get_layer("Conv1").get_weights()[0])


def test_unknown_model_lists_valid_names():
    with pytest.raises(UserInputError, match="valid models: simple_cnn, keras_cnn, lenet5"):
        build_model("resnet", (28, 28, 1), 10)


def test_input_too_small():
    with pytest.raises(UserInputError, match="8x8x1 is too small for lenet5"):
        build_model("lenet5", (8, 8, 1), 10)
