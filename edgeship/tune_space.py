"""What `edgeship tune` searches and under which budgets: TuneConfig, SearchSpace, Candidate.

A candidate is one zoo model with its width, depth, input resolution (folder datasets),
pruning, QAT, weight granularity, activation precision and kernel variant. Each becomes a PipelineConfig, so its run directory is what
`edgeship pipeline` would make and its reproduce command is the pipeline's own.
"""

import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from edgeship.errors import UserInputError
from edgeship.options import format_bytes, option, parse_bytes

FAMILIES = ("dscnn", "mobilenet_v2", "simple_cnn", "keras_cnn", "lenet5")
SAMPLERS = ("tpe", "random", "nsga2")
PRUNERS = ("median", "none")
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
    epochs: int = option(5, help="training epochs of each trial (the pruner may stop one "
                         "earlier); as many as `edgeship train` trains by default")
    batch_size: int = option(32, help="training batch size")
    calibration_samples: int = option(200, help="training images that calibrate int8 ranges")
    sampler: str = option("tpe", choices=SAMPLERS,
                          help="Optuna sampler: tpe (constrained multi-objective), random, nsga2")
    seed: int = option(0, help="seed of the sampler, weight init and training")
    pruner: str = option("median", choices=PRUNERS,
                         help="stop a training early: median stops a trial whose validation "
                         "accuracy after an epoch is below the median of the trained trials' "
                         "at that epoch; none trains every trial fully")
    pruner_startup_trials: int = option(3, help="fully trained trials before the pruner "
                                        "stops any")
    pruner_warmup_epochs: int = option(2, help="epochs every trial trains before the pruner "
                                       "may stop it (families that start slowly, dscnn "
                                       "with BatchNorm, catch up after the first two)")
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
        if self.pruner not in PRUNERS:
            raise UserInputError(f"--pruner must be one of {', '.join(PRUNERS)}")
        for name in ("pruner_startup_trials", "pruner_warmup_epochs"):
            if getattr(self, name) < 0:
                raise UserInputError(f"--{name.replace('_', '-')} must be >= 0, got "
                                     f"{getattr(self, name)}")
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
        blocks: dscnn's depths (depthwise-separable blocks).
        image_sizes: square input sides tried on folder datasets (images resized as they are
            loaded); empty keeps the dataset's size.
        alphas: mobilenet_v2's width multipliers.
        prune_sparsities: magnitude-pruning targets; 0 is no pruning.
        qat_epochs: quantization-aware fine-tuning epochs; 0 is post-training int8.
        weight_granularities: int8 weight scales per channel or per tensor.
        activations: int8, or int16 (16x8) activations.
        kernels: codegen kernel variants (dsp only on cores with the DSP extension).
    """

    families: tuple[str, ...] = FAMILIES
    widths: tuple[int, ...] = (8, 12, 16, 20, 24, 32, 48, 64)
    blocks: tuple[int, ...] = (1, 2, 3, 4)
    image_sizes: tuple[int, ...] = ()
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
            if not value and item.name != "image_sizes":
                raise UserInputError(f"search space: {item.name} needs at least one choice")
            object.__setattr__(self, item.name, value)
        self._check("families", FAMILIES)
        self._check("weight_granularities", ("per-channel", "per-tensor", "auto"))
        self._check("activations", ("int8", "int16"))
        self._check("kernels", ("dsp", "portable"))
        if min(self.widths) < 8:
            raise UserInputError("search space: dscnn widths must be >= 8")
        if min(self.blocks) < 1:
            raise UserInputError("search space: dscnn blocks must be >= 1")
        if self.image_sizes and min(self.image_sizes) < 1:
            raise UserInputError("search space: image sizes must be >= 1")
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
    blocks: int = 4
    alpha: float = 0.35
    image_size: int | None = None  # square side; None: the dataset's own
    prune_sparsity: float = 0.0
    qat_epochs: int = 0
    weight_granularity: str = "per-channel"
    activations: str = "int8"
    kernels: str = "dsp"

    @classmethod
    def from_params(cls, params: dict) -> "Candidate":
        params = {("image_size" if key.startswith("image_size_") else key): value
                  for key, value in params.items()}
        return cls(**{item.name: params[key] for item in fields(cls)
                      for key in (_PARAM_NAMES.get(item.name, item.name),) if key in params})

    def footprint_key(self) -> str:
        """Everything RAM, flash and cycles depend on (not QAT epochs: same graph)."""
        return "|".join(str(part) for part in (
            self.model, self.width if self.model == "dscnn" else "",
            self.blocks if self.model == "dscnn" else "",
            self.alpha if self.model == "mobilenet_v2" else "", self.image_size or "",
            self.prune_sparsity,
            self.weight_granularity, self.activations, self.kernels))

    def describe(self) -> str:
        parts = [self.model + (f" width {self.width} blocks {self.blocks}"
                               if self.model == "dscnn" else "")
                 + (f" alpha {self.alpha:g}" if self.model == "mobilenet_v2" else "")
                 + (f" at {self.image_size}x{self.image_size}" if self.image_size else "")]
        if self.prune_sparsity:
            parts.append(f"pruned {self.prune_sparsity:g}")
        if self.qat_epochs:
            parts.append(f"QAT {self.qat_epochs}")
        parts += [self.weight_granularity, f"{self.activations} activations",
                  f"{self.kernels} kernels"]
        return ", ".join(parts)

    def dataset_spec(self, spec):
        """The study's DatasetSpec at this candidate's input resolution."""
        from dataclasses import replace

        if self.image_size is None or spec is None:
            return spec
        return replace(spec, image_size=(self.image_size, self.image_size))

    def pipeline_config(self, config: TuneConfig, run_dir: Path):
        """The PipelineConfig that trains and converts this candidate into run_dir."""
        from edgeship.convert.run import ConvertConfig
        from edgeship.pipeline_config import PipelineConfig, ProfileStage
        from edgeship.train.fit import TrainConfig
        from edgeship.train.models import ModelOptions

        defaults = ModelOptions()
        dscnn = self.model == "dscnn"
        options = ModelOptions(width=self.width if dscnn else defaults.width,
                               blocks=self.blocks if dscnn else defaults.blocks,
                               alpha=self.alpha if self.model == "mobilenet_v2" else defaults.alpha)
        out = str(run_dir)
        train = TrainConfig(model=self.model, dataset=self.dataset_spec(config.dataset), out=out,
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


def searched_sides(space: SearchSpace, input_shape: tuple[int, int, int]) -> list[int]:
    """The input sides a trial may get: the searched sizes, or the dataset's smaller side."""
    return list(space.image_sizes) or [min(input_shape[:2])]


def suggest(trial, space: SearchSpace, input_shape: tuple[int, int, int],
            target: str) -> Candidate:
    """Draw a candidate from the space (define-by-run: width and blocks only for dscnn, alpha
    only for mobilenet_v2, image_size only when the space searches sizes; families whose
    minimum input side exceeds the largest searched side are left out, and a family's input
    side is drawn from the sizes it takes)."""
    from edgeship.convert.codegen.kernels import DSP_CORES
    from edgeship.train.models import MIN_INPUT_SIDE

    sides = searched_sides(space, input_shape)
    families = [name for name in space.families if max(sides) >= MIN_INPUT_SIDE[name]]
    if not families:
        raise UserInputError(f"no model family of {', '.join(space.families)} takes "
                             f"{max(sides)}x{max(sides)} images")
    model = trial.suggest_categorical("model", families)
    chosen = {"model": model}
    if space.image_sizes:
        fitting = [side for side in sides if side >= MIN_INPUT_SIDE[model]]
        # one parameter per list of choices: Optuna's categorical choices cannot change
        name = "image_size" if fitting == sides else f"image_size_{model}"
        chosen["image_size"] = trial.suggest_categorical(name, fitting)
    if model == "dscnn":
        chosen["width"] = trial.suggest_categorical("width", list(space.widths))
        chosen["blocks"] = trial.suggest_categorical("blocks", list(space.blocks))
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




