"""Recognising a re-run that has nothing to do, without resolving or building anything.

A run's outcome depends on its inputs (requirements, constraints, settings, upstream, interpreter,
rewheel itself) and on the index pages it read. ``last-run.json`` keeps a fingerprint of the
inputs and the sha256 of every page. When a new run has the same fingerprint, every one of those
pages is unchanged upstream (revalidated, so usually a 304 each) and every wheel of the last
build order is still in the repository with its sha256, the result would be the same: the run
stops there.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import NormalizedName, canonicalize_name

from .. import __version__
from .errors import UpstreamError
from .records import BuildRecord
from .types import WheelRef

# Bumped when the meaning of a cache key changes, so old records stop matching.
CACHE_FORMAT = 2


def interpreter_tag() -> str:
    """The interpreter and platform a wheel is built for: part of every cache key."""
    impl = sys.implementation
    best = next(iter(sys_tags()))
    return f"{impl.name}-{impl.version.major}.{impl.version.minor}-{best}"


LAST_RUN = "last-run.json"
FORMAT = 1


def folder_digest(folder: Path | None) -> str | None:
    """sha256 over every file below ``folder`` (names and contents)."""
    if folder is None:
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def fingerprint(
    *,
    requirements: Sequence[Requirement],
    constraints: Sequence[Requirement],
    settings_dir: Path | None,
    variant: str | None,
    index_url: str,
    allow_prereleases: bool,
    interpreter: str,
    cache_format: int,
    sdist_hashes: Mapping[str, Collection[str]] | None = None,
) -> str:
    data = {
        "format": FORMAT,
        "rewheel": __version__,
        "requirements": sorted(str(r) for r in requirements),
        "constraints": sorted(str(c) for c in constraints),
        "settings": folder_digest(settings_dir),
        "variant": variant,
        "index_url": index_url.rstrip("/"),
        "pre": allow_prereleases,
        "interpreter": interpreter,
        "cache_format": cache_format,
    }
    if sdist_hashes:  # only when given: the fingerprints of runs without hashes stay as they were
        data["sdist_hashes"] = {name: sorted(d) for name, d in sorted(sdist_hashes.items())}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def load(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / LAST_RUN).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def state(
    fp: str, pages: Mapping[str, str], sizes: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """What ``last-run.json`` keeps: the fingerprint, each page's sha256 and, for the order in
    which a no-op check asks for them, each page's size in bytes."""
    data: dict[str, Any] = {
        "format": FORMAT,
        "fingerprint": fp,
        "pages": dict(sorted(pages.items())),
    }
    if sizes:
        data["page_bytes"] = {name: sizes[name] for name in sorted(sizes) if name in pages}
    return data


def largest_first(last: Mapping[str, Any]) -> list[str]:
    """The last run's pages, the largest first (as ``page_bytes`` kept them; those without a size
    last): asked for a few at a time, a big page asked for last would leave the others waiting."""
    pages = last.get("pages")
    if not isinstance(pages, dict):
        return []
    sizes = last.get("page_bytes")
    sizes = sizes if isinstance(sizes, dict) else {}
    return sorted(pages, key=lambda name: -s if type(s := sizes.get(name)) is int else 0)


def unchanged(
    last: Mapping[str, Any],
    fp: str,
    *,
    page_digest: Callable[[NormalizedName], str],
    order: Iterable[BuildRecord],
    wheels: Iterable[WheelRef],
) -> bool:
    """True when a run with fingerprint ``fp`` would reproduce the last one exactly."""
    if last.get("fingerprint") != fp:
        return False
    pages = last.get("pages")
    if not isinstance(pages, dict) or not pages:
        return False
    present = {(w.filename, w.sha256) for w in wheels}
    for entry in order:
        if entry.wheel_ref not in present:
            return False
    try:
        return all(page_digest(canonicalize_name(n)) == d for n, d in pages.items())
    except UpstreamError:
        return False  # cannot tell: do the whole run, which reports the error properly
