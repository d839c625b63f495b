"""What makes two builds of one sdist give the same wheel, byte for byte.

- ``SOURCE_DATE_EPOCH`` from the sdist itself (its newest member's mtime): backends stamp zip
  members with it instead of the clock.
- ``PYTHONHASHSEED=0``: set order, and so generated files, do not change from run to run.
- ``-ffile-prefix-map=<source dir>=/rewheel/<name>-<version>`` in CPPFLAGS (and in CFLAGS/CXXFLAGS
  when those are set): compiled code and its debug information do not name the build folder.
- The rest of the package's work folder (its build environments) and the interpreter's own install
  prefix mapped too (``-ffile-prefix-map``), so that headers included from either do not name
  this machine; ``-frandom-seed`` so that the names GCC would draw at random (LTO section names,
  constructors of files without a public symbol) are the same in every build.
- ``LDSHARED`` without the ``-Wl,-rpath`` entries a Python installed in its own prefix (pyenv,
  ``./configure --enable-shared``) bakes into its sysconfig: setuptools links every extension
  with it, so every wheel would carry a RUNPATH naming the build machine's interpreter.
- Every command a build runs gets the same umask (``BUILD_UMASK``, set by the runner): backends
  store the modes of the files they write in the wheel.
- Build code runs with address space randomization off (``runner``: util-linux ``setarch -R``):
  some build tools name objects by their address (meson's ``dep<id>`` dependency names land in
  numpy's ``__config__.py``).
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
import shlex
import stat
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..core.errors import BuildError, RepositoryError, Step
from .extract import ARCHIVE_FAULTS

# Zip files cannot store times before 1980; backends clamp or fail below it.
MIN_EPOCH = 315532800  # 1980-01-01T00:00:00Z
HASH_SEED = "0"
# The umask of every command run for a build, whatever the user's: files a build writes (an
# extension module, a generated _version.py) get 0644/0755, and backends copy those modes into
# the wheel's zip entries.
BUILD_UMASK = 0o022
# Install prefixes that are the same path on every machine: an interpreter installed there names
# nothing of this machine (and mapping /usr away would rename every system header).
SYSTEM_PREFIXES = frozenset({"/", "/usr", "/usr/local"})
# What the interpreter's own prefix is called in compiled debug data and __FILE__.
PYTHON_PREFIX_NAME = "/rewheel/python"
# What reading an sdist's member times can raise: a damaged archive, or a time out of range.
_TIME_FAULTS: tuple[type[Exception], ...] = (*ARCHIVE_FAULTS, OverflowError)


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
    except _TIME_FAULTS as exc:
        raise BuildError(f"cannot read the member times of {sdist.name}: {exc}") from exc
    return max(newest, MIN_EPOCH)


def _add_flag(current: str | None, flag: str) -> str:
    return f"{current} {flag}" if current and current.strip() else flag


def _private(prefix: str) -> bool:
    return os.path.normpath(prefix) not in SYSTEM_PREFIXES


@dataclass(frozen=True)
class Interpreter:
    """What of the build interpreter's own installation can end up in what a build makes.

    ``prefixes``: where it is installed (its headers come from there), as written and as
    resolved; ``cc``, ``ldshared`` and ``ldcxxshared``: its sysconfig's compiler and link
    commands, which setuptools uses for every extension module.
    """

    prefixes: tuple[str, ...] = ()
    cc: str | None = None
    ldshared: str | None = None
    ldcxxshared: str | None = None

    @classmethod
    def running(cls) -> Interpreter:
        """This interpreter (build environments are venvs of it)."""
        prefixes: list[str] = []
        for prefix in (sys.base_prefix, os.path.realpath(sys.base_prefix)):
            if prefix not in prefixes:
                prefixes.append(prefix)

        def var(name: str) -> str | None:
            value = sysconfig.get_config_var(name)
            return value if isinstance(value, str) and value else None

        return cls(
            prefixes=tuple(prefixes),
            cc=var("CC"),
            ldshared=var("LDSHARED"),
            ldcxxshared=var("LDCXXSHARED"),
        )

    def private_prefixes(self) -> list[str]:
        """Its install prefixes that name this machine (all but ``SYSTEM_PREFIXES``)."""
        return [p for p in self.prefixes if _private(p)]


def _under_any(path: str, prefixes: Iterable[str]) -> bool:
    pure = PurePosixPath(os.path.normpath(path))
    return any(pure == PurePosixPath(p) or PurePosixPath(p) in pure.parents for p in prefixes)


def _linker_words_without(words: list[str], prefixes: Sequence[str]) -> list[str]:
    """The linker's words (one ``-Wl,`` option split at its commas) without the run-time search
    paths under ``prefixes`` (``-rpath DIR``, ``-rpath=DIR``, ``-R DIR``; colon lists too)."""
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-rpath", "--rpath", "-R") and i + 1 < len(words):
            option, value, i = word, words[i + 1], i + 2
            joined = False
        elif word.startswith(("-rpath=", "--rpath=")):
            option, value = word.split("=", 1)
            i += 1
            joined = True
        else:
            out.append(word)
            i += 1
            continue
        kept = [d for d in value.split(":") if d and not _under_any(d, prefixes)]
        if kept:
            out += [f"{option}={':'.join(kept)}"] if joined else [option, ":".join(kept)]
    return out


def without_rpaths(command: str, prefixes: Sequence[str]) -> str:
    """``command`` (a link command line) without the RPATH/RUNPATH entries under ``prefixes``.

    Only ``-Wl,`` options are looked at: that is how a compiler driver passes them, and how
    CPython's ``configure`` writes the ones of an ``LDFLAGS`` it was given into ``LDSHARED``.
    """
    if not prefixes:
        return command
    out: list[str] = []
    for word in shlex.split(command):
        if not word.startswith("-Wl,"):
            out.append(word)
            continue
        words = _linker_words_without(word[len("-Wl,") :].split(","), prefixes)
        if words:
            out.append("-Wl," + ",".join(words))
    return shlex.join(out)


def linker_env(environ: Mapping[str, str], interpreter: Interpreter) -> dict[str, str]:
    """``LDSHARED``/``LDCXXSHARED`` for setuptools without the RPATH the interpreter's sysconfig
    bakes in, when it bakes one in and the build's environment does not set its own.

    An extension module is loaded by an interpreter that is already running: it needs no
    run-time search path to the build machine's interpreter, and one in the wheel names that
    machine. ``CC`` is honoured as setuptools would (it replaces the compiler at the start of
    ``LDSHARED``), since setting ``LDSHARED`` turns that off.
    """
    prefixes = interpreter.private_prefixes()
    out: dict[str, str] = {}
    for key, command in (
        ("LDSHARED", interpreter.ldshared),
        ("LDCXXSHARED", interpreter.ldcxxshared),
    ):
        if command is None or key in environ:
            continue
        cleaned = without_rpaths(command, prefixes)
        if cleaned == shlex.join(shlex.split(command)):
            continue  # nothing to take out: leave setuptools' own logic alone
        cc, new_cc = interpreter.cc, environ.get("CC")
        if key == "LDSHARED" and cc and new_cc and cleaned.startswith(cc):
            cleaned = new_cc + cleaned[len(cc) :]
        out[key] = cleaned
    return out


def reproducible_env(
    environ: Mapping[str, str],
    *,
    source_dir: Path,
    name: str,
    version: str,
    epoch: int,
    interpreter: Interpreter | None = None,
    work_dir: Path | None = None,
) -> dict[str, str]:
    """The variables to add to a build's ``environ`` (existing C flags are kept, none is added
    where there was none: see CPPFLAGS below).

    ``interpreter``: the one the build environment is a venv of (default: none known, so its
    prefix is not mapped and ``LDSHARED`` is left alone). ``work_dir``: the package's work
    folder, which holds its build environments and its ``tmp`` (default: the source tree's
    parent).
    """
    interpreter = interpreter or Interpreter()
    # A temporary folder of the build's own, and temporary names from a fixed seed (see
    # buildenv.SITECUSTOMIZE): backends that build in mkdtemp() folders then build in the same
    # place every time. Both folders are mapped to fixed names in compiled debug data.
    work = work_dir or source_dir.parent
    tmp = work / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    # GCC applies the last map that matches: the general ones (the interpreter's prefix, the
    # work folder with its build environments) first, the source tree and TMPDIR after.
    maps = [f"-ffile-prefix-map={p}={PYTHON_PREFIX_NAME}" for p in interpreter.private_prefixes()]
    maps += [
        f"-ffile-prefix-map={work}=/rewheel/{name}-{version}-work",
        f"-ffile-prefix-map={source_dir}=/rewheel/{name}-{version}",
        f"-ffile-prefix-map={tmp}=/rewheel/{name}-{version}-tmp",
        # Unique per object it need not be for reproducibility: GCC mixes the file name into
        # the names it derives from it; only LTO section ids (per object file) share it.
        f"-frandom-seed={name}-{version}",
    ]
    flags = " ".join(maps)
    env = {
        "SOURCE_DATE_EPOCH": str(epoch),
        "TMPDIR": str(tmp),
        "REWHEEL_TEMP_SEED": f"{name}-{version}-{epoch}",
        "PYTHONHASHSEED": HASH_SEED,
        # No __pycache__ from what the build happens to import: a backend that copies a whole
        # folder into the wheel (numpy's meson install does) would ship a .pyc naming the
        # build folder. Backends that compile on purpose (py_compile, compileall) still do.
        "PYTHONDONTWRITEBYTECODE": "1",
        # CPPFLAGS, which every compile reads (setuptools and meson add it to the C and C++
        # flags): a CFLAGS variable would *replace* the interpreter's own flags in setuptools
        # (72 and later), and every extension would be built without -O3, -DNDEBUG and -fwrapv.
        "CPPFLAGS": _add_flag(environ.get("CPPFLAGS"), flags),
        **linker_env(environ, interpreter),
    }
    # Flags someone did set (the user, the package's settings) get the maps too: build systems
    # that read no CPPFLAGS (CMake) see them there.
    for key in ("CFLAGS", "CXXFLAGS"):
        if environ.get(key, "").strip():
            env[key] = _add_flag(environ[key], flags)
    return env


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
