"""Safe extraction of sdist archives.

An sdist is untrusted input: it may try to write outside its directory (absolute names, ``..``,
links), create device files, or expand into far more data than it looks. Tar members go through
tarfile's ``data`` filter (never unfiltered); zip members get the equivalent checks here. Both are
bounded in member count, total size and compression ratio. On any refusal the partial extraction
directory is removed.
"""

from __future__ import annotations

import lzma
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import RewheelError, UnsafeArchiveError

_STEP = "extract"
_TAR_SUFFIXES = {
    ".tar.gz": "r:gz",
    ".tgz": "r:gz",
    ".tar.bz2": "r:bz2",
    ".tbz2": "r:bz2",
    ".tar.xz": "r:xz",
    ".txz": "r:xz",
    ".tar": "r:",
}
_COPY_CHUNK = 1 << 20
# What reading a broken or hostile archive raises, besides our own refusals. OSError here is
# gzip's/bz2's "bad data" kind (no errno); zip raises NotImplementedError for unknown compression
# methods and RuntimeError for encrypted members.
_ARCHIVE_FAULTS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    ValueError,
    OSError,
    NotImplementedError,
    RuntimeError,
)


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds against decompression bombs. The defaults fit every real sdist by a wide margin."""

    max_total_size: int = 4 << 30  # sum of the members' uncompressed sizes
    max_members: int = 200_000
    # Uncompressed total / archive size. Only enforced once the total passes ``ratio_floor``, since
    # small sdists of text compress well and are harmless anyway.
    max_ratio: float = 200.0
    ratio_floor: int = 32 << 20


class _Budget:
    """Counts members and bytes as they are extracted, refusing before a limit is crossed."""

    def __init__(
        self, limits: ExtractLimits, archive_size: int, archive: Path, package: str | None
    ):
        self._limits = limits
        self._archive_size = max(archive_size, 1)
        self._archive = archive
        self._package = package
        self.members = 0
        self.total = 0

    def refuse(self, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self._archive.name}: {why}", package=self._package, step=_STEP)

    def add_member(self) -> None:
        self.members += 1
        if self.members > self._limits.max_members:
            raise self.refuse(f"more than {self._limits.max_members} members")

    def add_bytes(self, size: int) -> None:
        self.total += size
        limits = self._limits
        if self.total > limits.max_total_size:
            raise self.refuse(f"uncompressed size exceeds {limits.max_total_size} bytes")
        ratio = self.total / self._archive_size
        if self.total > limits.ratio_floor and ratio > limits.max_ratio:
            raise self.refuse(f"compression ratio exceeds {limits.max_ratio:g}")


def extract_sdist(
    archive: Path,
    dest_parent: Path,
    *,
    package: str | None = None,
    name: str | None = None,
    limits: ExtractLimits | None = None,
) -> Path:
    """Extract ``archive`` into a new directory under ``dest_parent`` and return the source root.

    The new directory is ``dest_parent / name`` (which must not exist) or, without ``name``, a fresh
    temporary name. The source root is the archive's single top-level directory if it has exactly
    one, else the extraction directory itself.
    """
    limits = limits or ExtractLimits()
    opener = _archive_kind(archive, package)
    if opener != "zip" and not hasattr(tarfile, "data_filter"):
        # Without the data filter tarfile would follow any path or link it is given.
        raise UnsafeArchiveError(
            "this Python's tarfile has no data filter; refusing to extract tar archives",
            package=package,
            step=_STEP,
        )
    try:
        archive_size = archive.stat().st_size
    except OSError as exc:
        raise RewheelError(f"cannot read {archive}: {exc}", package=package, step=_STEP) from exc

    dest = _make_dest(dest_parent, name, package)
    budget = _Budget(limits, archive_size, archive, package)
    try:
        if opener == "zip":
            _extract_zip(archive, dest, budget)
        else:
            _extract_tar(archive, opener, dest, budget)
    except BaseException as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            # A real I/O failure (disk full, permissions), not a fault of the archive.
            raise RewheelError(
                f"cannot extract {archive.name}: {exc}", package=package, step=_STEP
            ) from exc
        if isinstance(exc, _ARCHIVE_FAULTS) and not isinstance(exc, RewheelError):
            # Filter refusals (tarfile.FilterError) and corrupt or unsupported archives alike.
            raise budget.refuse(str(exc) or type(exc).__name__) from exc
        raise
    return _source_root(dest)


def _archive_kind(archive: Path, package: str | None) -> str:
    lower = archive.name.lower()
    if lower.endswith(".zip"):
        return "zip"
    for suffix, mode in _TAR_SUFFIXES.items():
        if lower.endswith(suffix):
            return mode
    raise UnsafeArchiveError(
        f"{archive.name}: not a supported sdist archive type", package=package, step=_STEP
    )


def _make_dest(dest_parent: Path, name: str | None, package: str | None) -> Path:
    try:
        dest_parent.mkdir(parents=True, exist_ok=True)
        if name is None:
            return Path(tempfile.mkdtemp(prefix="src-", dir=dest_parent))
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise RewheelError(
                f"invalid extraction directory name {name!r}", package=package, step=_STEP
            )
        dest = dest_parent / name
        dest.mkdir()  # must be new: an old tree would mix with this one
        return dest
    except FileExistsError as exc:
        raise RewheelError(
            f"extraction directory {dest_parent / str(name)} already exists",
            package=package,
            step=_STEP,
        ) from exc
    except OSError as exc:
        raise RewheelError(
            f"cannot create extraction directory under {dest_parent}: {exc}",
            package=package,
            step=_STEP,
        ) from exc


def unsafe_member_name(name: str) -> str | None:
    """Why an archive member name is refused, or None: empty, NUL, absolute (also as a Windows
    drive or with backslashes) or with a ``..`` part. Stricter than tarfile's filter, which
    rewrites absolute names instead of refusing them. Wheels are checked with it too."""
    if not name:
        return "empty member name"
    if "\x00" in name:
        return f"NUL in member name {name!r}"
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(parts[0]) == 2 and parts[0][1] == ":"):
        return f"absolute member path {name!r}"
    if ".." in parts:
        return f"member path with '..': {name!r}"
    return None


def _extract_tar(archive: Path, mode: str, dest: Path, budget: _Budget) -> None:
    with tarfile.open(archive, mode) as tf:  # type: ignore[call-overload]
        # errorlevel 2: every extraction error is raised, none silently skipped.
        tf.errorlevel = 2

        def checked() -> Iterator[tarfile.TarInfo]:
            # Streams members so that limits are enforced before each one is written, without
            # decompressing the whole archive first.
            for member in tf:
                budget.add_member()
                why = unsafe_member_name(member.name)
                if why:
                    raise budget.refuse(why)
                if member.isfile():
                    budget.add_bytes(member.size)
                yield member

        tf.extractall(dest, members=checked(), filter="data")


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    root = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            budget.add_member()
            why = unsafe_member_name(info.filename)
            if why:
                raise budget.refuse(why)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if info.is_dir():
                if kind not in (0, stat.S_IFDIR):
                    raise budget.refuse(f"directory {info.filename!r} with file type {kind:o}")
            elif kind not in (0, stat.S_IFREG):
                # Symlinks, devices, fifos, sockets: an sdist has no use for them.
                raise budget.refuse(f"special file {info.filename!r} (type {kind:o})")
            target = dest.joinpath(*PurePosixPath(info.filename).parts)
            if not target.resolve().is_relative_to(root):
                raise budget.refuse(f"member {info.filename!r} escapes the extraction directory")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # Count what is actually decompressed; the declared size is not trusted.
            with zf.open(info) as src, target.open("wb") as out:
                while chunk := src.read(_COPY_CHUNK):
                    budget.add_bytes(len(chunk))
                    out.write(chunk)
            target.chmod(0o755 if mode & 0o111 else 0o644)


def _source_root(dest: Path) -> Path:
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest
