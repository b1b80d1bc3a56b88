"""The pipeline's configuration: the stage commands' configs composed, never a second copy of
their options.

PipelineConfig holds a TrainConfig, a ConvertConfig, a ValidateConfig, a BenchConfig and a
ProfileStage (ProfileConfig plus the switch); its flags, its TOML tables ([pipeline],
[train], [convert], [validate], [bench], [profile]) and report.html's reproduce commands are
all generated from those dataclasses' option fields through the command specs
(edgeship/commands/), so an option added to a stage's config is a pipeline flag and key too.
The pipeline's own defaults where they differ from the stage command's are the `defaults`
of its GROUPS below, and nowhere else.
"""

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeship.commands import OptionGroup, get_command, option_values_of
from edgeship.commands.dataset import DatasetOptions
from edgeship.convert.run import ConvertConfig
from edgeship.errors import UserInputError
from edgeship.options import option
from edgeship.profile.run import ProfileConfig
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
PROFILED_MODEL = "model_int8.tflite"


@dataclass(frozen=True)
class ProfileStage(ProfileConfig):
    """The profile stage: `edgeship profile` (ProfileConfig's options) on the run's
    model_int8.tflite, writing profile.json, plus the switch that turns the stage off.

    It is skipped, with one console line, when disabled or when the Arm toolchain or the
    emulator is not installed.
    """

    model: str = PROFILED_MODEL  # the pipeline sets it to RUN_DIR/model_int8.tflite
    enabled: bool = option(True, flag="profile", help="profile the int8 model's generated C on "
                           "an emulated Cortex-M core (--no-profile: skip the stage)")

    def __post_init__(self):
        if self.target not in PROFILE_TARGETS:
            raise UserInputError(f"profile target must be one of {', '.join(PROFILE_TARGETS)}, "
                                 f"got {self.target!r}")
        if self.kernels == "cmsis-nn" and not self.cmsis_nn:
            raise UserInputError("--profile-kernels cmsis-nn needs --profile-cmsis-nn DIR "
                                 "(the CMSIS-NN folder)")
        super().__post_init__()


def _all_but(config_class, *names: str) -> tuple[str, ...]:
    return tuple(name for name in config_class.__dataclass_fields__ if name not in names)


# The stage commands' option groups under the pipeline's keys, tables and flag prefixes.
# convert's and bench's seeds get a prefix: --seed is train's, as it always was; --threads is
# train's and the convert stage's fine-tunes use it too.
GROUPS = (
    OptionGroup(PipelineOptions, "pipeline", "pipeline"),
    OptionGroup(TrainConfig, "train", "train", exclude=("out",), defaults={"model": "lenet5"}),
    OptionGroup(DatasetOptions, "dataset", "train", defaults={"dataset": "mnist5k"}),
    OptionGroup(ModelOptions, "model_options", "train"),
    OptionGroup(ConvertConfig, "convert", "convert", exclude=("int8", "seed", "threads"),
                defaults={"onnx": True}),
    OptionGroup(ConvertConfig, "convert_seed", "convert", flag_prefix="convert-",
                exclude=_all_but(ConvertConfig, "seed")),
    OptionGroup(ValidateConfig, "validate", "validate", flag_prefix="validate-"),
    OptionGroup(Tolerances, "tolerances", "validate", flag_prefix="validate-"),
    OptionGroup(BenchConfig, "bench", "bench", flag_prefix="bench-", exclude=("backends",),
                defaults={"runs": 100, "warmup": 10}),
    # --no-profile turns the stage off; ProfileConfig's options are --profile-target and so on.
    OptionGroup(ProfileStage, "profile_switch", "profile", exclude=_all_but(ProfileStage,
                                                                            "enabled")),
    OptionGroup(ProfileStage, "profile", "profile", flag_prefix="profile-",
                exclude=("enabled", "model")),
)


@dataclass(frozen=True)
class PipelineFile:
    config: str | None = option(None, metavar="TOML", help="TOML file: tables [pipeline], "
                                "[train], [convert], [validate], [bench], [profile] of the same "
                                "options (flags win)")


def _default_train() -> TrainConfig:
    return TrainConfig(model=GROUPS[1].defaults["model"],
                       dataset=DatasetSpec(GROUPS[2].defaults["dataset"]), out=DEFAULT_OUT)


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
    convert: ConvertConfig = field(default_factory=lambda: ConvertConfig(
        source=DEFAULT_OUT, **GROUPS[4].defaults))
    validate: ValidateConfig = field(default_factory=lambda: ValidateConfig(run_dir=DEFAULT_OUT))
    bench: BenchConfig = field(default_factory=lambda: BenchConfig(
        artifacts=(DEFAULT_OUT,), **GROUPS[8].defaults))
    profile: ProfileStage = field(default_factory=ProfileStage)
    embed_samples: int = 10
    force: bool = False

    def __post_init__(self):
        if self.embed_samples < 0:
            raise UserInputError(f"embed samples must be >= 0, got {self.embed_samples}")
        object.__setattr__(self, "train", replace(self.train, out=self.out))
        object.__setattr__(self, "convert", replace(self.convert, source=self.out, int8=True,
                                                    out=None, threads=self.train.threads))
        object.__setattr__(self, "validate", replace(self.validate, run_dir=self.out))
        object.__setattr__(self, "bench", replace(self.bench, artifacts=(self.out,)))
        object.__setattr__(self, "profile", replace(self.profile,
                                                    model=str(Path(self.out) / PROFILED_MODEL)))


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


# --- flags ---------------------------------------------------------------------------------

def flag_values(values: dict) -> dict[str, dict]:
    """group key -> the options given on the command line (values: "group.name" -> value,
    None when not given)."""
    given: dict[str, dict] = {group.key: {} for group in GROUPS}
    for dest, value in values.items():
        key, _, name = dest.partition(".")
        if key in given and value is not None:
            given[key][name] = value
    return given


# --- the config file -------------------------------------------------------------------------

def load_config_file(path: str | os.PathLike) -> dict[str, dict]:
    """Read a pipeline TOML file into group key -> {option: value}.

    Tables: [pipeline] (out, embed_samples, force), [train] (TrainConfig's options, the
    dataset's and the model's), [convert], [validate] (ValidateConfig's and the tolerances'),
    [bench], [profile] (ProfileConfig's, and enabled); keys are the options' field names.
    """
    path = Path(path)
    try:
        payload = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UserInputError(f"cannot read config {path}: {error}") from error
    values: dict[str, dict] = {group.key: {} for group in GROUPS}
    tables = {group.table for group in GROUPS}
    for table, entries in payload.items():
        if not isinstance(entries, dict):
            raise UserInputError(f"config {path}: key {table} outside a table; use the tables "
                                 f"{', '.join(f'[{name}]' for name in sorted(tables))} (see "
                                 "pipeline.example.toml)")
        if table not in tables:
            raise UserInputError(f"config {path}: unknown table [{table}]; tables: "
                                 f"{', '.join(sorted(tables))}")
        for key, value in entries.items():
            name = key.replace("-", "_")
            owner = _owner(table, name)
            if owner is None:
                known = sorted(name for group in GROUPS if group.table == table
                               for name in _names(group))
                raise UserInputError(f"config {path}: unknown key(s) {key} in [{table}]; known "
                                     f"keys: {', '.join(known)}")
            values[owner][name] = _from_toml(value)
    return values


def _names(group: OptionGroup) -> list[str]:
    return [item.name for item in group.options()]


def _owner(table: str, name: str) -> str | None:
    return next((group.key for group in GROUPS if group.table == table
                 and name in _names(group)), None)


def _from_toml(value):
    return tuple(value) if isinstance(value, list) else value


def config_from_sources(file_values: dict[str, dict], flags: dict[str, dict]) -> PipelineConfig:
    """Defaults < config file < flags given on the command line."""
    merged = {group.key: {**file_values.get(group.key, {}), **flags.get(group.key, {})}
              for group in GROUPS}
    return build_config(merged)


# --- reproduce commands ----------------------------------------------------------------------

def pipeline_values(config: PipelineConfig) -> dict:
    """"group.name" -> value of every pipeline option in config."""
    values = {}
    for group in GROUPS:
        values.update(option_values_of(_group_config(config, group.key), group))
    return values


def reproduce_commands(config: PipelineConfig) -> list[str]:
    """The pipeline command, then the stage commands, that recreate this run exactly.

    Each is its command spec's command line (edgeship/commands/), so an option cannot be left
    out: it names every option that differs from that command's default, and parses back to
    the same configs (tests/edgeship/test_pipeline.py).
    """
    always = {"train.model", "dataset.dataset", "pipeline.out"}
    values = {dest: value for dest, value in pipeline_values(config).items()
              if dest != "pipeline.force"}
    defaults = {dest: (object() if dest in always else value)
                for dest, value in pipeline_values(PipelineConfig()).items()}
    pipeline = get_command("pipeline").command_line(values, defaults) + " --force"
    out = config.out
    dataset = DatasetOptions.from_spec(config.train.dataset)
    commands = [
        pipeline,
        get_command("train").command_line({
            **option_values_of(config.train, OptionGroup(TrainConfig)),
            **option_values_of(dataset, OptionGroup(DatasetOptions)),
            **option_values_of(config.train.model_options, OptionGroup(ModelOptions))}),
        get_command("convert").command_line({
            "source": out, **option_values_of(config.convert, OptionGroup(ConvertConfig))}),
        get_command("validate").command_line({
            "run_dir": out, **option_values_of(config.validate, OptionGroup(ValidateConfig)),
            **option_values_of(config.validate.tolerances, OptionGroup(Tolerances))}),
        get_command("bench").command_line({
            "artifacts": (f"{out}/model_int8.tflite", f"{out}/model_float.tflite"),
            **option_values_of(config.bench, OptionGroup(BenchConfig, exclude=("backends",)))}),
    ]
    if config.profile.enabled:
        commands.append(get_command("profile").command_line({
            **option_values_of(config.profile, OptionGroup(ProfileConfig)),
            "model": f"{out}/{PROFILED_MODEL}", "json": f"{out}/profile.json"}))
    return commands
