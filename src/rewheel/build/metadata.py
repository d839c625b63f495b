"""Where the resolver learns a candidate's ``Requires-Dist``.

In order of trust: the wheel rewheel built from that very sdist; the PEP 658 metadata of the
upstream's own wheel of that version; the sdist's PKG-INFO when it declares ``Requires-Dist`` static
(metadata 2.2+, PEP 643); else whatever the sdist's PKG-INFO says, or nothing. Everything but the
first is a prediction: after a build, ``drift()`` says where the built wheel disagreed, and the
bootstrap resolves again with the truth, so a wrong guess costs a second pass, never a wrong tree.
"""

from __future__ import annotations

import tarfile
import threading
import zipfile
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import IO

from packaging.requirements import Requirement
from packaging.tags import Tag, sys_tags
from packaging.utils import InvalidWheelFilename, NormalizedName, parse_wheel_filename
from packaging.version import Version

from ..core.errors import Step, UnsafeArchiveError
from ..core.fsutil import sha256_file
from ..core.types import IndexFile, Upstream
from ..repo.wheelfile import parse_metadata, requires_dist
from .extract import archive_fault, not_an_sdist

BuiltMetadata = Callable[[NormalizedName, Version], bytes | None]

# The most core metadata (an sdist's PKG-INFO, a PEP 658 file) read from upstream. Real ones are a
# few KiB, long descriptions included; a compressed PKG-INFO of gigabytes is an attack.
MAX_METADATA_BYTES = 1 << 20


def static_sdist_metadata(pkg_info: bytes) -> bytes | None:
    """``pkg_info`` if it can be trusted for Requires-Dist (PEP 643), else None."""
    raw = parse_metadata(pkg_info)
    try:
        version = Version(raw.get("metadata_version", "1.0"))
    except ValueError:
        return None
    if version < Version("2.2"):
        return None
    dynamic = {d.strip().lower() for d in raw.get("dynamic") or []}
    if "requires-dist" in dynamic:
        return None
    return pkg_info


def read_pkg_info(sdist: Path, limit: int = MAX_METADATA_BYTES) -> bytes | None:
    """The top-level PKG-INFO of an sdist, read without extracting anything.

    Read in bounded chunks, whatever size the archive claims: a PKG-INFO longer than ``limit``
    bytes once decompressed raises ``UnsafeArchiveError``, and so does a file that is not a
    readable archive (truncated, damaged, or not an archive at all).
    """
    try:
        return _read_pkg_info(sdist, limit)
    except Exception as exc:
        if archive_fault(exc):
            raise not_an_sdist(sdist, exc, package=None, step=Step.METADATA) from exc
        raise


def _read_pkg_info(sdist: Path, limit: int) -> bytes | None:
    name = sdist.name
    if name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as zf:
            members = [m for m in zf.namelist() if m.count("/") == 1 and m.endswith("/PKG-INFO")]
            if not members:
                return None
            with zf.open(members[0]) as content_zip:
                return _read_at_most(content_zip, limit, sdist, members[0])
    with tarfile.open(sdist) as tf:
        for member in tf:
            if (
                member.isfile()
                and member.name.count("/") == 1
                and member.name.endswith("/PKG-INFO")
            ):
                content = tf.extractfile(member)
                if content is None:
                    return None
                with content:
                    return _read_at_most(content, limit, sdist, member.name)
    return None


def _read_at_most(f: IO[bytes], limit: int, sdist: Path, member: str) -> bytes:
    data = f.read(limit + 1)  # both readers decompress only as much as is asked for
    if len(data) > limit:
        raise UnsafeArchiveError(
            f"{sdist.name}: {member} is larger than the limit of {limit} bytes for core "
            "metadata; refused (a real PKG-INFO is a few KiB: this sdist is broken or hostile)",
            step=Step.METADATA,
        )
    return data


class MetadataSource:
    """Implements ``resolver.MetadataSource`` over the upstream index and the repository."""

    def __init__(
        self,
        upstream: Upstream,
        sdist_dir: Path,
        *,
        built: BuiltMetadata,
        tags: list[Tag] | None = None,
        sdist_hashes: Mapping[NormalizedName, AbstractSet[str]] | None = None,
    ) -> None:
        self.upstream = upstream
        # The sha256 digests a requirement file or lock allows for a project's sdist: a
        # downloaded sdist they refuse is not read (the bootstrap refuses it before any build).
        self.sdist_hashes = sdist_hashes or {}
        self.sdist_dir = sdist_dir
        self.built = built
        self.tags = tags if tags is not None else list(sys_tags())
        self._rank = {t: i for i, t in enumerate(self.tags)}
        self._lock = threading.Lock()
        self._cache: dict[tuple[NormalizedName, Version], tuple[str, bytes]] = {}
        # The prediction a resolution used, kept apart from ``_cache``: another resolution may
        # read the freshly built wheel (replacing the cache entry) before ``drift()`` is asked.
        self._predicted: dict[tuple[NormalizedName, Version], bytes] = {}

    def requires_dist(
        self, name: NormalizedName, version: Version, sdist: IndexFile
    ) -> list[Requirement]:
        return requires_dist(self.metadata(name, version, sdist)[1])

    def source(self, name: NormalizedName, version: Version) -> str | None:
        """Where the metadata used for (name, version) came from, if it was asked for."""
        with self._lock:
            hit = self._cache.get((name, version))
        return hit[0] if hit else None

    def metadata(
        self, name: NormalizedName, version: Version, sdist: IndexFile
    ) -> tuple[str, bytes]:
        key = (name, version)
        data = self.built(name, version)
        if data is not None:
            with self._lock:
                self._cache[key] = ("built", data)
            return "built", data
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = self._predict(name, version, sdist)
        with self._lock:
            self._cache[key] = found
            self._predicted[key] = found[1]
        return found

    def drift(self, name: NormalizedName, version: Version, built: bytes) -> bool:
        """True when a prediction was used for (name, version) and the built wheel disagrees.

        Answers once per prediction: later resolutions read the built wheel itself.
        """
        with self._lock:
            predicted = self._predicted.pop((name, version), None)
        if predicted is None:
            return False
        return _requirement_set(predicted) != _requirement_set(built)

    def _predict(
        self, name: NormalizedName, version: Version, sdist: IndexFile
    ) -> tuple[str, bytes]:
        wheel = self._upstream_wheel(name, version)
        if wheel is not None:
            data = self.upstream.get_metadata(wheel)
            if data is not None:
                return "upstream-wheel-metadata", data
        local = self.upstream.download(sdist, self.sdist_dir)
        allowed = self.sdist_hashes.get(name)
        if allowed is not None and sha256_file(local) not in allowed:
            return "guess", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        try:
            pkg_info = read_pkg_info(local)
        except UnsafeArchiveError as exc:
            exc.package, exc.version = name, str(version)
            raise
        if pkg_info is not None and static_sdist_metadata(pkg_info) is not None:
            return "sdist-pkg-info", pkg_info
        if pkg_info is not None:
            return "sdist-pkg-info-guess", pkg_info
        return "guess", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()

    def _upstream_wheel(self, name: NormalizedName, version: Version) -> IndexFile | None:
        best: tuple[int, IndexFile] | None = None
        for f in self.upstream.get_project(name).files:
            if not f.filename.endswith(".whl") or not f.has_metadata or f.yanked:
                continue
            try:
                _n, v, _b, tags = parse_wheel_filename(f.filename)
            except (InvalidWheelFilename, ValueError):
                continue
            if v != version:
                continue
            # A wheel for this interpreter is the best prediction; any other one still says much.
            rank = min((self._rank.get(t, len(self._rank)) for t in tags), default=len(self._rank))
            if best is None or rank < best[0]:
                best = (rank, f)
        return best[1] if best else None


def _requirement_set(metadata: bytes) -> set[str]:
    return {str(r) for r in requires_dist(metadata)}
