"""Options declared once, in the stage configs' dataclass fields; flags and commands come from them.

A config dataclass declares an option with `option(default, help=..., flag=..., choices=...)`.
`add_options` turns those fields into argparse flags (for a stage's own command, or prefixed
for the pipeline), `option_values` reads them back, and `option_flags` writes a config's
non-default options as command-line flags (report.html's reproduce commands), so a flag, a
TOML key and a reproduce command cannot name an option the config does not have.
"""

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass


@dataclass(frozen=True)
class Option:
    """How one config field appears on the command line.

    Attributes:
        help: the flag's help text.
        flag: the flag's spelling without "--" when it is not the field name in kebab case
            (e.g. "qat" for qat_epochs).
        choices: the allowed values, if a closed set.
        metavar: the value's placeholder in --help.
        parse: turns the flag's text into the field's value (default: from the field's type).
        format: turns a value back into the flag's text (default: str).
        aliases: other spellings accepted on the stage's own command (e.g. --backends).
        positional: given as a positional argument on the command line (and first, in order,
            to the API function), e.g. convert's RUN_DIR_OR_MODEL.
        nargs: a positional's argparse nargs ("+": one or more, as bench's ARTIFACT...).
    """

    help: str
    flag: str | None = None
    choices: tuple | None = None
    metavar: str | None = None
    parse: Callable[[str], object] | None = None
    format: Callable[[object], str] | None = None
    aliases: tuple[str, ...] = ()
    positional: bool = False
    nargs: str | None = None


def option(default=MISSING, *, help: str, factory: Callable[[], object] | None = None,
           **details) -> dataclasses.Field:
    """A dataclass field that is also a command-line option (see Option for details)."""
    metadata = {"option": Option(help=help, **details)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared_options(config_class) -> list[dataclasses.Field]:
    """The fields of a config dataclass that are options, in declaration order."""
    return [item for item in dataclasses.fields(config_class) if "option" in item.metadata]


def default_of(item: dataclasses.Field):
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    return None


def flag_name(item: dataclasses.Field, prefix: str = "") -> str:
    """--PREFIX-FLAG for a field: its declared flag or its name in kebab case."""
    spelling = item.metadata["option"].flag or item.name.replace("_", "-")
    return f"--{prefix}{spelling}"


def _base_type(item: dataclasses.Field) -> type:
    annotation = item.type
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return annotation


def add_options(parser: argparse.ArgumentParser, config_class, *, exclude: tuple[str, ...] = (),
                flag_prefix: str = "", dest_prefix: str = "", defaults: dict | None = None,
                unset: bool = False, required: tuple[str, ...] = ()) -> list[str]:
    """Add one flag per option field of config_class.

    Args:
        parser: the (sub)command's parser.
        config_class: a dataclass whose option fields were declared with `option`.
        exclude: field names the command sets itself.
        flag_prefix: prepended to each flag (the pipeline's "validate-", "bench-").
        dest_prefix: prepended to each argparse dest (the pipeline's "validate.").
        defaults: field name -> default in this command (a switch whose default is True
            becomes --no-FLAG).
        unset: every flag defaults to None, so option_values returns only what was given
            (the pipeline merges flags over a config file).
        required: field names this command requires although they have a default.

    Returns:
        The dests added.
    """
    defaults = defaults or {}
    dests = []
    for item in declared_options(config_class):
        if item.name in exclude:
            continue
        details: Option = item.metadata["option"]
        default = defaults.get(item.name, default_of(item))
        dest = dest_prefix + item.name
        if details.positional:
            parser.add_argument(dest, metavar=details.metavar or item.name.upper(),
                                nargs=details.nargs, type=details.parse, help=details.help)
            dests.append(dest)
            continue
        flag = flag_name(item, flag_prefix)
        names = [flag] + ([f"--{alias}" for alias in details.aliases] if not flag_prefix else [])
        if _base_type(item) is bool:
            # a switch on by default is turned off with --no-FLAG (--FLAG still accepted)
            action = argparse.BooleanOptionalAction if default is True else "store_true"
            parser.add_argument(*names, dest=dest, action=action,
                                default=None if unset else default, help=details.help)
        else:
            must_give = item.name in required or (
                not unset and item.name not in defaults and item.default is MISSING
                and item.default_factory is MISSING)
            parser.add_argument(*names, dest=dest, default=None if unset else default,
                                required=must_give, type=details.parse or _base_type(item),
                                choices=details.choices, metavar=details.metavar,
                                help=details.help)
        dests.append(dest)
    return dests


def option_values(args: argparse.Namespace, config_class, *, dest_prefix: str = "",
                  exclude: tuple[str, ...] = (), given_only: bool = False) -> dict:
    """field name -> value of config_class's options in parsed args (None left out when
    given_only: the flags not given on the command line)."""
    namespace = vars(args)
    values = {}
    for item in declared_options(config_class):
        dest = dest_prefix + item.name
        if item.name in exclude or dest not in namespace:
            continue
        if given_only and namespace[dest] is None:
            continue
        values[item.name] = namespace[dest]
    return values


def api_name(item: dataclasses.Field, prefix: str = "") -> str:
    """The Python API's name of an option: its flag in snake case (qat, max_drop, bench_runs)."""
    return flag_name(item, prefix)[2:].replace("-", "_")


def is_positional(item: dataclasses.Field) -> bool:
    return item.metadata["option"].positional


def parse_text(item: dataclasses.Field, value):
    """A value given as text to the API ("litert,tflm", "96x96", "64KB") parsed as its flag
    would be; other values unchanged (a list becomes a tuple)."""
    if isinstance(value, list):
        return tuple(value)
    details: Option = item.metadata["option"]
    if isinstance(value, str) and details.parse is not None and _base_type(item) is not str:
        return details.parse(value)
    if isinstance(value, str) and typing.get_origin(_base_type(item)) is tuple:
        return comma_list(value)
    return value


def format_value(item: dataclasses.Field, value) -> str:
    details: Option = item.metadata["option"]
    if details.format is not None:
        return details.format(value)
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    return str(value)


def option_flags(config, *, flag_prefix: str = "", exclude: tuple[str, ...] = (),
                 defaults: dict | None = None) -> list[str]:
    """The flags that recreate config's options that differ from their defaults.

    Args:
        config: a config dataclass instance.
        flag_prefix: as in add_options.
        exclude: field names the command line sets otherwise.
        defaults: field name -> default in this command, as in add_options.
    """
    defaults = defaults or {}
    flags = []
    for item in declared_options(type(config)):
        if item.name in exclude or is_positional(item):
            continue
        value = getattr(config, item.name)
        default = defaults.get(item.name, default_of(item))
        if value == default:
            continue
        flag = flag_name(item, flag_prefix)
        if _base_type(item) is bool:
            flags.append(f"--no-{flag[2:]}" if default is True else flag)
        elif value is None:
            raise ValueError(f"{flag} cannot be unset from the command line (default {default})")
        else:
            flags.append(f"{flag} {format_value(item, value)}")
    return flags


# --- value parsers shared by the options ------------------------------------------------------

def comma_list(text: str) -> tuple[str, ...]:
    """"a,b" -> ("a", "b"); an empty list is a usage error."""
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def positive_int_list(text: str) -> tuple[int, ...]:
    """"1,4" -> (1, 4): thread counts, batch sizes."""
    try:
        values = tuple(int(item) for item in comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1 or 1,4, got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def image_size(text: str) -> tuple[int, int]:
    """"32" -> (32, 32), "96x96" -> (96, 96)."""
    try:
        parts = [int(part) for part in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"image size must look like 32 or 96x96, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"image size must look like 32 or 96x96, got {text!r}")
    return tuple(parts)


def format_image_size(size: tuple[int, int]) -> str:
    return "x".join(str(side) for side in size)


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
    """65536 -> "64KB"; a size that is no whole KB stays in bytes."""
    return f"{value // 1024}KB" if value % 1024 == 0 else str(value)
