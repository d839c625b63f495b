"""Small filesystem helpers: hashing, atomic writes (temporary file, fsync, rename), the modes of
the files rewheel writes, and removing trees that build code left behind.

Files rewheel publishes (wheels, pages, metadata, provenance, records) are for everyone who may
read the repository: they get ``0o666`` less the user's umask, as any file the user creates would
(``tempfile.mkstemp`` alone would leave them ``0o600``, which a web server running as another user
cannot read). Private files (the HTTP cache) are ``0o600`` whatever the umask.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

_CHUNK = 1 << 20
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def _umask_from_proc() -> int | None:
    """The umask as Linux shows it (``Umask:`` in /proc/self/status, Linux 4.7 and later)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_by_setting() -> int:
    # os.umask can only be read by setting it, for the whole process: done once, at import,
    # before rewheel starts threads, and only where /proc does not tell.
    old = os.umask(0o022)
    os.umask(old)
    return old


_UMASK_AT_IMPORT = None if _umask_from_proc() is not None else _umask_by_setting()


def current_umask() -> int:
    """The process's umask, read without changing it (``os.umask`` changes it for every thread
    while it reads it)."""
    found = _umask_from_proc()
    if found is not None:
        return found
    return _UMASK_AT_IMPORT if _UMASK_AT_IMPORT is not None else 0o022


def public_file_mode() -> int:
    """The mode of a file for everyone who may read the repository: ``0o666`` less the umask
    (``0o644`` under the usual ``022``)."""
    return 0o666 & ~current_umask()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(
    path: Path, data: bytes, *, private: bool = False, durable: bool = True
) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a part.

    The file is readable as the umask allows (``public_file_mode``), or only by its owner when
    ``private``; folders made on the way get ``0o777`` less the umask. ``durable=False`` leaves
    out the fsync, for files made again from others when they are lost (the index pages): a
    reader still sees one content or the other, but a crash of the machine may lose what was
    written last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), PRIVATE_FILE_MODE if private else public_file_mode())
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, *, private: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), private=private)


def atomic_write_json(path: Path, data: object, *, private: bool = False) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", private=private)


def is_plain_file(path: Path, *, max_size: int | None = None) -> bool:
    """Whether ``path`` itself (not what a link points at) is a regular file, of at most
    ``max_size`` bytes when given; False when there is nothing there."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (max_size is None or st.st_size <= max_size)


def _open_dir(name: str, dir_fd: int) -> int:
    """Open the folder ``name`` below ``dir_fd`` without following a link, giving it owner
    permissions first if it has none (a build may leave folders of mode 000)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        # Known to be a folder (lstat), and no process of the build is left to swap it.
        os.chmod(name, 0o700, dir_fd=dir_fd)
        return os.open(name, flags, dir_fd=dir_fd)


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything below it, as left behind by code that is not trusted.

    A link is removed, never followed; a folder without permissions is given owner permissions
    (the folder itself, found with lstat: Python 3.11's ``TemporaryDirectory`` cleanup chmods
    through links, CVE-2023-6597); it neither recurses nor builds long paths, so a tree deeper
    than Python's recursion limit or PATH_MAX goes too, with a few file descriptors open at a
    time. A path that does not exist is fine.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        path.unlink()
        return
    top = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = _open_dir(path.name, top)
        names: list[str] = []  # the folders between path and fd
        while True:
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o700)  # so that its entries can be removed
            child = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        child = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if child is not None:
                inner = _open_dir(child, fd)
                os.close(fd)
                fd = inner
                names.append(child)
                continue
            if not names:
                os.close(fd)
                os.rmdir(path.name, dir_fd=top)
                return
            up = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            os.rmdir(names.pop(), dir_fd=up)
            fd = up
    finally:
        os.close(top)


def make_dirs_below(base: Path, target: Path) -> None:
    """``mkdir -p`` of ``target`` inside ``base``, through no link: every folder on the way must
    be a real folder (build code may have put links in ``base``). Raises OSError otherwise."""
    rel = target.relative_to(base)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in rel.parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)
