"""``rewheel lock --format pylock``: a PEP 751 lock file (``pylock.toml``) of the repository's
wheels.

What goes in is what ``rewheel lock`` pins once the chain of custody of every wheel holds
(``install.custody_check``): for each release its wheels and the sdist the repository keeps for
it (the very file the wheel was built from), each with its sha256 and size, located by a URL
under the address the repository is served at, or by a path (relative to the lock file when it
is written to a file). ``lock_packages`` gathers that from the repository; ``pylock_document``
and ``pylock_text`` are pure.

Markers: the resolution is for one interpreter, so every release of the lock is needed here; a
release that only a requirement with a marker brings in (``colorama; sys_platform ==
"win32"``) carries that marker, joined along each chain of requirements from the roots
(``propagate_markers``). A marker that tests ``extra`` is taken as holding: the extras were
chosen when the lock was made, and PEP 751 markers have no ``extra`` variable. Markers are only
ever made wider than the chains' (a chain too long or a value that cannot be written drops
terms). The file's ``environments`` names the interpreter it was resolved for (uv refuses
another), and ``requires-python`` its minor version; each package carries its own
``Requires-Python``.

The document is packaging's PEP 751 model (``packaging.pylock``), validated by it, and written
by tomli-w.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import tomli_w
from packaging.markers import Marker
from packaging.pylock import (
    Package,
    PackageSdist,
    PackageWheel,
    Pylock,
    PylockValidationError,
    is_valid_pylock_path,
)
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..core.errors import ConfigError, RewheelError, Step
from ..core.versions import normal_version
from ..repo.repository import Repository
from ..repo.wheelfile import parse_metadata, read_metadata_bytes
from ..ui.text import printable
from .install import PinnedRelease

LOCK_VERSION = "1.0"
CREATED_BY = "rewheel"
_F = TypeVar("_F", PackageWheel, PackageSdist)
# A package whose chains of requirements give more marker clauses than this is given none:
# it is needed here (the resolution chose it), and a marker that long helps nobody read it.
MAX_CLAUSES = 8
MAX_TERMS = 6


def check_pylock_name(path: Path) -> None:
    """Refuse a lock file name PEP 751 does not allow (``pylock.toml``, ``pylock.NAME.toml``)."""
    if not is_valid_pylock_path(path):
        raise ConfigError(
            f"{path.name!r} is not a PEP 751 lock file name",
            step=Step.LOCK_FILE,
            hint="name it pylock.toml, or pylock.NAME.toml (NAME without dots), as PEP 751"
            " requires; installers look for those names",
        )


@dataclass(frozen=True)
class Placement:
    """Where the lock file's readers find the repository's files: under ``base_url`` (where the
    repository is served), or by path, relative to ``lock_dir`` (None: absolute paths)."""

    base_url: str | None = None
    lock_dir: Path | None = None

    @staticmethod
    def served_at(url: str) -> Placement:
        """The repository served at ``url`` (its root, or its ``/simple/`` index)."""
        text = url.strip()
        if not re.match(r"^https?://[^/\s?#]+", text) or any(c in text for c in "?#\\ \t\n"):
            raise ConfigError(
                f"--base-url {url!r} is not an http(s) URL",
                step=Step.LOCK_FILE,
                hint="give where the repository is served, e.g. http://HOST:8080"
                " (`rewheel serve`) or the URL a web server serves the repository folder at",
            )
        text = text.rstrip("/")
        text = text.removesuffix("/simple").rstrip("/")
        return Placement(base_url=text)

    def locate(self, repo: Repository, path: Path) -> tuple[str, str]:
        """``("url", ...)`` or ``("path", ...)`` for ``path``, a file of ``repo``."""
        relative = path.relative_to(repo.root)
        if self.base_url is not None:
            return "url", self.base_url + "/" + "/".join(quote(p, safe="") for p in relative.parts)
        where = path.absolute()
        if self.lock_dir is None:
            return "path", where.as_posix()
        return "path", Path(os.path.relpath(where, self.lock_dir.absolute())).as_posix()

    def index_url(self) -> str | None:
        return None if self.base_url is None else self.base_url + "/simple/"


@dataclass(frozen=True)
class LockedFile:
    """A wheel or sdist of the lock: its file name, where it is (``kind``: url or path)."""

    filename: str
    kind: str
    location: str
    size: int
    sha256: str


@dataclass(frozen=True)
class LockedPackage:
    name: NormalizedName
    version: str
    wheels: tuple[LockedFile, ...]
    sdist: LockedFile | None
    requires_python: str | None
    dependencies: tuple[NormalizedName, ...]
    marker: str | None = None


# One requirement of a release (Requires-Dist), as read from its wheel.
Requirements = Mapping[NormalizedName, Sequence[Requirement]]


def _marker_text(marker: Marker | None) -> str | None:
    """The marker of an edge of the lock: None when it always holds here (none, or one testing
    ``extra``, decided when the lock was made) or cannot be written as it is."""
    if marker is None or "extra" in str(marker):
        return None
    text = str(marker)
    # A value with a line break or control character (a wheel's metadata may hold one) is left
    # out: the marker is only made wider, and the file stays one string per line.
    return text if text.isprintable() else None


def propagate_markers(
    roots: Sequence[Requirement],
    requires: Requirements,
    environment: Mapping[str, str],
) -> tuple[dict[NormalizedName, str | None], dict[NormalizedName, tuple[NormalizedName, ...]]]:
    """The marker of each release of the lock (None: always installed), from the chains of
    requirements that lead to it from ``roots``, and each release's dependencies in the lock.

    ``requires``: each locked release's requirements; an edge counts when its target is locked
    and its marker holds in ``environment`` with the extras asked of its release. A release no
    chain reaches (the resolution chose it all the same) gets no marker."""
    locked = set(requires)
    extras: dict[NormalizedName, set[str]] = {name: set() for name in locked}
    # Clauses: each a conjunction of marker texts (frozenset); the empty one always holds.
    clauses: dict[NormalizedName, set[frozenset[str]]] = {name: set() for name in locked}
    for root in roots:
        name = canonicalize_name(root.name)
        if name not in locked:
            continue
        extras[name] |= set(root.extras)
        text = _marker_text(root.marker)
        clauses[name].add(frozenset([text]) if text else frozenset())
    # Each edge's markers (None: it always holds), one per requirement naming that child.
    edges: dict[NormalizedName, dict[NormalizedName, set[str | None]]] = {}
    # Extras first: which edges exist depends on them, and they only grow.
    changed = True
    while changed:
        changed = False
        for parent in sorted(locked):
            out: dict[NormalizedName, set[str | None]] = {}
            for req in requires[parent]:
                child = canonicalize_name(req.name)
                if child not in locked or child == parent:
                    continue
                asked = sorted(extras[parent]) or [""]
                if req.marker is not None and not any(
                    req.marker.evaluate({**environment, "extra": e}) for e in asked
                ):
                    continue
                out.setdefault(child, set()).add(_marker_text(req.marker))
                if not set(req.extras) <= extras[child]:
                    extras[child] |= set(req.extras)
                    changed = True
            edges[parent] = out
    # Then the clauses, to a fixed point (they only grow; each is bounded).
    for _ in range(len(locked) + 1):
        changed = False
        for parent in sorted(locked):
            for child, texts in edges[parent].items():
                for clause in list(clauses[parent]):
                    for text in texts:
                        new = clause | {text} if text else clause
                        if len(new) > MAX_TERMS:
                            new = frozenset()
                        if not any(c <= new for c in clauses[child]):
                            clauses[child] = {c for c in clauses[child] if not new <= c} | {new}
                            if len(clauses[child]) > MAX_CLAUSES:
                                clauses[child] = {frozenset()}  # too many: no marker
                            changed = True
        if not changed:
            converged = True
            break
    else:
        converged = False
    markers: dict[NormalizedName, str | None] = {}
    for name in locked:
        found = clauses[name] if converged else set()
        if not found or frozenset() in found or len(found) > MAX_CLAUSES:
            markers[name] = None
            continue
        parts = [" and ".join(f"({t})" for t in sorted(c)) for c in sorted(found, key=sorted)]
        joined = " or ".join(f"({p})" if len(found) > 1 else p for p in parts)
        markers[name] = str(Marker(joined))
    dependencies = {name: tuple(sorted(edges[name])) for name in locked}
    return markers, dependencies


def lock_packages(
    repo: Repository,
    pins: Sequence[PinnedRelease],
    *,
    placement: Placement,
    roots: Sequence[str],
    environment: Mapping[str, str],
) -> list[LockedPackage]:
    """The lock's packages: for each pinned release (whose chain of custody was checked), its
    wheels among the pinned files and its kept sdist, located by ``placement``."""
    by_sha = {w.sha256: w for w in repo.wheels()}
    requires: dict[NormalizedName, list[Requirement]] = {}
    found: dict[NormalizedName, tuple[PinnedRelease, list[LockedFile], str | None]] = {}
    for pin in pins:
        name = canonicalize_name(pin.name)
        files = []
        requires_python: str | None = None
        requires[name] = []
        for sha256 in pin.sha256:
            ref = by_sha.get(sha256)
            if ref is None:  # the custody check allows no other file
                raise RewheelError(
                    f"{pin.name} {pin.version}: no wheel of the repository has sha256 {sha256}",
                    package=pin.name,
                    version=pin.version,
                    step=Step.LOCK_FILE,
                )
            path = repo.wheel_path(ref)
            kind, location = placement.locate(repo, path)
            files.append(LockedFile(ref.filename, kind, location, path.stat().st_size, sha256))
            metadata = parse_metadata(read_metadata_bytes(path))
            requires_python = (metadata.get("requires_python") or "").strip() or None
            for text in metadata.get("requires_dist") or []:
                try:
                    requires[name].append(Requirement(text))
                except InvalidRequirement:
                    continue  # as everywhere else: the wheel's metadata, not ours to refuse
        found[name] = (pin, files, requires_python)
    markers, dependencies = propagate_markers(
        [Requirement(r) for r in roots], requires, environment
    )
    out = []
    for name, (pin, files, requires_python) in sorted(found.items()):
        kept = repo.kept_sdist(name, normal_version(pin.version))
        sdist = None
        if kept is not None:
            kind, location = placement.locate(repo, kept.path)
            sdist = LockedFile(kept.filename, kind, location, kept.size, kept.sha256)
        out.append(
            LockedPackage(
                name=name,
                version=pin.version,
                wheels=tuple(sorted(files, key=lambda f: f.filename)),
                sdist=sdist,
                requires_python=requires_python,
                dependencies=dependencies[name],
                marker=markers[name],
            )
        )
    return out


def lock_requires_python(python_version: str) -> str:
    """The file's ``requires-python``: the minor version of the interpreter the lock was
    resolved for (``==3.11.*``); each package carries what it requires itself."""
    return f"=={python_version}.*"


def environment_marker(environment: Mapping[str, str]) -> str:
    """The environment the lock was resolved for, as a marker (the file's ``environments``)."""
    keys = ("implementation_name", "python_version", "sys_platform", "platform_machine")
    return " and ".join(f"{key} == {_quoted(environment[key])}" for key in keys)


def _quoted(value: str) -> str:
    return "'" + value + "'" if "'" not in value else '"' + value + '"'


def _specifier(text: str | None) -> SpecifierSet | None:
    """A release's ``Requires-Python`` as a specifier; None when absent or unparsable (it is
    the wheel's metadata: the resolution already applied what uv could read of it)."""
    if text is None:
        return None
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        return None


def _file(file: LockedFile, kind: type[_F]) -> _F:
    url = file.location if file.kind == "url" else None
    path = file.location if file.kind == "path" else None
    return kind(
        name=file.filename, url=url, path=path, size=file.size, hashes={"sha256": file.sha256}
    )


def pylock_document(
    packages: Sequence[LockedPackage],
    *,
    environment: Mapping[str, str],
    index_url: str | None,
) -> Pylock:
    """The PEP 751 document as packaging's model (``packaging.pylock``), validated by it:
    packages sorted by name."""
    entries = []
    for package in sorted(packages, key=lambda p: (p.name, normal_version(p.version))):
        entries.append(
            Package(
                name=package.name,
                version=Version(package.version),
                marker=Marker(package.marker) if package.marker is not None else None,
                requires_python=_specifier(package.requires_python),
                dependencies=[{"name": d} for d in package.dependencies] or None,
                index=index_url,
                sdist=_file(package.sdist, PackageSdist) if package.sdist is not None else None,
                wheels=[_file(w, PackageWheel) for w in package.wheels],
            )
        )
    document = Pylock(
        lock_version=Version(LOCK_VERSION),
        environments=[Marker(environment_marker(environment))],
        requires_python=SpecifierSet(lock_requires_python(environment["python_version"])),
        created_by=CREATED_BY,
        packages=entries,
    )
    try:
        document.validate()
    except PylockValidationError as exc:
        raise RewheelError(
            f"the lock file would not be a valid PEP 751 file: {exc}", step=Step.LOCK_FILE
        ) from exc
    return document


def pylock_text(document: Pylock, *, header: Sequence[str] = ()) -> str:
    """``document`` as TOML (packaging's ``to_dict``, written by tomli-w: keys in the
    specification's order), ``header`` lines first as comments."""
    comments = "".join(f"# {_one_line(line)}\n" for line in header)
    return comments + tomli_w.dumps(dict(document.to_dict()))


def _one_line(text: str) -> str:
    return printable(text).replace("\n", " ")
