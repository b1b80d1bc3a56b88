"""Quantization-aware fine-tuning with tfmot, prune-preserving when the model is sparse.

Weight ranges are chosen for least squared error at every training step (mse_weight_ranges);
activation ranges are post-training int8's rule, min/max over the calibration images, set from
the weights before and after the fine-tune (set_activation_ranges).
"""

import contextlib
import functools
from dataclasses import dataclass

import numpy as np

from edgeship.deps import import_tf_keras, require
from edgeship.errors import UserInputError


@dataclass(frozen=True)
class QatConfig:
    """Fine-tuning settings of quantization-aware training.

    Attributes:
        epochs: fine-tuning epochs with fake-quantized weights and activations.
        preserve_sparsity: use Default8BitPrunePreserveQuantizeScheme so zeros stay zeros.
        per_tensor_weights: fake-quantize Conv2D/DepthwiseConv2D weights with one range per
            tensor instead of tfmot's one per output channel (Dense is per-tensor either way).
        batch_size: fine-tuning batch size.
        learning_rate: small, since the float model is already trained.
        seed: seeds the fine-tuning order.
    """

    epochs: int
    preserve_sparsity: bool = False
    per_tensor_weights: bool = False
    batch_size: int = 32
    learning_rate: float = 1e-4
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1:
            raise UserInputError(f"QAT epochs must be >= 1, got {self.epochs}")
        if not self.learning_rate > 0:
            raise UserInputError(f"QAT learning rate must be > 0, got {self.learning_rate}")


def quantize_aware_finetune(model, config: QatConfig, x_train: np.ndarray, y_train: np.ndarray,
                            representative_samples: np.ndarray):
    """Wrap a float model for QAT and fine-tune it.

    Args:
        model: a trained (optionally pruned and stripped) tf_keras model.
        config: epochs and the quantization scheme.
        x_train: training images with the recorded preprocessing.
        y_train: integer labels.
        representative_samples: the images that calibrate post-training int8 (float32 NHWC);
            their min/max sets every activation range before the fine-tune and again after it
            (set_activation_ranges).

    Returns:
        The quantization-aware model; export_tflite turns it into an int8 .tflite.
    """
    tf, tf_keras = import_tf_keras()
    tfmot = require("tensorflow_model_optimization")
    quantize = tfmot.quantization.keras
    tf_keras.utils.set_random_seed(config.seed)
    try:
        annotated = tf_keras.models.clone_model(
            model, clone_function=lambda layer: _annotate(layer, quantize))
        with quantize.quantize_scope({"PassThroughQuantizeConfig": pass_through_config_class()}):
            qat_model = quantize.quantize_apply(annotated, _scheme(tfmot, config))
    except (RuntimeError, ValueError, TypeError) as error:
        raise UserInputError(
            f"quantization-aware training cannot handle this model: {_first_line(error)} "
            f"(layer {_unsupported_layer(model, tfmot)}); drop --qat and use post-training "
            "int8 quantization instead") from error
    set_activation_ranges(qat_model, model, representative_samples)
    qat_model.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    data = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
            .shuffle(len(x_train), seed=config.seed).batch(config.batch_size))
    with mse_weight_ranges():  # the training step is traced, and its ranges set, in here
        qat_model.fit(data, epochs=config.epochs, verbose=0)
    # The moving averages trail the weights they watch: set every range again, from the
    # fine-tuned weights, so the int8 file is calibrated as post-training int8 of them would be.
    set_activation_ranges(qat_model, strip_quantization(qat_model, model),
                          representative_samples)
    return qat_model


# Clip ratios (of a weight tensor's or channel's largest magnitude) mse_weight_ranges tries.
WEIGHT_RANGE_RATIOS = tuple(0.5 + 0.5 * step / 31 for step in range(32))


def mse_weight_range(weights, per_channel: bool):
    """The symmetric range (one per tensor, or per last-axis channel) whose int8 grid
    ([-127, 127] steps of range/127, values beyond it clipped) is nearest the weights in mean
    squared error, among WEIGHT_RANGE_RATIOS of the largest magnitude. A TensorFlow op."""
    import tensorflow as tf

    rank = len(weights.shape)
    axes = list(range(rank - 1)) if per_channel else list(range(rank))
    largest = tf.reduce_max(tf.abs(weights), axis=axes)  # () or (channels,)
    ratios = tf.constant(WEIGHT_RANGE_RATIOS, weights.dtype)
    candidates = tf.reshape(ratios, [-1] + [1] * len(largest.shape)) * largest[None]
    steps = tf.maximum(candidates / 127.0, 1e-12)
    steps = tf.reshape(steps, [len(WEIGHT_RANGE_RATIOS)] + [1] * (rank - 1)
                       + ([-1] if per_channel else [1]))
    grid = tf.clip_by_value(tf.round(weights[None] / steps), -127.0, 127.0) * steps
    error = tf.reduce_sum(tf.square(grid - weights[None]), axis=[axis + 1 for axis in axes])
    best = tf.argmin(error, axis=0)
    if per_channel:
        return tf.gather(tf.transpose(candidates), best, batch_dims=1)
    return tf.gather(candidates, best)


@contextlib.contextmanager
def mse_weight_ranges():
    """While open, tfmot's weight fake-quantization uses mse_weight_range, not min/max.

    tfmot sets each weight tensor's range to its largest magnitude at every training step
    (quant_ops.LastValueQuantize, which its default, conv, transposed-conv and
    prune-preserving weight quantizers all call). One outlier then coarsens the grid of the
    whole tensor: on lenet5's c5 (48,000 per-tensor weights, the largest 8x their RMS) the
    weights' SQNR is 34.7 dB at min/max and 35.4 dB at the MSE range (clip at 0.88 of the
    largest). Here the training branch takes the MSE range instead, and stores it in the same
    range variables, so the fine-tune learns under the grid the int8 file gets (the converter
    reads those variables) and the weights beyond it stay clipped there. On the README's
    lenet5 run (benchmarks/bench_qat_layers.py) every layer's SQNR against the fine-tuned
    float weights is then above post-training int8's against model_float.tflite (by 0.52 dB
    at least on 100 test images, 0.36 on 1,000), where min/max ranges left c5 0.29 dB below;
    on other training seeds some layers stay below either way (the same benchmark).
    Inference (training False) reads the variables as before: export and evaluation are
    unchanged.
    """
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.LastValueQuantize

    def last_value_quantize(inputs, min_var, max_var, per_channel=False,
                            name_prefix="LastValueQuant", is_training=True, num_bits=8,
                            narrow_range=False, symmetric=False):
        if not (is_training and symmetric and narrow_range and num_bits == 8):
            return original(inputs, min_var, max_var, per_channel=per_channel,
                            name_prefix=name_prefix, is_training=is_training,
                            num_bits=num_bits, narrow_range=narrow_range, symmetric=symmetric)
        with tf.name_scope(name_prefix):
            limit = tf.stop_gradient(mse_weight_range(inputs, per_channel))
            # as tfmot does: quantize with the assignments' values, so they run first
            low = quant_ops.tf_compat.assign(min_var, -limit, name="AssignMinMse")
            high = quant_ops.tf_compat.assign(max_var, limit, name="AssignMaxMse")
            return quant_ops._FakeQuantWithMinMaxVars(inputs, low, high, per_channel=per_channel,
                                                      num_bits=8, narrow_range=True)

    quant_ops.LastValueQuantize = last_value_quantize
    try:
        yield
    finally:
        quant_ops.LastValueQuantize = original


# tfmot's activation quantizer variables, by the name its wrappers give them; weight ranges
# ("kernel_min", ...) stay as the last training step set them (mse_weight_ranges).
ACTIVATION_RANGES = ("post_activation", "pre_activation", "output")


def set_activation_ranges(qat_model, float_model, representative_samples: np.ndarray) -> None:
    """Set each activation quantizer's range to the float model's min/max on the samples.

    Before the fine-tune: tfmot starts every activation range at [-6, 6] and moves it by a
    moving average with decay 0.999 per step, so a short fine-tune (one epoch of a few
    thousand images is ~125 steps) ends with ranges still near [-6, 6]: half the int8 levels
    of a ReLU output spent on negative values that never occur, and larger activations clipped
    at 6. Measured on lenet5 after `--qat 1` on mnist5k, every layer's SQNR against its own
    float weights was 5 to 20 dB below post-training int8's.

    After the fine-tune, from the fine-tuned weights: the moving average of per-batch ranges
    trails the weights as they move and sits inside the range of the calibration images, so
    the logits clipped (lenet5: 34.1 dB against the fine-tuned float, post-training int8
    38.2 dB against its own). Min/max over post-training's own calibration images is its
    rule, so every activation is quantized as post-training int8 of the fine-tuned weights
    would quantize it; the weights keep the quantization the fine-tune learned.

    Args:
        qat_model: the model quantize_apply returned (trained or not).
        float_model: a float model with the same layer names whose activations set the ranges:
            the model before the fine-tune, or strip_quantization's after it.
        representative_samples: the calibration images, with the recorded preprocessing.
    """
    _, tf_keras = import_tf_keras()
    # A copy with layers of its own: tfmot wraps preprocessing layers in place (see _annotate),
    # so the float model's own layers also sit in the QAT graph and `layer.input` may be theirs.
    float_model, weights = tf_keras.models.clone_model(float_model), float_model.get_weights()
    float_model.set_weights(weights)
    float_names = {layer.name for layer in float_model.layers}
    wanted = []  # (variable, float layer, "pre" or "post", "min" or "max")
    for wrapper in qat_model.layers:
        inner = getattr(wrapper, "layer", None)
        if inner is None or inner.name not in float_names:
            continue
        for variable in wrapper.weights:
            short = variable.name.rsplit("/", 1)[-1].split(":")[0]
            role, _, bound = short.rpartition("_")
            if role in ACTIVATION_RANGES and bound in ("min", "max"):
                wanted.append((variable, float_model.get_layer(inner.name),
                               "pre" if role == "pre_activation" else "post", bound))
    if not wanted:
        return
    layers = list(dict.fromkeys((layer, where) for _, layer, where, _ in wanted))
    probe = tf_keras.Model(float_model.inputs,
                           [layer.input if where == "pre" else layer.output
                            for layer, where in layers])
    values = probe.predict(np.asarray(representative_samples, np.float32), batch_size=256,
                           verbose=0)
    values = values if isinstance(values, list) else [values]
    ranges = {}
    for (layer, where), value in zip(layers, values, strict=True):
        if where == "pre":
            value = _without_activation(tf_keras, layer)(value).numpy()
        ranges[layer.name, where] = (min(float(np.min(value)), 0.0), max(float(np.max(value)), 0.0))
    for variable, layer, where, bound in wanted:
        low, high = ranges[layer.name, where]
        variable.assign(np.full(variable.shape, low if bound == "min" else high, np.float32))


def _without_activation(tf_keras, layer):
    """A copy of the layer, same weights, with a linear activation (its pre-activation)."""
    config = layer.get_config()
    config["activation"] = "linear"
    linear = type(layer).from_config(config)
    linear.build(layer.input_shape)
    linear.set_weights(layer.get_weights())
    return linear


def strip_quantization(qat_model, float_model):
    """The float model with the weights quantization-aware training left in qat_model.

    tfmot wraps each layer in a QuantizeWrapper that holds the layer itself (its kernel, bias
    and batch-norm statistics, trained through fake quantization) beside the quantizers'
    ranges. The converter quantizes exactly those weights into the int8 file, so this float
    model, with no fake quantization, is the int8 file's own float reference: int8 against it
    is what quantization costs, while the model before fine-tuning differs by the training.

    Args:
        qat_model: the model quantize_aware_finetune returned.
        float_model: the float model that was fine-tuned (its architecture is reused; its
            weights are not changed).

    Returns:
        A new float tf_keras model holding the fine-tuned weights.

    Raises:
        ValueError: a weighted layer of float_model has no counterpart in qat_model (a tfmot
            transform replaced it), so no float twin of the int8 file exists.
    """
    _, tf_keras = import_tf_keras()
    # The wrapper tracks the wrapped layer's kernel itself (the layer computes with the
    # fake-quantized copy), so the variables are found by name, not through the inner layer.
    trained = {variable.name: variable for variable in qat_model.weights}
    stripped = tf_keras.models.clone_model(float_model)
    for layer in stripped.layers:
        values = []
        for weight in layer.weights:
            source = trained.get(f"{layer.name}/{weight.name.rsplit('/', 1)[-1]}")
            if source is None or tuple(source.shape) != tuple(weight.shape):
                raise ValueError(f"weight {weight.name!r} of layer {layer.name!r} "
                                 f"({type(layer).__name__}) has no trained counterpart of the "
                                 "same shape in the quantization-aware model")
            values.append(source.numpy())
        if values:
            layer.set_weights(values)
    return stripped


PASS_THROUGH_LAYERS = ("Rescaling", "Normalization")
# TFLite's int8 AVERAGE_POOL_2D keeps its input's scale and zero point (the quantization spec);
# tfmot learns a separate output range for it, which the converter honours with an extra
# QUANTIZE (requantize) op after every average pool. Left unquantized, the pool shares its
# input's range as in post-training quantization, and the op disappears.
SAME_SCALE_LAYERS = ("AveragePooling1D", "AveragePooling2D")


def same_scale_config():
    """tfmot's NoOpQuantizeConfig: no weights, no activation, no output range of its own."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs,
    )

    return default_8bit_quantize_configs.NoOpQuantizeConfig()


def _scheme(tfmot, config: QatConfig):
    """tfmot's 8-bit scheme: prune-preserving or not, per-channel or per-tensor conv weights."""
    if config.preserve_sparsity and config.per_tensor_weights:
        return per_tensor_prune_preserve_scheme_class()()
    if config.preserve_sparsity:
        return tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme(
        disable_per_axis=config.per_tensor_weights)


@functools.cache
def per_tensor_prune_preserve_scheme_class():
    """Default8BitPrunePreserveQuantizeScheme with per-tensor Conv2D weights.

    tfmot's prune-preserve registry only accepts the per-channel conv config; this one takes
    the per-tensor registry's config and gives it the sparsity-preserving per-tensor quantizer
    (the one tfmot uses for Dense). Layer-level quantize configs would not do: they switch off
    tfmot's Conv+BatchNorm folding transforms.
    """
    tfmot = require("tensorflow_model_optimization")
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
        prune_preserve_quantize_registry as registries,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    base = registries.Default8bitPrunePreserveQuantizeRegistry

    class PerTensorPrunePreserveRegistry(base):
        _LAYERS_CONFIG_MAP = {
            **base._LAYERS_CONFIG_MAP,
            registries.layers.Conv2D: registries._PrunePreserveInfo(
                ["kernel"], ["Default8BitQuantizeConfig"]),
        }

        def get_quantize_config(self, layer):
            config = (default_8bit_quantize_registry
                      .Default8BitQuantizeRegistry(disable_per_axis=True)
                      .get_quantize_config(layer))
            return self.apply_sparsity_preserve_quantize_config(layer, config)

    class PerTensorPrunePreserveScheme(
            tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme):
        def get_quantize_registry(self):
            return PerTensorPrunePreserveRegistry()

    return PerTensorPrunePreserveScheme


def _annotate(layer, quantize):
    """Annotate every layer for QAT; preprocessing layers get a config that quantizes nothing.

    tfmot's registry has no entry for Rescaling/Normalization and rejects models that use them
    as in-graph preprocessing; the converter quantizes their outputs from calibration instead.
    """
    if type(layer).__name__ in PASS_THROUGH_LAYERS:
        return quantize.quantize_annotate_layer(layer, quantize_config=pass_through_config_class()())
    if type(layer).__name__ in SAME_SCALE_LAYERS:
        return quantize.quantize_annotate_layer(layer, quantize_config=same_scale_config())
    return quantize.quantize_annotate_layer(layer)


@functools.cache
def pass_through_config_class():
    """A tfmot QuantizeConfig with no weights to quantize, only the output range to learn.

    Built on first use because tfmot is heavy.
    """
    tfmot = require("tensorflow_model_optimization")

    class PassThroughQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            # Learn the output range so the converter can quantize the preprocessing op.
            return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self):
            return {}

    return PassThroughQuantizeConfig


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _unsupported_layer(model, tfmot) -> str:
    """Name the first layer the default 8-bit registry has no quantize config for."""
    registry_module = tfmot.quantization.keras.default_8bit.default_8bit_quantize_registry
    registry = registry_module.Default8BitQuantizeRegistry()
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if not registry.supports(layer):
            return f"{layer.name!r} of type {type(layer).__name__}"
    return "unknown"
