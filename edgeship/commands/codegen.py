"""`edgeship codegen`: int8 .tflite -> standalone C99 (no runtime), bit-exact with TFLite."""

from dataclasses import dataclass

from edgeship.commands import Command, OptionGroup
from edgeship.commands.firmware_arguments import firmware_arguments, firmware_values
from edgeship.convert.codegen import CodegenConfig
from edgeship.options import option

CodegenArguments = firmware_arguments(
    "CodegenArguments", "full-int8 .tflite (e.g. runs/demo/model_int8.tflite)",
    "folder to write NAME.h and NAME.c into", "C prefix of the files and symbols")


@dataclass(frozen=True)
class CodegenEstimate:
    """The CLI's printed estimate (`edgeship profile` gives the whole profile)."""

    clock_mhz: float | None = option(None, help="with --target: the clock of the printed "
                                     "estimate (default: the target's, 120 MHz for cortex-m4)")


GROUPS = (OptionGroup(CodegenArguments), OptionGroup(CodegenConfig), OptionGroup(CodegenEstimate))


def build(values: dict) -> CodegenConfig:
    return CodegenConfig(**firmware_values(CodegenArguments, values),
                         **{item.name: values[item.name] for item in GROUPS[1].options()})


def execute(config: CodegenConfig, values: dict):
    """(the config, what codegen wrote)."""
    from edgeship.firmware import generate_c

    return config, generate_c(config)


def render(outcome, values: dict) -> int:
    """The summary; with --target, the profile's one-line estimate too (the emulator runs)."""
    config, result = outcome
    print(f"wrote {', '.join(path.name for path in result.files)} to {result.out_dir}")
    print(f"{len(result.ops)} ops ({', '.join(sorted(set(result.ops)))}), "
          f"{config.variant} kernels; RAM buffer {result.arena_bytes} bytes "
          f"(activations, input, output and scratch planned together; all tensors "
          f"apart: {result.sum_of_tensors}); weights and constants "
          f"{result.weight_bytes} bytes; {result.samples} samples")
    if result.portable_fallbacks:
        print(f"portable kernels where {config.variant} has none: "
              f"{', '.join(result.portable_fallbacks)}")
    if config.target:
        from edgeship.profile.run import ProfileConfig, profile_model

        print(profile_model(ProfileConfig(model=config.model, target=config.target,
                                          clock_mhz=values["clock_mhz"], kernels=config.kernels,
                                          cmsis_nn=config.cmsis_nn),
                            max_ram=config.max_ram).summary_line())
    return 0


def result(outcome, values: dict):
    from edgeship.commands.result import Result
    from edgeship.tables import Table

    _, generated = outcome
    report = generated.to_dict()
    record = {key: value for key, value in report.items() if isinstance(value, (int, float, str))}
    return Result(Table.from_records("generated C", [record], tuple(record)),
                  {path.name: path for path in generated.files}, report)


COMMAND = Command("codegen", "int8 .tflite -> standalone C99 (no runtime), bit-exact with "
                  "TFLite", GROUPS, build, execute, render, result)
