"""The build record: what one build (or one reuse, or one pre-built wheel) of a package was.

One frozen type, ``BuildRecord``, for every record a run writes (``records/<name>-<version>.json``)
and lists (``build-order.json``), and for every reader (cache, verify, chain, sbom, rebuild, the
browsable pages). It has one JSON shape whichever path made it: every key is written, ``null`` (or
an empty list) where it does not apply. docs/records.md describes each key;
``tests/test_records_doc.py`` checks the two agree.

Records are read back from disk, where a hand edit or an older version may have left anything:
``BuildRecord.from_json`` checks every type and raises ``RecordError`` naming the key, and takes
records without the keys later versions added.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .types import WheelRef

__all__ = ["BuildRecord", "EnvEntry", "RecordError", "Why", "record_node"]

_T = TypeVar("_T")


class RecordError(ValueError):
    """A build record that does not have the shape of one (the message names the key)."""


@dataclass(frozen=True)
class EnvEntry:
    """One wheel of a build environment, as installed there."""

    name: str
    version: str
    sha256: str

    @classmethod
    def of(cls, wheel: WheelRef) -> EnvEntry:
        return cls(name=wheel.name, version=wheel.version, sha256=wheel.sha256)

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class Why:
    """One reason a package is in the tree: who asked (None: the user), what and how."""

    package: str | None
    requirement: str
    kind: str

    def to_json(self) -> dict[str, str | None]:
        return {"package": self.package, "requirement": self.requirement, "kind": self.kind}


def _frozen(value: Any) -> Any:
    """A JSON value with its objects and arrays made read-only (mappings stay mappings)."""
    if isinstance(value, Mapping):
        return _FrozenDict({str(k): _frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _thawed(value: Any) -> Any:
    """The plain JSON value (dicts and lists) of a ``_frozen`` one."""
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value


class _FrozenDict(dict[str, Any]):
    """A dict that refuses changes: the nested JSON objects of a frozen record."""

    def _refuse(self, *_args: object, **_kwargs: object) -> None:
        raise TypeError("a build record cannot be changed; use dataclasses.replace")

    __setitem__ = _refuse
    __delitem__ = _refuse
    clear = _refuse
    pop = _refuse
    popitem = _refuse  # type: ignore[assignment]
    setdefault = _refuse
    update = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items(), key=lambda kv: kv[0])))


@dataclass(frozen=True)
class BuildRecord:
    """One package of a repository: where its wheel came from and what it was built with.

    The key order of ``to_json`` is the order of the fields here.
    """

    name: str
    version: str
    sdist_url: str | None
    sdist_sha256: str | None
    wheel: str
    wheel_sha256: str
    why: tuple[Why, ...] = ()
    build_env: tuple[EnvEntry, ...] = ()
    build_system_requires: tuple[str, ...] = ()
    backend_requires: tuple[str, ...] = ()
    cache_key: str | None = None
    seconds: float = 0.0
    log: str | None = None
    prebuilt: bool = False
    provenance: str | None = None
    source_date_epoch: int | None = None
    build_env_dir: str | None = None
    system_tools: tuple[Mapping[str, Any], ...] = ()
    sandbox: Mapping[str, Any] | None = None
    settings: Mapping[str, Any] | None = None
    rust: Mapping[str, Any] | None = None
    # Where the wheel came from when it was not built here: the --cache-url it was taken from.
    from_cache: str | None = None
    # Keys this version does not know (a later version wrote the record): kept, written back.
    unknown: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("system_tools", "sandbox", "settings", "rust", "unknown"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    @property
    def node(self) -> str:
        """The graph's id of the package: ``name==version``."""
        return record_node(self.name, self.version)

    @property
    def wheel_ref(self) -> tuple[str, str]:
        """(file name, sha256) of the wheel the record describes."""
        return (self.wheel, self.wheel_sha256)

    def with_why(self, why: Sequence[Why]) -> BuildRecord:
        return dataclasses.replace(self, why=tuple(why))

    def attested(self, attestation: Attestation) -> BuildRecord:
        """The record with what writing its provenance told."""
        return dataclasses.replace(
            self,
            provenance=attestation.provenance,
            source_date_epoch=attestation.source_date_epoch,
            build_env_dir=attestation.build_env_dir,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object, every key present, in a fixed order."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "unknown":
                continue
            value = getattr(self, f.name)
            if f.name in ("why", "build_env"):
                out[f.name] = [v.to_json() for v in value]
            else:
                out[f.name] = _thawed(value)
        for key, value in self.unknown.items():
            out.setdefault(key, _thawed(value))
        return out

    @classmethod
    def from_json(cls, data: object) -> BuildRecord:
        """The record in ``data`` (a parsed JSON object); raises ``RecordError`` if it is not one.

        Keys missing from an older record take their defaults, except the ones every version wrote
        (name, version, the sdist's, the wheel's); keys this version does not know are kept.
        """
        if not isinstance(data, Mapping):
            raise RecordError("a build record must be a JSON object")
        r = _Reader(data)
        record = cls(
            name=r.text("name"),
            version=r.text("version"),
            sdist_url=r.optional_text("sdist_url"),
            sdist_sha256=r.optional_text("sdist_sha256"),
            wheel=r.text("wheel"),
            wheel_sha256=r.text("wheel_sha256"),
            why=tuple(
                Why(
                    package=_optional(item, "package", str, "why"),
                    requirement=_required(item, "requirement", str, "why"),
                    kind=_required(item, "kind", str, "why"),
                )
                for item in r.objects("why")
            ),
            build_env=tuple(
                EnvEntry(
                    name=_required(item, "name", str, "build_env"),
                    version=_required(item, "version", str, "build_env"),
                    sha256=_required(item, "sha256", str, "build_env"),
                )
                for item in r.objects("build_env")
            ),
            build_system_requires=r.texts("build_system_requires"),
            backend_requires=r.texts("backend_requires"),
            cache_key=r.optional_text("cache_key"),
            seconds=r.number("seconds"),
            log=r.optional_text("log"),
            prebuilt=r.flag("prebuilt"),
            provenance=r.optional_text("provenance"),
            source_date_epoch=r.optional_int("source_date_epoch"),
            build_env_dir=r.optional_text("build_env_dir"),
            system_tools=tuple(r.objects("system_tools")),
            sandbox=r.optional_object("sandbox"),
            settings=r.optional_object("settings"),
            rust=r.optional_object("rust"),
            from_cache=r.optional_text("from_cache"),
            unknown={k: v for k, v in data.items() if k not in _KNOWN},
        )
        if not record.name or not record.version:
            raise RecordError("a build record needs a non-empty 'name' and 'version'")
        return record


_KNOWN = frozenset(f.name for f in dataclasses.fields(BuildRecord)) - {"unknown"}


def record_node(name: str, version: str) -> str:
    return f"{name}=={version}"


def _required(item: Mapping[str, Any], key: str, kind: type[_T], where: str) -> _T:
    value = item.get(key)
    if not isinstance(value, kind):
        raise RecordError(f"{where!r}: {key!r} must be a {kind.__name__}")
    return value


def _optional(item: Mapping[str, Any], key: str, kind: type[_T], where: str) -> _T | None:
    value = item.get(key)
    if value is not None and not isinstance(value, kind):
        raise RecordError(f"{where!r}: {key!r} must be a {kind.__name__} or null")
    return value


class _Reader:
    """Typed reads of one record's keys, each failure naming the key."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise RecordError(f"{key!r} must be a string")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise RecordError(f"{key!r} must be a string or null")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RecordError(f"{key!r} must be a list of strings")
        return tuple(value)

    def objects(self, key: str) -> list[Mapping[str, Any]]:
        value = self.data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise RecordError(f"{key!r} must be a list of objects")
        return value

    def optional_object(self, key: str) -> Mapping[str, Any] | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise RecordError(f"{key!r} must be an object or null")
        return value

    def number(self, key: str) -> float:
        value = self.data.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordError(f"{key!r} must be a number")
        return float(value)

    def optional_int(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise RecordError(f"{key!r} must be an integer or null")
        return value

    def flag(self, key: str) -> bool:
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            raise RecordError(f"{key!r} must be true or false")
        return value


@dataclass(frozen=True)
class BuildExtras:
    """What the settings and the machine contributed to a build, for its record."""

    system_tools: tuple[Mapping[str, Any], ...] = ()
    sandbox: Mapping[str, Any] | None = None
    settings: Mapping[str, Any] | None = None
    rust: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Attestation:
    """What writing a build's provenance adds to its record."""

    provenance: str
    source_date_epoch: int
    build_env_dir: str
