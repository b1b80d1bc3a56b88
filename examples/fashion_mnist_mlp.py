"""The Keras Fashion-MNIST tutorial (basic classification) in a script, then int8 with edgeship.

Run: .venv/bin/python examples/fashion_mnist_mlp.py   (about a minute on 2 cores)
"""

from edgeship import api
import tensorflow as tf  # after importing edgeship, tf.keras is tf_keras (what tfmot needs)

(x_train, y_train), (x_test, y_test) = api.load_data("fashion_mnist")
model = tf.keras.Sequential([tf.keras.layers.Flatten(input_shape=(28, 28, 1)),
                             tf.keras.layers.Dense(128, activation="relu"),
                             tf.keras.layers.Dense(10)])
model.compile(optimizer="adam", metrics=["accuracy"],
              loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x_train, y_train, epochs=10, verbose=2)

result = api.convert(model, data=((x_train, y_train), (x_test, y_test)),
                     class_names=api.dataset_class_names("fashion_mnist"), out="runs/fashion_mlp")
print(result)
print(f"int8 accuracy drop: {result.drop_pp:+.2f} pp")
