"""What `edgeship tune` searches and under which budgets: TuneConfig, SearchSpace, Candidate.

A candidate is one zoo model with its width, pruning, QAT, weight granularity, activation
precision and kernel variant. Each becomes a PipelineConfig, so its run directory is what
`edgeship pipeline` would make and its reproduce command is the pipeline's own.
"""

import argparse
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from edgeship.errors import UserInputError
from edgeship.options import option

FAMILIES = ("dscnn", "mobilenet_v2", "simple_cnn", "keras_cnn", "lenet5")
SAMPLERS = ("tpe", "random", "nsga2")
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
          "mib": 1024 ** 2}


def parse_bytes(text: str | int) -> int:
    """"64KB" -> 65536 (KB = 1024 bytes, as MCU datasheets count), "4096" -> 4096."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected a size like 64KB, 1MB or 4096, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_bytes(value: int) -> str:
    return f"{value // 1024}KB" if value % 1024 == 0 else str(value)


def _profile_targets() -> tuple[str, ...]:
    from edgeship.profile.targets import TARGETS

    return tuple(name for name, target in TARGETS.items() if target.unicorn_cpu)


@dataclass(frozen=True)
class TuneConfig:
    """Everything `edgeship tune` needs; the CLI and `edgeship.tune()` build one.

    Budgets left None are not limits. `dataset` carries the split and image options
    (DatasetOptions' flags on the CLI).
    """

    out: str = option(None, help="tune folder: study.db, trials/, tune_report.html/.json")
    target: str = option("cortex-m4", choices=_profile_targets(),
                         help="Cortex-M core whose RAM, flash and estimated cycles are budgeted")
    clock_mhz: float | None = option(None, help="clock of the ms estimate (default: the "
                                     "target's typical board, 120 MHz for cortex-m4)")
    max_ram: int | None = option(None, parse=parse_bytes, format=format_bytes, metavar="SIZE",
                                 help="RAM budget: activations + I/O + scratch + stack, e.g. 64KB")
    max_flash: int | None = option(None, parse=parse_bytes, format=format_bytes,
                                   metavar="SIZE", help="flash budget: code + weights, e.g. 256KB")
    max_ms: float | None = option(None, metavar="MS", help="estimated latency budget in ms")
    min_accuracy: float | None = option(None, metavar="FRACTION",
                                        help="smallest int8 validation accuracy kept, e.g. 0.95")
    trials: int = option(20, help="trials in the study (a resumed or shared study stops there)")
    epochs: int = option(3, help="training epochs of each trial")
    batch_size: int = option(32, help="training batch size")
    calibration_samples: int = option(200, help="training images that calibrate int8 ranges")
    sampler: str = option("tpe", choices=SAMPLERS,
                          help="Optuna sampler: tpe (constrained multi-objective), random, nsga2")
    seed: int = option(0, help="seed of the sampler, weight init and training")
    storage: str | None = option(None, metavar="URL", help="Optuna storage shared by workers, "
                                 "e.g. postgresql://user@host/db (default: sqlite in --out)")
    study_name: str = option("edgeship-tune", help="study name inside the storage")
    front_pipeline: bool = option(True, help="run the full pipeline (validate, bench, embed, "
                                  "profile, report) on each Pareto-front model")
    dataset: object = None  # a DatasetSpec (train/datasets.py)

    def __post_init__(self):
        for name in ("trials", "epochs", "batch_size", "calibration_samples"):
            if getattr(self, name) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be >= 1, got "
                                     f"{getattr(self, name)}")
        for name in ("max_ram", "max_flash", "max_ms"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserInputError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            raise UserInputError(f"--min-accuracy is a fraction in [0, 1], got "
                                 f"{self.min_accuracy}")
        if self.sampler not in SAMPLERS:
            raise UserInputError(f"--sampler must be one of {', '.join(SAMPLERS)}")
        if self.target not in _profile_targets():
            raise UserInputError(f"--target must be one of {', '.join(_profile_targets())}")
        if self.clock_mhz is not None and not self.clock_mhz > 0:
            raise UserInputError(f"--clock-mhz must be > 0, got {self.clock_mhz}")

    def budgets(self) -> dict[str, float]:
        """budget name -> limit, for the budgets given (ram and flash in bytes)."""
        named = {"ram": self.max_ram, "flash": self.max_flash, "ms": self.max_ms}
        return {name: value for name, value in named.items() if value is not None}

    def to_dict(self) -> dict:
        payload = asdict(self)
        payload["dataset"] = self.dataset.to_dict() if self.dataset is not None else None
        return payload

    @classmethod
    def from_dict(cls, payload: dict) -> "TuneConfig":
        from edgeship.train.datasets import DatasetSpec

        known = {item.name for item in fields(cls)}
        values = {key: value for key, value in payload.items() if key in known}
        if values.get("dataset") is not None:
            values["dataset"] = DatasetSpec.from_dict(values["dataset"])
        return cls(**values)

    def study_settings(self) -> dict:
        """What must match for a rerun to continue a study (trials may grow; the rest not)."""
        payload = self.to_dict()
        for name in ("trials", "out", "storage", "front_pipeline"):
            payload.pop(name)
        return payload


@dataclass(frozen=True)
class SearchSpace:
    """The choices of each searched dimension (a [space] table of a --config TOML file).

    Attributes:
        families: zoo models tried (those the input is too small for are left out).
        widths: dscnn's channel counts.
        alphas: mobilenet_v2's width multipliers.
        prune_sparsities: magnitude-pruning targets; 0 is no pruning.
        qat_epochs: quantization-aware fine-tuning epochs; 0 is post-training int8.
        weight_granularities: int8 weight scales per channel or per tensor.
        activations: int8, or int16 (16x8) activations.
        kernels: codegen kernel variants (dsp only on cores with the DSP extension).
    """

    families: tuple[str, ...] = FAMILIES
    widths: tuple[int, ...] = (8, 12, 16, 24, 32, 48, 64)
    alphas: tuple[float, ...] = (0.35, 0.5, 0.75)
    prune_sparsities: tuple[float, ...] = (0.0, 0.5, 0.75)
    qat_epochs: tuple[int, ...] = (0, 1)
    weight_granularities: tuple[str, ...] = ("per-channel", "per-tensor")
    activations: tuple[str, ...] = ("int8", "int16")
    kernels: tuple[str, ...] = ("dsp", "portable")

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, (str, int, float)):
                value = (value,)
            value = tuple(value)
            if not value:
                raise UserInputError(f"search space: {item.name} needs at least one choice")
            object.__setattr__(self, item.name, value)
        self._check("families", FAMILIES)
        self._check("weight_granularities", ("per-channel", "per-tensor", "auto"))
        self._check("activations", ("int8", "int16"))
        self._check("kernels", ("dsp", "portable"))
        if min(self.widths) < 8:
            raise UserInputError("search space: dscnn widths must be >= 8")
        if not all(0 < alpha <= 1.4 for alpha in self.alphas):
            raise UserInputError("search space: mobilenet_v2 alphas must be in (0, 1.4]")
        if not all(0 <= sparsity < 1 for sparsity in self.prune_sparsities):
            raise UserInputError("search space: prune sparsities must be in [0, 1)")
        if min(self.qat_epochs) < 0:
            raise UserInputError("search space: QAT epochs must be >= 0")

    def _check(self, name: str, allowed: tuple) -> None:
        unknown = [value for value in getattr(self, name) if value not in allowed]
        if unknown:
            raise UserInputError(f"search space: unknown {name} {', '.join(map(str, unknown))}; "
                                 f"choose from {', '.join(allowed)}")

    def to_dict(self) -> dict:
        return {key: list(value) for key, value in asdict(self).items()}


def load_config_file(path: str | Path) -> tuple[dict, dict]:
    """A TOML file's [tune] table (TuneConfig and dataset options) and [space] table."""
    path = Path(path)
    try:
        payload = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UserInputError(f"cannot read config {path}: {error}") from error
    unknown_tables = sorted(set(payload) - {"tune", "space"})
    if unknown_tables:
        raise UserInputError(f"config {path}: unknown table(s) {', '.join(unknown_tables)}; "
                             "tables: [tune], [space]")
    tune = {key.replace("-", "_"): value for key, value in payload.get("tune", {}).items()}
    space = {key.replace("-", "_"): value for key, value in payload.get("space", {}).items()}
    known_space = {item.name for item in fields(SearchSpace)}
    if set(space) - known_space:
        raise UserInputError(f"config {path}: unknown key(s) {', '.join(sorted(set(space) - known_space))} "
                             f"in [space]; known: {', '.join(sorted(known_space))}")
    return tune, space


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: a zoo model and how it is quantized and run."""

    model: str
    width: int = 64
    alpha: float = 0.35
    prune_sparsity: float = 0.0
    qat_epochs: int = 0
    weight_granularity: str = "per-channel"
    activations: str = "int8"
    kernels: str = "dsp"

    @classmethod
    def from_params(cls, params: dict) -> "Candidate":
        return cls(**{item.name: params[key] for item in fields(cls)
                      for key in (_PARAM_NAMES.get(item.name, item.name),) if key in params})

    def footprint_key(self) -> str:
        """Everything RAM, flash and cycles depend on (not QAT epochs: same graph)."""
        return "|".join(str(part) for part in (
            self.model, self.width if self.model == "dscnn" else "",
            self.alpha if self.model == "mobilenet_v2" else "", self.prune_sparsity,
            self.weight_granularity, self.activations, self.kernels))

    def describe(self) -> str:
        parts = [self.model + (f" width {self.width}" if self.model == "dscnn" else "")
                 + (f" alpha {self.alpha:g}" if self.model == "mobilenet_v2" else "")]
        if self.prune_sparsity:
            parts.append(f"pruned {self.prune_sparsity:g}")
        if self.qat_epochs:
            parts.append(f"QAT {self.qat_epochs}")
        parts += [self.weight_granularity, f"{self.activations} activations",
                  f"{self.kernels} kernels"]
        return ", ".join(parts)

    def pipeline_config(self, config: TuneConfig, run_dir: Path):
        """The PipelineConfig that trains and converts this candidate into run_dir."""
        from edgeship.convert.run import ConvertConfig
        from edgeship.pipeline_config import PipelineConfig, ProfileStage
        from edgeship.train.fit import TrainConfig
        from edgeship.train.models import ModelOptions

        options = ModelOptions(width=self.width if self.model == "dscnn" else 64,
                               alpha=self.alpha if self.model == "mobilenet_v2" else 0.35)
        out = str(run_dir)
        train = TrainConfig(model=self.model, dataset=config.dataset, out=out,
                            epochs=config.epochs, batch_size=config.batch_size,
                            seed=config.seed, model_options=options)
        convert = ConvertConfig(source=out, onnx=True, qat_epochs=self.qat_epochs,
                                prune_sparsity=self.prune_sparsity or None,
                                weight_granularity=self.weight_granularity,
                                activations=self.activations,
                                calibration_samples=config.calibration_samples,
                                seed=config.seed)
        profile = ProfileStage(target=config.target, kernels=self.kernels,
                               clock_mhz=config.clock_mhz)
        return PipelineConfig(out=out, train=train, convert=convert, profile=profile)


# Optuna parameter names of the Candidate fields that differ.
_PARAM_NAMES = {"prune_sparsity": "prune", "qat_epochs": "qat"}


def suggest(trial, space: SearchSpace, input_shape: tuple[int, int, int],
            target: str) -> Candidate:
    """Draw a candidate from the space (define-by-run: width only for dscnn, alpha only for
    mobilenet_v2; families whose minimum input side exceeds the images are left out)."""
    from edgeship.convert.codegen.kernels import DSP_CORES
    from edgeship.train.models import MIN_INPUT_SIDE

    families = [name for name in space.families if min(input_shape[:2]) >= MIN_INPUT_SIDE[name]]
    if not families:
        raise UserInputError(f"no model family of {', '.join(space.families)} takes "
                             f"{input_shape[0]}x{input_shape[1]} images")
    model = trial.suggest_categorical("model", families)
    chosen = {"model": model}
    if model == "dscnn":
        chosen["width"] = trial.suggest_categorical("width", list(space.widths))
    if model == "mobilenet_v2":
        chosen["alpha"] = trial.suggest_categorical("alpha", list(space.alphas))
    chosen["prune_sparsity"] = trial.suggest_categorical("prune", list(space.prune_sparsities))
    chosen["qat_epochs"] = trial.suggest_categorical("qat", list(space.qat_epochs))
    chosen["weight_granularity"] = trial.suggest_categorical(
        "weight_granularity", list(space.weight_granularities))
    chosen["activations"] = trial.suggest_categorical("activations", list(space.activations))
    kernels = [name for name in space.kernels if name != "dsp" or target in DSP_CORES]
    chosen["kernels"] = trial.suggest_categorical("kernels", kernels or ["portable"])
    return Candidate(**chosen)




