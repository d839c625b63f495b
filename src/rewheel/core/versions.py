"""Versions as rewheel compares and sorts them: PEP 440 where the text is a valid version, the
text itself where it is not (a record or a file name can hold anything)."""

from __future__ import annotations

from collections.abc import Iterable

from packaging.version import InvalidVersion, Version


def version_key(version: str) -> tuple[int, Version | None, str]:
    """A sort key: valid versions first, in PEP 440 order, then anything else as text."""
    try:
        return (0, Version(version), version)
    except InvalidVersion:
        return (1, None, version)


def newest_first(versions: Iterable[str]) -> list[str]:
    """Valid versions newest first, then anything else as text."""
    items = list(versions)
    valid = sorted((v for v in items if version_key(v)[0] == 0), key=version_key, reverse=True)
    return valid + sorted(v for v in items if version_key(v)[0] == 1)


def normal_version(version: str) -> str:
    """The normalized spelling (``1.0rc1`` for ``1.0-rc1``), or the text itself if it is not a
    valid version: a key that finds one release under all its spellings."""
    try:
        return str(Version(version))
    except InvalidVersion:
        return version


def same_version(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are the same version (PEP 440 equality, else equal text)."""
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b
