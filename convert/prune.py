"""Magnitude pruning with tfmot: PolynomialDecay to the target sparsity, then strip_pruning."""

from dataclasses import dataclass

import numpy as np

from edgeship.deps import import_tf_keras, require
from edgeship.errors import UserInputError

PRUNABLE_KERNELS = ("Conv2D", "Dense", "DepthwiseConv2D", "SeparableConv2D")


@dataclass(frozen=True)
class PruneConfig:
    """Target sparsity, optional M:N structure, and the fine-tuning that reaches it.

    Attributes:
        sparsity: fraction of each prunable layer's weights set to exactly zero, in (0, 1).
        structure: None, or "M:N" (e.g. "2:4": at most 2 non-zeros in every block of 4).
        epochs: fine-tuning epochs; the sparsity schedule ends inside them.
        batch_size: fine-tuning batch size.
        learning_rate: fine-tuning learning rate (small: the model is already trained).
        seed: seeds the fine-tuning order.
    """

    sparsity: float
    structure: str | None = None
    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 5e-4
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.sparsity < 1:
            raise UserInputError(f"sparsity must be in (0, 1), got {self.sparsity}")
        if self.epochs < 1:
            raise UserInputError(f"pruning fine-tuning epochs must be >= 1, got {self.epochs}")
        if self.structure is not None:
            self.block()

    def block(self) -> tuple[int, int] | None:
        """(M, N) of an "M:N" structure, validated."""
        if self.structure is None:
            return None
        try:
            kept, block = (int(part) for part in self.structure.split(":"))
        except ValueError:
            raise UserInputError(f"prune structure must look like 2:4, got {self.structure!r}") from None
        if not 0 < kept < block:
            raise UserInputError(f"prune structure M:N needs 0 < M < N, got {self.structure!r}")
        return kept, block


def pruning_schedule_steps(total_steps: int) -> tuple[int, int]:
    """(end_step, frequency) so the last pruning update lands inside the steps actually run.

    Pruning reaches its target at end_step and the remaining ~20% of steps fine-tune with the
    mask fixed. tfmot only prunes on steps where (step - begin) % frequency == 0.
    """
    if total_steps < 2:
        raise UserInputError(f"pruning needs at least 2 fine-tuning steps, got {total_steps}")
    end_step = max(1, int(total_steps * 0.8))
    frequency = max(1, end_step // 10)
    end_step = frequency * (end_step // frequency)
    return end_step, frequency


def prune(model, config: PruneConfig, x_train: np.ndarray, y_train: np.ndarray):
    """Prune a trained model to config.sparsity by fine-tuning, and strip the wrappers.

    Args:
        model: a trained tf_keras model.
        config: sparsity target and fine-tuning settings.
        x_train: training images (the recorded preprocessing already applied).
        y_train: integer labels.

    Returns:
        A plain tf_keras model whose prunable kernels hold the zeros.
    """
    tf, tf_keras = import_tf_keras()
    tfmot = require("tensorflow_model_optimization")
    sparsity_api = tfmot.sparsity.keras
    steps_per_epoch = int(np.ceil(len(x_train) / config.batch_size))
    total_steps = steps_per_epoch * config.epochs
    end_step, frequency = pruning_schedule_steps(total_steps)
    schedule = sparsity_api.PolynomialDecay(initial_sparsity=0.0, final_sparsity=config.sparsity,
                                            begin_step=0, end_step=end_step, frequency=frequency)
    options = {"pruning_schedule": schedule}
    if config.block():
        kept, block = config.block()
        options = {"sparsity_m_by_n": (kept, block)}
    tf_keras.utils.set_random_seed(config.seed)
    registry = require("tensorflow_model_optimization.python.core.sparsity.keras.prune_registry"
                       ).PruneRegistry

    def wrap_prunable(layer):
        # Like tfmot's whole-model prune_low_magnitude, except that layers its registry does
        # not know (Rescaling, Normalization as preprocessing) pass through unwrapped.
        return sparsity_api.prune_low_magnitude(layer, **options) if registry.supports(layer) else layer

    try:
        wrapped = tf_keras.models.clone_model(model, clone_function=wrap_prunable)
    except (ValueError, RuntimeError) as error:
        raise UserInputError(f"tfmot cannot prune this model: {error}") from error
    wrapped.compile(optimizer=tf_keras.optimizers.Adam(config.learning_rate),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    data = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
            .shuffle(len(x_train), seed=config.seed).batch(config.batch_size))
    wrapped.fit(data, epochs=config.epochs, verbose=0,
                callbacks=[sparsity_api.UpdatePruningStep()])
    return sparsity_api.strip_pruning(wrapped)


def measure_sparsity(model) -> dict[str, float]:
    """Fraction of exactly-zero kernel weights per prunable layer."""
    sparsity = {}
    for layer in model.layers:
        if type(layer).__name__ not in PRUNABLE_KERNELS:
            continue
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            kernel = getattr(layer, "depthwise_kernel", None)
        if kernel is not None:
            sparsity[layer.name] = float(np.mean(kernel.numpy() == 0))
    return sparsity

