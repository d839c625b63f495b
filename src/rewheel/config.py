"""Defaults for the command line from a file: ``rewheel.toml`` or ``[tool.rewheel]`` in
``pyproject.toml``, in the current folder or the nearest one above it (``find_config``).

Keys are named like the long options (``repo``, ``index-url``, ``jobs``, ``no-network-isolation``)
and apply to every command that has that option; a table named after a command
(``[tool.rewheel.serve]``, or ``[serve]`` in rewheel.toml) sets options of that command alone and
wins over the top level. Relative paths are taken from the file's folder.

The file only sets defaults: click's ``default_map``. So the command line wins, then the
environment (``REWHEEL_<OPTION>``), then the file, then the built-in default.

``default_map`` and ``schema_from_click`` are pure; ``find_config`` reads the files. Every
problem is a ConfigError naming the file and the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click

from .core.errors import ConfigError, Step

REWHEEL_TOML = "rewheel.toml"
PYPROJECT_TOML = "pyproject.toml"
ENV_PREFIX = "REWHEEL"
# Options a file may not set: the file may come with a folder someone else wrote (a cloned
# project), and switching the sandbox off must be the user's own word, on the command line or in
# the environment.
# Options that weaken what rewheel guarantees: a settings file is found in the folder one works
# in (a cloned project's pyproject.toml), so none of them may come from one; each with what a
# hostile folder could do with it.
NOT_FROM_FILES: dict[str, str] = {
    "no-sandbox": "could turn the sandbox off for you",
    "no-network-isolation": "could give the builds it runs the network",
    "public-key": "could choose whose signatures verify and install accept",
    "allow-prebuilt": "could make verify and install accept wheels not built from source",
    "no-sign": "could turn off the signing of what you build",
    "signing-key": "could sign what you build with a key someone else holds",
    "cache-key-trust": "could choose whose builds a shared build cache may give you",
    "index": "could make verify check another index than your repository",
}

Kind = Literal["str", "int", "float", "bool", "list", "path", "paths"]


@dataclass(frozen=True)
class OptionSpec:
    """How one option of one command is set from the file."""

    dest: str  # the parameter's name, the key of click's default_map
    kind: Kind
    convert: Callable[[Any], object] | None = None  # further checks; raises click.BadParameter


Schema = Mapping[str, Mapping[str, OptionSpec]]  # command -> long option name -> spec


@dataclass(frozen=True)
class ConfigSource:
    path: Path
    table: Mapping[str, Any]
    prefix: str  # where the table sits in the file, for messages: "tool.rewheel." or ""

    def where(self, *keys: str) -> str:
        return f"{self.path}: {self.prefix}{'.'.join(keys)}"


# -- finding and reading the file -------------------------------------------------------------


def parse_source(path: Path, text: str) -> ConfigSource | None:
    """The settings in ``text`` (the content of ``path``); None for a pyproject.toml without
    a ``[tool.rewheel]`` table."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    if path.name != PYPROJECT_TOML:
        return ConfigSource(path, data, "")
    tool = data.get("tool")
    if not isinstance(tool, dict) or "rewheel" not in tool:
        return None
    table = tool["rewheel"]
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: tool.rewheel must be a table")
    return ConfigSource(path, table, "tool.rewheel.")


def find_config(directory: Path) -> ConfigSource | None:
    """The settings that apply in ``directory``: those of the nearest folder, ``directory`` or
    one above it, that has a ``rewheel.toml`` or a ``pyproject.toml`` with ``[tool.rewheel]``
    (as uv, ruff and pytest find theirs).

    The search stops after the folder that holds ``.git`` (the top of a checkout: settings
    above it are not the project's) and at the root. A file found on the way that belongs to
    another user (neither you nor root) is an error: whoever can change it would choose your
    index and your repository.
    """
    here = directory.absolute()
    for folder in (here, *here.parents):
        source = _config_in(folder)
        if source is not None:
            return source
        if (folder / ".git").exists():
            return None
    return None


def _config_in(directory: Path) -> ConfigSource | None:
    """``rewheel.toml`` in ``directory``, else its ``pyproject.toml``'s ``[tool.rewheel]``.

    rewheel.toml wins when both exist: a file of its own is the more deliberate choice.
    """
    for name in (REWHEEL_TOML, PYPROJECT_TOML):
        path = directory / name
        try:
            with path.open("rb") as f:
                owner = os.fstat(f.fileno()).st_uid
                data = f.read()
            text = data.decode("utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read it: {exc}") from exc
        source = parse_source(path, text)
        if source is None:
            continue
        if owner not in (os.getuid(), 0):
            raise ConfigError(
                f"{path}: belongs to another user (uid {owner}); rewheel takes no settings from "
                "a file someone else can change",
                step=Step.SETTINGS,
                hint="remove it or make it yours, or run rewheel from a folder of your own",
            )
        return source
    return None


# -- from the file's table to click's default_map ---------------------------------------------


def schema_from_click(group: click.Group) -> dict[str, dict[str, OptionSpec]]:
    """What each command's options accept, read from the commands themselves."""
    schema: dict[str, dict[str, OptionSpec]] = {}
    for name, command in sorted(group.commands.items()):
        specs: dict[str, OptionSpec] = {}
        for param in command.params:
            if not isinstance(param, click.Option) or not param.expose_value or not param.name:
                continue
            longs = [o for o in param.opts if o.startswith("--")]
            if not longs:
                continue
            specs[longs[0][2:]] = OptionSpec(
                dest=param.name, kind=_kind_of(param), convert=_converter(param)
            )
        schema[name] = specs
    return schema


def _kind_of(param: click.Option) -> Kind:
    is_path = isinstance(param.type, click.Path)
    if param.multiple:
        return "paths" if is_path else "list"
    if param.is_flag and not param.count:
        return "bool"
    if is_path:
        return "path"
    if isinstance(param.type, click.types.IntParamType):
        return "int"
    if isinstance(param.type, click.types.FloatParamType):
        return "float"
    return "str"


def _converter(param: click.Option) -> Callable[[Any], object] | None:
    if param.is_flag and not param.count:
        return None
    param_type = param.type

    def convert(value: Any) -> object:
        if isinstance(value, list):
            return [param_type.convert(v, None, None) for v in value]
        return param_type.convert(value, None, None)

    return convert


_KIND_TEXT = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a string or a list of strings",
    "path": "a path (string)",
    "paths": "a path or a list of paths",
}


def _value(source: ConfigSource, keys: tuple[str, ...], spec: OptionSpec, value: Any) -> object:
    """``value`` checked against ``spec``; paths made relative to the file's folder."""
    base = source.path.parent

    def wrong() -> ConfigError:
        return ConfigError(f"{source.where(*keys)} must be {_KIND_TEXT[spec.kind]}, not {value!r}")

    out: object
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise wrong()
        out = value
    elif spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        out = value
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong()
        out = float(value)
    elif spec.kind in ("str", "path"):
        if not isinstance(value, str):
            raise wrong()
        # "-" is standard input or output where a path option takes it (serve --access-log).
        out = str(base / value) if spec.kind == "path" and value != "-" else value
    else:  # list, paths
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise wrong()
        out = [str(base / v) for v in items] if spec.kind == "paths" else list(items)
    if spec.convert is not None:
        try:
            spec.convert(out)
        except click.BadParameter as exc:
            raise ConfigError(f"{source.where(*keys)}: {exc.message}") from exc
    return out


def _unknown(source: ConfigSource, keys: tuple[str, ...], known: set[str]) -> ConfigError:
    import difflib  # only for a misspelt key

    close = difflib.get_close_matches(keys[-1].replace("_", "-"), sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{source.where(*keys)}: no such option{hint}")


def _check_allowed_in_files(source: ConfigSource, keys: tuple[str, ...]) -> None:
    if keys[-1] in NOT_FROM_FILES:
        option = keys[-1]
        value = {
            "public-key": "PATH",
            "signing-key": "PATH",
            "cache-key-trust": "PATH",
            "index": "URL",
        }.get(option, "1")
        env = f"{ENV_PREFIX}_{option.upper().replace('-', '_')}={value}"
        raise ConfigError(
            f"{source.where(*keys)}: --{option} cannot be set in a file (a folder you work in "
            f"{NOT_FROM_FILES[option]}); pass --{option} or set {env}",
            step=Step.SETTINGS,
        )


def default_map(source: ConfigSource, schema: Schema) -> dict[str, dict[str, Any]]:
    """click's ``default_map`` ({command: {parameter: value}}) from the file's table."""
    out: dict[str, dict[str, Any]] = {command: {} for command in schema}
    every_option = {key for specs in schema.values() for key in specs}
    sections: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in source.table.items():
        _check_allowed_in_files(source, (key,))
        if key in schema and isinstance(value, dict):
            sections.append((key, value))
            continue
        if key in schema:
            raise ConfigError(f"{source.where(key)} must be a table")
        if key not in every_option:
            raise _unknown(source, (key,), every_option | set(schema))
        # A top-level key sets the option of every command that has it and takes the value
        # (``constraint`` is a list for bootstrap, one file for install); it is an error only
        # when no command takes it.
        applied, first_error = False, None
        for command, specs in schema.items():
            spec = specs.get(key)
            if spec is None:
                continue
            try:
                out[command][spec.dest] = _value(source, (key,), spec, value)
                applied = True
            except ConfigError as exc:
                first_error = first_error or exc
        if not applied and first_error is not None:
            raise first_error
    # Command tables last: they win over the top level.
    for command, table in sections:
        specs = schema[command]
        for key, value in table.items():
            _check_allowed_in_files(source, (command, key))
            spec = specs.get(key)
            if spec is None:
                raise _unknown(source, (command, key), set(specs))
            out[command][spec.dest] = _value(source, (command, key), spec, value)
    return {command: values for command, values in out.items() if values}
