"""One spec per command; the CLI, the Python API, the pipeline and its reproduce commands come
from this list.

A command (edgeship/commands/<name>.py, one `COMMAND`) declares its options as the option
fields (edgeship.options) of config dataclasses, positionals included, composed in groups;
`build` turns the option values into the library's config, `execute` makes the one library
call, `render` prints its result for the CLI and returns the exit code, and `result` gives the
Python API's `Result`. From that:

- `Command.add_to` adds the argparse subcommand (edgeship/cli.py),
- `Command.api_function` makes `edgeship.api.<name>()`, whose parameters are the flags in
  snake case (`qat`, `max_drop`) with the same defaults (the field names are accepted too),
- `Command.command_line` writes the command that recreates a run (report.html's reproduce
  commands), and the pipeline (edgeship/pipeline_config.py) composes the stage commands'
  groups into its flags and TOML tables.

So an option added to a config dataclass reaches the flag, the API, the pipeline and the
reproduce command without another edit, and their defaults cannot disagree
(tests/edgeship/test_cli.py checks every command).
"""

import argparse
import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from inspect import Parameter as Argument
from inspect import Signature

from edgeship.errors import UserInputError
from edgeship.options import (
    add_options,
    api_name,
    declared_options,
    default_of,
    flag_name,
    format_value,
    is_positional,
    parse_text,
)

# In the order `edgeship --help` lists them; the module is edgeship/commands/<name>.py
# ("serve-demo" -> serve_demo.py).
COMMAND_NAMES = ("train", "convert", "pipeline", "validate", "inspect", "bench", "codegen",
                 "profile", "embed", "serve-demo", "tune")


@dataclass(frozen=True)
class OptionGroup:
    """One config dataclass's options as a command exposes them.

    Attributes:
        config_class: the dataclass declaring them (option fields, edgeship.options).
        key: prefix of the values' keys ("convert" gives "convert.qat_epochs"); "" for a
            command's own options (keys are the field names).
        table: the pipeline TOML table that holds them ("" : none).
        flag_prefix: prepended to the flags ("bench-" gives --bench-runs).
        exclude: options the command sets itself.
        defaults: this command's defaults where they differ from the field's.
    """

    config_class: type
    key: str = ""
    table: str = ""
    flag_prefix: str = ""
    exclude: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)

    def options(self) -> list[dataclasses.Field]:
        return [item for item in declared_options(self.config_class)
                if item.name not in self.exclude]

    def dest(self, item: dataclasses.Field) -> str:
        return f"{self.key}.{item.name}" if self.key else item.name

    def default(self, item: dataclasses.Field):
        return self.defaults.get(item.name, default_of(item))

    def required(self, item: dataclasses.Field) -> bool:
        return (item.name not in self.defaults and item.default is dataclasses.MISSING
                and item.default_factory is dataclasses.MISSING)


@dataclass(frozen=True)
class Parameter:
    """One option of a command as the API sees it."""

    name: str  # the API's name: the flag in snake case
    group: OptionGroup
    item: dataclasses.Field

    @property
    def dest(self) -> str:
        return self.group.dest(self.item)


@dataclass(frozen=True)
class Command:
    """A command, declared once.

    Attributes:
        name: the subcommand ("serve-demo").
        help: one line for `edgeship --help`.
        groups: the option dataclasses it takes, in the order of its flags.
        build: option values (key -> value) -> the library's config.
        execute: (config, values) -> what the library call returned.
        render: (outcome, values) -> the exit code, after printing the CLI's report.
        result: (outcome, values) -> the API's Result (raising CheckFailedError, with the
            result attached, where the CLI exits 1).
        unset: every option defaults to None ("not given"), so build can merge the given
            ones over a config file (pipeline, tune).
        api_extra: keyword-only parameters only the API has (convert's data=, tune's space=).
        api_prepare: (values, extras) -> values: what the API does with api_extra before
            build (convert saves a model object and the notebook's arrays).
        on_check_failed: (values, for_api) -> what to show when the library call raised
            CheckFailedError (exit 1): the CLI prints the report written anyway; the API gets
            a Result attached to the error as `error.result`.
        record: the frozen record type the command writes to a run's manifest, if any.
    """

    name: str
    help: str
    groups: tuple[OptionGroup, ...]
    build: Callable[[dict], object]
    execute: Callable[[object, dict], object]
    render: Callable[[object, dict], int]
    result: Callable[[object, dict], object]
    unset: bool = False
    api_extra: tuple[Argument, ...] = ()
    api_prepare: Callable[[dict, dict], dict] | None = None
    on_check_failed: Callable[[dict, bool], object] | None = None
    record: type | None = None

    # --- the CLI --------------------------------------------------------------------------

    def add_to(self, subparsers) -> argparse.ArgumentParser:
        """The argparse subcommand: one argument per option."""
        parser = subparsers.add_parser(self.name, help=self.help, description=self.help)
        for group in self.groups:
            add_options(parser, group.config_class, exclude=group.exclude,
                        flag_prefix=group.flag_prefix,
                        dest_prefix=f"{group.key}." if group.key else "",
                        defaults=group.defaults, unset=self.unset)
        parser.set_defaults(run=self.run_cli)
        return parser

    def values(self, args: argparse.Namespace) -> dict:
        """key -> value of every option in parsed args (lists as tuples)."""
        namespace = vars(args)
        return {parameter.dest: _frozen(namespace[parameter.dest])
                for parameter in self.parameters() if parameter.dest in namespace}

    def run_cli(self, args: argparse.Namespace) -> int:
        values = self.values(args)
        return self.render(self._execute(values, for_api=False), values)

    def _execute(self, values: dict, for_api: bool):
        from edgeship.errors import CheckFailedError

        config = self.build(values)
        try:
            return self.execute(config, values)
        except CheckFailedError as error:
            if self.on_check_failed is not None:
                shown = self.on_check_failed(values, for_api)
                if for_api and not hasattr(error, "result"):
                    error.result = shown
            raise

    # --- the API --------------------------------------------------------------------------

    def parameters(self) -> list[Parameter]:
        return [Parameter(api_name(item, group.flag_prefix), group, item)
                for group in self.groups for item in group.options()]

    def positional_parameters(self) -> list[Parameter]:
        """The API's positional parameters: the command line's positionals, then the options
        it requires (codegen(model, out))."""
        parameters = self.parameters()
        return ([parameter for parameter in parameters if is_positional(parameter.item)]
                + [parameter for parameter in parameters if not is_positional(parameter.item)
                   and not self.unset and parameter.group.required(parameter.item)])

    def defaults(self) -> dict:
        """key -> the default of every option (None for a required one, and all with unset)."""
        return {parameter.dest: None if self.unset or parameter.group.required(parameter.item)
                else parameter.group.default(parameter.item) for parameter in self.parameters()}

    def api_values(self, args: tuple, kwargs: dict) -> tuple[dict, dict]:
        """(option values, api_extra values) of an API call, checked as the CLI checks."""
        parameters = self.parameters()
        positionals = self.positional_parameters()
        if len(args) > len(positionals):
            raise UserInputError(f"{self.api_name}() takes {len(positionals)} positional "
                                 f"argument(s) ({', '.join(p.name for p in positionals)}), got "
                                 f"{len(args)}")
        extra_names = {parameter.name for parameter in self.api_extra}
        extras = {name: kwargs.pop(name) for name in list(kwargs) if name in extra_names}
        by_name = {}
        for parameter in parameters:
            spellings = [parameter.name, *(alias.replace("-", "_") for alias in
                                           parameter.item.metadata["option"].aliases)]
            if not parameter.group.key:
                spellings.append(parameter.item.name)
            for spelling in spellings:
                by_name.setdefault(spelling, parameter)
        given = {parameter.dest: value for parameter, value in zip(positionals, args)}
        for key, value in kwargs.items():
            parameter = by_name.get(key)
            if parameter is None:
                valid = sorted({parameter.name for parameter in parameters} | extra_names)
                raise UserInputError(f"unknown option {key!r} for {self.api_name}(); valid: "
                                     f"{', '.join(valid)}")
            if parameter.dest in given:
                raise UserInputError(f"{self.api_name}() got {parameter.name!r} twice")
            try:
                given[parameter.dest] = parse_text(parameter.item, value)
            except argparse.ArgumentTypeError as error:
                raise UserInputError(f"{key}: {error}") from None
        values = self.defaults()
        values.update(given)
        missing = [parameter.name for parameter in parameters
                   if parameter.group.required(parameter.item) and not self.unset
                   and values[parameter.dest] is None and parameter.dest not in given]
        if missing and self.api_prepare is None:
            raise UserInputError(f"{self.api_name}() needs {', '.join(missing)}")
        return values, extras

    @property
    def api_name(self) -> str:
        return self.name.replace("-", "_")

    def call(self, *args, **kwargs):
        """The API: the same values as the flags, the same build and library call."""
        values, extras = self.api_values(args, kwargs)
        if self.api_prepare is not None:
            values = self.api_prepare(values, extras)
        return self.result(self._execute(values, for_api=True), values)

    def signature(self) -> Signature:
        """The API function's signature: positionals first, then keyword options with the
        CLI's defaults, then api_extra."""
        positional = self.positional_parameters()
        parameters = [Argument(parameter.name, Argument.POSITIONAL_OR_KEYWORD)
                      for parameter in positional]
        for parameter in self.parameters():
            if parameter in positional:
                continue
            default = None if self.unset else parameter.group.default(parameter.item)
            parameters.append(Argument(parameter.name, Argument.KEYWORD_ONLY,
                                                default=default))
        return Signature(parameters + list(self.api_extra))

    def api_function(self) -> Callable:
        """`edgeship.api.<name>`: this command as a function."""

        def function(*args, **kwargs):
            return self.call(*args, **kwargs)

        function.__name__ = function.__qualname__ = self.api_name
        function.__module__ = "edgeship.api"
        function.__signature__ = self.signature()
        function.__doc__ = (f"`edgeship {self.name}`: {self.help}.\n\nThe parameters are the "
                            "command's flags in snake case, with the same defaults (see "
                            f"`edgeship {self.name} --help`); the config fields' own names "
                            "are accepted too.")
        return function

    # --- reproduce commands ---------------------------------------------------------------

    def command_line(self, values: dict, defaults: dict | None = None) -> str:
        """`edgeship NAME ...` naming every option in values that differs from this command's
        default (defaults: key -> default, where the caller's differ)."""
        defaults = {**self.defaults(), **(defaults or {})}
        words = [f"edgeship {self.name}"]
        flags = []
        for parameter in self.parameters():
            if parameter.dest not in values:
                continue
            value, default = values[parameter.dest], defaults.get(parameter.dest)
            if is_positional(parameter.item):
                parts = value if isinstance(value, tuple) else (value,)
                words.extend(str(part) for part in parts)
                continue
            if value == default or (value is None and self.unset):
                continue
            flag = flag_name(parameter.item, parameter.group.flag_prefix)
            if isinstance(value, bool):
                flags.append(flag if value else f"--no-{flag[2:]}")
            elif value is None:
                raise ValueError(f"{flag} cannot be unset from the command line "
                                 f"(default {default})")
            else:
                flags.append(f"{flag} {format_value(parameter.item, value)}")
        return " ".join(words + flags)


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


def get_command(name: str) -> Command:
    """The spec of one command, by its CLI name."""
    if name not in COMMAND_NAMES:
        raise KeyError(name)
    return importlib.import_module(f"edgeship.commands.{name.replace('-', '_')}").COMMAND


def all_commands() -> list[Command]:
    return [get_command(name) for name in COMMAND_NAMES]


def option_values_of(config, group: OptionGroup) -> dict:
    """key -> value of a group's options in a config instance (for command_line)."""
    return {group.dest(item): getattr(config, item.name) for item in group.options()}
