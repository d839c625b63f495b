"""Reading a PEP 751 lock file (``pylock.toml``) as the input of a bootstrap: pure, no I/O.

``read_pylock`` takes the file's text and the marker environment of the target interpreter and
returns, for every package that applies to that target, its exact version and the sha256 digests
the lock gives for its sdist (none when the lock lists only wheels). Everything rewheel does not
build from an index (``vcs``, ``directory``, ``archive`` packages) is refused with the package
named. The lock's URLs are never returned: rewheel takes every sdist from its own upstream, and
the hashes bind the content.

The shape is checked strictly: wrong types, unknown keys (in a version 1.0 lock), bad names,
versions, markers and hashes are a ``ConfigError`` naming the key, such as
``packages[2].sdist.hashes.sha256``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from packaging.markers import InvalidMarker, Marker, UndefinedComparison
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidName, NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import ConfigError, Step

__all__ = ["LockedPackage", "LockedSet", "is_pylock_name", "read_pylock"]

# PEP 751: ``pylock.toml`` or ``pylock.<name>.toml``.
_FILE_NAME = re.compile(r"pylock\.([^.]+\.)?toml")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# Longer than any real value; a bound on what one string may cost to parse.
_MAX_TEXT = 10_000

_TOP_KEYS = frozenset(
    {
        "lock-version",
        "environments",
        "requires-python",
        "extras",
        "dependency-groups",
        "default-groups",
        "created-by",
        "packages",
        "tool",
    }
)
_PACKAGE_KEYS = frozenset(
    {
        "name",
        "version",
        "marker",
        "requires-python",
        "dependencies",
        "vcs",
        "directory",
        "archive",
        "index",
        "sdist",
        "wheels",
        "attestation-identities",
        "tool",
    }
)
_FILE_KEYS = frozenset({"name", "upload-time", "url", "path", "size", "hashes"})


@dataclass(frozen=True)
class LockedPackage:
    """One package of a lock that applies to the target: the version to build and the sha256
    digests allowed for its sdist (``None``: the lock has no sdist entry for it)."""

    name: NormalizedName
    version: Version
    sdist_sha256: frozenset[str] | None
    index: str | None  # the index the lock says the package came from (``packages.index``)


@dataclass(frozen=True)
class LockedSet:
    packages: tuple[LockedPackage, ...]
    notes: tuple[str, ...]  # what the reader left aside, for the user to see


def is_pylock_name(filename: str) -> bool:
    """Whether ``filename`` (no folder) is the name of a PEP 751 lock file."""
    return _FILE_NAME.fullmatch(filename) is not None


class _Reader:
    def __init__(self, where: str, strict_keys: bool) -> None:
        self.where = where
        self.strict_keys = strict_keys

    def error(self, key: str, problem: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{self.where}: {key}: {problem}", step=Step.INPUT, hint=hint)

    def typed(self, value: Any, kind: type | tuple[type, ...], key: str, what: str) -> Any:
        # bool is an int in Python; TOML keeps them apart, and so does this check.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(key, f"must be {what}, not {_toml_type(value)}")
        return value

    def text(self, value: Any, key: str) -> str:
        text: str = self.typed(value, str, key, "a string")
        if len(text) > _MAX_TEXT:
            raise self.error(key, f"is {len(text)} characters long; at most {_MAX_TEXT}")
        return text

    def texts(self, value: Any, key: str) -> list[str]:
        items = self.typed(value, list, key, "an array of strings")
        return [self.text(item, f"{key}[{i}]") for i, item in enumerate(items)]

    def table(self, value: Any, key: str, known: frozenset[str]) -> dict[str, Any]:
        table: dict[str, Any] = self.typed(value, dict, key, "a table")
        unknown = sorted(set(table) - known)
        if unknown and self.strict_keys:
            raise self.error(
                f"{key}.{unknown[0]}" if key else unknown[0],
                "is not a key of lock-version 1.0 (PEP 751)",
            )
        return table

    def marker(self, value: Any, key: str) -> Marker:
        text = self.text(value, key)
        try:
            return Marker(text)
        except (InvalidMarker, RecursionError) as exc:
            raise self.error(key, f"invalid marker {text!r}: {_first_line(exc)}") from None

    def specifier(self, value: Any, key: str) -> SpecifierSet:
        text = self.text(value, key)
        try:
            return SpecifierSet(text)
        except InvalidSpecifier as exc:
            raise self.error(key, f"invalid version specifier {text!r}: {exc}") from None


def read_pylock(text: str, *, where: str, environment: Mapping[str, str]) -> LockedSet:
    """The packages of the lock ``text`` (read from ``where``) that apply to the interpreter
    whose marker values are ``environment``, with the lock's default dependency groups and no
    extras (PEP 751's default install)."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(f"{where}: not valid TOML: {_first_line(exc)}", step=Step.INPUT) from None
    notes: list[str] = []
    version = data.get("lock-version")
    if version is None:
        raise ConfigError(f"{where}: lock-version: missing (PEP 751 needs it)", step=Step.INPUT)
    strict_keys = _check_lock_version(version, where, notes)
    r = _Reader(where, strict_keys)
    r.table(data, "", _TOP_KEYS)
    if "created-by" not in data:
        raise r.error("created-by", "missing (PEP 751 needs it)")
    r.text(data["created-by"], "created-by")

    python = Version(environment["python_full_version"].rstrip("+"))
    if "requires-python" in data:
        spec = r.specifier(data["requires-python"], "requires-python")
        if not spec.contains(python, prereleases=True):
            raise r.error(
                "requires-python",
                f"the lock is for Python {spec}; the target is Python {python}",
                hint="run rewheel with an interpreter the lock supports",
            )
    extras = frozenset(_canonical(r, e, f"extras[{i}]") for i, e in _items(r, data, "extras"))
    groups = frozenset(
        _canonical(r, g, f"dependency-groups[{i}]") for i, g in _items(r, data, "dependency-groups")
    )
    defaults = frozenset(
        _canonical(r, g, f"default-groups[{i}]") for i, g in _items(r, data, "default-groups")
    )
    if not defaults <= groups:
        raise r.error("default-groups", "names a group that dependency-groups does not list")
    env: dict[str, str | frozenset[str]] = {
        **environment,
        "extras": frozenset(),
        "dependency_groups": defaults,
    }
    del extras  # rewheel has no way to select a lock's extras yet: none is selected
    if "environments" in data:
        markers = [
            r.marker(m, f"environments[{i}]")
            for i, m in enumerate(r.texts(data["environments"], "environments"))
        ]
        if markers and not any(_evaluate(r, m, env, "environments") for m in markers):
            raise r.error(
                "environments",
                "none of the lock's environments is the target interpreter's",
                hint="use a lock made for this platform and Python",
            )

    packages = r.typed(data.get("packages", []), list, "packages", "an array of tables")
    chosen: dict[NormalizedName, tuple[int, LockedPackage]] = {}
    for i, raw in enumerate(packages):
        package = _package(r, raw, f"packages[{i}]", env, python)
        if package is None:
            continue
        if package.name in chosen:
            first = chosen[package.name][0]
            raise r.error(
                f"packages[{i}]",
                f"{package.name} applies to the target twice (packages[{first}] too)",
                hint="a lock must give one entry of a package per environment",
            )
        chosen[package.name] = (i, package)
    return LockedSet(tuple(p for _, p in chosen.values()), tuple(notes))


def _check_lock_version(value: Any, where: str, notes: list[str]) -> bool:
    """True for exactly 1.0 (unknown keys are errors); a later 1.x is read with a note."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,6}\.\d{1,6}", value):
        raise ConfigError(
            f'{where}: lock-version: must be a string such as "1.0", not {value!r}'[:300],
            step=Step.INPUT,
        )
    major, minor = (int(part) for part in value.split("."))
    if major != 1:
        raise ConfigError(
            f"{where}: lock-version: {value} is not supported; rewheel reads version 1 locks",
            step=Step.INPUT,
        )
    if minor > 0:
        notes.append(
            f"{where} is a lock of version {value}; rewheel knows 1.0 and ignores keys "
            "it does not know"
        )
        return False
    return True


def _package(
    r: _Reader,
    raw: Any,
    key: str,
    env: Mapping[str, str | frozenset[str]],
    python: Version,
) -> LockedPackage | None:
    table = r.table(raw, key, _PACKAGE_KEYS)
    if "name" not in table:
        raise r.error(f"{key}.name", "missing")
    name = _canonical(r, table["name"], f"{key}.name")
    label = f"{key} ({name})"
    if "marker" in table:
        marker = r.marker(table["marker"], f"{label}.marker")
        if not _evaluate(r, marker, env, f"{label}.marker"):
            return None
    if "requires-python" in table:
        spec = r.specifier(table["requires-python"], f"{label}.requires-python")
        if not spec.contains(python, prereleases=True):
            raise r.error(
                f"{label}.requires-python",
                f"{name} needs Python {spec}; the target is Python {python}",
            )
    for source in ("vcs", "directory", "archive"):
        if source in table:
            hint = (
                "build a project folder with `rewheel bootstrap ./project`"
                if source == "directory"
                else "rewheel builds sdists of the index only; lock a release of the index"
            )
            raise r.error(
                f"{label}.{source}",
                f"{name} comes from a {source}, not from an index",
                hint=hint,
            )
    if "version" not in table:
        raise r.error(f"{label}.version", "missing: rewheel builds exact versions")
    version_text = r.text(table["version"], f"{label}.version")
    try:
        version = Version(version_text)
    except InvalidVersion:
        raise r.error(f"{label}.version", f"invalid version {version_text!r}") from None
    index = None
    if "index" in table:
        index = r.text(table["index"], f"{label}.index")
    if "dependencies" in table:
        r.typed(table["dependencies"], list, f"{label}.dependencies", "an array of tables")
    if "wheels" in table:
        wheels = r.typed(table["wheels"], list, f"{label}.wheels", "an array of tables")
        for j, wheel in enumerate(wheels):
            _file_hashes(r, wheel, f"{label}.wheels[{j}]")
    sdist = None
    if "sdist" in table:
        sdist = _file_hashes(r, table["sdist"], f"{label}.sdist")
        if not sdist:
            raise r.error(
                f"{label}.sdist.hashes",
                "has no sha256: rewheel checks sdists by their sha256",
                hint="lock again with a tool that records sha256 (pip lock, uv export)",
            )
    elif "wheels" not in table:
        raise r.error(label, f"{name} has no sdist, wheels, vcs, directory or archive")
    return LockedPackage(name, version, sdist, index)


def _file_hashes(r: _Reader, raw: Any, key: str) -> frozenset[str]:
    """The sha256 digests of a file entry (sdist or wheel), its shape checked."""
    table = r.table(raw, key, _FILE_KEYS)
    for field in ("name", "url", "path"):
        if field in table:
            r.text(table[field], f"{key}.{field}")
    if "upload-time" in table:
        r.typed(table["upload-time"], datetime, f"{key}.upload-time", "a date and time")
    if "size" in table:
        size = r.typed(table["size"], int, f"{key}.size", "an integer")
        if size < 0:
            raise r.error(f"{key}.size", "is negative")
    if "hashes" not in table:
        raise r.error(f"{key}.hashes", "missing (PEP 751 needs the hashes of every file)")
    hashes = r.typed(table["hashes"], dict, f"{key}.hashes", "a table")
    if not hashes:
        raise r.error(f"{key}.hashes", "is empty")
    for algorithm, value in hashes.items():
        r.text(value, f"{key}.hashes.{algorithm}")
    if "sha256" not in hashes:
        return frozenset()
    digest = hashes["sha256"]
    if not _SHA256.fullmatch(digest):
        raise r.error(f"{key}.hashes.sha256", f"{digest[:80]!r} is not 64 hex digits")
    return frozenset({digest.lower()})


def _canonical(r: _Reader, value: Any, key: str) -> NormalizedName:
    text = r.text(value, key)
    try:
        return canonicalize_name(text, validate=True)
    except InvalidName:
        raise r.error(key, f"{text[:80]!r} is not a valid project name") from None


def _items(r: _Reader, data: Mapping[str, Any], key: str) -> list[tuple[int, str]]:
    return list(enumerate(r.texts(data.get(key, []), key)))


def _evaluate(
    r: _Reader, marker: Marker, env: Mapping[str, str | frozenset[str]], key: str
) -> bool:
    try:
        return marker.evaluate(env, context="lock_file")
    except (UndefinedComparison, ValueError, TypeError, RecursionError) as exc:
        raise r.error(key, f"cannot evaluate {str(marker)[:200]!r}: {_first_line(exc)}") from None


def _toml_type(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    for kind, label in kinds.items():
        if type(value) is kind:
            return label
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]
