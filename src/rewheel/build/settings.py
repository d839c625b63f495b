"""Per-package build settings, declared in TOML: one file per package plus defaults.

A settings folder holds ``_defaults.toml`` (applies to every package) and ``<name>.toml`` files
named by the normalized project name. Every key is optional::

    [env]                      # variables for the build (on top of the defaults' [env])
    NO_CYTHON_COMPILE = "true"

    [config_settings]          # PEP 517 config_settings passed to the backend hooks
    setup-args = ["-Dallow-noblas=true"]   # strings, numbers, booleans, lists, tables; a TOML
                                           # date or time is refused (backends receive JSON)

    [build]
    requires_add = ["wheel"]           # build requirements added to build-system.requires
    requires_remove = ["oldest-supported-numpy"]   # build requirements dropped (by name)
    system_tools = ["patchelf>=0.11"]  # provided by the system: checked, recorded, not built
    recipe = "orjson-cargo"            # a custom build recipe (entry point rewheel.recipes)
    prebuilt = false                   # take the upstream wheel instead of building (allow-list)
    allow_links = false                # make the sdist's links as links (inside it); else
                                       # links to its files are copied, others refused

    [[patches]]                # applied in order, with `patch -p1`, to the extracted sdist
    file = "numpy/0001-fix.patch"       # relative to the settings folder
    versions = "==1.26.4"              # optional: only for these versions

    [versions."1.26.4"]        # per-version overrides of env / config_settings / build
    env = { FOO = "1" }

    [variants.cuda]            # selected with --variant cuda; same keys as the top level
    env = { USE_CUDA = "1" }

The defaults file may also hold ``[pins]`` (``name = "specifier"``): constraints for the whole
bootstrap. Everything a package's settings say is part of its cache key and its record.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from ..core.errors import ConfigError, Step

DEFAULTS_FILE = "_defaults.toml"
_TOP_KEYS = {"env", "config_settings", "build", "patches", "versions", "variants", "pins"}
_BUILD_KEYS = {
    "requires_add",
    "requires_remove",
    "system_tools",
    "recipe",
    "prebuilt",
    "allow_links",
}


@dataclass(frozen=True)
class Patch:
    path: Path
    sha256: str


@dataclass(frozen=True)
class PackageSettings:
    """What applies to one (name, version), defaults and variant already merged."""

    env: Mapping[str, str] = field(default_factory=dict)
    config_settings: Mapping[str, Any] = field(default_factory=dict)
    requires_add: tuple[str, ...] = ()
    requires_remove: frozenset[NormalizedName] = frozenset()
    system_tools: tuple[Requirement, ...] = ()
    recipe: str | None = None
    prebuilt: bool = False
    allow_links: bool = False  # sdist links made as links; unset, links to files are copied
    patches: tuple[Patch, ...] = ()
    sources: tuple[str, ...] = ()  # the settings files that contributed

    @property
    def system_tool_names(self) -> frozenset[NormalizedName]:
        return frozenset(canonicalize_name(r.name) for r in self.system_tools)

    def as_record(self) -> dict[str, Any]:
        return {
            "env": dict(sorted(self.env.items())),
            "config_settings": dict(self.config_settings),
            "requires_add": list(self.requires_add),
            "requires_remove": sorted(self.requires_remove),
            "system_tools": [str(r) for r in self.system_tools],
            "recipe": self.recipe,
            "prebuilt": self.prebuilt,
            "allow_links": self.allow_links,
            "patches": [{"file": p.path.name, "sha256": p.sha256} for p in self.patches],
            "files": list(self.sources),
        }

    def digest(self) -> str:
        """A hash of everything that can change a build: part of the cache key."""
        data = self.as_record()
        data.pop("files")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    @property
    def is_default(self) -> bool:
        return self == PackageSettings()


def _fail(path: Path, key: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {message}", step=Step.SETTINGS)


def _str_table(value: object, path: Path, key: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(path, key, "must be a table")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise _fail(path, f"{key}.{k}", "must be a string or a number")
        out[str(k)] = str(v)
    return out


def _str_list(value: object, path: Path, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, key, "must be a list of strings")
    return list(value)


def _check_json(value: object, path: Path, key: str) -> None:
    """Refuse what JSON cannot carry as TOML wrote it: a date or a time (no JSON type), NaN and
    infinities (not JSON). config_settings reach the backend as JSON (pyproject-hooks) and are
    hashed as JSON into the cache key and the provenance."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_json(v, path, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json(v, path, f"{key}[{i}]")
    elif isinstance(value, datetime.date | datetime.time):
        raise _fail(
            path,
            key,
            f"a TOML date or time ({value.isoformat()}) cannot be passed to a build backend, "
            f'which receives config_settings as JSON; write it as a string: "{value.isoformat()}"',
        )
    elif isinstance(value, float) and not math.isfinite(value):
        raise _fail(path, key, f"{value} cannot be passed to a build backend; write a string")


@dataclass
class _Layer:
    """One level of settings (a file's top level, a version table or a variant table)."""

    env: dict[str, str] = field(default_factory=dict)
    config_settings: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    patches: list[tuple[Patch, SpecifierSet | None]] = field(default_factory=list)


def _parse_layer(data: Mapping[str, Any], path: Path, base: Path, where: str) -> _Layer:
    layer = _Layer()
    if "env" in data:
        layer.env = _str_table(data["env"], path, f"{where}env")
    if "config_settings" in data:
        if not isinstance(data["config_settings"], dict):
            raise _fail(path, f"{where}config_settings", "must be a table")
        _check_json(data["config_settings"], path, f"{where}config_settings")
        layer.config_settings = dict(data["config_settings"])
    if "build" in data:
        build = data["build"]
        if not isinstance(build, dict):
            raise _fail(path, f"{where}build", "must be a table")
        unknown = set(build) - _BUILD_KEYS
        if unknown:
            raise _fail(path, f"{where}build", f"unknown keys {sorted(unknown)}")
        for key in ("requires_add", "requires_remove", "system_tools"):
            if key in build:
                values = _str_list(build[key], path, f"{where}build.{key}")
                for v in values:
                    try:
                        Requirement(v)
                    except InvalidRequirement as exc:
                        raise _fail(path, f"{where}build.{key}", f"{v!r}: {exc}") from exc
                layer.build[key] = values
        if "recipe" in build:
            if not isinstance(build["recipe"], str):
                raise _fail(path, f"{where}build.recipe", "must be a string")
            layer.build["recipe"] = build["recipe"]
        for key in ("prebuilt", "allow_links"):
            if key in build:
                if not isinstance(build[key], bool):
                    raise _fail(path, f"{where}build.{key}", "must be true or false")
                layer.build[key] = build[key]
    for i, entry in enumerate(data.get("patches", [])):
        key = f"{where}patches[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise _fail(path, key, "must be a table with a 'file'")
        patch_path = (base / entry["file"]).resolve()
        if not patch_path.is_relative_to(base.resolve()):
            raise _fail(path, key, "the patch file must be inside the settings folder")
        try:
            digest = hashlib.sha256(patch_path.read_bytes()).hexdigest()
        except OSError as exc:
            raise _fail(path, key, f"cannot read {patch_path}: {exc.strerror}") from exc
        spec = None
        if "versions" in entry:
            try:
                spec = SpecifierSet(str(entry["versions"]))
            except InvalidSpecifier as exc:
                raise _fail(path, f"{key}.versions", str(exc)) from exc
        layer.patches.append((Patch(patch_path, digest), spec))
    return layer


@dataclass
class _FileSettings:
    path: Path
    top: _Layer
    versions: dict[str, _Layer]
    variants: dict[str, _Layer]


def _read(path: Path, base: Path) -> tuple[_FileSettings, dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", step=Step.SETTINGS) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", step=Step.SETTINGS) from exc
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _fail(path, "(top level)", f"unknown keys {sorted(unknown)}")
    for key in ("versions", "variants"):
        if not isinstance(data.get(key, {}), dict):
            raise _fail(path, key, "must be a table")
    versions = {}
    for version, table in data.get("versions", {}).items():
        if not isinstance(table, dict):
            raise _fail(path, f"versions.{version}", "must be a table")
        try:
            exact = str(Version(version))
        except InvalidVersion as exc:
            raise _fail(path, f"versions.{version}", "is not a version") from exc
        versions[exact] = _parse_layer(table, path, base, f"versions.{version}.")
    variants = {}
    for variant, table in data.get("variants", {}).items():
        if not isinstance(table, dict):
            raise _fail(path, f"variants.{variant}", "must be a table")
        variants[variant] = _parse_layer(table, path, base, f"variants.{variant}.")
    return _FileSettings(path, _parse_layer(data, path, base, ""), versions, variants), data


class Settings:
    """All settings of a folder; ``for_package`` merges what applies to one (name, version)."""

    def __init__(self, folder: Path | None = None, *, variant: str | None = None) -> None:
        self.folder = folder
        self.variant = variant
        self.pins: list[Requirement] = []
        self._defaults: _FileSettings | None = None
        self._packages: dict[NormalizedName, _FileSettings] = {}
        if folder is None:
            return
        if not folder.is_dir():
            raise ConfigError(f"settings folder {folder} does not exist", step=Step.SETTINGS)
        for path in sorted(folder.glob("*.toml")):
            parsed, raw = _read(path, folder)
            if path.name == DEFAULTS_FILE:
                self._defaults = parsed
                pins = raw.get("pins", {})
                if not isinstance(pins, dict):
                    raise _fail(path, "pins", "must be a table of name = specifier")
                for name, spec in pins.items():
                    if not isinstance(spec, str):
                        raise _fail(path, f"pins.{name}", 'must be a specifier string ("<2")')
                    try:
                        self.pins.append(Requirement(f"{name}{spec}"))
                    except InvalidRequirement as exc:
                        raise _fail(path, f"pins.{name}", str(exc)) from exc
                continue
            name = canonicalize_name(path.stem)
            if path.stem != name:
                raise _fail(path, "(file name)", f"name it by the normalized name: {name}.toml")
            if "pins" in raw:
                raise _fail(path, "pins", "pins belong in _defaults.toml")
            self._packages[name] = parsed

    def for_package(self, name: NormalizedName, version: Version) -> PackageSettings:
        layers: list[_Layer] = []
        sources: list[str] = []
        for file in (self._defaults, self._packages.get(name)):
            if file is None:
                continue
            sources.append(str(file.path))
            layers.append(file.top)
            if str(version) in file.versions:
                layers.append(file.versions[str(version)])
            if self.variant is not None and self.variant in file.variants:
                layers.append(file.variants[self.variant])
        env: dict[str, str] = {}
        config: dict[str, Any] = {}
        build: dict[str, Any] = {}
        patches: list[Patch] = []
        for layer in layers:
            env.update(layer.env)
            config.update(layer.config_settings)
            for key in ("requires_add", "requires_remove", "system_tools"):
                build.setdefault(key, []).extend(layer.build.get(key, []))
            for key in ("recipe", "prebuilt", "allow_links"):
                if key in layer.build:
                    build[key] = layer.build[key]
            patches.extend(p for p, spec in layer.patches if spec is None or version in spec)
        return PackageSettings(
            env=env,
            config_settings=config,
            requires_add=tuple(build.get("requires_add", [])),
            requires_remove=frozenset(
                canonicalize_name(Requirement(r).name) for r in build.get("requires_remove", [])
            ),
            system_tools=tuple(Requirement(r) for r in build.get("system_tools", [])),
            recipe=build.get("recipe"),
            prebuilt=bool(build.get("prebuilt", False)),
            allow_links=bool(build.get("allow_links", False)),
            patches=tuple(patches),
            sources=tuple(sources),
        )

    def variants(self) -> set[str]:
        found: set[str] = set()
        for file in (self._defaults, *self._packages.values()):
            if file is not None:
                found.update(file.variants)
        return found


def apply_to_requirements(
    requirements: list[str], settings: PackageSettings
) -> tuple[list[str], list[Requirement]]:
    """Build requirements after settings: (to build from source, provided by the system)."""
    keep: list[str] = []
    system: list[Requirement] = []
    drop = settings.requires_remove
    tools = settings.system_tool_names
    for text in [*requirements, *settings.requires_add]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name in drop:
            continue
        if name in tools:
            system.append(req)
            continue
        if text not in keep:
            keep.append(text)
    return keep, system
