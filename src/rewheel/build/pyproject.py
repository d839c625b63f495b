"""The ``[build-system]`` table of a source tree (PEP 517 / PEP 518), with their defaults."""

from __future__ import annotations

import posixpath
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from ..core.errors import ConfigError, Step

_STEP = Step.PYPROJECT
# PEP 518: a tree without the table is built by setuptools; PEP 517: one without build-backend by
# setuptools' legacy backend, which runs setup.py as pip once did.
DEFAULT_REQUIRES: tuple[str, ...] = ("setuptools>=40.8.0",)
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"


@dataclass(frozen=True)
class BuildSystem:
    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...] = ()


DEFAULT_BUILD_SYSTEM = BuildSystem(requires=DEFAULT_REQUIRES, backend=LEGACY_BACKEND)


def parse_build_system(
    pyproject: Mapping[str, Any] | None, *, package: str | None = None
) -> BuildSystem:
    """The build system declared by a parsed pyproject.toml (None: the tree has none)."""

    def error(message: str) -> ConfigError:
        return ConfigError(f"pyproject.toml: {message}", package=package, step=_STEP)

    if pyproject is None or "build-system" not in pyproject:
        return DEFAULT_BUILD_SYSTEM
    table = pyproject["build-system"]
    if not isinstance(table, Mapping):
        raise error("[build-system] is not a table")

    if "requires" not in table:
        # PEP 518: a table that is present but lacks the required key is an error.
        raise error("[build-system] has no 'requires'")
    requires = _string_list(table["requires"], "build-system.requires", error)
    for req in requires:
        try:
            Requirement(req)
        except InvalidRequirement as exc:
            raise error(f"invalid requirement {req!r} in build-system.requires: {exc}") from exc

    backend = table.get("build-backend")
    if backend is None:
        backend = LEGACY_BACKEND
    elif not isinstance(backend, str) or not _valid_backend(backend):
        raise error(f"invalid build-backend {backend!r}")

    backend_path = _string_list(table.get("backend-path", []), "build-system.backend-path", error)
    for entry in backend_path:
        if not _inside_tree(entry):
            raise error(f"backend-path entry {entry!r} is outside the source tree")

    return BuildSystem(requires=requires, backend=backend, backend_path=backend_path)


def read_build_system(source_dir: Path, *, package: str | None = None) -> BuildSystem:
    """The build system of the source tree at ``source_dir``."""
    path = source_dir / "pyproject.toml"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return parse_build_system(None, package=package)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}", package=package, step=_STEP) from exc
    return build_system_of(data, package=package)


def build_system_of(data: bytes | None, *, package: str | None = None) -> BuildSystem:
    """The build system a ``pyproject.toml`` of these bytes declares (None: a tree without
    one)."""
    if data is None:
        return parse_build_system(None, package=package)
    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"pyproject.toml is not valid TOML: {exc}", package=package, step=_STEP
        ) from exc
    return parse_build_system(parsed, package=package)


def _string_list(value: object, key: str, error: Callable[[str], ConfigError]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise error(f"{key} must be a list of strings")
    return tuple(value)


def _valid_backend(spec: str) -> bool:
    """``module.path`` or ``module.path:object.path``, each part an identifier (PEP 517)."""
    module, colon, obj = spec.partition(":")
    if (colon and not obj) or ":" in obj:
        return False
    parts = module.split(".") + (obj.split(".") if obj else [])
    return all(p.isidentifier() for p in parts)


def _inside_tree(entry: str) -> bool:
    """Whether a backend-path entry, taken relative to the tree's root, stays inside it."""
    path = entry.replace("\\", "/")
    if not path or path.startswith("/") or (len(path) >= 2 and path[1] == ":"):
        return False
    normal = posixpath.normpath(path)
    return normal != ".." and not normal.startswith("../")
