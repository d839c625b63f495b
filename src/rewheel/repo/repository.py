"""The local repository that rewheel publishes wheels into and serves as a simple index.

Layout under ``root``::

    wheels/<wheel>             published wheels
    wheels/<wheel>.metadata    their PEP 658 core metadata (the wheel's METADATA, byte for byte)
    simple/                    PEP 503 / PEP 691 pages made from wheels/ (and the sdists in
                               sdists/ that the wheels' records say they were built from): all
                               of them by regenerate_index (when a run starts), one project's
                               (and the root's, if it is new) by regenerate_project after a
                               publication
    sdists/ logs/ records/     the sdists built, build logs, build records
    work/ cache/               private (0700): build folders and uploads, HTTP and uv caches
    runs/<id>.json             what each of the last runs did (``core.history``)
    .lock                      held by the run that writes the repository

Every file is written atomically (temporary file in the same directory, fsync, rename; the pages of
simple/ without the fsync, as a run makes them again when it starts), so a reader such as the
index server or an installer never sees half a file, and a killed run leaves at most stale
``.*.tmp`` files, which are ignored and later removed. Published files are readable as the
umask allows (``fsutil.public_file_mode``), so any static web server can serve the folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion

from ..core.durations import PastBuild
from ..core.errors import IntegrityError, RepositoryError, RewheelError, Step, UnsafeArchiveError
from ..core.fsutil import (
    PRIVATE_DIR_MODE,
    atomic_write_bytes,
    atomic_write_json,
    is_plain_file,
    public_file_mode,
    sha256_file,
)
from ..core.history import KEEP_RUNS, RUN_FILE, History, RunFileError, RunRecord, legacy_run
from ..core.paths import sdist_filename
from ..core.records import BuildRecord, RecordError
from ..core.types import WheelRef
from ..core.versions import normal_version, same_version, version_key
from ..index import index_pages
from ..index.index_pages import (
    PROVENANCE_OBJECT_SUFFIX,
    PageFile,
    RootIndex,
    provenance_url,
    render_project_html,
    render_project_json,
    sdist_url,
    wheel_url,
)
from . import build_cache
from .hashcache import FileStat, HashCache
from .wheelfile import (
    READ_ERRORS,
    check_wheel,
    parse_metadata,
    read_metadata_bytes,
    wheel_name_version,
)

_CHUNK = 1 << 20
# A version as it may appear in a record's file name (PEP 440 text, possibly not normalized).
_SAFE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
# A run file larger than this is not read (one for a tree of 10,000 packages is some 10 MB).
MAX_RUN_FILE = 64 << 20


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _fsync_dir(path: Path) -> None:
    # Makes a rename durable; not possible on every filesystem, which is fine.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _os_error_text(exc: OSError, where: Path) -> str:
    """An OSError as a sentence; a full disk is said so plainly, with the place that is full."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"No space left on the file system of {where} (disk or quota full)"
    return str(exc)


@dataclass(frozen=True)
class KeptSdist:
    """An sdist the repository keeps: the very file a wheel of it was built from."""

    filename: str
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class _FileKey:
    """Identifies one version of a file on disk, to reuse what was computed from it."""

    filename: str
    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> _FileKey:
        st = path.stat()
        return cls(path.name, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


class Repository:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.wheels_dir = self.root / "wheels"
        self.sdists_dir = self.root / "sdists"
        self.logs_dir = self.root / "logs"
        self.work_dir = self.root / "work"
        self.records_dir = self.root / "records"
        self.simple_dir = self.root / "simple"
        self.runs_dir = self.root / "runs"
        self.cache_dir = self.root / "cache"
        self._lock_path = self.root / ".lock"
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._acquire_lock = threading.Lock()  # one thread at a time takes the file lock
        self._state_lock = threading.Lock()  # guards the lock fd and the caches
        self._record_files: dict[str, list[str]] | None = None  # project -> its record files
        self._publish_lock = threading.Lock()  # orders the metadata and wheel renames
        self._index_lock = threading.Lock()  # one regeneration at a time
        self._sha_cache: dict[_FileKey, str] = {}
        self._requires_python_cache: dict[_FileKey, str | None] = {}
        self._record_cache: dict[_FileKey, BuildRecord | None] = {}
        # The wheel files of each project (file name -> version), so that one project's wheels
        # are found without listing wheels/: filled by a listing of wheels/ the first time it is
        # needed (and again by each regenerate_index) and by every publish_wheel since. Names
        # only: each file is looked at when used, so one removed meanwhile is left out.
        self._catalog: dict[NormalizedName, dict[str, str]] | None = None
        self._listed = False  # whether the catalog holds a listing of wheels/ yet
        # The projects the root pages list, as this object last wrote them (None before its
        # first regenerate_index): guarded by _index_lock.
        self._root: RootIndex | None = None
        # Hashes remembered between runs (``remember_hashes``): for a run's own decisions only.
        self._hashes: HashCache | None = None
        self._names: dict[str, tuple[NormalizedName, str]] = {}  # wheel file -> name, version

    def remember_hashes(
        self,
        *,
        hasher: Callable[[Path], str] = sha256_file,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Take the hashes of files from ``cache/hashes.json`` while their stat is unchanged,
        and keep new ones there (``save_hashes``). For a run's own decisions (the no-op check,
        the index pages) only: never on an object that ``verify`` or another proof reads
        (see ``repo.hashcache``). Call it after ``ensure_layout``."""
        self._hashes = HashCache(self.root, self.cache_dir, hasher=hasher, clock=clock)

    def save_hashes(self) -> None:
        """Write down the hashes learnt since ``remember_hashes`` (nothing without it)."""
        if self._hashes is not None:
            self._hashes.save()

    # -- layout and lock ------------------------------------------------------------------------

    def require_existing(self, *, step: str) -> None:
        """Fail unless ``root`` is a repository a run has made (it has ``wheels/``): for the
        commands that read one, where a mistyped ``--repo`` must not become an empty one."""
        if self.wheels_dir.is_dir():
            return
        hint = f"build one with `rewheel bootstrap PKG --repo {self.root}`, or give --repo"
        if not self.root.exists():
            raise RepositoryError(f"there is no repository at {self.root}", step=step, hint=hint)
        raise RepositoryError(
            f"{self.root} is not a rewheel repository (it has no wheels/ folder)",
            step=step,
            hint=hint,
        )

    def ensure_layout(self) -> None:
        """Create the directories; remove temporary files left by a killed run.

        Temporary files are removed only when no other run holds the lock: a live run's
        temporary files are not stale.
        """
        for d in (
            self.root,
            self.wheels_dir,
            self.sdists_dir,
            self.logs_dir,
            self.records_dir,
            self.simple_dir,
        ):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RepositoryError(f"cannot create {d}: {exc}", step=Step.REPOSITORY) from exc
        for d in (self.work_dir, self.cache_dir):
            # Build folders, uploads and caches are nobody else's business, whatever serves
            # the repository folder.
            try:
                d.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            except OSError as exc:
                raise RepositoryError(f"cannot create {d}: {exc}", step=Step.REPOSITORY) from exc
        with self._state_lock:
            held = self._lock_fd is not None
        if held:
            self._remove_stale_temp_files()
            return
        with contextlib.suppress(RepositoryError), self.locked():
            self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        candidates = list(self.root.glob(".*.tmp"))
        for d in (self.wheels_dir, self.records_dir, self.runs_dir):
            candidates.extend(d.glob(".*.tmp"))
        candidates.extend(self.simple_dir.rglob(".*.tmp"))
        for path in candidates:
            with contextlib.suppress(FileNotFoundError):
                if path.is_file():
                    path.unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the repository's lock; fail at once if another run holds it.

        Re-entrant for this object: code that already holds the lock may take it again.
        """
        with self._acquire_lock:
            with self._state_lock:
                reentered = self._lock_fd is not None
                if reentered:
                    self._lock_depth += 1
            if not reentered:
                fd = self._acquire_flock()
                with self._state_lock:
                    self._lock_fd, self._lock_depth = fd, 1
        try:
            yield
        finally:
            with self._state_lock:
                self._lock_depth -= 1
                fd_to_close = self._lock_fd if self._lock_depth == 0 else None
                if fd_to_close is not None:
                    self._lock_fd = None
            if fd_to_close is not None:
                os.close(fd_to_close)  # closing the descriptor releases the flock

    def _acquire_flock(self) -> int:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RepositoryError(
                f"cannot open the lock file {self._lock_path}: {exc}", step=Step.LOCK
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RepositoryError(
                    f"another rewheel run uses this repository ({self.root}); "
                    "wait for it to finish",
                    step=Step.LOCK,
                ) from exc
            raise RepositoryError(f"cannot lock {self._lock_path}: {exc}", step=Step.LOCK) from exc
        # For a person looking at a stuck lock: which process holds it.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    # -- wheels ---------------------------------------------------------------------------------

    def publish_wheel(self, built: Path) -> WheelRef:
        """Validate ``built`` and copy it into wheels/ with its core metadata next to it."""
        filename = built.name
        try:
            name, version = wheel_name_version(filename)
        except RewheelError as exc:
            raise RepositoryError(exc.message, step=Step.PUBLISH) from exc
        if filename.startswith("."):
            raise RepositoryError(f"refusing a hidden wheel file {filename!r}", step=Step.PUBLISH)
        metadata = self._validated_metadata(built, name, version)

        self.wheels_dir.mkdir(parents=True, exist_ok=True)
        dest = self.wheels_dir / filename
        fd, tmp_name = tempfile.mkstemp(dir=self.wheels_dir, prefix=f".{filename}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, built.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            # mkstemp creates 0600; the wheel is for everyone who may read the repository.
            os.chmod(tmp, public_file_mode())
            sha256 = digest.hexdigest()
            # Serialized so that the metadata and the wheel of one file name come from the
            # same publish. Metadata first: a .metadata without its wheel is never listed.
            with self._publish_lock:
                atomic_write_bytes(self.wheels_dir / f"{filename}.metadata", metadata)
                inode = tmp.stat().st_ino
                os.replace(tmp, dest)
                # The key of the file as it will be listed (a rename changes its ctime); none
                # when another file took its place meanwhile.
                st = dest.stat()
                key = (
                    _FileKey(filename, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
                    if st.st_ino == inode
                    else None
                )
            _fsync_dir(self.wheels_dir)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RepositoryError(
                f"cannot publish {filename}: {_os_error_text(exc, self.wheels_dir)}",
                package=name,
                version=version,
                step=Step.PUBLISH,
            ) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if key is not None and self._hashes is not None:
            self._hashes.remember(dest, FileStat.of(st), sha256)
        with self._state_lock:
            if key is not None:
                self._sha_cache[key] = sha256
            if self._catalog is not None:
                self._catalog.setdefault(name, {})[filename] = version
        return WheelRef(name=name, version=version, filename=filename, sha256=sha256)

    def _validated_metadata(self, wheel: Path, name: NormalizedName, version: str) -> bytes:
        """The wheel's METADATA, after checking it describes the file name's project/version."""
        try:
            check_wheel(wheel)
            data = read_metadata_bytes(wheel)
        except (IntegrityError, UnsafeArchiveError) as exc:
            exc.package, exc.version, exc.step = name, version, "publish"
            raise
        except READ_ERRORS as exc:
            raise RepositoryError(
                f"cannot read the metadata of {wheel.name}: {exc}",
                package=name,
                version=version,
                step=Step.PUBLISH,
            ) from exc
        raw = parse_metadata(data)
        meta_name, meta_version = raw.get("name"), raw.get("version")
        if meta_name is None or canonicalize_name(meta_name) != name:
            raise IntegrityError(
                f"wheel {wheel.name} has METADATA Name {meta_name!r}",
                package=name,
                version=version,
                step=Step.PUBLISH,
            )
        if meta_version is None or not same_version(meta_version, version):
            raise IntegrityError(
                f"wheel {wheel.name} has METADATA Version {meta_version!r}",
                package=name,
                version=version,
                step=Step.PUBLISH,
            )
        return data

    def _wheel_files(self) -> list[Path]:
        try:
            entries = list(os.scandir(self.wheels_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = sorted(
            e.name
            for e in entries
            # A link is no wheel of ours (a build or a local user may have planted it to list
            # another file's hash): only plain files count (the entry's own type, not followed).
            if e.name.endswith(".whl") and not e.name.startswith(".") and _plain_entry(e)
        )
        return [self.wheels_dir / name for name in names]

    def _name_version(self, filename: str) -> tuple[NormalizedName, str]:
        """``wheel_name_version`` of a file name, parsed once per object (tags are slow to
        parse, and a repository of 10,000 wheels lists every name several times a run)."""
        with self._state_lock:
            known = self._names.get(filename)
        if known is None:
            known = wheel_name_version(filename)  # raises RewheelError: not remembered
            with self._state_lock:
                self._names[filename] = known
        return known

    def wheel_sha256(self, filename: str) -> str | None:
        """The sha256 of ``wheels/filename``, or None when that is no plain file: what the no-op
        check asks of each wheel the last run listed, without listing the others."""
        try:
            path = self._wheel_file(filename)
        except RepositoryError:
            return None
        if not is_plain_file(path):
            return None
        try:
            return self._sha256(path)
        except FileNotFoundError:
            return None

    def wheels(self) -> list[WheelRef]:
        """The wheels in wheels/, sorted by name, version, file name."""
        refs = []
        for path in self._wheel_files():
            try:
                name, version = self._name_version(path.name)
            except RewheelError:
                continue  # not ours to list: a wheel file name is how a wheel is known
            try:
                sha256 = self._sha256(path)
            except FileNotFoundError:
                continue  # replaced or removed meanwhile
            refs.append(WheelRef(name=name, version=version, filename=path.name, sha256=sha256))
        return sorted(refs, key=_listing_order)

    def _sha256(self, path: Path, key: _FileKey | None = None) -> str:
        if self._hashes is not None:
            return self._hashes.sha256(path)
        key = key or _FileKey.of(path)
        with self._state_lock:
            cached = self._sha_cache.get(key)
        if cached is not None:
            return cached
        sha256 = sha256_file(path)
        with self._state_lock:
            self._sha_cache[key] = sha256
        return sha256

    def find_wheels(self, name: str, version: str) -> list[WheelRef]:
        """The wheels of one version of a project, in the order of ``wheels()``.

        Found without listing wheels/ (but the first time this object needs it): what this
        object published is found, a wheel put there by hand meanwhile by the next object.
        """
        wanted = canonicalize_name(name)
        return sorted(self._project_wheels(wanted, version), key=_listing_order)

    def wheel_path(self, ref: WheelRef) -> Path:
        return self._wheel_file(ref.filename)

    def _wheel_file(self, filename: str) -> Path:
        if PurePosixPath(filename).name != filename or "\\" in filename:
            raise RepositoryError(f"not a plain file name: {filename!r}", step=Step.REPOSITORY)
        return self.wheels_dir / filename

    def provenance_path(self, ref: WheelRef) -> Path:
        """``wheels/<wheel>.provenance.json``: the wheel's in-toto/SLSA provenance statement."""
        return self.wheel_path(ref).with_name(f"{ref.filename}.provenance.json")

    # -- index ----------------------------------------------------------------------------------

    def _list_wheels(self) -> None:
        """Put every wheel file of wheels/ into the catalog (by name: nothing is read)."""
        with self._state_lock:
            if self._catalog is None:
                # From here on every publish_wheel records its file: none is missed by both.
                self._catalog = {}
        found: dict[NormalizedName, dict[str, str]] = {}
        for path in self._wheel_files():
            try:
                name, version = self._name_version(path.name)
            except RewheelError:
                continue  # not ours to list: a wheel file name is how a wheel is known
            found.setdefault(name, {})[path.name] = version
        with self._state_lock:
            assert self._catalog is not None
            for name, files in found.items():
                self._catalog.setdefault(name, {}).update(files)
            self._listed = True

    def _project_wheels(self, name: NormalizedName, version: str | None = None) -> list[WheelRef]:
        """The wheels of one project (of one version, if given), found without listing wheels/
        (but the first time)."""
        with self._state_lock:
            listed = self._listed
        if not listed:
            self._list_wheels()
        with self._state_lock:
            assert self._catalog is not None
            candidates = sorted(self._catalog.get(name, {}).items())
        refs = []
        for filename, found in candidates:
            if version is not None and not same_version(found, version):
                continue
            path = self.wheels_dir / filename
            if not is_plain_file(path):  # removed meanwhile, or a link put in its place
                continue
            try:
                sha256 = self._sha256(path)
            except FileNotFoundError:
                continue  # replaced or removed meanwhile
            refs.append(WheelRef(name=name, version=found, filename=filename, sha256=sha256))
        return refs

    def regenerate_index(self) -> None:
        """Rewrite simple/ from a listing of wheels/: every page, and every project's.

        What a run does when it starts, and ``serve``: it repairs the pages of a repository
        changed by hand or by a run killed between a publication and its pages. Project pages
        are written before the root pages, so the root never links to a page that does not
        exist yet; pages of projects that are gone are removed after the root stops listing
        them.
        """
        with self._index_lock:
            self._root = None  # until the root pages below are written
            self.simple_dir.mkdir(parents=True, exist_ok=True)
            self._list_wheels()
            with self._state_lock:
                assert self._catalog is not None
                projects = sorted(self._catalog)
            listed = []
            sdists = self._sdists_by_project() if self._hashes is not None else {}
            for name in projects:
                inputs = self._page_inputs(name, sdists)
                if inputs is not None and self._page_unchanged(name, inputs):
                    listed.append(name)
                    continue
                files = self._page_files(name)
                if files:
                    self._write_project_pages(name, files)
                    listed.append(name)
                self._remember_page(name, inputs, sdists, written=bool(files))
            root = RootIndex(listed)
            self._write_root_pages(root)
            for entry in self.simple_dir.iterdir():
                if entry.is_dir() and entry.name not in root:
                    shutil.rmtree(entry, ignore_errors=True)
            self._root = root

    # Pages skipped at a run's start: a project's pages are written again only when one of the
    # files they are made from (its wheels, their .metadata and provenance objects, its records,
    # its sdists), or the pages themselves, changed since they were last written, by the stat of
    # each (as the hash cache tells a changed file), or when rewheel's page code changed.

    def _sdists_by_project(self) -> dict[NormalizedName, list[str]]:
        out: dict[NormalizedName, list[str]] = {}
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.sdists_dir):
                try:
                    project, _ = parse_sdist_filename(entry.name)
                except (InvalidSdistFilename, InvalidVersion):
                    continue
                out.setdefault(project, []).append(entry.name)
        return out

    def _page_inputs(
        self, name: NormalizedName, sdists: dict[NormalizedName, list[str]]
    ) -> str | None:
        """A digest of the stat of every file the project's pages are made from (None without
        the hash cache: then every page is made again)."""
        if self._hashes is None:
            return None
        with self._state_lock:
            assert self._catalog is not None
            wheels = sorted(self._catalog.get(name, {}).items())
        # Plain strings: pathlib is most of the time of a start at 10,000 wheels.
        folder, records, sdist_folder = (
            os.fspath(d) for d in (self.wheels_dir, self.records_dir, self.sdists_dir)
        )
        paths = []
        for filename, _version in wheels:
            path = f"{folder}/{filename}"
            paths += [path, f"{path}.metadata", f"{path}{PROVENANCE_OBJECT_SUFFIX}"]
        for version in sorted({normal_version(v) for _, v in wheels}):
            paths.append(f"{records}/{name}-{version}.json")  # as record_path names it
        paths += [f"{sdist_folder}/{f}" for f in sorted(sdists.get(name, []))]
        return _stat_digest(paths, _page_code_digest())

    def _page_outputs(self, name: NormalizedName) -> str:
        page_dir = f"{os.fspath(self.simple_dir)}/{name}"
        return _stat_digest([f"{page_dir}/index.html", f"{page_dir}/index.json"], "")

    def _page_unchanged(self, name: NormalizedName, inputs: str) -> bool:
        assert self._hashes is not None
        recorded = self._hashes.page(name)
        return recorded is not None and recorded == f"{inputs}:{self._page_outputs(name)}"

    def _remember_page(
        self,
        name: NormalizedName,
        inputs: str | None,
        sdists: dict[NormalizedName, list[str]],
        *,
        written: bool,
    ) -> None:
        """Record the pages just written, if nothing they are made from changed meanwhile."""
        if self._hashes is None:
            return
        if not written or inputs is None or self._page_inputs(name, sdists) != inputs:
            self._hashes.set_page(name, None)
            return
        self._hashes.set_page(name, f"{inputs}:{self._page_outputs(name)}")

    def regenerate_project(self, name: str) -> None:
        """Rewrite the pages of the project ``name`` after a publication: its two pages, and the
        root pages only if the project is new (or gone); no other wheel is read or listed.

        The pages are what ``regenerate_index`` would write for the same wheels. The first
        call on this object, or one after pages could not be written, is a ``regenerate_index``.
        """
        project = canonicalize_name(name)
        if not _is_folder_name(project):  # its pages' folder is removed when it has no wheel
            raise RepositoryError(f"not a project name: {name!r}", step=Step.INDEX)
        with self._index_lock:
            root, self._root = self._root, None  # None until the pages below are written
            if root is not None:
                files = self._page_files(project)
                if files:
                    self._write_project_pages(project, files)
                    if root.add(project):
                        self._write_root_pages(root)
                else:
                    if root.discard(project):
                        self._write_root_pages(root)
                    shutil.rmtree(self.simple_dir / project, ignore_errors=True)
                self._root = root
                return
        self.regenerate_index()

    def _page_files(self, name: NormalizedName) -> list[PageFile]:
        files = []
        for ref in self._project_wheels(name):
            try:
                files.append(self._page_file(ref))
            except FileNotFoundError:
                continue  # removed meanwhile
            except (OSError, KeyError, zipfile.BadZipFile, IntegrityError) as exc:
                raise RepositoryError(
                    f"cannot index {ref.filename}: {exc}",
                    package=ref.name,
                    version=ref.version,
                    step=Step.INDEX,
                    hint=f"remove {self.wheel_path(ref)} (the next run builds it again if it "
                    "is needed) or put the whole wheel back",
                ) from exc
        return files + self._sdists_of(name, files)

    def _write_project_pages(self, name: NormalizedName, files: list[PageFile]) -> None:
        page_dir = self.simple_dir / name
        self._write_if_changed(page_dir / "index.html", render_project_html(name, files))
        self._write_if_changed(page_dir / "index.json", render_project_json(name, files))

    def _write_root_pages(self, root: RootIndex) -> None:
        self._write_if_changed(self.simple_dir / "index.html", root.html())
        self._write_if_changed(self.simple_dir / "index.json", root.json())

    def _page_file(self, ref: WheelRef) -> PageFile:
        path = self.wheel_path(ref)
        key = _FileKey.of(path)
        metadata_path = self.wheels_dir / f"{ref.filename}.metadata"
        try:
            metadata = metadata_path.read_bytes()
        except FileNotFoundError:
            # A wheel put here by hand, or a run killed between the two renames.
            metadata = read_metadata_bytes(path)
            atomic_write_bytes(metadata_path, metadata)
        with self._state_lock:
            cached = key in self._requires_python_cache
            requires_python = self._requires_python_cache.get(key)
        if not cached:
            value = parse_metadata(metadata).get("requires_python")
            requires_python = value.strip() if value is not None else None
            with self._state_lock:
                self._requires_python_cache[key] = requires_python
        return PageFile(
            filename=ref.filename,
            url=wheel_url(ref.filename),
            sha256=ref.sha256,
            size=key.size,
            requires_python=requires_python,
            metadata_sha256=hashlib.sha256(metadata).hexdigest(),
            version=ref.version,
            # PEP 740: the provenance object written beside a signed wheel, when it is there.
            provenance=(
                provenance_url(ref.filename)
                if is_plain_file(path.with_name(ref.filename + PROVENANCE_OBJECT_SUFFIX))
                else None
            ),
        )

    def _sdists_of(self, name: NormalizedName, files: list[PageFile]) -> list[PageFile]:
        """The sdists the listed wheels of project ``name`` were built from, as page files.

        An sdist is listed when the build record of a listed wheel names that very wheel and the
        sdist's sha256, and the plain file in sdists/ that the record's URL names, of that
        project and version, has that sha256: sdists downloaded only to read their metadata,
        changed or planted ones are not listed. Only the files the records name are looked at,
        so a publication reads no other project's.
        """
        listed = {f.filename for f in files}
        out = []
        for version in sorted({f.version for f in files if f.version is not None}):
            record = self._record_of(name, version)
            if record is None or record.wheel not in listed:
                continue
            kept = self._kept_sdist_of(name, version, record)
            if kept is None:
                continue
            wheel = next(f for f in files if f.filename == record.wheel)
            out.append(
                PageFile(
                    filename=kept.filename,
                    url=sdist_url(kept.filename),
                    sha256=kept.sha256,
                    size=kept.size,
                    requires_python=wheel.requires_python,
                    version=version,
                )
            )
        return out

    def kept_sdist(self, name: str, version: str) -> KeptSdist | None:
        """The sdist in sdists/ that ``name`` ``version`` was built from, as its build record
        names it (file name from its URL, sha256): a plain file of that project and version with
        that sha256; None when there is none (pre-built, no record, changed or missing)."""
        record = self._record_of(canonicalize_name(name), version)
        if record is None:
            return None
        return self._kept_sdist_of(canonicalize_name(name), version, record)

    def _kept_sdist_of(
        self, name: NormalizedName, version: str, record: BuildRecord
    ) -> KeptSdist | None:
        if record.prebuilt or not record.sdist_sha256 or not record.sdist_url:
            return None
        filename = sdist_filename(record.sdist_url)
        try:
            project, sdist_version = parse_sdist_filename(filename)
        except (InvalidSdistFilename, InvalidVersion):
            return None
        if project != name or normal_version(str(sdist_version)) != normal_version(version):
            return None
        path = self.sdists_dir / filename
        if not _is_folder_name(filename) or not is_plain_file(path):
            return None
        try:
            key = _FileKey.of(path)
            sha256 = self._sha256(path, key)
        except FileNotFoundError:
            return None  # removed meanwhile
        if sha256 != record.sdist_sha256.lower():
            return None
        return KeptSdist(filename=filename, path=path, sha256=sha256, size=key.size)

    def _record_of(self, name: str, version: str) -> BuildRecord | None:
        """The build record of ``name`` ``version``, read again only when its file changed."""
        path = self.record_path(name, normal_version(version))
        try:
            key = _FileKey.of(path)
        except OSError:
            return None
        with self._state_lock:
            if key in self._record_cache:
                return self._record_cache[key]
        record = self.load_record(name, normal_version(version))
        with self._state_lock:
            self._record_cache[key] = record
        return record

    @staticmethod
    def _write_if_changed(path: Path, text: str) -> None:
        data = text.encode("utf-8")
        try:
            if path.read_bytes() == data:
                return
        except OSError:
            pass
        try:
            # Not fsynced: pages are made from wheels/ again whenever a run (or serve) starts,
            # and a publication waits for two to four fewer disk flushes.
            atomic_write_bytes(path, data, durable=False)
        except OSError as exc:
            # The page keeps its old content: pages are replaced whole or not at all.
            raise RepositoryError(
                f"cannot write {path}: {_os_error_text(exc, path.parent)}", step=Step.INDEX
            ) from exc

    # -- records and other JSON -----------------------------------------------------------------

    def save_record(self, record: BuildRecord) -> None:
        """Write ``records/<name>-<version>.json``."""
        name, version = record.name, record.version
        if not _SAFE_VERSION.match(version):
            raise RepositoryError(
                f"version {version!r} cannot name a record file", package=name, step=Step.RECORD
            )
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", canonicalize_name(name)):
            raise RepositoryError(f"invalid project name {name!r}", step=Step.RECORD)
        path = self.record_path(name, version)
        try:
            atomic_write_json(path, record.to_json())
        except OSError as exc:
            raise RepositoryError(
                f"cannot write {path}: {_os_error_text(exc, path.parent)}",
                package=name,
                version=version,
                step=Step.RECORD,
            ) from exc
        if record.sdist_sha256 and not record.prebuilt:
            self._list_sdist(canonicalize_name(name))
        try:
            build_cache.offer(self.root, record)  # for other repositories' --cache-url
        except OSError as exc:
            raise RepositoryError(
                f"cannot write the build-cache entry of {name} {version}: {exc}",
                package=name,
                version=version,
                step=Step.RECORD,
            ) from exc

    def _list_sdist(self, name: NormalizedName) -> None:
        """Put the sdist of a build just recorded on its project's pages: they were written when
        the wheel was published, before the record that vouches for the sdist existed. A
        failure is left to the next regeneration to redo."""
        with contextlib.suppress(OSError, RewheelError, zipfile.BadZipFile):
            self.regenerate_project(name)

    def record_path(self, name: str, version: str) -> Path:
        return self.records_dir / f"{canonicalize_name(name)}-{version}.json"

    def load_record(self, name: str, version: str) -> BuildRecord | None:
        """The record of one build, or None when there is none (or it cannot be read)."""
        try:
            data = json.loads(self.record_path(name, version).read_text(encoding="utf-8"))
            return BuildRecord.from_json(data)
        except (OSError, ValueError):  # RecordError is a ValueError
            return None

    def past_builds(self, name: str) -> list[PastBuild]:
        """The builds of project ``name`` recorded here, any version, with the seconds each
        took: what the scheduler weighs a build by when its own pin has no record
        (``core.durations.seconds_from_history``). Wheels taken pre-built are left out, and a
        record that cannot be read is skipped. The records folder is listed once (on first
        use), not once per project."""
        wanted = canonicalize_name(name)
        with self._state_lock:
            if self._record_files is None:
                self._record_files = {}
                with contextlib.suppress(OSError):
                    for entry in os.listdir(self.records_dir):
                        project, _, version = entry.removesuffix(".json").rpartition("-")
                        if entry.endswith(".json") and project and version:
                            self._record_files.setdefault(project, []).append(version)
            versions = list(self._record_files.get(wanted, ()))
        out = []
        for version in versions:
            record = self.load_record(wanted, version)
            if record is not None and not record.prebuilt and record.name == wanted:
                out.append(PastBuild(record.version, record.seconds))
        return out

    def load_records(self) -> list[BuildRecord]:
        """Every build record; a record that cannot be read is an error naming its file."""
        if not self.records_dir.is_dir():
            return []
        out: list[BuildRecord] = []
        for path in sorted(self.records_dir.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                out.append(BuildRecord.from_json(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise RepositoryError(
                    f"cannot read record {path}: {exc}", step=Step.RECORD
                ) from exc
            except RecordError as exc:
                raise RepositoryError(
                    f"record {path} is not a build record: {exc}", step=Step.RECORD
                ) from exc
        return out

    # -- runs -----------------------------------------------------------------------------------

    def write_run(self, run: RunRecord, *, keep: int = KEEP_RUNS) -> Path:
        """Write ``runs/<id>.json``, then remove the oldest run files beyond the newest ``keep``."""
        if not RUN_FILE.match(f"{run.id}.json"):
            raise RepositoryError(f"not a run id: {run.id!r}", step=Step.WRITE)
        path = self.runs_dir / f"{run.id}.json"
        try:
            atomic_write_json(path, run.to_json())
            names = sorted(p.name for p in self.runs_dir.iterdir() if RUN_FILE.match(p.name))
            for name in names[: max(0, len(names) - keep)]:
                (self.runs_dir / name).unlink(missing_ok=True)
        except OSError as exc:
            raise RepositoryError(
                f"cannot write {path}: {_os_error_text(exc, self.runs_dir)}", step=Step.WRITE
            ) from exc
        return path

    def history(self) -> History:
        """The remembered runs (``runs/``), oldest first. A run file that cannot be read is
        skipped with a note. A repository whose runs wrote no run file remembers its last run
        from ``graph.json``."""
        runs: list[RunRecord] = []
        notes: list[str] = []
        names: list[str] = []
        if self.runs_dir.is_dir() and not self.runs_dir.is_symlink():
            names = sorted(p.name for p in self.runs_dir.iterdir() if RUN_FILE.match(p.name))
        for name in names:
            path = self.runs_dir / name
            try:
                data = json.loads(_read_plain(path, MAX_RUN_FILE).decode("utf-8"))
                runs.append(RunRecord.from_json(data, name.removesuffix(".json")))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, RunFileError) as exc:
                notes.append(f"skipped the run file {path}: {exc}")
        graph = self.root / "graph.json"
        if not names and is_plain_file(graph):
            try:
                runs.append(legacy_run(json.loads(_read_plain(graph, MAX_RUN_FILE))))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, RunFileError) as exc:
                notes.append(f"skipped {graph}: {exc}")
        runs.sort(key=lambda r: (r.started or datetime.min.replace(tzinfo=UTC), r.id))
        return History(tuple(runs), tuple(notes))

    def write_json(self, relname: str, data: object) -> None:
        """Write ``root/relname`` atomically; ``relname`` must stay inside the repository."""
        rel = PurePosixPath(relname)
        if rel.is_absolute() or not rel.parts or ".." in rel.parts or "\\" in relname:
            raise RepositoryError(f"not a path inside the repository: {relname!r}", step=Step.WRITE)
        path = self.root.joinpath(*rel.parts)
        try:
            atomic_write_json(path, data)
        except OSError as exc:
            raise RepositoryError(
                f"cannot write {path}: {_os_error_text(exc, path.parent)}", step=Step.WRITE
            ) from exc


def _plain_entry(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file(follow_symlinks=False)
    except OSError:
        return False


def _stat_digest(paths: list[str], salt: str) -> str:
    """sha256 over each path and its stat (inode, size, mtime, ctime, type), or its absence."""
    digest = hashlib.sha256(salt.encode())
    for path in paths:
        try:
            st = os.lstat(path)
            text = f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_mode}"
        except OSError:
            text = "-"
        digest.update(f"{path}\0{text}\0".encode())
    return digest.hexdigest()


@functools.cache
def _page_code_digest() -> str:
    """The code that makes pages: a recorded page made by other code is made again."""
    digest = hashlib.sha256()
    for module in (index_pages, sys.modules[__name__]):
        if module.__file__ is not None:
            with contextlib.suppress(OSError):
                digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def _read_plain(path: Path, max_size: int) -> bytes:
    """The content of the regular file ``path``, not through a link, of at most ``max_size``
    bytes; OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size > max_size:
            raise OSError(errno.EFBIG, f"larger than {max_size} bytes")
        return f.read(max_size + 1)[:max_size]


def _listing_order(ref: WheelRef) -> tuple[object, ...]:
    """The order of ``Repository.wheels()``: name, version, build tag, file name."""
    return (ref.name, version_key(ref.version), _build_tag(ref.filename), ref.filename)


def _is_folder_name(name: str) -> bool:
    """Whether ``name`` names one folder inside another (not itself, its parent, or a path)."""
    return (
        PurePosixPath(name).name == name
        and name not in ("", ".", "..")
        and not any(c in name for c in "\\\x00")
    )


def _build_tag(filename: str) -> tuple[()] | tuple[int, str]:
    """A wheel's build tag as the wheel spec orders it: none first, then by number, then text."""
    try:
        return parse_wheel_filename(filename)[2]
    except InvalidWheelFilename:
        return ()
