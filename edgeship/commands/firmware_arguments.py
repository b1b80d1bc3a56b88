"""The options codegen and embed share: FirmwareSourceConfig's fields (convert/
firmware_sources.py: a model, where to write, a prefix, embedded samples) as options, with its
defaults and each command's wording."""

import dataclasses

from edgeship.convert.firmware_sources import FirmwareSourceConfig
from edgeship.options import option


def firmware_arguments(class_name: str, model_help: str, out_help: str, name_help: str) -> type:
    """A frozen dataclass of FirmwareSourceConfig's fields as options."""
    defaults = {item.name: item.default for item in dataclasses.fields(FirmwareSourceConfig)}
    arguments = dataclasses.make_dataclass(class_name, [
        ("model", str, option(positional=True, metavar="MODEL", help=model_help)),
        ("out", str, option(help=out_help)),
        ("name", str, option(defaults["name"], help=name_help)),
        ("samples", int, option(defaults["samples"], metavar="N", help="embed N test images "
                                "with TFLite Micro's outputs (NAME_samples.c)")),
        ("seed", int, option(defaults["seed"], help="seed of the sample choice")),
    ], frozen=True)
    arguments.__module__ = __name__
    return arguments


def firmware_values(arguments: type, values: dict) -> dict:
    return {item.name: values[item.name] if item.name != "model" else str(values["model"])
            for item in dataclasses.fields(arguments)} | {"out": str(values["out"])}
