"""What a wheel's compiled files link against on this machine.

Every ELF member of a wheel (found by its magic number, whatever its name) is read with
pyelftools for its dynamic section: the ``NEEDED`` libraries, ``RUNPATH``/``RPATH`` and
``SONAME``. Each needed name is then looked for the way glibc's dynamic loader looks for it:

1. the file's ``RPATH`` (only when it has no ``RUNPATH``), then its ``RUNPATH``: ``$ORIGIN``
   entries point into the wheel, absolute ones at this machine; relative ones and other tokens
   (``$LIB``, ``$PLATFORM``) are not followed;
2. a library the wheel ships itself (an ELF member whose file name or ``SONAME`` is the name:
   auditwheel's ``<pkg>.libs/``, libraries a package preloads): not a system library;
3. the loader's cache (``ldconfig -p``), then the default folders (the multiarch ones, ``/lib64``
   and ``/usr/lib64`` for 64-bit files, ``/lib``, ``/usr/lib``).

``LD_LIBRARY_PATH`` is not followed (it belongs to the process that loads the wheel, not to the
wheel), and only direct dependencies are listed. As the loader does, a candidate is taken only
if it is a regular ELF file of the same class, byte order and machine. A system library found is
hashed (sha256 of the file the links lead to) and, on Debian, named by its package and version
(``dpkg -S``, then ``dpkg-query``, one call each per wheel). ``SystemLibraries`` is made once per
run and caches all of it.

The wheel is hostile input: a member that is not a sound ELF file is listed as unreadable, a
huge one is not read, and a path a ``RUNPATH`` names is opened without blocking and read only if
it is a regular file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import shutil
import stat
import subprocess
import sysconfig
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from elftools.elf.dynamic import DynamicSection, DynamicSegment
from elftools.elf.elffile import ELFFile

from ..repo.wheelfile import READ_ERRORS, WheelReader

ELF_MAGIC = b"\x7fELF"
MAX_ELF_BYTES = 2 << 30  # a larger member is listed as unreadable, not parsed
MAX_DYNAMIC_TAGS = 1 << 14  # a real dynamic section has a few dozen entries
MAX_LIBRARY_BYTES = 1 << 30  # a larger system library is found but not hashed
_CHUNK = 1 << 20
_WHEEL_ERRORS: tuple[type[Exception], ...] = (*READ_ERRORS, KeyError)
_ORIGIN = re.compile(r"^\$(ORIGIN|\{ORIGIN\})(/|$)")
# Characters dpkg -S reads as a pattern: a path holding one cannot be asked literally.
_GLOB = re.compile(r"[*?\[\]\\]")

# How the module runs a command: its standard output, or None when it could not run or failed.
# ``dpkg -S`` exits 1 when one of several paths belongs to no package: its output still counts.
CommandOutput = Callable[[Sequence[str]], "str | None"]


def run_command(argv: Sequence[str]) -> str | None:
    """``CommandOutput`` on this machine: C locale, 60 seconds at most."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode not in (0, 1):
        return None
    return done.stdout


@dataclass(frozen=True)
class ElfArch:
    """What the loader matches a library by: class, byte order and machine of the file."""

    elf_class: int  # 32 or 64
    little_endian: bool
    machine: str  # pyelftools' name of e_machine, e.g. EM_X86_64


@dataclass(frozen=True)
class ElfFile:
    """The dynamic section of one ELF member of a wheel."""

    member: str
    arch: ElfArch
    needed: tuple[str, ...]
    runpath: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    soname: str | None = None

    @property
    def search_path(self) -> tuple[str, ...]:
        """What the loader searches before its cache: RUNPATH, or RPATH when there is none."""
        return self.runpath if self.runpath else self.rpath


@dataclass(frozen=True)
class LibraryFile:
    """A system library as found here: the path the loader takes, the file it is."""

    path: str
    real_path: str
    sha256: str | None  # None: too large or unreadable
    package: str | None = None  # Debian package, with its architecture (zlib1g:amd64)
    package_version: str | None = None

    def as_record(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "realPath": self.real_path,
            "sha256": self.sha256,
            "debianPackage": self.package,
            "debianVersion": self.package_version,
        }


SYSTEM, WHEEL, MISSING = "system", "wheel", "missing"


@dataclass(frozen=True)
class Needed:
    """One NEEDED name of a file and where it was found: a system library (its path as the
    loader finds it), a file of the wheel, or nowhere."""

    name: str
    found: str  # SYSTEM, WHEEL or MISSING
    path: str | None  # the system path, or the member of the wheel


@dataclass(frozen=True)
class Linked:
    file: ElfFile
    needed: tuple[Needed, ...]

    def as_record(self) -> dict[str, Any]:
        return {
            "file": self.file.member,
            "elfClass": self.file.arch.elf_class,
            "byteOrder": "little" if self.file.arch.little_endian else "big",
            "machine": self.file.arch.machine,
            "soname": self.file.soname,
            "runpath": list(self.file.runpath),
            "rpath": list(self.file.rpath),
            "needed": [{"name": n.name, "found": n.found, "path": n.path} for n in self.needed],
        }


@dataclass(frozen=True)
class Linkage:
    """What every ELF file of a wheel links, with the system libraries it resolved to."""

    files: tuple[Linked, ...] = ()
    libraries: tuple[LibraryFile, ...] = ()  # every system library found, once, by path
    unreadable: tuple[tuple[str, str], ...] = ()  # (member, why)

    def as_record(self) -> dict[str, Any]:
        return {
            "files": [f.as_record() for f in self.files],
            "systemLibraries": [lib.as_record() for lib in self.libraries],
            "unreadable": [{"file": m, "reason": why} for m, why in self.unreadable],
        }


# ---------------------------------------------------------------- reading ELF files


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(p for v in values for p in v.split(":") if p)


def parse_elf(stream: IO[bytes], member: str) -> ElfFile:
    """The dynamic section of the ELF file in ``stream`` (seekable). Raises what pyelftools
    raises on a damaged file, or ValueError."""
    elf = ELFFile(stream)
    arch = ElfArch(int(elf.elfclass), bool(elf.little_endian), str(elf["e_machine"]))
    dynamic: DynamicSegment | DynamicSection | None = None
    for segment in elf.iter_segments():  # what the loader reads
        if isinstance(segment, DynamicSegment):
            dynamic = segment
            break
    if dynamic is None:
        dynamic = next((s for s in elf.iter_sections() if isinstance(s, DynamicSection)), None)
    needed: list[str] = []
    runpath: list[str] = []
    rpath: list[str] = []
    soname = None
    if dynamic is not None:
        for count, tag in enumerate(dynamic.iter_tags()):
            if count >= MAX_DYNAMIC_TAGS:
                raise ValueError(f"more than {MAX_DYNAMIC_TAGS} dynamic entries")
            kind = tag.entry.d_tag
            # pyelftools sets the string of these tags as an attribute of that name.
            if kind == "DT_NEEDED":
                needed.append(str(getattr(tag, "needed", "")))
            elif kind == "DT_RUNPATH":
                runpath.append(str(getattr(tag, "runpath", "")))
            elif kind == "DT_RPATH":
                rpath.append(str(getattr(tag, "rpath", "")))
            elif kind == "DT_SONAME":
                soname = str(getattr(tag, "soname", "")) or None
    return ElfFile(member, arch, tuple(needed), _strings(runpath), _strings(rpath), soname)


def read_elf_files(wheel: Path) -> tuple[list[ElfFile], list[tuple[str, str]], set[str]]:
    """Every ELF member of ``wheel``: (parsed, unreadable as (member, why), all member names)."""
    found: list[ElfFile] = []
    unreadable: list[tuple[str, str]] = []
    with WheelReader(wheel) as reader:
        names = {m.filename for m in reader.members if not m.is_dir()}
        for info in reader.members:
            if info.is_dir() or info.file_size < len(ELF_MAGIC):
                continue
            with reader.open(info) as stream:
                if stream.read(len(ELF_MAGIC)) != ELF_MAGIC:
                    continue
                if info.file_size > MAX_ELF_BYTES:
                    unreadable.append((info.filename, f"larger than {MAX_ELF_BYTES} bytes"))
                    continue
                stream.seek(0)
                try:
                    found.append(parse_elf(stream, info.filename))
                except Exception as exc:  # a hostile file may break the parser anywhere
                    unreadable.append((info.filename, f"{type(exc).__name__}: {exc}"[:200]))
    return found, unreadable, names


# ---------------------------------------------------------------- files of this machine


@contextlib.contextmanager
def _open_regular(path: str) -> Iterator[IO[bytes] | None]:
    """``path`` opened for reading if it is a regular file (never blocking on a FIFO or a
    device), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        yield None
        return
    with os.fdopen(fd, "rb") as f:
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            regular = False
        yield f if regular else None


def _arch_of(path: str) -> ElfArch | None:
    with _open_regular(path) as f:
        if f is None:
            return None
        try:
            if f.read(len(ELF_MAGIC)) != ELF_MAGIC:
                return None
            f.seek(0)
            elf = ELFFile(f)
            return ElfArch(int(elf.elfclass), bool(elf.little_endian), str(elf["e_machine"]))
        except Exception:  # not an ELF file the loader could take either
            return None


def _sha256(path: str) -> str | None:
    with _open_regular(path) as f:
        if f is None:
            return None
        try:
            if os.fstat(f.fileno()).st_size > MAX_LIBRARY_BYTES:
                return None
            digest = hashlib.sha256()
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
            return digest.hexdigest()
        except OSError:
            return None


def parse_ldconfig(output: str) -> dict[str, list[str]]:
    """``ldconfig -p`` as {name: [paths, in the cache's order]}."""
    cache: dict[str, list[str]] = {}
    for line in output.splitlines():
        name, sep, path = line.strip().partition(" => ")
        if not sep or not path.startswith("/"):
            continue
        cache.setdefault(name.split(" (", 1)[0].strip(), []).append(path.strip())
    return cache


def parse_dpkg_search(output: str) -> dict[str, str]:
    """``dpkg -S PATH...`` as {path: first package}."""
    owners: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("diversion "):
            continue
        packages, sep, path = line.partition(": ")
        if sep and path.startswith("/") and packages:
            owners.setdefault(path.strip(), packages.split(",")[0].strip())
    return owners


def parse_dpkg_versions(output: str) -> dict[str, str]:
    """``dpkg-query -W -f='${binary:Package}\\t${Version}\\n' PKG...`` as {package: version}."""
    versions: dict[str, str] = {}
    for line in output.splitlines():
        package, sep, version = line.partition("\t")
        if sep and version:
            # binary:Package carries the architecture only for Multi-Arch: same packages.
            versions[package.strip()] = version.strip()
            versions.setdefault(package.strip().split(":", 1)[0], version.strip())
    return versions


def default_dirs(arch: ElfArch) -> tuple[str, ...]:
    """The loader's built-in folders after its cache (Debian's multiarch ones first)."""
    dirs = []
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if isinstance(multiarch, str) and multiarch:
        dirs += [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"]
    if arch.elf_class == 64:
        dirs += ["/lib64", "/usr/lib64"]
    return (*dirs, "/lib", "/usr/lib")


def _usrmerge_aliases(path: str) -> list[str]:
    """The names dpkg may know a file by on a merged-/usr system."""
    out = [path]
    for short, long in (("/lib", "/usr/lib"), ("/bin", "/usr/bin"), ("/sbin", "/usr/sbin")):
        for a, b in ((short, long), (long, short)):
            if path.startswith(a + "/"):
                out.append(b + path[len(a) :])
    for prefix in ("/lib32", "/lib64", "/libx32"):
        if path.startswith(prefix + "/"):
            out.append("/usr" + path)
        elif path.startswith("/usr" + prefix + "/"):
            out.append(path[len("/usr") :])
    return out


@dataclass
class _Caches:
    ld_cache: dict[str, list[str]] | None = None
    arch: dict[str, ElfArch | None] = field(default_factory=dict)
    files: dict[str, LibraryFile] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)


class SystemLibraries:
    """Finds, hashes and names the system libraries of this machine. One per run (it caches
    the loader's cache, every file it looked at, and every Debian package it asked about);
    thread-safe.

    ``run`` runs ``ldconfig``, ``dpkg`` and ``dpkg-query`` (tests pass their own); ``debian``
    says whether to ask dpkg (default: whether dpkg and its database are here).
    """

    def __init__(
        self,
        *,
        run: CommandOutput = run_command,
        debian: bool | None = None,
        dirs: Callable[[ElfArch], Sequence[str]] = default_dirs,
    ) -> None:
        self._run = run
        self._debian = (
            debian
            if debian is not None
            else bool(shutil.which("dpkg") and shutil.which("dpkg-query"))
            and os.path.isdir("/var/lib/dpkg")
        )
        self._dirs = dirs
        self._caches = _Caches()
        self._lock = threading.RLock()

    # -- finding

    def _ld_cache(self) -> dict[str, list[str]]:
        if self._caches.ld_cache is None:
            ldconfig = shutil.which("ldconfig", path=f"{os.defpath}:/sbin:/usr/sbin") or "ldconfig"
            self._caches.ld_cache = parse_ldconfig(self._run([ldconfig, "-p"]) or "")
        return self._caches.ld_cache

    def _fits(self, path: str, arch: ElfArch) -> bool:
        if path not in self._caches.arch:
            self._caches.arch[path] = _arch_of(path)
        return self._caches.arch[path] == arch

    def find(self, name: str, arch: ElfArch, search: Sequence[str] = ()) -> str | None:
        """Where the loader of this machine finds ``name`` for a file of ``arch`` whose
        RUNPATH (or RPATH) is ``search`` (only absolute entries are followed); None: nowhere."""
        with self._lock:
            if "/" in name:
                return name if name.startswith("/") and self._fits(name, arch) else None
            for folder in search:
                if folder.startswith("/"):
                    candidate = posixpath.join(folder, name)
                    if self._fits(candidate, arch):
                        return candidate
            for candidate in self._ld_cache().get(name, []):
                if self._fits(candidate, arch):
                    return candidate
            for folder in self._dirs(arch):
                candidate = posixpath.join(folder, name)
                if self._fits(candidate, arch):
                    return candidate
            return None

    # -- describing

    def describe(self, paths: Iterable[str]) -> dict[str, LibraryFile]:
        """Each path hashed (the file it leads to) and, on Debian, named by its package."""
        with self._lock:
            new = sorted({p for p in paths if p not in self._caches.files})
            for path in new:
                real = os.path.realpath(path)
                self._caches.files[path] = LibraryFile(path, real, _sha256(real))
            if new and self._debian:
                self._add_packages(new)
            return {p: self._caches.files[p] for p in paths}

    def _add_packages(self, paths: Sequence[str]) -> None:
        names: dict[str, list[str]] = {}
        for path in paths:
            real = self._caches.files[path].real_path
            candidates = [*_usrmerge_aliases(path), *_usrmerge_aliases(real)]
            names[path] = [c for c in dict.fromkeys(candidates) if not _GLOB.search(c)]
        asked = sorted({c for cs in names.values() for c in cs})
        owners = parse_dpkg_search(self._run(["dpkg", "-S", "--", *asked]) or "") if asked else {}
        owner_of = {p: next((owners[c] for c in names[p] if c in owners), None) for p in paths}
        unknown = sorted({o for o in owner_of.values() if o and o not in self._caches.versions})
        if unknown:
            fmt = "${binary:Package}\\t${Version}\\n"  # dpkg-query expands the escapes
            found = parse_dpkg_versions(
                self._run(["dpkg-query", "-W", "-f", fmt, "--", *unknown]) or ""
            )
            for package in unknown:
                self._caches.versions[package] = found.get(package) or found.get(
                    package.split(":", 1)[0]
                )
        for path, owner in owner_of.items():
            if owner is not None:
                file = self._caches.files[path]
                self._caches.files[path] = LibraryFile(
                    file.path, file.real_path, file.sha256, owner, self._caches.versions.get(owner)
                )

    # -- a wheel

    def linkage(self, wheel: Path) -> Linkage:
        """What every ELF file of ``wheel`` links, resolved on this machine."""
        try:
            elf_files, unreadable, names = read_elf_files(wheel)
        except _WHEEL_ERRORS as exc:  # publishing refuses it, with the reason
            return Linkage(unreadable=(("", f"the wheel cannot be read: {exc}"),))
        shipped = {posixpath.basename(f.member): f.member for f in elf_files}
        shipped.update({f.soname: f.member for f in elf_files if f.soname})
        linked = [
            Linked(f, tuple(self._resolve(f, n, names, shipped) for n in f.needed))
            for f in elf_files
        ]
        system = sorted(
            {n.path for link in linked for n in link.needed if n.found == SYSTEM and n.path}
        )
        described = self.describe(system)
        return Linkage(
            files=tuple(linked),
            libraries=tuple(described[p] for p in system),
            unreadable=tuple(unreadable),
        )

    def _resolve(
        self, file: ElfFile, name: str, members: set[str], shipped: Mapping[str, str]
    ) -> Needed:
        for entry in file.search_path:
            origin = _ORIGIN.match(entry)
            if origin is not None:
                folder = posixpath.normpath(
                    posixpath.join(posixpath.dirname(file.member), entry[origin.end() :])
                )
                member = posixpath.join(folder, name) if folder != "." else name
                if member in members:
                    return Needed(name, WHEEL, member)
            elif entry.startswith("/"):
                path = self.find(name, file.arch, [entry])
                if path is not None:
                    return Needed(name, SYSTEM, path)
        if name in shipped:
            return Needed(name, WHEEL, shipped[name])
        path = self.find(name, file.arch)
        return Needed(name, SYSTEM, path) if path is not None else Needed(name, MISSING, None)
