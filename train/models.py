"""The model zoo: the classic tutorial CNNs plus two MCU-sized models, all tf_keras.

Every builder takes the input shape and class count from the dataset, so one name works on
MNIST, Fashion-MNIST, digits or a folder of photos. Models end in a softmax so convert's
report can read class probabilities from every runtime.
"""

from dataclasses import dataclass

from edgeship.deps import import_tf_keras
from edgeship.errors import UserInputError
from edgeship.options import option

# Smallest input side each architecture can take (valid convolutions and pooling shrink it).
MIN_INPUT_SIDE = {
    "simple_cnn": 4,
    "keras_cnn": 18,
    "lenet5": 28,
    "mlp": 1,
    "dscnn": 8,
    "mobilenet_v2": 32,
}
MODEL_NAMES = tuple(MIN_INPUT_SIDE)


@dataclass(frozen=True)
class ModelOptions:
    """Options of the builders that have any (mobilenet_v2's transfer-learning knobs, dscnn width).

    Attributes:
        alpha: MobileNetV2 width multiplier.
        weights: path of backbone weights for mobilenet_v2 (None: random init).
        freeze: number of leading backbone layers frozen for transfer learning.
        width: dscnn's channel count in the separable blocks.
        blocks: dscnn's number of depthwise-separable blocks (its depth).
    """

    alpha: float = option(0.35, help="mobilenet_v2 width multiplier")
    weights: str | None = option(None, help="mobilenet_v2 backbone weights file")
    freeze: int = option(0, help="freeze the first N backbone layers (transfer learning)")
    width: int = option(64, help="dscnn's channel count in the separable blocks")
    blocks: int = option(4, help="dscnn's number of depthwise-separable blocks (its depth)")

    def __post_init__(self):
        if not 0 < self.alpha <= 1.4:
            raise UserInputError(f"alpha must be in (0, 1.4], got {self.alpha}")
        if self.freeze < 0:
            raise UserInputError(f"freeze must be >= 0, got {self.freeze}")
        if self.width < 8:
            raise UserInputError(f"width must be >= 8, got {self.width}")
        if self.blocks < 1:
            raise UserInputError(f"blocks must be >= 1, got {self.blocks}")


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int,
                options: ModelOptions = ModelOptions(), seed: int = 0):
    """Build an uncompiled zoo model.

    Args:
        name: one of MODEL_NAMES.
        input_shape: (height, width, channels) from the dataset.
        num_classes: class count from the dataset.
        options: builder options (only mobilenet_v2 and dscnn read them).
        seed: seeds the weight initialisers so a build is reproducible.

    Returns:
        A tf_keras Functional model ending in softmax.
    """
    if name not in MIN_INPUT_SIDE:
        raise UserInputError(f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)}")
    height, width, channels = input_shape
    if min(height, width) < MIN_INPUT_SIDE[name]:
        raise UserInputError(
            f"input {height}x{width}x{channels} is too small for {name}: it needs at least "
            f"{MIN_INPUT_SIDE[name]}x{MIN_INPUT_SIDE[name]} (use --image-size to resize)")
    if num_classes < 2:
        raise UserInputError(f"{name} needs at least 2 classes, the dataset has {num_classes}")
    tf, tf_keras = import_tf_keras()
    tf_keras.utils.set_random_seed(seed)
    builder = _BUILDERS[name]
    return builder(tf_keras, tuple(input_shape), num_classes, options)


def _simple_cnn(keras, input_shape, num_classes, options):
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="simple_cnn")


def _keras_cnn(keras, input_shape, num_classes, options):
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="keras_cnn")


def _lenet5(keras, input_shape, num_classes, options):
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(6, 5, padding="same", activation="relu", name="c1")(inputs)
    x = layers.AveragePooling2D(2, name="s2")(x)
    x = layers.Conv2D(16, 5, activation="relu", name="c3")(x)
    x = layers.AveragePooling2D(2, name="s4")(x)
    x = layers.Conv2D(120, 5, activation="relu", name="c5")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(84, activation="relu", name="f6")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="lenet5")


def _mlp(keras, input_shape, num_classes, options):
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(128, activation="relu", name="hidden")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mlp")


def _dscnn(keras, input_shape, num_classes, options):
    """Depthwise-separable CNN in the style of the MLPerf Tiny keyword-spotting DS-CNN."""
    layers = keras.layers
    width = options.width
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for block in range(1, options.blocks + 1):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{block}")(x)
        x = layers.BatchNormalization(name=f"dw{block}_bn")(x)
        x = layers.ReLU(name=f"dw{block}_relu")(x)
        x = layers.Conv2D(width, 1, use_bias=False, name=f"pw{block}")(x)
        x = layers.BatchNormalization(name=f"pw{block}_bn")(x)
        x = layers.ReLU(name=f"pw{block}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="dscnn")


SCRATCH_BATCH_NORM_MOMENTUM = 0.99


def _mobilenet_v2(keras, input_shape, num_classes, options):
    """keras.applications MobileNetV2 built flat on our input (tfmot rejects nested models)."""
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    backbone_input = inputs
    backbone_shape = input_shape
    if input_shape[2] == 1 and options.weights:
        # Pretrained backbones expect RGB: repeat the gray channel inside the graph.
        backbone_input = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
        backbone_shape = input_shape[:2] + (3,)
    try:
        backbone = keras.applications.MobileNetV2(
            input_shape=backbone_shape, input_tensor=backbone_input, alpha=options.alpha,
            include_top=False, weights=None)
    except ValueError as error:
        raise UserInputError(f"cannot build mobilenet_v2 for input {input_shape}: {error}") from error
    if not options.weights:
        # keras.applications uses batch-norm momentum 0.999, made for ImageNet's millions of
        # steps: after the ~1,000 steps of a small from-scratch run the moving statistics are
        # still mostly their initial values and inference mode predicts one class. 0.99
        # converges within a few hundred steps. Pretrained backbones keep their statistics' pace.
        for layer in backbone.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = SCRATCH_BATCH_NORM_MOMENTUM
    if options.weights:
        try:
            backbone.load_weights(options.weights, by_name=str(options.weights).endswith(".h5"),
                                  skip_mismatch=str(options.weights).endswith(".h5"))
        except (OSError, ValueError) as error:
            raise UserInputError(f"cannot load weights {options.weights}: {error}") from error
    for layer in backbone.layers[:options.freeze]:
        layer.trainable = False
    x = layers.GlobalAveragePooling2D(name="head_pool")(backbone.output)
    x = layers.Dropout(0.2, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"mobilenet_v2_{options.alpha:g}")


_BUILDERS = {
    "simple_cnn": _simple_cnn,
    "keras_cnn": _keras_cnn,
    "lenet5": _lenet5,
    "mlp": _mlp,
    "dscnn": _dscnn,
    "mobilenet_v2": _mobilenet_v2,
}
