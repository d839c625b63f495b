"""What makes two builds of one sdist give the same wheel, byte for byte.

- ``SOURCE_DATE_EPOCH`` from the sdist itself (its newest member's mtime): backends stamp zip
  members with it instead of the clock.
- ``PYTHONHASHSEED=0``: set order, and so generated files, do not change from run to run.
- ``-ffile-prefix-map=<source dir>=/rewheel/<name>-<version>`` in CFLAGS/CXXFLAGS: compiled code
  and its debug information do not name the build folder.
- A build folder that is the same in every run (``claimed_work_root``), for whatever the prefix
  map does not cover. It is private to the user (``rewheel-build-<uid>``, mode 0700, owner and
  type checked without following links): another local user must not be able to pre-create it or
  swap a package's sources in it during a run.
"""

from __future__ import annotations

import calendar
import contextlib
import errno
import fcntl
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..core.errors import BuildError, RepositoryError, Step

# Zip files cannot store times before 1980; backends clamp or fail below it.
MIN_EPOCH = 315532800  # 1980-01-01T00:00:00Z
HASH_SEED = "0"


def source_date_epoch(sdist: Path) -> int:
    """The newest mtime of the sdist's members (PKG-INFO's if that is all there is).

    Depends only on the archive's content, so every rebuild of it gets the same value.
    """
    newest = 0
    try:
        if sdist.name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as zf:
                for info in zf.infolist():
                    # Zip times have no zone; read them as UTC, like SOURCE_DATE_EPOCH writers do.
                    newest = max(newest, calendar.timegm((*info.date_time, 0, 0, 0)))
        else:
            with tarfile.open(sdist) as tf:
                for member in tf:
                    newest = max(newest, int(member.mtime))
    except (OSError, tarfile.TarError, zipfile.BadZipFile, OverflowError, ValueError) as exc:
        raise BuildError(f"cannot read the member times of {sdist.name}: {exc}") from exc
    return max(newest, MIN_EPOCH)


def _add_flag(current: str | None, flag: str) -> str:
    return f"{current} {flag}" if current and current.strip() else flag


def reproducible_env(
    environ: Mapping[str, str],
    *,
    source_dir: Path,
    name: str,
    version: str,
    epoch: int,
) -> dict[str, str]:
    """The variables to add to a build's ``environ`` (existing C flags are kept)."""
    # A temporary folder of the build's own, and temporary names from a fixed seed (see
    # buildenv.SITECUSTOMIZE): backends that build in mkdtemp() folders then build in the same
    # place every time. Both folders are mapped to fixed names in compiled debug data.
    tmp = source_dir.parent / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    prefix_map = (
        f"-ffile-prefix-map={source_dir}=/rewheel/{name}-{version} "
        f"-ffile-prefix-map={tmp}=/rewheel/{name}-{version}-tmp"
    )
    return {
        "SOURCE_DATE_EPOCH": str(epoch),
        "TMPDIR": str(tmp),
        "REWHEEL_TEMP_SEED": f"{name}-{version}-{epoch}",
        "PYTHONHASHSEED": HASH_SEED,
        "CFLAGS": _add_flag(environ.get("CFLAGS"), prefix_map),
        "CXXFLAGS": _add_flag(environ.get("CXXFLAGS"), prefix_map),
    }


def default_build_root() -> Path:
    """A folder whose path does not depend on the run or on the repository: one per user,
    ``rewheel-build-<uid>``.

    On a memory file system when there is one: builds create and delete many small files. This
    only names the folder; ``claimed_work_root`` makes it (0700) and checks that it is ours.
    """
    name = f"rewheel-build-{os.geteuid()}"
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / name
    return Path("/tmp") / name


_FIX = "remove it, or choose another build folder with --work-dir"


def _refuse(path: Path, what: str, fix: str = _FIX) -> RepositoryError:
    return RepositoryError(f"{path} {what}; {fix}", step=Step.WORK_DIR)


def _check_parent(parent: Path) -> None:
    """The folder that holds a build root and its lock: made if missing; it must belong to this
    user or to root, and if others may write in it, it must be sticky (as /tmp and /dev/shm are),
    or they could rename the build root away and put their own in its place."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        st = parent.stat()
    except OSError as exc:
        raise _refuse(parent, f"cannot be used for build folders ({exc.strerror})") from exc
    if st.st_uid not in (os.geteuid(), 0):
        raise _refuse(
            parent,
            f"belongs to uid {st.st_uid}, so it cannot hold this user's build folder",
            "choose a build folder of your own with --work-dir",
        )
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise _refuse(
            parent,
            "is writable by everyone and not sticky, so it cannot hold a private build folder",
            "choose a build folder elsewhere with --work-dir",
        )


def ensure_private_dir(path: Path) -> None:
    """Make ``path`` (mode 0700), or check that the one there is a private folder of ours.

    Checked with ``lstat`` and an ``O_NOFOLLOW`` open, never through a link: it must be a real
    directory (not a symlink), owned by this user, and writable by no one else. Read or search bits
    for group and others are removed (nobody could have written into it); a folder that others
    could write to, or that is another user's or a link, is refused (its content cannot be
    trusted), with what is wrong and how to fix it.
    """
    uid = os.geteuid()
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _refuse(path, f"cannot be made ({exc.strerror})") from exc
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise _refuse(path, f"cannot be checked ({exc.strerror})") from exc
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "is a symbolic link, not a folder: another user may have planted it")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "is not a folder")
    if st.st_uid != uid:
        raise _refuse(
            path,
            f"belongs to uid {st.st_uid}, not to this user (uid {uid}): another user may have made "
            "it to change what is built in it",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _refuse(
            path,
            f"is writable by group or others (mode {mode:04o}): someone else may have put files "
            "in it",
            "remove it (it is made again, private), or choose another folder with --work-dir",
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _refuse(path, f"cannot be opened ({exc.strerror})") from exc
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise _refuse(path, "was replaced while it was being checked")
        if mode != 0o700:
            os.fchmod(fd, 0o700)
    except OSError as exc:
        raise _refuse(path, f"cannot be made private ({exc.strerror})") from exc
    finally:
        os.close(fd)


def _open_lock(lock: Path) -> int:
    """Open (or make, 0600) a lock file without following a link; it must be a regular file of
    this user's."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(lock, "is a symbolic link: another user may have planted it") from exc
        raise _refuse(
            lock, f"cannot be opened ({exc.strerror}); it may belong to another user"
        ) from exc
    try:
        st = os.fstat(fd)
        uid = os.geteuid()
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(lock, "is not a regular file")
        if st.st_uid != uid:
            raise _refuse(lock, f"belongs to uid {st.st_uid}, not to this user (uid {uid})")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def claimed_work_root(base: Path, *, attempts: int = 100) -> Iterator[Path]:
    """``base`` while this run holds it (a flock on ``<base>.lock``); if another run holds it,
    ``<base>-2``, ``<base>-3``... so two runs never build in the same folder.

    The folder and its lock must be this user's own and private (see ``ensure_private_dir``;
    made so when new). One that fails the checks is refused with a ``RepositoryError`` saying
    what is wrong and how to fix it, not passed over for the next name: a folder that someone
    else made is worth knowing about, and moving on would make the build path depend on them.
    """
    _check_parent(base.parent)
    for n in range(1, attempts + 1):
        root = base if n == 1 else base.with_name(f"{base.name}-{n}")
        lock = root.with_name(root.name + ".lock")
        fd = _open_lock(lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                continue
            raise RepositoryError(f"cannot lock {lock}: {exc}", step=Step.WORK_DIR) from exc
        try:
            ensure_private_dir(root)
            yield root
            return
        finally:
            os.close(fd)
    raise RepositoryError(f"no free build folder near {base}", step=Step.WORK_DIR)
