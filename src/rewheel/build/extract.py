"""Safe extraction of sdist archives.

An sdist is untrusted input: it may try to write outside its directory (absolute names, ``..``,
links), create device files, or expand into far more data than it looks. Extraction does not rely
on tarfile's ``data`` filter, which some supported Pythons have with holes (CVE-2025-4517: a chain
of symlinks longer than PATH_MAX stops ``realpath`` from resolving, and the filter from seeing
where a link really goes). tarfile and zipfile only parse here; every member is checked and written
by ``_Tree``, which walks each path from a descriptor of the new directory with ``O_NOFOLLOW`` and
so never writes through a link, whatever is on disk.

Links (symbolic and hard) are never made unless the caller allows them (``[build] allow_links`` in a
package's settings); allowed ones must stay inside the tree by their text alone. By default a link
that stays inside the tree and names a regular file of the same archive is extracted as a copy of
that file, and a symbolic link that names a folder of the tree as a copy of that folder (the links
inside it copied the same way), made once every member is written (no link is ever created; the
copied files and folders count against the member and size limits); a link to a folder that holds
it, a loop, a chain longer than ``_MAX_LINK_HOPS`` and any other link are refused. Special files
are always refused. Modes are normalized (no setuid/setgid/sticky, no group/other write). Both
formats are bounded in member count, total size and compression ratio. On any refusal the
partial extraction directory is removed.
"""

from __future__ import annotations

import contextlib
import errno
import lzma
import os
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ..core.durations import SourceCensus
from ..core.errors import RewheelError, Step, UnsafeArchiveError
from ..core.fsutil import remove_tree
from ..core.paths import unsafe_member_name

_STEP = Step.EXTRACT
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
# methods and RuntimeError for encrypted members; ValueError covers UnicodeDecodeError.
ARCHIVE_FAULTS: tuple[type[Exception], ...] = (
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
    # Folders in one member's path: deep enough for any real tree, shallow enough that no tool
    # (Python's recursive rmtree, PATH_MAX-bound programs) chokes on what is extracted.
    max_depth: int = 64


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
        self.max_depth = limits.max_depth

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
    version: str | None = None,
    name: str | None = None,
    limits: ExtractLimits | None = None,
    allow_links: bool = False,
    census: SourceCensus | None = None,
) -> Path:
    """Extract ``archive`` into a new directory under ``dest_parent`` and return the source root.

    The new directory is ``dest_parent / name`` (which must not exist) or, without ``name``, a fresh
    temporary name. The source root is the archive's single top-level directory if it has exactly
    one, else the extraction directory itself.

    With ``allow_links``, only links whose target, read as text against the link's own directory,
    stays inside the new directory are made, and no member is ever written through a link.
    Without it, no link is made: a symbolic or hard link that stays inside and names a regular file
    of the archive (through at most ``_MAX_LINK_HOPS`` other links) becomes a copy of that file, a
    symbolic link that names a folder of the archive a copy of that folder, and any other link is
    refused. Refusals raise ``UnsafeArchiveError``.

    ``census``, if given, is told of each regular file written (its member path and the bytes
    really written), for the estimate of the build's duration: counted here, where every member
    passes anyway, rather than by a second walk of the tree.
    """
    limits = limits or ExtractLimits()
    opener = _archive_kind(archive, package)
    try:
        archive_size = archive.stat().st_size
    except OSError as exc:
        raise RewheelError(f"cannot read {archive}: {exc}", package=package, step=_STEP) from exc

    dest = _make_dest(dest_parent, name, package)
    budget = _Budget(limits, archive_size, archive, package)
    try:
        tree = _Tree(dest, budget, allow_links=allow_links, census=census)
        try:
            if opener == "zip":
                _extract_zip(archive, tree, budget)
            else:
                _extract_tar(archive, opener, tree, budget)
        finally:
            tree.close()
    except BaseException as exc:
        with contextlib.suppress(OSError):
            remove_tree(dest)
        if archive_fault(exc):
            assert isinstance(exc, Exception)
            raise not_an_sdist(archive, exc, package=package, version=version, step=_STEP) from exc
        if isinstance(exc, OSError):
            # A real I/O failure (disk full, permissions), not a fault of the archive.
            raise RewheelError(
                f"cannot extract {archive.name}: {exc}", package=package, step=_STEP
            ) from exc
        raise
    return _source_root(dest)


def read_root_file(
    archive: Path,
    name: str,
    *,
    package: str | None = None,
    max_bytes: int = 1 << 20,
    limits: ExtractLimits | None = None,
) -> bytes | None:
    """The file ``name`` at the root of the source tree ``extract_sdist`` would give (its
    single top-level folder, else the archive's root), read from the archive without writing
    anything; None when the tree has none. Member names and counts are held to what
    ``extract_sdist`` allows; the file must be a regular file (not a link) of at most
    ``max_bytes``. Refusals raise ``UnsafeArchiveError``, as ``extract_sdist``'s do."""
    limits = limits or ExtractLimits()
    opener = _archive_kind(archive, package)
    try:
        budget = _Budget(limits, archive.stat().st_size, archive, package)
        tops: set[str] = set()
        nested = False
        found: dict[tuple[str, ...], bytes] = {}
        if opener == "zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    parts = _checked_parts(info.filename, budget)
                    tops.update(parts[:1])
                    nested = nested or len(parts) > 1 or info.is_dir()
                    if parts[-1:] == (name,) and len(parts) <= 2:
                        kind = stat.S_IFMT(info.external_attr >> 16)
                        if info.is_dir() or kind not in (0, stat.S_IFREG):
                            raise budget.refuse(f"{info.filename!r} is not a regular file")
                        with zf.open(info) as src:
                            found[parts] = _bounded(src.read(max_bytes + 1), max_bytes, budget)
        else:
            with tarfile.open(archive, opener) as tf:  # type: ignore[call-overload]
                for member in tf:
                    parts = _checked_parts(member.name, budget)
                    tops.update(parts[:1])
                    nested = nested or len(parts) > 1 or member.isdir()
                    if parts[-1:] == (name,) and len(parts) <= 2:
                        stream = tf.extractfile(member) if member.isreg() else None
                        if stream is None:
                            raise budget.refuse(f"{member.name!r} is not a regular file")
                        with stream:
                            data = stream.read(max_bytes + 1)
                        found[parts] = _bounded(data, max_bytes, budget)
    except BaseException as exc:
        if archive_fault(exc):
            assert isinstance(exc, Exception)
            raise not_an_sdist(archive, exc, package=package, step=_STEP) from exc
        if isinstance(exc, OSError):
            raise RewheelError(
                f"cannot read {archive.name}: {exc}", package=package, step=_STEP
            ) from exc
        raise
    if len(tops) == 1 and nested:
        return found.get((*tops, name))
    return found.get((name,))


def _bounded(data: bytes, max_bytes: int, budget: _Budget) -> bytes:
    if len(data) > max_bytes:
        raise budget.refuse(f"a file of over {max_bytes} bytes where a small one is read")
    return data


def archive_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is what reading a broken or hostile archive raises: a fault of the file,
    not of the machine (an ``OSError`` with an errno: disk full, permissions) nor one of
    rewheel's own refusals. ``EINVAL`` is the file's: zipfile seeks wherever a member's header
    offset says, before the start of the file too."""
    if isinstance(exc, RewheelError) or not isinstance(exc, ARCHIVE_FAULTS):
        return False
    return not isinstance(exc, OSError) or exc.errno in (None, errno.EINVAL)


def not_an_sdist(
    archive: Path,
    exc: Exception,
    *,
    package: str | None,
    step: Step,
    version: str | None = None,
) -> UnsafeArchiveError:
    """The error for an sdist that is not a readable archive (truncated, damaged, or not an
    archive at all), raised by ``exc`` while reading it."""
    why = _shown(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return UnsafeArchiveError(
        f"{archive.name} is not a readable sdist archive ({type(exc).__name__}: {why})",
        package=package,
        version=version,
        step=step,
        hint=(
            f"{archive.name} was served as this version's sdist but is not one (truncated, "
            "damaged or another kind of file): the index it came from serves a broken or "
            "hostile file; report it to the index's maintainers, or pin another version"
        ),
    )


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


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_MODE = 0o755
_MAX_ZIP_LINK = 4096  # bytes of a zip symlink's target (its content)
_LINKS_FIX = (
    "set `[build] allow_links = true` in the package's settings if this sdist really needs links"
)
_HOSTILE = "this sdist is broken or hostile; nothing of it is used"
# Hops followed from a link to the link it names before the file is reached; a longer chain
# (or a loop) is refused.
_MAX_LINK_HOPS = 8
_NAME_MAX = 255


def _member_parts(name: str) -> tuple[str, ...]:
    """The path components of a member name already passed by ``unsafe_member_name``."""
    return tuple(p for p in name.split("/") if p not in ("", "."))


def _kind_name(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "special file"


def _shown(text: str, limit: int = 120) -> str:
    """``text`` quoted for a message, shortened in the middle if long (names can be 4 KiB)."""
    if len(text) > limit:
        text = f"{text[: limit // 2]}...{text[-limit // 2 :]}"
    return repr(text)


def link_target_problem(parts: tuple[str, ...], target: str) -> str | None:
    """Why a symlink at member path ``parts`` may not point to ``target``, or None.

    Decided from the strings alone, never by resolving anything on disk: the target must be
    relative, may climb with ``..`` only at its start (a ``..`` after a name could climb out of a
    directory that another link points into) and may not climb above the extraction directory.
    Together with never writing through a link, this keeps every link inside the tree whatever
    order the members come in and however long the resolved paths get.
    """
    if not target or "\x00" in target:
        return f"empty or NUL in link target {_shown(target)}"
    if "\\" in target:
        return f"backslash in link target {_shown(target)}"
    first = target.split("/")[0]
    if target.startswith("/") or (len(first) == 2 and first[1] == ":"):
        return f"absolute link target {_shown(target)}"
    steps = [p for p in target.split("/") if p not in ("", ".")]
    ups = 0
    while ups < len(steps) and steps[ups] == "..":
        ups += 1
    if ".." in steps[ups:]:
        return f"link target {_shown(target)} has '..' after a name"
    if ups > len(parts) - 1:
        return f"link target {_shown(target)} leaves the extraction directory"
    return None


class _Tree:
    """Writes members into a new directory without ever following a link on disk.

    Every path is walked from a descriptor of the extraction directory, one component at a time,
    with ``O_NOFOLLOW``: a member whose path runs through a symlink (or a file) is refused, not
    resolved, so nothing depends on ``realpath`` or on tarfile's filters. Files are created with
    ``O_EXCL | O_NOFOLLOW``; a member never replaces anything but an earlier regular file.
    """

    def __init__(
        self, dest: Path, budget: _Budget, *, allow_links: bool, census: SourceCensus | None
    ) -> None:
        self._budget = budget
        self._census = census
        self._allow_links = allow_links
        self._root = os.open(dest, _DIR_FLAGS)
        self._dir_times: dict[tuple[str, ...], float] = {}
        # Links not allowed as links, copied in ``finish``: the link's path -> (its member name,
        # what it is, the path of the member it names). Later entries of one name replace earlier.
        self._copies: dict[tuple[str, ...], tuple[str, str, tuple[str, ...]]] = {}
        self._hard: set[tuple[str, ...]] = set()  # those of ``_copies`` that are hard links
        self._noted_in: dict[tuple[str, ...], list[str]] = {}  # ``_copies`` by folder, in finish

    def close(self) -> None:
        os.close(self._root)

    def _refuse(self, name: str, why: str) -> UnsafeArchiveError:
        return self._budget.refuse(f"member {_shown(name)}: {why}")

    def _open_dir(self, parts: tuple[str, ...], name: str, *, create: bool) -> int:
        """A descriptor of the directory ``parts`` (made if missing and ``create``)."""
        fd = os.dup(self._root)
        try:
            for i, part in enumerate(parts):
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        missing = "/".join(parts[: i + 1])
                        raise self._refuse(name, f"{_shown(missing)} is not extracted") from None
                    os.mkdir(part, _DIR_MODE, dir_fd=fd)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    os.fchmod(child, _DIR_MODE)
                except NotADirectoryError:
                    # O_NOFOLLOW | O_DIRECTORY: a symlink or a file is in the way.
                    found = _kind_name(os.stat(part, dir_fd=fd, follow_symlinks=False))
                    raise self._refuse(
                        name,
                        f"its path runs through the {found} {_shown('/'.join(parts[: i + 1]))}; "
                        + _HOSTILE,
                    ) from None
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _clear(self, parent: int, leaf: str, name: str, *, replace_file: bool) -> None:
        """Make room for ``leaf``: only an earlier regular file may be replaced (a tar may
        hold one name twice; the last one wins, as with tar itself)."""
        try:
            st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if replace_file and stat.S_ISREG(st.st_mode):
            os.unlink(leaf, dir_fd=parent)
            return
        raise self._refuse(name, f"would replace the {_kind_name(st)} of the same name")

    def directory(self, name: str, parts: tuple[str, ...], mtime: float | None) -> None:
        if not parts:
            return  # "./": the extraction directory itself
        os.close(self._open_dir(parts, name, create=True))
        if mtime is not None:
            self._dir_times[parts] = mtime

    def file(
        self,
        name: str,
        parts: tuple[str, ...],
        chunks: Iterator[bytes],
        mode: int,
        mtime: float | None,
    ) -> None:
        if not parts:
            raise self._refuse(name, "a file named like the extraction directory")
        parent = self._open_dir(parts[:-1], name, create=True)
        try:
            self._clear(parent, parts[-1], name, replace_file=True)
            fd = os.open(parts[-1], _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
            written = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    # Count what is actually decompressed; declared sizes are not trusted.
                    self._budget.add_bytes(len(chunk))
                    written += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fchmod(fd, mode)
                if mtime is not None:
                    _set_mtime(fd, mtime)
            if self._census is not None:
                self._census.file(parts, written)
        finally:
            os.close(parent)

    def symlink(self, name: str, parts: tuple[str, ...], target: str) -> None:
        what = f"a symbolic link to {_shown(target)}"
        if not parts:
            raise self._refuse(name, "a link named like the extraction directory")
        why = link_target_problem(parts, target)
        if why:  # whether links are allowed or not: no setting makes this one right
            raise self._refuse(name, f"{why}; {_HOSTILE}")
        if not self._allow_links:
            self._copy_later(name, parts, what, _link_target_parts(parts, target), replace=False)
            return
        parent = self._open_dir(parts[:-1], name, create=True)
        try:
            self._clear(parent, parts[-1], name, replace_file=False)
            os.symlink(target, parts[-1], dir_fd=parent)
        finally:
            os.close(parent)

    def hardlink(self, name: str, parts: tuple[str, ...], target: str) -> None:
        """A tar hard link: ``target`` names an earlier member, from the archive's root."""
        what = f"a hard link to {_shown(target)}"
        why = unsafe_member_name(target)
        target_parts = _member_parts(target)
        if why or not target_parts or not parts:
            raise self._refuse(name, f"hard link target {_shown(target)} is not a member path")
        if target_parts == parts:
            raise self._refuse(name, "a hard link to itself")
        if not self._allow_links:
            self._copy_later(name, parts, what, target_parts, replace=True)
            return
        source = self._open_dir(target_parts[:-1], name, create=False)
        try:
            try:
                st = os.stat(target_parts[-1], dir_fd=source, follow_symlinks=False)
            except FileNotFoundError:
                raise self._refuse(
                    name, f"hard link to {_shown(target)}, which is not extracted"
                ) from None
            if not stat.S_ISREG(st.st_mode):
                raise self._refuse(name, f"hard link to the {_kind_name(st)} {_shown(target)}")
            parent = self._open_dir(parts[:-1], name, create=True)
            try:
                self._clear(parent, parts[-1], name, replace_file=True)
                os.link(
                    target_parts[-1],
                    parts[-1],
                    src_dir_fd=source,
                    dst_dir_fd=parent,
                    follow_symlinks=False,
                )
            finally:
                os.close(parent)
        finally:
            os.close(source)

    def _links_refused(self, name: str, what: str, why: str = "") -> NoReturn:
        raise self._refuse(
            name,
            f"is {what}{why}, and links in sdists are refused by default (a link to a file of "
            f"the sdist is extracted as a copy of it); {_LINKS_FIX}",
        )

    def _copy_later(
        self,
        name: str,
        parts: tuple[str, ...],
        what: str,
        target: tuple[str, ...],
        *,
        replace: bool,
    ) -> None:
        """Note a link to be extracted as a copy of the file it names, once all members are
        written (its target may come later in the archive). Its folder is made now, and what is
        already at its place is cleared as a real link would (a hard link may replace an earlier
        file of the same name, as with tar itself)."""
        parent = self._open_dir(parts[:-1], name, create=True)
        try:
            self._clear(parent, parts[-1], name, replace_file=replace)
        finally:
            os.close(parent)
        if parts in self._copies and not replace:
            raise self._refuse(name, "would replace the link of the same name")
        self._copies[parts] = (name, what, target)
        if replace:
            self._hard.add(parts)
        else:
            self._hard.discard(parts)

    def _copy_links(self) -> None:
        """Write each noted link as a copy of what it names: a regular file, or (a symbolic
        link) a folder of the tree, copied whole with the links inside it copied the same way.
        Links are resolved by name in the archive's own terms (``_resolve``), and every file and
        folder is reached from the extraction directory one folder at a time without following
        anything on disk (there is no link on disk anyway)."""
        # The links noted in each folder, found at once however many folders are copied.
        self._noted_in = {}
        for parts in self._copies:
            self._noted_in.setdefault(parts[:-1], []).append(parts[-1])
        for parts, (name, what, target) in self._copies.items():
            source = self._resolve(name, what, target)
            if self._is_folder(name, what, source):
                if parts in self._hard:
                    shown = _shown("/".join(source))
                    self._links_refused(name, what, f", the directory {shown}")
                self._copy_tree(name, what, parts, source, top=parts, stack=())
            else:
                self._copy_one(name, parts, what, source)

    def _resolve(self, name: str, what: str, target: tuple[str, ...]) -> tuple[str, ...]:
        """The member path ``target`` names once every link on its way is replaced by what it
        names (a link to a link, or a path through a link to a folder), by the links' text alone.
        More than ``_MAX_LINK_HOPS`` replacements (a long chain, or a loop) are refused."""
        hops = 0
        while True:
            through = next(
                (i for i in range(1, len(target) + 1) if target[:i] in self._copies), None
            )
            if through is None:
                return target
            hops += 1
            if hops > _MAX_LINK_HOPS:
                self._links_refused(
                    name,
                    what,
                    f", a chain of more than {_MAX_LINK_HOPS} links to links (or a loop)",
                )
            target = self._copies[target[:through]][2] + target[through:]
            if len(target) > self._budget.max_depth:
                shown = _shown("/".join(target[: self._budget.max_depth]) + "/...")
                self._links_refused(name, what, f", {shown}, which is not extracted")

    def _is_folder(self, name: str, what: str, source: tuple[str, ...]) -> bool:
        """Whether the resolved ``source`` is a folder of the tree (the extraction directory
        itself is refused: a link to it holds itself)."""
        if not source:
            self._links_refused(name, what, ", the extraction directory")
        if any(len(p.encode()) > _NAME_MAX for p in source):
            self._links_refused(name, what, f", {_shown('/'.join(source))}, which is not extracted")
        try:
            folder = self._open_dir(source[:-1], name, create=False)
        except UnsafeArchiveError:  # missing, or a file in the way
            self._links_refused(
                name, what, f", {_shown('/'.join(source))}, whose folder is not extracted"
            )
        try:
            st = os.stat(source[-1], dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return False  # _copy_one says it is missing
        finally:
            os.close(folder)
        return stat.S_ISDIR(st.st_mode)

    def _copy_tree(
        self,
        name: str,
        what: str,
        dest: tuple[str, ...],
        source: tuple[str, ...],
        *,
        top: tuple[str, ...],
        stack: tuple[tuple[str, ...], ...],
    ) -> None:
        """Copy the folder ``source`` (a resolved member path) to the new folder ``dest``, for
        the link at ``top``: its files and folders as on disk, the links noted inside it as what
        they name. ``stack`` holds the folders being copied around this one. Refused: a folder
        that holds the link being copied (its copy would never end), one already being copied
        further up (a loop through links), a copy deeper than the depth limit; every folder and
        file made counts as a member, and every byte against the size limit, so links that fan
        out over one another cannot make a bomb."""
        self._check_tree(name, what, dest, source, top=top, stack=stack)
        parent = self._open_dir(dest[:-1], name, create=True)
        try:
            into = self._new_dir(name, parent, dest[-1])
        finally:
            os.close(parent)
        try:
            source_fd = self._open_dir(source, name, create=False)
            try:
                self._fill_tree(name, what, into, dest, source_fd, source, top=top, stack=stack)
            finally:
                os.close(source_fd)
        finally:
            os.close(into)

    def _check_tree(
        self,
        name: str,
        what: str,
        dest: tuple[str, ...],
        source: tuple[str, ...],
        *,
        top: tuple[str, ...],
        stack: tuple[tuple[str, ...], ...],
    ) -> None:
        shown = _shown("/".join(source))
        if top[: len(source)] == source:
            self._links_refused(
                name, what, f", the directory {shown}, which holds it (its copy would never end)"
            )
        if any(outer[: len(source)] == source for outer in stack):
            self._links_refused(
                name, what, f", the directory {shown}, a loop of links to folders that hold them"
            )
        if len(dest) > self._budget.max_depth:
            self._links_refused(
                name, what, f", whose copy would be deeper than {self._budget.max_depth} folders"
            )
        self._budget.add_member()

    def _new_dir(self, name: str, parent: int, leaf: str) -> int:
        """A descriptor of the new folder ``leaf`` made in ``parent`` (refused if it exists)."""
        try:
            os.mkdir(leaf, _DIR_MODE, dir_fd=parent)
        except FileExistsError:
            found = _kind_name(os.stat(leaf, dir_fd=parent, follow_symlinks=False))
            raise self._refuse(name, f"would replace the {found} of the same name") from None
        return os.open(leaf, _DIR_FLAGS, dir_fd=parent)

    def _fill_tree(
        self,
        name: str,
        what: str,
        into: int,
        dest: tuple[str, ...],
        source_fd: int,
        source: tuple[str, ...],
        *,
        top: tuple[str, ...],
        stack: tuple[tuple[str, ...], ...],
    ) -> None:
        """Copy what the folder ``source`` (open as ``source_fd``) holds into the new folder
        ``dest`` (open as ``into``): each folder and file opened relative to its parent's
        descriptor with ``O_NOFOLLOW``, each link noted inside resolved by name."""
        inner_stack = (*stack, source)
        for child in sorted({*os.listdir(source_fd), *self._noted_in.get(source, ())}):
            inner, target = (*source, child), (*dest, child)
            if inner in self._copies:  # a link inside: what it names (a copy of it may be on disk)
                inner = self._resolve(name, what, inner)
                if self._is_folder(name, what, inner):
                    self._copy_tree(name, what, target, inner, top=top, stack=inner_stack)
                else:
                    self._budget.add_member()
                    self._copy_one(name, target, what, inner)
                continue
            st = os.stat(child, dir_fd=source_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                self._check_tree(name, what, target, inner, top=top, stack=inner_stack)
                sub_into = self._new_dir(name, into, child)
                try:
                    sub_fd = os.open(child, _DIR_FLAGS, dir_fd=source_fd)
                    try:
                        self._fill_tree(
                            name, what, sub_into, target, sub_fd, inner, top=top, stack=inner_stack
                        )
                    finally:
                        os.close(sub_fd)
                finally:
                    os.close(sub_into)
            elif stat.S_ISREG(st.st_mode):
                self._budget.add_member()
                self._copy_file(name, what, source_fd, child, into, child, _shown("/".join(inner)))
            else:  # nothing else is ever written here; checked all the same
                self._links_refused(name, what, f", the {_kind_name(st)} {_shown('/'.join(inner))}")
        mtime = self._dir_times.get(source)
        if mtime is not None:
            self._dir_times[dest] = mtime

    def _copy_one(
        self, name: str, parts: tuple[str, ...], what: str, target: tuple[str, ...]
    ) -> None:
        shown = _shown("/".join(target))
        if not target:
            self._links_refused(name, what, ", the extraction directory")
        if len(target) > self._budget.max_depth or any(len(p.encode()) > _NAME_MAX for p in target):
            self._links_refused(name, what, f", {shown}, which is not extracted")
        try:
            source = self._open_dir(target[:-1], name, create=False)
        except UnsafeArchiveError:  # missing, or a file in the way (there is no link on disk)
            self._links_refused(name, what, f", {shown}, whose folder is not extracted")
        try:
            parent = self._open_dir(parts[:-1], name, create=True)
            try:
                self._copy_file(name, what, source, target[-1], parent, parts[-1], shown)
            finally:
                os.close(parent)
        finally:
            os.close(source)

    def _copy_file(
        self, name: str, what: str, source: int, leaf: str, parent: int, new: str, shown: str
    ) -> None:
        """Copy the regular file ``leaf`` of the folder ``source`` into the new file ``new`` of
        the folder ``parent``, with its mode and time, counting its bytes."""
        try:
            st = os.stat(leaf, dir_fd=source, follow_symlinks=False)
        except FileNotFoundError:
            self._links_refused(name, what, f", {shown}, which is not extracted")
        if not stat.S_ISREG(st.st_mode):
            self._links_refused(name, what, f", the {_kind_name(st)} {shown}")
        src = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source)
        with os.fdopen(src, "rb") as data:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode):  # nothing else writes here; checked all the same
                self._links_refused(name, what, f", the {_kind_name(st)} {shown}")
            try:
                fd = os.open(new, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
            except FileExistsError:
                found = _kind_name(os.stat(new, dir_fd=parent, follow_symlinks=False))
                raise self._refuse(name, f"would replace the {found} of the same name") from None
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: data.read(_COPY_CHUNK), b""):
                    self._budget.add_bytes(len(chunk))
                    out.write(chunk)
                out.flush()
                # The file's mode was normalized when it was written.
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                _set_mtime(fd, st.st_mtime)

    def finish(self) -> None:
        """Links copied, then directory times (writing into a directory changes its time),
        deepest first."""
        self._copy_links()
        for parts in sorted(self._dir_times, reverse=True):
            fd = self._open_dir(parts, "/".join(parts), create=False)
            try:
                _set_mtime(fd, self._dir_times[parts])
            finally:
                os.close(fd)


def _link_target_parts(parts: tuple[str, ...], target: str) -> tuple[str, ...]:
    """The member path a symlink at ``parts`` names, for a target that ``link_target_problem``
    passed (its ``..`` come first and do not climb above the extraction directory)."""
    base = list(parts[:-1])
    for step in (p for p in target.split("/") if p not in ("", ".")):
        if step == "..":
            base.pop()
        else:
            base.append(step)
    return tuple(base)


def _set_mtime(fd: int, mtime: float) -> None:
    with contextlib.suppress(OverflowError, ValueError):
        os.utime(fd, (mtime, mtime))


def _checked_parts(name: str, budget: _Budget) -> tuple[str, ...]:
    budget.add_member()
    why = unsafe_member_name(name)
    if why:
        raise budget.refuse(why)
    parts = _member_parts(name)
    if len(parts) > budget.max_depth:
        raise budget.refuse(f"member path deeper than {budget.max_depth} folders: {name[:200]!r}")
    return parts


def _tar_file_mode(mode: int) -> int:
    """As tarfile's ``data`` filter: no setuid/setgid/sticky, no group/other write, the
    executable bits only if the owner's is set, and always readable and writable by the owner."""
    mode &= 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


def _tar_chunks(tf: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    src = tf.extractfile(member)
    if src is None:
        raise tarfile.ReadError(f"cannot read member {member.name!r}")
    with src:
        while chunk := src.read(_COPY_CHUNK):
            yield chunk


def _extract_tar(archive: Path, mode: str, tree: _Tree, budget: _Budget) -> None:
    with tarfile.open(archive, mode) as tf:  # type: ignore[call-overload]
        # Streams members so that limits are enforced before each one is written, without
        # decompressing the whole archive first. tarfile only parses; every write is ours.
        for member in tf:
            parts = _checked_parts(member.name, budget)
            if member.isdir():
                tree.directory(member.name, parts, member.mtime)
            elif member.isreg():
                chunks = _tar_chunks(tf, member)
                tree.file(member.name, parts, chunks, _tar_file_mode(member.mode), member.mtime)
            elif member.issym():
                tree.symlink(member.name, parts, member.linkname)
            elif member.islnk():
                tree.hardlink(member.name, parts, member.linkname)
            else:
                # Devices, fifos, unknown types: an sdist has no use for them.
                raise budget.refuse(f"special file {member.name!r} (tar type {member.type!r})")
        tree.finish()


def _extract_zip(archive: Path, tree: _Tree, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = _checked_parts(info.filename, budget)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if info.is_dir():
                if kind not in (0, stat.S_IFDIR):
                    raise budget.refuse(f"directory {info.filename!r} with file type {kind:o}")
                tree.directory(info.filename, parts, None)
            elif kind == stat.S_IFLNK:
                with zf.open(info) as src:
                    raw = src.read(_MAX_ZIP_LINK + 1)
                budget.add_bytes(len(raw))
                try:
                    target = raw.decode() if len(raw) <= _MAX_ZIP_LINK else ""
                except UnicodeDecodeError:
                    target = ""
                if not target:
                    raise budget.refuse(f"symlink {info.filename!r} with an unreadable target")
                tree.symlink(info.filename, parts, target)
            elif kind in (0, stat.S_IFREG):
                with zf.open(info) as src:
                    chunks = iter(lambda: src.read(_COPY_CHUNK), b"")
                    tree.file(info.filename, parts, chunks, 0o755 if mode & 0o111 else 0o644, None)
            else:
                # Devices, fifos, sockets: an sdist has no use for them.
                raise budget.refuse(f"special file {info.filename!r} (type {kind:o})")
        tree.finish()


def _source_root(dest: Path) -> Path:
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest
