"""What makes two builds of one sdist give the same wheel, byte for byte.

- ``SOURCE_DATE_EPOCH`` from the sdist itself (its newest member's mtime): backends stamp zip
  members with it instead of the clock.
- ``PYTHONHASHSEED=0``: set order, and so generated files, do not change from run to run.
- ``-ffile-prefix-map=<source dir>=/rewheel/<name>-<version>`` in CFLAGS/CXXFLAGS: compiled code
  and its debug information do not name the build folder.
- A build folder that is the same in every run (``claimed_work_root``), for whatever the prefix
  map does not cover.
"""

from __future__ import annotations

import calendar
import contextlib
import errno
import fcntl
import os
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from .errors import BuildError, RepositoryError

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
    """A folder whose path does not depend on the run or on the repository.

    On a memory file system when there is one: builds create and delete many small files.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / "rewheel-build"
    return Path("/tmp") / "rewheel-build"


@contextlib.contextmanager
def claimed_work_root(base: Path, *, attempts: int = 100) -> Iterator[Path]:
    """``base`` while this run holds it (a flock on ``<base>.lock``); if another run holds it,
    ``<base>-2``, ``<base>-3``... so two runs never build in the same folder."""
    for n in range(1, attempts + 1):
        root = base if n == 1 else base.with_name(f"{base.name}-{n}")
        lock = root.with_name(root.name + ".lock")
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue  # not ours to use (another user's, read-only): try the next name
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                continue
            raise RepositoryError(f"cannot lock {lock}: {exc}", step="work-dir") from exc
        try:
            root.mkdir(parents=True, exist_ok=True)
            if not os.access(root, os.W_OK):
                continue
            yield root
            return
        finally:
            os.close(fd)
    raise RepositoryError(f"no free build folder near {base}", step="work-dir")
