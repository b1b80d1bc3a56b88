"""The pipeline's configuration: the stage configs composed, never a second copy of their options.

PipelineConfig holds a TrainConfig, a ConvertConfig, a ValidateConfig, a BenchConfig and a
ProfileStage; its flags, its TOML tables ([pipeline], [train], [convert], [validate], [bench],
[profile]) and report.html's reproduce commands are all generated from those dataclasses'
option fields (edgeship.options).
"""

import argparse
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeship.cli_stages import CONVERT_DEFAULTS, DatasetOptions
from edgeship.console import say
from edgeship.convert.codegen.kernels import KERNEL_CHOICES, resolve_kernels
from edgeship.convert.run import ConvertConfig
from edgeship.errors import UserInputError
from edgeship.options import add_options, option, option_flags, option_values
from edgeship.profile.targets import TARGETS
from edgeship.runtime.bench import BenchConfig
from edgeship.runtime.parity import ValidateConfig
from edgeship.runtime.parity_checks import Tolerances
from edgeship.train.datasets import DatasetSpec
from edgeship.train.fit import TrainConfig
from edgeship.train.models import ModelOptions

DEFAULT_OUT = "runs/demo"


@dataclass(frozen=True)
class PipelineOptions:
    """The pipeline's own options (the [pipeline] table)."""

    out: str = option(DEFAULT_OUT, help="run directory of every stage")
    embed_samples: int = option(10, help="test images embedded with the firmware sources")
    force: bool = option(False, help="redo every stage even when up to date")


# The cores the emulator has a model of (cortex-m55 is a codegen target, not a profile one).
PROFILE_TARGETS = tuple(name for name, target in TARGETS.items() if target.unicorn_cpu)


@dataclass(frozen=True)
class ProfileStage:
    """The profile stage: model_int8.tflite's generated C on an emulated Cortex-M core.

    The stage writes profile.json (`edgeship profile --json`): per-op instructions and
    estimated cycles, flash and RAM. It is skipped, with one console line, when disabled or
    when the Arm toolchain or the emulator is not installed.
    """

    enabled: bool = option(True, flag="profile", help="profile the int8 model's generated C on "
                           "an emulated Cortex-M core (--no-profile: skip the stage)")
    target: str = option("cortex-m4", choices=PROFILE_TARGETS,
                         help="Cortex-M core to compile for and emulate")
    kernels: str = option("auto", choices=KERNEL_CHOICES,
                          help="codegen's kernel variant (auto: dsp on cores with the DSP "
                               "extension, else portable)")
    clock_mhz: float | None = option(None, help="clock for the ms estimate (default: the "
                                     "target's typical board, 120 for cortex-m4)")
    cmsis_nn: str | None = option(None, metavar="DIR", help="CMSIS-NN folder, for "
                                  "--profile-kernels cmsis-nn")

    def __post_init__(self):
        for what, value, allowed in (("target", self.target, PROFILE_TARGETS),
                                     ("kernels", self.kernels, KERNEL_CHOICES)):
            if value not in allowed:
                raise UserInputError(f"profile {what} must be one of {', '.join(allowed)}, "
                                 f"got {value!r}")
        if self.clock_mhz is not None and not self.clock_mhz > 0:
            raise UserInputError(f"profile clock must be > 0 MHz, got {self.clock_mhz}")
        if self.kernels == "cmsis-nn" and not self.cmsis_nn:
            raise UserInputError("--profile-kernels cmsis-nn needs --profile-cmsis-nn DIR "
                             "(the CMSIS-NN folder)")

    @property
    def variant(self) -> str:
        """The kernel variant profiled: `kernels` with "auto" resolved for the target."""
        return resolve_kernels(self.kernels, self.target)

    def command(self, model: str, json_path: str) -> str:
        """The `edgeship profile` command that writes the same profile.json."""
        parts = [f"edgeship profile {model}", f"--target {self.target}",
                 f"--kernels {self.variant}"]
        if self.clock_mhz is not None:
            parts.append(f"--clock-mhz {self.clock_mhz:g}")
        if self.cmsis_nn:
            parts.append(f"--cmsis-nn {self.cmsis_nn}")
        return " ".join(parts + [f"--json {json_path}"])


@dataclass(frozen=True)
class OptionGroup:
    """One config class's options as the pipeline exposes them.

    Attributes:
        key: prefix of the argparse dests and of the merged values ("convert").
        table: the TOML table that holds them.
        config_class: the dataclass declaring them.
        flag_prefix: prepended to the stage's own flag names ("bench-" gives --bench-runs).
        exclude: options the pipeline sets itself.
        defaults: the pipeline's defaults where they differ from the stage command's.
    """

    key: str
    table: str
    config_class: type
    flag_prefix: str = ""
    exclude: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)


# convert's and bench's seeds get a prefix: --seed is train's, as it always was.
GROUPS = (
    OptionGroup("pipeline", "pipeline", PipelineOptions),
    OptionGroup("train", "train", TrainConfig, exclude=("out",), defaults={"model": "lenet5"}),
    OptionGroup("dataset", "train", DatasetOptions, defaults={"dataset": "mnist5k"}),
    OptionGroup("model_options", "train", ModelOptions),
    OptionGroup("convert", "convert", ConvertConfig, exclude=("int8", "seed"),
                defaults={"onnx": True}),
    OptionGroup("convert_seed", "convert", ConvertConfig, flag_prefix="convert-",
                exclude=tuple(name for name in ConvertConfig.__dataclass_fields__ if name != "seed")),
    OptionGroup("validate", "validate", ValidateConfig, flag_prefix="validate-"),
    OptionGroup("tolerances", "validate", Tolerances, flag_prefix="validate-"),
    OptionGroup("bench", "bench", BenchConfig, flag_prefix="bench-", exclude=("backends",),
                defaults={"runs": 100, "warmup": 10}),
    # --no-profile turns the stage off; its other options are --profile-target and so on.
    OptionGroup("profile_switch", "profile", ProfileStage,
                exclude=tuple(name for name in ProfileStage.__dataclass_fields__
                              if name != "enabled")),
    OptionGroup("profile", "profile", ProfileStage, flag_prefix="profile-", exclude=("enabled",)),
)


def _default_train() -> TrainConfig:
    return TrainConfig(model="lenet5", dataset=DatasetSpec("mnist5k"), out=DEFAULT_OUT)


@dataclass(frozen=True)
class PipelineConfig:
    """Every option of the pipeline: the stage configs, composed.

    The run directory is `out`; __post_init__ points every stage at it (train's out,
    convert's source, validate's run_dir; bench's artifacts are the run's model files, set
    per file by the bench stage; profile reads model_int8.tflite). Convert always exports
    int8.
    """

    out: str = DEFAULT_OUT
    train: TrainConfig = field(default_factory=_default_train)
    convert: ConvertConfig = field(default_factory=lambda: ConvertConfig(source=DEFAULT_OUT,
                                                                         onnx=True))
    validate: ValidateConfig = field(default_factory=lambda: ValidateConfig(run_dir=DEFAULT_OUT))
    bench: BenchConfig = field(default_factory=lambda: BenchConfig(artifacts=(DEFAULT_OUT,),
                                                                   runs=100, warmup=10))
    profile: ProfileStage = field(default_factory=ProfileStage)
    embed_samples: int = 10
    force: bool = False

    def __post_init__(self):
        if self.embed_samples < 0:
            raise UserInputError(f"embed samples must be >= 0, got {self.embed_samples}")
        object.__setattr__(self, "train", replace(self.train, out=self.out))
        object.__setattr__(self, "convert", replace(self.convert, source=self.out, int8=True,
                                                    out=None))
        object.__setattr__(self, "validate", replace(self.validate, run_dir=self.out))
        object.__setattr__(self, "bench", replace(self.bench, artifacts=(self.out,)))


def _group_config(config: PipelineConfig, key: str):
    """The instance holding one group's options."""
    return {"pipeline": PipelineOptions(out=config.out, embed_samples=config.embed_samples,
                                        force=config.force),
            "train": config.train, "dataset": DatasetOptions.from_spec(config.train.dataset),
            "model_options": config.train.model_options, "convert": config.convert,
            "convert_seed": config.convert, "validate": config.validate,
            "tolerances": config.validate.tolerances, "bench": config.bench,
            "profile_switch": config.profile, "profile": config.profile}[key]


def build_config(values: dict[str, dict]) -> PipelineConfig:
    """A PipelineConfig from group key -> {option name: value} (defaults for the rest)."""
    defaults = PipelineConfig()
    given = {group.key: {} for group in GROUPS}
    for key, options in values.items():
        given[key].update(options)
    pipeline = given.pop("pipeline")
    dataset = replace(DatasetOptions.from_spec(defaults.train.dataset), **given["dataset"])
    train = replace(defaults.train, **given["train"], dataset=dataset.spec(),
                    model_options=replace(defaults.train.model_options,
                                          **given["model_options"]))
    validate = replace(defaults.validate, **given["validate"],
                       tolerances=replace(defaults.validate.tolerances, **given["tolerances"]))
    return PipelineConfig(
        out=pipeline.get("out", defaults.out), train=train,
        convert=replace(defaults.convert, **given["convert"], **given["convert_seed"]),
        validate=validate, bench=replace(defaults.bench, **given["bench"]),
        profile=replace(defaults.profile, **given["profile_switch"], **given["profile"]),
        embed_samples=pipeline.get("embed_samples", defaults.embed_samples),
        force=bool(pipeline.get("force", defaults.force)))


# --- flags -----------------------------------------------------------------------------------

def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """Every group's options as flags; all default to None so flags merge over a config file."""
    for group in GROUPS:
        add_options(parser, group.config_class, exclude=group.exclude,
                    flag_prefix=group.flag_prefix, dest_prefix=f"{group.key}.",
                    defaults=group.defaults, unset=True)


def flag_values(args: argparse.Namespace) -> dict[str, dict]:
    """group key -> the options given on the command line."""
    return {group.key: option_values(args, group.config_class, dest_prefix=f"{group.key}.",
                                     exclude=group.exclude, given_only=True)
            for group in GROUPS}


# --- the config file -------------------------------------------------------------------------

# Today's flat keys (a [pipeline] table or top-level keys) -> (group, option), read for one
# release with a warning.
LEGACY_KEYS = {
    "model": ("train", "model"), "dataset": ("dataset", "dataset"),
    "epochs": ("train", "epochs"), "batch_size": ("train", "batch_size"),
    "learning_rate": ("train", "learning_rate"), "augment": ("train", "augment"),
    "batch_norm_statistics": ("train", "batch_norm_statistics"),
    "image_size": ("dataset", "image_size"), "channels": ("dataset", "channels"),
    "alpha": ("model_options", "alpha"), "qat": ("convert", "qat_epochs"),
    "prune": ("convert", "prune_sparsity"), "prune_structure": ("convert", "prune_structure"),
    "prune_epochs": ("convert", "prune_epochs"), "onnx": ("convert", "onnx"),
    "calibration_samples": ("convert", "calibration_samples"), "io": ("convert", "io_type"),
    "weight_granularity": ("convert", "weight_granularity"),
    "max_drop": ("convert", "max_drop_pp"), "validate_limit": ("validate", "limit"),
    "bench_runs": ("bench", "runs"), "bench_warmup": ("bench", "warmup"),
}


def load_config_file(path: str | os.PathLike) -> dict[str, dict]:
    """Read a pipeline TOML file into group key -> {option: value}.

    Tables: [pipeline] (out, embed_samples, force), [train] (TrainConfig's options, the
    dataset's and the model's), [convert], [validate] (ValidateConfig's and the tolerances'),
    [bench], [profile] (ProfileStage's: enabled, target, kernels, clock_mhz, cmsis_nn); keys
    are the options' field names. Flat keys of the earlier format are mapped
    (LEGACY_KEYS) with a warning; `seed` there sets train's, convert's and bench's seeds.
    """
    path = Path(path)
    try:
        payload = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UserInputError(f"cannot read config {path}: {error}") from error
    values: dict[str, dict] = {group.key: {} for group in GROUPS}
    tables = {group.table for group in GROUPS}
    legacy = {key: value for key, value in payload.items() if not isinstance(value, dict)}
    for table, entries in payload.items():
        if not isinstance(entries, dict):
            continue
        if table not in tables:
            raise UserInputError(f"config {path}: unknown table [{table}]; tables: "
                                 f"{', '.join(sorted(tables))}")
        for key, value in entries.items():
            name = key.replace("-", "_")
            owner = _owner(table, name)
            if owner is None and table == "pipeline" and (name in LEGACY_KEYS or name == "seed"):
                legacy[name] = value
                continue
            if owner is None:
                known = sorted(name for group in GROUPS if group.table == table
                               for name in _names(group))
                raise UserInputError(f"config {path}: unknown key(s) {key} in [{table}]; known "
                                     f"keys: {', '.join(known)}")
            values[owner][name] = _from_toml(value)
    if legacy:
        _read_legacy(path, legacy, values)
    return values


def _names(group: OptionGroup) -> list[str]:
    return [name for name in group.config_class.__dataclass_fields__
            if "option" in group.config_class.__dataclass_fields__[name].metadata
            and name not in group.exclude]


def _owner(table: str, name: str) -> str | None:
    return next((group.key for group in GROUPS if group.table == table
                 and name in _names(group)), None)


def _from_toml(value):
    return tuple(value) if isinstance(value, list) else value


def _read_legacy(path: Path, legacy: dict, values: dict[str, dict]) -> None:
    unknown = sorted(set(legacy) - set(LEGACY_KEYS) - {"seed", "out", "embed_samples", "force"})
    if unknown:
        raise UserInputError(f"config {path}: unknown key(s) {', '.join(unknown)}; use the "
                             "tables [pipeline], [train], [convert], [validate], [bench], "
                             "[profile] "
                             "(see pipeline.example.toml)")
    say(f"warning: config {path} uses the flat keys of edgeship 0.1 "
        f"({', '.join(sorted(legacy))}); read this release only: move them into the tables "
        "[pipeline], [train], [convert], [validate], [bench], [profile] (see "
        "pipeline.example.toml)")
    for key, value in legacy.items():
        if key == "seed":  # one seed for every stage then (not the split: that is split_seed)
            for group in ("train", "convert_seed", "bench"):
                values[group]["seed"] = value
        elif key in ("out", "embed_samples", "force"):
            values["pipeline"][key] = value
        else:
            group, name = LEGACY_KEYS[key]
            values[group][name] = _from_toml(value)


def config_from_sources(file_values: dict[str, dict], flags: dict[str, dict]) -> PipelineConfig:
    """Defaults < config file < flags given on the command line."""
    merged = {group.key: {**file_values.get(group.key, {}), **flags.get(group.key, {})}
              for group in GROUPS}
    return build_config(merged)


# --- reproduce commands ----------------------------------------------------------------------

def reproduce_commands(config: PipelineConfig) -> list[str]:
    """The pipeline command, then the stage commands, that recreate this run exactly.

    Generated from the configs' option fields, so an option cannot be left out: each command
    names every option that differs from that command's default, and parses back to the same
    configs (tests/edgeship/test_pipeline.py).
    """
    pipeline = ["edgeship pipeline", f"--model {config.train.model}",
                f"--dataset {config.train.dataset.name}", f"--out {config.out}"]
    for group in GROUPS:
        exclude = group.exclude + {"pipeline": ("out", "force"), "train": ("model",),
                                   "dataset": ("dataset",)}.get(group.key, ())
        pipeline += option_flags(_group_config(config, group.key), flag_prefix=group.flag_prefix,
                                 exclude=exclude, defaults=group.defaults)
    out = config.out
    dataset = DatasetOptions.from_spec(config.train.dataset)
    train = (["edgeship train"] + option_flags(config.train)
             + option_flags(dataset) + option_flags(config.train.model_options))
    convert = ([f"edgeship convert {out}"]
               + option_flags(config.convert, defaults=CONVERT_DEFAULTS))
    validate = ([f"edgeship validate {out}"] + option_flags(config.validate)
                + option_flags(config.validate.tolerances))
    bench = ([f"edgeship bench {out}/model_int8.tflite {out}/model_float.tflite"]
             + option_flags(config.bench, exclude=("backends",)))
    commands = [" ".join(command) for command in (pipeline + ["--force"], train, convert,
                                                   validate, bench)]
    if config.profile.enabled:
        commands.append(config.profile.command(f"{out}/model_int8.tflite", f"{out}/profile.json"))
    return commands
