"""tfmot rejects Rescaling/Normalization; edgeship prunes and QAT-trains around them."""

import numpy as np

from edgeship.convert.prune import PruneConfig, prune
from edgeship.convert.qat import QatConfig, quantize_aware_finetune
from edgeship.convert.tflite import export_tflite, tensor_types_by_op, weight_sparsity


def test_prune_and_qat_with_preprocessing_layers(mnist5k, tmp_path):
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((28, 28, 1))
    x = tf_keras.layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)
    x = tf_keras.layers.Normalization(mean=0.1, variance=0.5, name="normalize")(x)
    x = tf_keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = tf_keras.layers.MaxPooling2D(2)(x)
    x = tf_keras.layers.Flatten()(x)
    outputs = tf_keras.layers.Dense(10, activation="softmax", name="dense")(x)
    model = tf_keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    images, labels = mnist5k.x_train[:1024], mnist5k.y_train[:1024]
    model.fit(images, labels, epochs=1, verbose=0)

    pruned = prune(model, PruneConfig(sparsity=0.5, epochs=1), images, labels)
    assert pruned.get_layer("rescale").scale == 2.0
    qat = quantize_aware_finetune(pruned, QatConfig(epochs=1, preserve_sparsity=True),
                                  images, labels, images[:64])
    data = export_tflite(qat, images[:64])
    operators = tensor_types_by_op(data)
    # The converter requantizes the int8 input through float once (DEQUANTIZE, QUANTIZE) to
    # the range QAT learned for it; every other op, the preprocessing MUL/ADD/SUB included,
    # is int8.
    assert [op["op"] for op in operators[:2]] == ["DEQUANTIZE", "QUANTIZE"]
    assert {"MUL", "ADD", "SUB"} <= {op["op"] for op in operators}
    for op in operators[2:]:
        assert set(op["dtypes"]) <= {"int8", "int32"}, op
    for name, sparsity in weight_sparsity(data).items():
        assert abs(sparsity - 0.5) <= 0.01, name
    from edgeship.runtime.backends import open_backend

    path = tmp_path / "model_int8.tflite"
    path.write_bytes(data)
    with open_backend("litert", path) as backend:
        int8_top1 = backend.infer(mnist5k.x_test[:300]).argmax(1)
    float_top1 = qat.predict(mnist5k.x_test[:300], verbose=0).argmax(1)
    assert np.mean(int8_top1 == float_top1) >= 0.97
