"""`edgeship embed`: .tflite -> C++ model data, op resolver and arena size for TFLite Micro."""

from dataclasses import dataclass
from typing import ClassVar

from edgeship.commands import Command, OptionGroup
from edgeship.commands.firmware_arguments import firmware_arguments, firmware_values
from edgeship.convert.embed import EmbedConfig
from edgeship.run_dir import ManifestRecord

EmbedArguments = firmware_arguments(
    "EmbedArguments", "the .tflite to embed (e.g. runs/demo/model_int8.tflite)",
    "folder to write the sources into", "prefix of files and symbols (g_NAME_model_data)")



@dataclass(frozen=True)
class EmbedRecord(ManifestRecord):
    """The manifest's "embed" section (the pipeline's embed stage: RUN_DIR/firmware/)."""

    SECTION: ClassVar[str] = "embed"
    arena_bytes: int  # measured by TFLite Micro
    arena_size: int  # compiled in: measured plus margin
    ops: tuple[str, ...]


GROUPS = (OptionGroup(EmbedArguments), OptionGroup(EmbedConfig))


def build(values: dict) -> EmbedConfig:
    return EmbedConfig(**firmware_values(EmbedArguments, values),
                       **{item.name: values[item.name] for item in GROUPS[1].options()})


def execute(config: EmbedConfig, values: dict):
    from edgeship.firmware import embed_model

    return embed_model(config)


def render(result, values: dict) -> int:
    print(f"wrote {', '.join(path.name for path in result.files)} to {result.out_dir}")
    print(f"model {result.model_bytes} bytes; TFLite Micro arena {result.arena_bytes} bytes "
          f"measured, {result.arena_size} with margin; {len(result.ops)} ops: "
          f"{', '.join(result.ops)}; {result.samples} samples")
    return 0


def result(embedded, values: dict):
    from edgeship.commands.result import Result
    from edgeship.tables import Table

    record = {"model_bytes": embedded.model_bytes, "arena_bytes": embedded.arena_bytes,
              "arena_size": embedded.arena_size, "ops": len(embedded.ops),
              "samples": embedded.samples}
    return Result(Table.from_records("TFLite Micro sources", [record], tuple(record)),
                  {path.name: path for path in embedded.files}, embedded.to_dict())


COMMAND = Command("embed", ".tflite -> C++ model data, op resolver and arena size for TFLite "
                  "Micro", GROUPS, build, execute, render, result, record=EmbedRecord)
