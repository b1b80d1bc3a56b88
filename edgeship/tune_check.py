"""Cheap checks of a tune candidate: RAM, flash and cycles before any training.

RAM, flash and cycles of the generated C depend on the graph, not on trained weights (except
where weights are zero: sparse layers are stored and run sparse). So a candidate is built
with its seeded initial weights, pruned by magnitude to its sparsity, converted to int8 (or
16x8) and profiled on the emulated core; a candidate over budget is discarded in seconds.
Before even that, lower bounds read from the Keras model (int8 weights alone, the largest
activation tensor) discard the plainly too big without converting.
"""

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.tune_space import Candidate, TuneConfig

CALIBRATION_IMAGES = 16  # untrained ranges: a handful of images sets them as well as many
_WEIGHT_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense", "SeparableConv2D")
_BUFFER_LAYERS = _WEIGHT_LAYERS + ("MaxPooling2D", "AveragePooling2D", "Concatenate", "Add")


@dataclass(frozen=True)
class Footprint:
    """RAM and flash in bytes and estimated ms; `source` says how they were obtained."""

    ram: int
    flash: int
    ms: float | None
    source: str  # "profile of the untrained model", "lower bound from the Keras model", ...
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"ram": self.ram, "flash": self.flash, "ms": self.ms, "source": self.source,
                "seconds": round(self.seconds, 3)}


def over_budget(footprint: Footprint, config: TuneConfig) -> list[str]:
    """The budgets a footprint exceeds ("ram", "flash", "ms"); a missing ms exceeds none."""
    measured = {"ram": footprint.ram, "flash": footprint.flash, "ms": footprint.ms}
    return [name for name, limit in config.budgets().items()
            if measured[name] is not None and measured[name] > limit]


def constraint_values(measured: dict, config: TuneConfig, accuracy: float | None) -> list[float]:
    """Optuna constraints (<= 0 is feasible): RAM, flash and ms over budget as fractions of the
    budget, and the accuracy short of --min-accuracy."""
    values = []
    for name, limit in sorted(config.budgets().items()):
        value = measured.get(name)
        values.append(1.0 if value is None else (value - limit) / limit)
    if config.min_accuracy is not None:
        values.append(1.0 if accuracy is None else config.min_accuracy - accuracy)
    return values


def lower_bound(model, candidate: Candidate) -> Footprint:
    """RAM and flash no conversion of this Keras model can go below.

    Flash: one byte per int8 weight that pruning leaves non-zero. RAM: the largest single
    activation tensor, at the activation precision. Not a layer's input plus its output: the
    generated C writes a depthwise or elementwise op's output over its dying input, so the
    default dscnn's plan (22,556 B) is below its largest input plus output (25,088 B), and a
    bound counting both discarded models that fit.
    """
    activation_bytes = 2 if candidate.activations == "int16" else 1
    weights = 0
    ram = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in _WEIGHT_LAYERS and layer.weights:
            count = int(np.prod(layer.weights[0].shape))
            weights += int(count * (1 - candidate.prune_sparsity))
        if kind in _BUFFER_LAYERS:
            inputs = layer.input if isinstance(layer.input, list) else [layer.input]
            elements = max(int(np.prod(tensor.shape[1:])) for tensor in [*inputs, layer.output])
            ram = max(ram, elements * activation_bytes)
    return Footprint(ram=ram, flash=weights, ms=None, source="lower bound from the Keras model")


def zero_smallest(model, sparsity: float) -> None:
    """Magnitude pruning of the initial weights: the same count of zeros per layer that
    `convert --prune` leaves, so sparse storage and kernels are costed as they will be."""
    if not sparsity:
        return
    for layer in model.layers:
        if type(layer).__name__ in _WEIGHT_LAYERS and layer.weights:
            kernel = layer.weights[0]
            values = kernel.numpy()
            cut = int(values.size * sparsity)
            if cut:
                order = np.argsort(np.abs(values), axis=None)
                flat = values.reshape(-1).copy()
                flat[order[:cut]] = 0
                kernel.assign(flat.reshape(values.shape))


def untrained_model(candidate: Candidate, config: TuneConfig, input_shape, num_classes: int):
    from edgeship.train.models import build_model

    options = candidate.pipeline_config(config, Path(".")).train.model_options
    return build_model(candidate.model, tuple(input_shape), num_classes, options, seed=config.seed)


def profile_untrained(model, candidate: Candidate, config: TuneConfig,
                      calibration: np.ndarray) -> Footprint:
    """Convert the untrained (pruned) model as the candidate will be and profile it."""
    from edgeship.convert.tflite import export_tflite
    from edgeship.profile.run import ProfileConfig, ProfileStopped, profile_model

    started = time.perf_counter()
    zero_smallest(model, candidate.prune_sparsity)
    samples = calibration[:CALIBRATION_IMAGES]
    per_tensor = candidate.weight_granularity == "per-tensor"
    with tempfile.TemporaryDirectory(prefix="edgeship-tune-") as folder:
        path = Path(folder) / "candidate.tflite"
        if candidate.activations == "int16":
            from edgeship.convert.activations import quantize_mixed

            float_path = Path(folder) / "float.tflite"
            float_path.write_bytes(export_tflite(model))
            path.write_bytes(quantize_mixed(float_path, samples, "all"))
        else:
            path.write_bytes(export_tflite(model, samples, "int8", per_tensor))
        try:  # stopped at the ms budget: a slow candidate is discarded without running it all
            report = profile_model(ProfileConfig(model=str(path), target=config.target,
                                                 clock_mhz=config.clock_mhz,
                                                 kernels=candidate.kernels),
                                   max_ms=config.max_ms)
        except ProfileStopped as stopped:
            return Footprint(ram=stopped.ram, flash=stopped.flash, ms=stopped.ms,
                             source="profile of the untrained model, stopped past the ms "
                             "budget (RAM without the stack)",
                             seconds=time.perf_counter() - started)
    return Footprint(ram=int(report.ram["total"]), flash=int(report.flash["total"]),
                     ms=float(report.to_dict()["total"]["ms"]),
                     source="profile of the untrained model",
                     seconds=time.perf_counter() - started)


def check_candidate(candidate: Candidate, config: TuneConfig, input_shape, num_classes: int,
                    calibration: np.ndarray) -> tuple[Footprint, list[str]]:
    """The candidate's estimated footprint and the budgets it exceeds: the Keras lower bound
    first (milliseconds), then the profile of the untrained model (seconds)."""
    started = time.perf_counter()
    model = untrained_model(candidate, config, input_shape, num_classes)
    bound = lower_bound(model, candidate)
    exceeded = [name for name in over_budget(bound, config) if name != "ms"]
    if exceeded:
        return (Footprint(bound.ram, bound.flash, None, bound.source,
                          time.perf_counter() - started), exceeded)
    footprint = profile_untrained(model, candidate, config, calibration)
    footprint = Footprint(footprint.ram, footprint.flash, footprint.ms, footprint.source,
                          time.perf_counter() - started)
    return footprint, over_budget(footprint, config)
