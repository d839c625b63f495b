"""Proving that every file of an installed virtual environment came from a repository wheel.

For each ``*.dist-info`` in the venv's site-packages: the repository must hold a wheel of that
name and version (its file checked against the repository's sha256), each file the installed
RECORD lists must still hash to what RECORD says, and must be a file of that wheel with the same
hash. Installers write a few files of their own (INSTALLER, REQUESTED, RECORD, entry-point
launchers, the first line of ``#!python`` scripts); those are allowed, and their content is
checked as far as it can be. Any file in site-packages or bin/ that no RECORD lists is
reported: a ``.pth`` file nobody owns runs code at every interpreter start.

What runs besides the wheels' files is checked too:

- every ``.pyc`` in site-packages: a ``__pycache__`` file must be what the venv's interpreter
  compiles from its source, a source that a repository wheel vouches for (``bytecode``,
  ``pyc_child``); any other pyc must be a file of a wheel;
- what the venv creator wrote: ``pyvenv.cfg``, ``bin/python*`` and the activation scripts
  (``venvfiles``), against the interpreter the venv must be made from (by default the one
  rewheel runs on, which ``rewheel install`` uses).
"""

from __future__ import annotations

import ast
import base64
import configparser
import csv
import hashlib
import json
import os
import posixpath
import re
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from pathlib import Path

from packaging.metadata import RawMetadata
from packaging.utils import canonicalize_name

from ..build.linkage import SYSTEM, ElfArch, SystemLibraries
from ..core.errors import RewheelError, Step, VerifyError
from ..core.fsutil import sha256_file
from ..core.types import WheelRef
from ..core.versions import normal_version
from ..repo.wheelfile import (
    RecordEntry,
    WheelReader,
    parse_metadata,
    parse_record,
    parse_wheel_info,
    record_hash,
)
from . import venvfiles
from .bytecode import (
    BytecodeChecker,
    Interpreter,
    PycCheck,
    PycVerdict,
    cached_pyc,
    check_bytecode,
    probe_interpreter,
)
from .chain import verify_chain as verify_chain
from .custody import ChainEntry as ChainEntry
from .custody import ChainReport as ChainReport
from .provenance import PROVENANCE_SUFFIX
from .venvfiles import MadeReference, Reference, ReferenceMaker

# Problem.distribution of a file that no distribution claims.
UNOWNED = "(no distribution)"
# Problem.distribution of what the venv creator wrote (pyvenv.cfg, bin/python*, activate...).
VENV = "(the venv)"
# Problem.reason of a seed package found when they are not accepted.
SEED_PROBLEM = (
    "seed package of the venv (python -m venv installs it from the interpreter's ensurepip),"
    " not from the repository; --allow-seed accepts it when its files are that wheel's"
)

# Files an installer writes into the dist-info directory that are not in the wheel.
_INSTALLER_FILES = frozenset(
    {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json", "uv_cache.json"}
)
# A wheel's RECORD and its signatures are replaced, not copied, by installers.
_RECORD_FILES = frozenset({"RECORD", "RECORD.jws", "RECORD.p7s"})
# Digests that RECORD may use (PEP 376 forbids md5 and sha1).
_ALGORITHMS = frozenset({"sha256", "sha384", "sha512"})
_WHEEL_SCHEMES = ("purelib", "platlib", "scripts", "headers", "data")
_VENV_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")
# The /bin/sh trampoline installers write when the interpreter path is too long for "#!".
_TRAMPOLINE = re.compile(
    rb"#!/bin/sh\r?\n'''exec' (['\"]?)(?P<interp>[^\n]+?)\1 \"\$0\" \"\$@\"\r?\n' '''\r?\n"
)
_BUFSIZE = 1 << 20


@dataclass(frozen=True)
class Problem:
    distribution: str
    version: str | None
    path: str | None  # relative to the venv
    reason: str

    def __str__(self) -> str:
        who = self.distribution + (f"=={self.version}" if self.version else "")
        return f"{who}: {self.path}: {self.reason}" if self.path else f"{who}: {self.reason}"


@dataclass
class VerifyReport:
    checked: list[tuple[str, str]] = field(default_factory=list)  # (name, version) found
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not wrong
    # (name, version) of the seed packages found (``seed``: what ``python -m venv`` installs from
    # the interpreter's ensurepip), checked against that wheel instead of the repository's.
    seeds: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------- the venv's layout


@dataclass(frozen=True)
class VenvLayout:
    """Where a venv keeps things, as posix paths relative to ``root`` with symlinks resolved."""

    root: Path  # real path of the venv
    purelib: str
    platlib: str
    scripts: str
    include: str  # headers go to <include>/<distribution name>/
    python_version: str  # "3.11"

    @property
    def site_dirs(self) -> list[str]:
        return sorted({self.purelib, self.platlib})

    def key(self, path: Path) -> str | None:
        """``path`` relative to the venv (directories resolved, not the file); None if outside."""
        full = Path(os.path.normpath(path))
        real = Path(os.path.realpath(full.parent)) / full.name
        try:
            return real.relative_to(self.root).as_posix()
        except ValueError:
            return None


def venv_layout(venv: Path) -> VenvLayout:
    """The layout of the POSIX venv at ``venv``, from its pyvenv.cfg and directories."""
    root = Path(os.path.realpath(venv))
    try:
        cfg = venvfiles.pyvenv_keys((root / "pyvenv.cfg").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise VerifyError(f"{venv} is not a virtual environment: {exc}", step=Step.VERIFY) from exc
    found = re.match(r"(\d+)\.(\d+)", cfg.get("version_info") or cfg.get("version") or "")
    if found:
        short = f"{found[1]}.{found[2]}"
    else:
        # No version in pyvenv.cfg: take the one lib/pythonX.Y there is.
        candidates = sorted(p.name[len("python") :] for p in root.glob("lib/python3.*"))
        if len(candidates) != 1:
            raise VerifyError(f"cannot tell the Python version of {venv}", step=Step.VERIFY)
        short = candidates[0]

    def rel(path: Path) -> str:
        return Path(os.path.realpath(path)).relative_to(root).as_posix()

    purelib = root / "lib" / f"python{short}" / "site-packages"
    if not purelib.is_dir():
        raise VerifyError(f"{venv} has no {purelib.relative_to(root)}", step=Step.VERIFY)
    platlib = root / "lib64" / f"python{short}" / "site-packages"
    return VenvLayout(
        root=root,
        purelib=rel(purelib),
        platlib=rel(platlib) if platlib.is_dir() else rel(purelib),
        scripts=rel(root / "bin"),
        include=f"include/site/python{short}",
        python_version=short,
    )


# ---------------------------------------------------------------- hashes


def _split_hash(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    algo, sep, digest = value.partition("=")
    return (algo.lower(), digest.rstrip("=")) if sep and digest else None


class _FileDigests:
    """RECORD-style digests of files in the venv, each file read once per algorithm."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._cache: dict[tuple[str, str], str] = {}

    def __call__(self, key: str, algo: str) -> str:
        if (key, algo) not in self._cache:
            digest = hashlib.new(algo)
            with (self._root / key).open("rb") as f:
                while chunk := f.read(_BUFSIZE):
                    digest.update(chunk)
            self._cache[key, algo] = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
        return self._cache[key, algo]


# ---------------------------------------------------------------- the repository's wheels


@dataclass(frozen=True)
class WheelFile:
    """One file of a wheel, as its RECORD vouches for it."""

    hash: str  # "algo=digest"
    # A "#!python" script, whose first line installers replace: args after "#!python" and the
    # sha256 of the rest. None for every other file.
    shebang_args: str | None = None
    body_sha256: str | None = None


@dataclass(frozen=True)
class WheelContents:
    ref: WheelRef
    root_is_purelib: bool
    files: dict[str, WheelFile]  # archive path -> file; RECORD and its signatures left out
    launchers: dict[str, tuple[str, str]]  # entry-point script name -> (module, attribute)


def parse_entry_points(text: str) -> dict[str, tuple[str, str]]:
    """Console and GUI scripts of an ``entry_points.txt``: name -> (module, attribute)."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise RewheelError(f"invalid entry_points.txt: {exc}") from exc
    out: dict[str, tuple[str, str]] = {}
    for group in ("console_scripts", "gui_scripts"):
        if parser.has_section(group):
            for name, value in parser.items(group):
                ep = EntryPoint(name, value, group)
                out[name] = (ep.module, ep.attr or "")
    return out


_PYTHON_SHEBANG = re.compile(rb"#!pythonw?(?P<args>[ \t][^\r\n]*)?\r?$")


def read_wheel(ref: WheelRef, path: Path) -> WheelContents:
    """What ``path`` would install, from its RECORD, WHEEL and entry_points.txt."""
    files: dict[str, WheelFile] = {}
    with WheelReader(path) as wheel:
        entries = wheel.record()
        records = [e.path for e in entries if e.path.endswith(".dist-info/RECORD")]
        if len(records) != 1:
            raise RewheelError(f"wheel {path.name} has {len(records)} RECORD files")
        dist_info = records[0].rsplit("/", 1)[0]
        hashes = {e.path: e.hash for e in entries}
        wheel_info = parse_wheel_info(wheel.read(f"{dist_info}/WHEEL"))
        try:
            entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode("utf-8")
        except KeyError:
            entry_points = ""
        for info in wheel.members:
            name = info.filename
            if info.is_dir() or (
                name.startswith(dist_info + "/") and name[len(dist_info) + 1 :] in _RECORD_FILES
            ):
                continue
            parts = name.split("/")
            is_script = len(parts) > 2 and parts[0].endswith(".data") and parts[1] == "scripts"
            recorded = hashes.get(name)
            if recorded is None or is_script:
                data = wheel.read(info)
                recorded = recorded or record_hash(data)
                first, _, body = data.partition(b"\n")
                shebang = _PYTHON_SHEBANG.match(first) if is_script else None
                if shebang:
                    args = (shebang["args"] or b"").strip().decode("utf-8", "replace")
                    files[name] = WheelFile(recorded, args, hashlib.sha256(body).hexdigest())
                    continue
            files[name] = WheelFile(recorded)
    return WheelContents(
        ref=ref,
        root_is_purelib=wheel_info.root_is_purelib,
        files=files,
        launchers=parse_entry_points(entry_points),
    )


def expected_files(wheel: WheelContents, layout: VenvLayout, name: str) -> dict[str, WheelFile]:
    """Where installers put each file of ``wheel`` in ``layout``: venv-relative path -> file.

    ``name`` is the distribution's name as its METADATA spells it (headers go under it).
    """
    root = layout.purelib if wheel.root_is_purelib else layout.platlib
    scheme_dirs = {
        "purelib": layout.purelib,
        "platlib": layout.platlib,
        "scripts": layout.scripts,
        "headers": f"{layout.include}/{name}",
        "data": "",
    }
    out = {}
    for member, file in wheel.files.items():
        parts = member.split("/")
        if len(parts) > 2 and parts[0].endswith(".data"):
            if parts[1] not in scheme_dirs:
                continue  # not a scheme installers know: they refuse such a wheel
            key = posixpath.join(scheme_dirs[parts[1]], *parts[2:])
        else:
            key = posixpath.join(root, member)
        key = posixpath.normpath(key)
        if not key.startswith("../"):
            out[key] = file
    return out


class _Repository:
    """The repository's wheels by (name, version), each read and hash-checked once, if asked."""

    def __init__(self, wheels: Sequence[tuple[WheelRef, Path]]) -> None:
        self._by_release: dict[tuple[str, str], list[tuple[WheelRef, Path]]] = {}
        for ref, path in wheels:
            self._by_release.setdefault((ref.name, normal_version(ref.version)), []).append(
                (ref, path)
            )
        self._loaded: dict[str, WheelContents | str] = {}

    def wheels(self, name: str, version: str) -> list[WheelContents | str]:
        """Readable wheels of a release, or why one cannot be used; [] if there is none."""
        refs = self._by_release.get((canonicalize_name(name), normal_version(version)), [])
        return [self._load(ref, path) for ref, path in refs]

    def _load(self, ref: WheelRef, path: Path) -> WheelContents | str:
        if ref.filename not in self._loaded:
            self._loaded[ref.filename] = _load_wheel(ref, path)
        return self._loaded[ref.filename]


def _load_wheel(ref: WheelRef, path: Path) -> WheelContents | str:
    try:
        if sha256_file(path) != ref.sha256:
            return f"repository wheel {ref.filename} does not match its recorded sha256"
        return read_wheel(ref, path)
    except (OSError, RewheelError, zipfile.BadZipFile, KeyError, ValueError, csv.Error) as exc:
        return f"cannot read repository wheel {ref.filename}: {exc}"


# ---------------------------------------------------------------- installer-written files


def split_shebang(content: bytes) -> tuple[str, str, bytes] | None:
    """Interpreter, its arguments and the rest of an installed script; None without a shebang."""
    if found := _TRAMPOLINE.match(content):
        return found["interp"].decode("utf-8", "replace"), "", content[found.end() :]
    if not content.startswith(b"#!"):
        return None
    line, _, body = content.partition(b"\n")
    try:
        text = line.rstrip(b"\r")[2:].decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    interp, _, args = text.partition(" ")
    return interp, args.strip(), body


def _is_venv_python(layout: VenvLayout, interp: str) -> bool:
    path = Path(interp)
    return (
        path.is_absolute()
        and layout.key(path) == f"{layout.scripts}/{path.name}"
        and _VENV_PYTHON.fullmatch(path.name) is not None
    )


def _is_argv0(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Subscript)
        and _is_attr(node.value, "sys", "argv")
        and isinstance(node.slice, ast.Constant)
        and node.slice.value == 0
    )


def _is_attr(node: ast.expr, base: str, attr: str) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == attr
        and isinstance(node.value, ast.Name)
        and node.value.id == base
    )


def _attr_chain(node: ast.expr) -> list[str] | None:
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(names)]


def _is_prefix(chain: list[str] | None, entry: list[str]) -> bool:
    return chain is not None and chain == entry[: len(chain)]


_LAUNCHER_NODES = (
    ast.Module, ast.Expr, ast.Constant, ast.Import, ast.ImportFrom, ast.alias, ast.If, ast.Compare,
    ast.Eq, ast.Name, ast.Load, ast.Store, ast.Call, ast.Attribute, ast.Subscript, ast.Slice,
    ast.UnaryOp, ast.USub, ast.Assign,
)  # fmt: skip


def launcher_runs(source: str, module: str, attr: str) -> bool:
    """Whether ``source`` is an entry-point launcher that calls ``module:attr`` and nothing else.

    Installers' templates differ in detail (uv strips "-script.pyw"/".exe" with endswith, pip
    with re.sub), so the code is checked against a whitelist rather than one text: imports of
    sys and re, ``from module import head``, assignments to ``sys.argv[0]``, and calls of
    nothing but sys.exit, re.sub, ``sys.argv[0].endswith`` and, once, ``sys.exit(attr())``.
    """
    if not attr:
        return False
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    entry = attr.split(".")
    imported = False
    for stmt in tree.body:
        match stmt:
            case ast.Expr(value=ast.Constant(value=str())):
                pass  # a docstring, or the string that hides a /bin/sh trampoline
            case ast.Import(names=aliases) if all(
                a.name in ("sys", "re") and a.asname is None for a in aliases
            ):
                pass
            case ast.ImportFrom(module=m, level=0, names=[ast.alias(name=n, asname=None)]) if (
                m == module and n == entry[0] and not imported
            ):
                imported = True
            case ast.If(
                test=ast.Compare(
                    left=ast.Name(id="__name__"),
                    ops=[ast.Eq()],
                    comparators=[ast.Constant(value="__main__")],
                ),
                orelse=[],
            ):
                pass
            case _:
                return False
    names = {"sys", "re", "__name__", entry[0]}
    entry_calls = 0
    for node in ast.walk(tree):
        if not isinstance(node, _LAUNCHER_NODES):
            return False
        match node:
            case ast.Import() | ast.ImportFrom() if not any(node is s for s in tree.body):
                return False  # importing runs code: only the imports checked above
            case ast.Name(id=name) if name not in names:
                return False
            case ast.Assign(targets=targets) if not all(_is_argv0(t) for t in targets):
                return False
            case ast.Subscript(value=value) if not (
                _is_attr(value, "sys", "argv") or _is_argv0(value)
            ):
                return False
            case ast.Attribute() if not (
                _is_attr(node, "sys", "exit")
                or _is_attr(node, "sys", "argv")
                or _is_attr(node, "re", "sub")
                or (node.attr == "endswith" and _is_argv0(node.value))
                or _is_prefix(_attr_chain(node), entry)
            ):
                return False
            case ast.Call(func=func, args=args, keywords=keywords):
                if _attr_chain(func) == entry:
                    if args or keywords:
                        return False
                    entry_calls += 1
                elif _is_attr(func, "sys", "exit"):
                    if keywords or len(args) != 1:
                        return False
                    if not (isinstance(args[0], ast.Call) and _attr_chain(args[0].func) == entry):
                        return False
                elif not (
                    _is_attr(func, "re", "sub")
                    or (
                        isinstance(func, ast.Attribute)
                        and func.attr == "endswith"
                        and _is_argv0(func.value)
                    )
                ):
                    return False
    return imported and entry_calls == 1


def _installer_file_ok(name: str, data: bytes) -> bool:
    """Whether an installer-written dist-info file looks like what installers write."""
    if name in ("INSTALLER", "REQUESTED"):
        try:
            return len(data) <= 1024 and len(data.decode("utf-8").splitlines()) <= 1
        except UnicodeDecodeError:
            return False
    if name.endswith(".json"):
        try:
            return isinstance(json.loads(data), dict)
        except ValueError:
            return False
    return True


# ---------------------------------------------------------------- checking one distribution


@dataclass
class _Installed:
    """One installed distribution as its dist-info describes it."""

    name: str
    version: str
    dist_info: str  # venv-relative
    record: dict[str, RecordEntry]  # venv-relative path -> entry
    intact: set[str]  # paths that exist and hash to what RECORD says


class _Checker:
    def __init__(
        self,
        layout: VenvLayout,
        repository: _Repository,
        seeds: _Repository | None = None,
        allow_seed: bool = False,
    ) -> None:
        self.layout = layout
        self.repository = repository
        self.seeds = seeds or _Repository([])
        self.allow_seed = allow_seed
        self.digests = _FileDigests(layout.root)
        self.report = VerifyReport()
        self.owned: set[str] = set()
        # Files proven equal to a file of a repository wheel, and whose they are.
        self.verified: dict[str, tuple[str, str]] = {}
        self.bin_names: frozenset[str] = frozenset()  # bin/ files the venv creator writes
        self.pycs: list[str] = []  # every .pyc found in site-packages

    def problem(self, dist: str, version: str | None, path: str | None, reason: str) -> None:
        self.report.problems.append(Problem(dist, version, path, reason))

    # -- the installed side

    def distribution(self, dist_info: Path) -> None:
        layout = self.layout
        di_key = layout.key(dist_info) or dist_info.name
        stem = dist_info.name[: -len(".dist-info")]
        fallback_name, _, fallback_version = stem.partition("-")
        metadata = self._metadata(dist_info)
        name = (metadata.get("name") or "").strip() if metadata else ""
        version = (metadata.get("version") or "").strip() if metadata else ""
        if not name or not version:
            name, version = fallback_name, fallback_version
            self.problem(name, version or None, f"{di_key}/METADATA", "METADATA missing or bad")
        record = self._record(dist_info, name, version)
        if record is None:
            self.problem(name, version, f"{di_key}/RECORD", "RECORD missing or unreadable")
        installed = _Installed(name, version, di_key, record or {}, set())
        self._check_integrity(installed)
        self.report.checked.append((name, version))

        candidates = self.repository.wheels(name, version)
        if not candidates and (candidates := self.seeds.wheels(name, version)):
            self.report.seeds.append((name, version))
            if not self.allow_seed:
                self.problem(name, version, None, SEED_PROBLEM)
        elif not candidates:
            self.problem(name, version, None, "not in the repository")
            return
        wheels = [c for c in candidates if isinstance(c, WheelContents)]
        if not wheels:
            for reason in candidates:
                self.problem(name, version, None, str(reason))
            return
        # Several wheels of one release (other tags): judge against the one that fits best.
        verdicts = [self._compare(installed, wheel) for wheel in wheels]
        verdicts.sort(key=lambda v: len(v[0]))
        problems, verified = verdicts[0]
        self.report.problems.extend(problems)
        for key in verified:
            self.verified[key] = (name, version)

    def _metadata(self, dist_info: Path) -> RawMetadata | None:
        try:
            return parse_metadata((dist_info / "METADATA").read_bytes())
        except OSError:
            return None

    def _record(self, dist_info: Path, name: str, version: str) -> dict[str, RecordEntry] | None:
        try:
            entries = parse_record((dist_info / "RECORD").read_bytes())
        except (OSError, ValueError, csv.Error):
            return None
        out = {}
        for entry in entries:
            key = self.layout.key(dist_info.parent / entry.path)
            if key is None:
                self.problem(name, version, entry.path, "RECORD lists a path outside the venv")
                continue
            out[key] = entry
        self.owned.update(out)
        return out

    def _check_integrity(self, dist: _Installed) -> None:
        """Each file RECORD lists exists and still has the hash RECORD gives it."""
        record_key = f"{dist.dist_info}/RECORD"
        for key, entry in sorted(dist.record.items()):
            path = self.layout.root / key
            if not path.exists() and not path.is_symlink():
                if cached_pyc(key) is None:  # byte-code comes and goes with the interpreter
                    self.problem(dist.name, dist.version, key, "missing")
                continue
            if path.is_symlink() or not path.is_file():
                self.problem(dist.name, dist.version, key, "not a regular file")
                continue
            split = _split_hash(entry.hash)
            if cached_pyc(key) is not None:
                # pip lists the pycs it wrote, and the interpreter may write them again: what
                # they hold is judged against their source (``bytecode``), not this hash.
                dist.intact.add(key)
            elif split is None:
                if key == record_key:
                    dist.intact.add(key)
                else:
                    self.problem(dist.name, dist.version, key, "RECORD gives no hash")
                continue
            else:
                algo, digest = split
                if algo not in _ALGORITHMS:
                    self.problem(dist.name, dist.version, key, f"RECORD uses {algo}")
                elif self.digests(key, algo) != digest:
                    self.problem(dist.name, dist.version, key, "modified after install")
                else:
                    dist.intact.add(key)

    # -- against the wheel

    def _compare(self, dist: _Installed, wheel: WheelContents) -> tuple[list[Problem], set[str]]:
        """The problems of ``dist`` judged against ``wheel``, and the files that are the wheel's."""
        layout = self.layout
        expected = expected_files(wheel, layout, dist.name)
        filename = wheel.ref.filename
        out: list[Problem] = []
        verified: set[str] = set()

        def problem(key: str, reason: str) -> None:
            out.append(Problem(dist.name, dist.version, key, reason))

        for key in sorted(dist.record):
            if key not in dist.intact:
                continue  # already reported
            directory, base = posixpath.split(key)
            if directory == dist.dist_info and base in _INSTALLER_FILES:
                if not _installer_file_ok(base, (layout.root / key).read_bytes()):
                    problem(key, "installer-written file with unexpected content")
            elif key in expected:
                reason = self._same_file(key, expected[key])
                if not reason:
                    verified.add(key)
                elif cached_pyc(key) is None:
                    problem(key, f"{reason} {filename}")
                # else: a pyc of the wheel that the interpreter wrote again (its header did not
                # match the installed source's mtime): judged as byte-code, with every other.
            elif directory == layout.scripts and base in wheel.launchers:
                module, attr = wheel.launchers[base]
                if not self._launcher_ok(key, module, attr):
                    problem(key, f"not a launcher of {module}:{attr}")
            elif cached_pyc(key) is not None:
                pass  # judged with every other pyc
            else:
                problem(key, f"not a file of {filename}")
        for key in sorted(expected.keys() - dist.record.keys()):
            problem(key, f"file of {filename} not installed")
        for script in sorted(wheel.launchers):
            key = f"{layout.scripts}/{script}"
            if key not in dist.record and key not in expected:
                problem(key, f"entry-point launcher of {filename} not installed")
        return out, verified

    def _same_file(self, key: str, file: WheelFile) -> str | None:
        """None if the installed ``key`` is ``file`` as an installer writes it, else why not."""
        if file.body_sha256 is None:
            split = _split_hash(file.hash)
            if split is None or split[0] not in _ALGORITHMS:
                return "no usable hash for it in the RECORD of"
            return None if self.digests(key, split[0]) == split[1] else "differs from"
        parsed = split_shebang((self.layout.root / key).read_bytes())
        if parsed is None or not _is_venv_python(self.layout, parsed[0]):
            return "script does not start with the venv's python, as in"
        if parsed[1] not in ("", file.shebang_args):
            return "script's interpreter arguments differ from"
        if hashlib.sha256(parsed[2]).hexdigest() != file.body_sha256:
            return "differs from"
        return None

    def _launcher_ok(self, key: str, module: str, attr: str) -> bool:
        parsed = split_shebang((self.layout.root / key).read_bytes())
        if parsed is None or parsed[1] or not _is_venv_python(self.layout, parsed[0]):
            return False
        try:
            source = parsed[2].decode("utf-8")
        except UnicodeDecodeError:
            return False
        return launcher_runs(source, module, attr)

    # -- what the venv creator wrote

    def venv_files(self, interpreter: Interpreter, references: ReferenceMaker) -> None:
        """``pyvenv.cfg``, ``bin/python*`` and the activation scripts (see ``venvfiles``)."""
        layout = self.layout
        cfg_key = "pyvenv.cfg"
        try:
            text = (layout.root / cfg_key).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problem(VENV, None, cfg_key, f"unreadable: {exc}")
            text = ""
        pairs = venvfiles.parse_pyvenv_cfg(text)
        creator = venvfiles.creator_of(pairs)
        reference: Reference | str
        if creator is None:
            reference = "the venv was not made by uv or python -m venv"
        else:
            reference = references(
                creator,
                interpreter,
                self._venv_path(),
                venvfiles.prompt_option(creator, pairs),
            )
        for key, reason in venvfiles.check_pyvenv_cfg(
            pairs,
            interpreter=interpreter,
            creator=creator,
            reference=reference.cfg if isinstance(reference, Reference) else None,
        ):
            self.problem(VENV, None, cfg_key, f"{key}: {reason}" if key else reason)

        pythons = venvfiles.python_names(interpreter)
        digest: list[str | None] = []  # the interpreter's sha256, computed once if needed
        scripts = layout.root / layout.scripts
        for name in sorted(pythons):
            path = scripts / name
            if not path.exists() and not path.is_symlink():
                continue
            if Path(os.path.realpath(path)) != interpreter.executable and not digest:
                digest.append(venvfiles.interpreter_digest(interpreter))
            why = venvfiles.check_python(path, interpreter, digest[0] if digest else None)
            if why:
                self.problem(VENV, None, f"{layout.scripts}/{name}", why)

        if isinstance(reference, str):
            names = _VENV_SCRIPTS
            for name in sorted(names):
                if (scripts / name).exists() or (scripts / name).is_symlink():
                    self.problem(
                        VENV, None, f"{layout.scripts}/{name}", f"cannot be checked: {reference}"
                    )
        else:
            names = frozenset(reference.scripts)
            where = f"for a venv at {reference.path}"
            for name, expected in sorted(reference.scripts.items()):
                path = scripts / name
                if not path.exists() and not path.is_symlink():
                    continue
                actual = venvfiles.read_script(path)
                if actual is None:
                    reason = "not a plain file, as its creator writes it"
                elif actual != expected:
                    reason = f"differs from what {_creator_name(creator)} writes {where}"
                else:
                    continue
                self.problem(VENV, None, f"{layout.scripts}/{name}", reason)
        self.bin_names = names | pythons

    def _venv_path(self) -> str:
        """The venv's path as its creator was given it: the one ``bin/activate`` names when that
        is this venv, else its absolute path."""
        root = self.layout.root
        try:
            text = (root / self.layout.scripts / "activate").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        named = venvfiles.venv_path_in_activate(text)
        if (
            named
            and os.path.isabs(named)
            and os.path.normpath(named) == named  # no "..": the reference is made below it
            and os.path.realpath(named) == str(root)
        ):
            return named
        return str(root)

    # -- files nobody owns

    def unowned(self) -> None:
        layout = self.layout
        for site in layout.site_dirs:
            for dirpath, dirnames, filenames in os.walk(layout.root / site):
                here = Path(dirpath)
                # A symlinked directory is not descended into: it is reported as one entry.
                links = [d for d in dirnames if (here / d).is_symlink()]
                dirnames[:] = sorted(d for d in dirnames if d not in links)
                for name in sorted([*filenames, *links]):
                    key = layout.key(here / name)
                    if key is None:
                        continue
                    if name.endswith(".pyc"):
                        self.pycs.append(key)  # judged by what it compiles from
                        continue
                    if key in self.owned:
                        continue
                    reason = "not listed in any RECORD"
                    if name.endswith(".pth"):
                        reason += " (a .pth file runs code at interpreter start)"
                    self.problem(UNOWNED, None, key, reason)
        scripts = layout.root / layout.scripts
        for entry in sorted(scripts.iterdir()) if scripts.is_dir() else []:
            key = f"{layout.scripts}/{entry.name}"
            if key in self.owned or entry.name in self.bin_names:
                continue
            reason = "not listed in any RECORD"
            if entry.name == "pyvenv.cfg":
                reason += " (Python reads a pyvenv.cfg here before the venv's own)"
            self.problem(UNOWNED, None, key, reason)

    # -- byte-code

    def bytecode(self, interpreter: Interpreter, checker: BytecodeChecker) -> None:
        """Every pyc found by ``unowned``: a file of a wheel, or the compile of a verified
        source by ``interpreter``."""
        todo: list[PycCheck] = []
        for key in sorted(self.pycs):
            if key in self.verified:
                continue  # a file of a repository wheel, byte for byte
            cached = cached_pyc(key)
            owner = self.verified.get(cached.source) if cached is not None else None
            who, version = owner if owner else (UNOWNED, None)
            if (self.layout.root / key).is_symlink():
                self.problem(who, version, key, "a link: byte-code must be a file of its own")
            elif cached is None:
                self.problem(
                    UNOWNED,
                    None,
                    key,
                    "byte-code that no RECORD vouches for (Python imports a .pyc outside"
                    " __pycache__ when no .py is beside it)",
                )
            elif owner is None and cached.source in self.owned:
                pass  # its source is reported already: no wheel vouches for it
            elif owner is None:
                source = self.layout.root / cached.source
                there = source.exists() or source.is_symlink()
                self.problem(
                    UNOWNED,
                    None,
                    key,
                    f"byte-code of {cached.source}, which no repository wheel vouches for"
                    if there
                    else f"byte-code of {cached.source}, which is not there; no wheel installed it",
                )
            elif cached.tag != interpreter.cache_tag:
                self.problem(
                    who,
                    version,
                    key,
                    f"byte-code for another interpreter ({cached.tag}; this venv's is"
                    f" {interpreter.cache_tag}): it cannot be checked",
                )
            else:
                todo.append(PycCheck(key, cached.source, cached.optimization))
        if not todo:
            return
        verdicts = checker(interpreter, self.layout.root, todo)
        for item in todo:
            who, version = self.verified[item.source]
            verdict = verdicts.get(item.pyc, PycVerdict("crashed", "no answer"))
            reason = _pyc_reason(item, verdict, interpreter)
            if reason is None and verdict.source_sha256 != self.digests(item.source, "sha256"):
                reason = f"{item.source} changed while its byte-code was checked"
            if reason is not None:
                self.problem(who, version, item.pyc, reason)


def _pyc_reason(item: PycCheck, verdict: PycVerdict, interpreter: Interpreter) -> str | None:
    detail = f" ({verdict.detail})" if verdict.detail else ""
    match verdict.verdict:
        case "ok":
            return None
        case "differs":
            return (
                f"byte-code that is not the compile of {item.source} by this venv's python"
                " (Python runs it instead of the source)"
            )
        case "foreign":
            return (
                f"not byte-code of this venv's python (magic {verdict.detail}, its own is"
                f" {interpreter.magic}): it cannot be checked"
            )
        case "bad-flags":
            return f"byte-code with invalid header flags{detail}"
        case "source-does-not-compile":
            return f"byte-code of {item.source}, which does not compile{detail}: not from it"
        case "too-large":
            return "byte-code or source too large to compare"
        case "crashed":
            return f"byte-code that stopped its checker{detail}"
        case _:
            return f"byte-code that cannot be read{detail}"


def _creator_name(creator: str | None) -> str:
    return "uv" if creator == venvfiles.UV else "python -m venv"


# Files ``uv venv`` or ``python -m venv`` put in bin/, when they cannot be made again to compare.
_VENV_SCRIPTS = frozenset(
    {"activate", "activate.bat", "activate.csh", "activate.fish", "activate.nu", "activate.ps1"}
    | {"Activate.ps1", "activate.xsh", "activate_this.py", "deactivate.bat", "pydoc.bat"}
)


def verify_venv(
    venv: Path,
    wheels: Sequence[tuple[WheelRef, Path]],
    *,
    python: Path | None = None,
    bytecode: BytecodeChecker = check_bytecode,
    references: ReferenceMaker | None = None,
    libraries: SystemLibraries | None = None,
    seeds: Sequence[tuple[WheelRef, Path]] = (),
    allow_seed: bool = False,
) -> VerifyReport:
    """Check every file installed in ``venv`` against the repository's ``wheels``, and what the
    venv creator wrote against what it writes for ``python`` (default: the interpreter rewheel
    runs on, which ``rewheel install`` makes venvs from).

    Raises VerifyError only when ``venv`` is not a virtual environment or ``python`` cannot be
    run; everything found wrong inside the venv is a Problem in the report. ``libraries`` finds
    this machine's system libraries, for ``linked_library_findings`` (default: the real ones).

    A distribution that is not in the repository but is one of ``seeds`` (the wheels the
    interpreter's ensurepip installs into a venv, ``seed.seed_wheels``) is checked against that
    wheel instead and listed in ``seeds``; unless ``allow_seed``, it is a problem too.
    """
    layout = venv_layout(venv)
    interpreter = probe_interpreter(python or Path(sys.executable))
    checker = _Checker(layout, _Repository(wheels), _Repository(seeds), allow_seed)
    for site in layout.site_dirs:
        for dist_info in sorted((layout.root / site).glob("*.dist-info")):
            if dist_info.is_dir():
                checker.distribution(dist_info)
    checker.venv_files(interpreter, references or MadeReference())
    checker.unowned()
    checker.bytecode(interpreter, bytecode)
    checker.report.checked.sort()
    _check_linked_libraries(checker.report, wheels, libraries or SystemLibraries())
    return checker.report


# ---------------------------------------------------------------- the libraries wheels link


def linked_library_findings(
    statement: object, libraries: SystemLibraries
) -> tuple[list[str], list[str]]:
    """The system libraries a wheel's provenance says its ELF files were linked against, looked
    for on this machine as its loader will (``libraries``): (missing here, another file here).

    The provenance lists, per ELF file, each NEEDED name with where it was found when built
    (``internalParameters.linkage``), and each system library's sha256 and Debian package
    (``builderDependencies``, role ``system-library``). A library missing here means the wheel
    cannot load; one whose sha256 differs (another build or version) is reported with both
    package versions.
    """

    def get(value: object, *keys: str) -> object:
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    predicate = get(statement, "predicate")
    files = get(predicate, "buildDefinition", "internalParameters", "linkage", "files")
    deps = get(predicate, "runDetails", "builder", "builderDependencies")
    built: dict[str, tuple[object, object, object]] = {}
    for dep in deps if isinstance(deps, list) else []:
        if get(dep, "annotations", "role") == "system-library":
            built[str(get(dep, "annotations", "path"))] = (
                get(dep, "digest", "sha256"),
                get(dep, "annotations", "debianPackage"),
                get(dep, "annotations", "debianVersion"),
            )

    def described(sha256: object, package: object, version: object) -> str:
        pkg = f", {package} {version}" if package else ""
        return f"sha256 {str(sha256)[:12]}...{pkg}"

    missing: list[str] = []
    different: list[str] = []
    for file in files if isinstance(files, list) else []:
        elf_class, order, machine = (get(file, k) for k in ("elfClass", "byteOrder", "machine"))
        if not isinstance(elf_class, int) or not isinstance(machine, str):
            continue
        arch = ElfArch(elf_class, order == "little", machine)
        search = get(file, "runpath") or get(file, "rpath")
        folders = [str(f) for f in search] if isinstance(search, list) else []
        needed = get(file, "needed")
        for entry in needed if isinstance(needed, list) else []:
            name, was = get(entry, "name"), get(entry, "path")
            if get(entry, "found") != SYSTEM or not isinstance(name, str):
                continue
            where = f"{get(file, 'file')}: {name}"
            here = libraries.find(name, arch, folders)
            if here is None:
                missing.append(f"{where} is not on this machine (built against {was})")
                continue
            now = libraries.describe([here])[here]
            recorded = built.get(str(was))
            if recorded is not None and recorded[0] != now.sha256:
                different.append(
                    f"{where} differs here: built against {was} ({described(*recorded)}),"
                    f" here {here} ({described(now.sha256, now.package, now.package_version)})"
                )
    return sorted(set(missing)), sorted(set(different))


def _check_linked_libraries(
    report: VerifyReport, wheels: Sequence[tuple[WheelRef, Path]], libraries: SystemLibraries
) -> None:
    """``linked_library_findings`` for the wheel of each distribution checked: a missing
    library is a problem, a different one a note."""
    checked = {(canonicalize_name(n), normal_version(v)) for n, v in report.checked}
    for ref, path in wheels:
        if (canonicalize_name(ref.name), normal_version(ref.version)) not in checked:
            continue
        try:
            statement = json.loads(path.with_name(path.name + PROVENANCE_SUFFIX).read_bytes())
        except (OSError, ValueError):
            continue  # no provenance (pre-built) or unreadable: the chain of custody says so
        missing, different = linked_library_findings(statement, libraries)
        for text in missing:
            report.problems.append(Problem(ref.name, ref.version, None, text))
        report.notes.extend(f"{ref.name} {ref.version}: {text}" for text in different)
