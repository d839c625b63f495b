"""Rust sources in an sdist: does its build compile Rust, and can cargo build them without
reaching a crate registry?

A Cargo.toml alone does not make a Rust build (zstandard ships one for a backend it builds only
when asked): the build does when it requires maturin or setuptools-rust, declares a Rust
extension (``[tool.maturin]``, ``rust_extensions`` / ``RustExtension`` in setup.py or setup.cfg),
or its settings choose a recipe that runs cargo (``rust_build_reason``).

Such a build takes its crates from the registries and git hosts that Cargo.lock names, unless
they are vendored: a ``.cargo/config.toml`` that replaces those sources with a ``directory``
source holding every crate. Builds run offline, so a tree whose crates are not all there is
refused before its build environment is made, with a message that says what to do; when
crates.io can be reached, ``cargo vendor`` fetches them first (still checked by Cargo.lock).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import threading
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..core.errors import BuildError, CommandFailed, Step
from ..core.fsutil import is_plain_file
from ..core.types import Confinement, Runner
from ..index.http import HttpClient
from .buildenv import scrubbed_environ

STEP = Step.RUST_VENDOR
CRATES_IO = "crates-io"
# How Cargo.lock names crates.io (the git index of old, the sparse index of new).
_CRATES_IO_SOURCES = frozenset(
    {"registry+https://github.com/rust-lang/crates.io-index", "sparse+https://index.crates.io/"}
)
CRATES_IO_PROBE_URL = "https://index.crates.io/config.json"
_PROBE_TIMEOUT = 3.0
VENDOR_DIR = "rewheel-cargo-vendor"  # where ``cargo vendor`` puts crates, in the source tree
_REPLACEMENT = "rewheel-vendored"
_CHECKSUM_FILE = ".cargo-checksum.json"
_SKIP_DIRS = frozenset({"target", ".git", "node_modules", "__pycache__"})
_MAX_REPLACE_HOPS = 16


@dataclass(frozen=True, order=True)
class Crate:
    """A crate of Cargo.lock that comes from a registry or git (not a path in the tree)."""

    name: str
    version: str
    source: str  # as Cargo.lock writes it, e.g. "registry+https://...", "git+https://...#<sha>"
    checksum: str | None = None

    @property
    def origin(self) -> str:
        """The source that ``.cargo/config.toml`` replaces: "crates-io" or the URL sans commit."""
        base = self.source.split("#", 1)[0]
        return CRATES_IO if base in _CRATES_IO_SOURCES else base


@dataclass(frozen=True)
class RustSources:
    """What a build of a Rust sdist uses instead of the network, for its record."""

    manifests: tuple[str, ...]  # Cargo.toml files of the build, relative to the tree
    lockfiles: tuple[str, ...]
    crates: int  # from registries or git
    vendored_dir: str | None  # relative to the tree; None when no crate is needed
    vendored_by: str  # "sdist" (shipped in it) or "cargo vendor" (fetched by rewheel)
    lock_sha256: str  # over the sorted crate checksums of the Cargo.lock files

    def as_record(self) -> dict[str, Any]:
        return {
            "manifests": list(self.manifests),
            "lockfiles": list(self.lockfiles),
            "crates": self.crates,
            "vendored_dir": self.vendored_dir,
            "vendored_by": self.vendored_by,
            "lock_sha256": self.lock_sha256,
        }


# -- is it a Rust build? -----------------------------------------------------------------------

# Build tools that compile Rust (puccinialin: what maturin's backend asks for to get a toolchain).
RUST_BUILD_TOOLS = frozenset({"maturin", "setuptools-rust", "puccinialin"})
# Recipes (``[build] recipe``) that build with cargo.
RUST_RECIPES = frozenset({"maturin-cargo"})
# What declares a Rust extension to setuptools-rust in setup.py or setup.cfg.
_SETUPTOOLS_RUST = re.compile(rb"\b(?:setuptools[_-]rust|RustExtension|RustBin|rust_extensions)\b")
_MAX_SETUP_READ = 1 << 20  # how much of setup.py and setup.cfg is searched


def rust_tools(requirements: Iterable[str]) -> list[str]:
    """The Rust build tools that ``requirements`` name (requirement strings), in their order."""
    found: list[str] = []
    for text in requirements:
        try:
            name = canonicalize_name(Requirement(text).name)
        except InvalidRequirement:
            continue
        if name in RUST_BUILD_TOOLS and name not in found:
            found.append(name)
    return found


def _declares_rust(path: Path) -> str | None:
    """What ``path`` (setup.py, setup.cfg) says that declares a Rust extension, if anything."""
    if not is_plain_file(path):
        return None
    try:
        with path.open("rb") as f:
            text = f.read(_MAX_SETUP_READ)
    except OSError:
        return None
    match = _SETUPTOOLS_RUST.search(text)
    return None if match is None else match.group(0).decode("ascii")


def rust_build_reason(
    source_dir: Path,
    *,
    requires: Iterable[str],
    backend: str,
    recipe: str | None = None,
) -> str | None:
    """Why the build of the tree at ``source_dir`` compiles Rust (for messages), or None.

    ``requires`` is its build-system.requires, ``backend`` its build-backend and ``recipe`` the
    recipe its settings choose, if any.
    """
    if recipe is not None and recipe in RUST_RECIPES:
        return f"its recipe {recipe} builds with cargo"
    tools = rust_tools(requires)
    if tools:
        return f"its build requires {tools[0]}"
    if backend.split(":", 1)[0].split(".", 1)[0] == "maturin":
        return "its build backend is maturin"
    tool = (_load_toml(source_dir / "pyproject.toml") or {}).get("tool", {})
    for table in ("maturin", "setuptools-rust"):
        if isinstance(tool, dict) and table in tool:
            return f"its pyproject.toml has [tool.{table}]"
    for name in ("setup.py", "setup.cfg"):
        found = _declares_rust(source_dir / name)
        if found is not None:
            return f"its {name} uses {found}"
    return None


# -- finding the Rust parts of a tree ---------------------------------------------------------


def _load_toml(path: Path) -> dict[str, Any] | None:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def find_manifests(source_dir: Path) -> list[Path]:
    """The Cargo.toml files a build would use: the one at the top, the one pyproject's
    ``[tool.maturin] manifest-path`` names, or else those one or two folders down.

    Folders of vendored crates (they hold ``.cargo-checksum.json``) are not the build's own.
    """
    found: list[Path] = []
    top = source_dir / "Cargo.toml"
    if top.is_file():
        found.append(top)
    pyproject = _load_toml(source_dir / "pyproject.toml") or {}
    maturin = pyproject.get("tool", {}).get("maturin", {})
    manifest_path = maturin.get("manifest-path") if isinstance(maturin, dict) else None
    if isinstance(manifest_path, str):
        named = source_dir / manifest_path
        if named.is_file() and _inside(named, source_dir) and named not in found:
            found.append(named)
    if found:
        return found
    level = [source_dir]
    for _depth in (1, 2):
        below: list[Path] = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
            except OSError:
                continue
            for child in children:
                if child.name in _SKIP_DIRS or (child / _CHECKSUM_FILE).exists():
                    continue
                if (child / "Cargo.toml").is_file():
                    found.append(child / "Cargo.toml")
                below.append(child)
        level = below
    return found


def find_lockfile(manifest: Path, source_dir: Path) -> Path | None:
    """The Cargo.lock of ``manifest``: next to it or at its workspace root above it."""
    folder = manifest.parent
    while True:
        lock = folder / "Cargo.lock"
        if lock.is_file():
            return lock
        if folder.resolve() == source_dir.resolve() or folder.parent == folder:
            return None
        folder = folder.parent


def has_dependencies(manifest: Path) -> bool:
    """Whether a Cargo.toml declares any dependency (then it cannot build without a lock)."""
    data = _load_toml(manifest)
    if data is None:
        return True  # unreadable: assume the worst
    tables = [data, *data.get("target", {}).values()]
    keys = ("dependencies", "build-dependencies", "dev-dependencies")
    return any(isinstance(t, dict) and t.get(k) for t in tables for k in keys) or bool(
        data.get("workspace", {}).get("dependencies")
    )


def parse_lock(text: str) -> list[Crate]:
    """The crates of a Cargo.lock that come from a registry or git, sorted.

    Lock format 1 keeps checksums in ``[metadata]`` as ``"checksum NAME VERSION (SOURCE)"``.
    """
    data = tomllib.loads(text)
    old_sums = data.get("metadata", {})
    crates = set()
    for entry in data.get("package", []):
        source = entry.get("source")
        if not isinstance(source, str):
            continue  # a path crate of the tree itself
        name, version = str(entry["name"]), str(entry["version"])
        checksum = entry.get("checksum") or old_sums.get(f"checksum {name} {version} ({source})")
        crates.add(Crate(name, version, source, checksum if isinstance(checksum, str) else None))
    return sorted(crates)


def lock_digest(crates: Iterable[Crate]) -> str:
    """A sha256 over the crates' checksums (git crates: their source, which names the commit)."""
    lines = sorted(f"{c.name} {c.version} {c.checksum or c.source}" for c in crates)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# -- source replacement ---------------------------------------------------------------------


def _config_files(folder: Path) -> list[Path]:
    # Cargo reads .cargo/config when both exist (and warns); .cargo/config.toml otherwise.
    for name in ("config", "config.toml"):
        path = folder / ".cargo" / name
        if path.is_file():
            return [path]
    return []


def source_tables(source_dir: Path, cwd: Path) -> dict[str, dict[str, Any]]:
    """The ``[source.*]`` tables cargo sees when run in ``cwd`` (from the tree's top down, the
    deeper overriding), with each ``directory`` made absolute.

    Paths in a cargo config are relative to the folder that holds its ``.cargo`` folder.
    """
    chain = [cwd]
    while chain[-1].resolve() != source_dir.resolve() and chain[-1].parent != chain[-1]:
        chain.append(chain[-1].parent)
    tables: dict[str, dict[str, Any]] = {}
    for folder in reversed(chain):
        for path in _config_files(folder):
            data = _load_toml(path)
            if data is None:
                continue
            for key, table in data.get("source", {}).items():
                if not isinstance(table, dict):
                    continue
                merged = {**tables.get(key, {}), **table}
                if isinstance(table.get("directory"), str):
                    merged["directory"] = str(folder / table["directory"])
                tables[key] = merged
    return tables


def _origin_matches(key: str, table: Mapping[str, Any], origin: str) -> bool:
    if key == origin:
        return True
    registry = table.get("registry")
    if isinstance(registry, str) and registry in (origin, origin.removeprefix("registry+")):
        return True
    git = table.get("git")
    if isinstance(git, str) and origin.startswith("git+"):
        url, _, query = origin.removeprefix("git+").partition("?")
        wanted = dict(parse_qsl(query))
        given = {k: table[k] for k in ("branch", "tag", "rev") if isinstance(table.get(k), str)}
        return git.rstrip("/") == url.rstrip("/") and given == wanted
    return False


def replacement_dir(tables: Mapping[str, Mapping[str, Any]], origin: str) -> Path | None:
    """The ``directory`` source that replaces ``origin``, following ``replace-with``."""
    if origin == CRATES_IO:
        key: str | None = CRATES_IO
    else:
        key = next((k for k, t in tables.items() if _origin_matches(k, t, origin)), None)
    for _hop in range(_MAX_REPLACE_HOPS):
        if key is None or key not in tables:
            return None
        table = tables[key]
        if isinstance(table.get("directory"), str):
            return Path(table["directory"])
        nxt = table.get("replace-with")
        key = nxt if isinstance(nxt, str) else None
    return None


def _vendored_version(folder: Path) -> str | None:
    data = _load_toml(folder / "Cargo.toml") or {}
    version = data.get("package", {}).get("version")
    return version if isinstance(version, str) else None


def is_vendored(crate: Crate, directory: Path) -> bool:
    """Whether ``directory`` holds ``crate`` as ``cargo vendor`` lays it out."""
    versioned = directory / f"{crate.name}-{crate.version}"
    if (versioned / _CHECKSUM_FILE).is_file():
        return True
    plain = directory / crate.name
    return (plain / _CHECKSUM_FILE).is_file() and _vendored_version(plain) == crate.version


def missing_crates(
    crates: Iterable[Crate], tables: Mapping[str, Mapping[str, Any]]
) -> tuple[list[Crate], set[Path]]:
    """The crates no directory source holds, and the directories that hold the others."""
    missing: list[Crate] = []
    used: set[Path] = set()
    for crate in crates:
        directory = replacement_dir(tables, crate.origin)
        if directory is not None and is_vendored(crate, directory):
            used.add(directory)
        else:
            missing.append(crate)
    return missing, used


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def vendor_config(crates: Iterable[Crate], directory: str) -> str:
    """The ``[source]`` tables that send every origin of ``crates`` to ``directory``."""
    lines = [
        "# Written by rewheel after `cargo vendor`: builds run offline.",
        f"[source.{_REPLACEMENT}]",
        f"directory = {_toml_str(directory)}",
    ]
    for origin in sorted({c.origin for c in crates}):
        lines.append("")
        if origin == CRATES_IO:
            lines.append(f"[source.{CRATES_IO}]")
        elif origin.startswith("git+"):
            url, _, query = origin.removeprefix("git+").partition("?")
            lines.append(f"[source.{_toml_str(origin)}]")
            lines.append(f"git = {_toml_str(url)}")
            lines.extend(f"{k} = {_toml_str(v)}" for k, v in parse_qsl(query))
        else:
            lines.append(f"[source.{_toml_str(origin)}]")
            lines.append(f"registry = {_toml_str(origin)}")
        lines.append(f"replace-with = {_toml_str(_REPLACEMENT)}")
    return "\n".join(lines) + "\n"


# -- the network ----------------------------------------------------------------------------


class UrlProbe(Protocol):
    """What ``CratesIo`` asks through; ``index.http.HttpClient`` is one."""

    def reachable(self, url: str, timeout: float) -> bool: ...


class CratesIo:
    """Whether crates.io's index answers from here: asked once per instance, ~3 s at most.

    ``client`` asks (an ``index.http.HttpClient``, or a fake; None: a client made for that one
    question). ``reachable`` is what ``check_rust_sources`` takes as ``network``.
    """

    def __init__(
        self,
        client: UrlProbe | None = None,
        url: str = CRATES_IO_PROBE_URL,
        *,
        timeout: float = _PROBE_TIMEOUT,
    ) -> None:
        self.url = url
        self._client = client
        self._timeout = timeout
        self._lock = threading.Lock()
        self._answer: bool | None = None

    def reachable(self) -> bool:
        with self._lock:
            if self._answer is None:
                self._answer = self._ask()
            return self._answer

    def _ask(self) -> bool:
        if self._client is not None:
            return self._client.reachable(self.url, self._timeout)
        with HttpClient() as client:
            return client.reachable(self.url, self._timeout)


# For build.pipeline, which has no probe of its own to pass: one question for the whole process.
_PROCESS_PROBE = CratesIo()


def crates_io_reachable() -> bool:
    """Whether crates.io's index answers from here (asked once per process, ~3 s at most)."""
    return _PROCESS_PROBE.reachable()


# -- the check ------------------------------------------------------------------------------


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _sample(crates: list[Crate], n: int = 3) -> str:
    names = ", ".join(f"{c.name} {c.version}" for c in crates[:n])
    return names + (", ..." if len(crates) > n else "")


def check_rust_sources(
    source_dir: Path,
    *,
    package: str,
    version: str,
    network: Callable[[], bool],
    runner: Runner | None = None,
    log: Path | None = None,
    confine: Confinement | None = None,
    home: Path | None = None,
    reason: str | None = None,
) -> RustSources | None:
    """None for a tree without Rust; else what its crates are built from.

    Call it for a build that compiles Rust (``rust_build_reason``, the ``reason`` its messages
    give); it looks only at the tree.

    Raises ``BuildError(step=Step.RUST_VENDOR)`` when crates are missing and cannot be fetched.
    ``network`` is asked only when crates are missing; ``runner`` and ``log`` run and log
    ``cargo vendor`` then, confined by ``confine`` (with the network: it downloads crates) with
    the build's scrubbed environment and ``home`` as its HOME and CARGO_HOME's parent: cargo
    reads configuration from the tree, and rustup's proxy a toolchain file, so it is build code.
    """
    manifests = find_manifests(source_dir)
    if not manifests:
        return None

    def fail(message: str) -> BuildError:
        if reason is not None:
            message = message.replace("Rust sdist:", f"Rust sdist ({reason}):", 1)
        return BuildError(message, package=package, version=version, step=STEP, log_path=log)

    locks: dict[Path, list[Crate]] = {}
    lock_of: dict[Path, Path] = {}
    unlocked: list[Path] = []
    for manifest in manifests:
        lock = find_lockfile(manifest, source_dir)
        if lock is None:
            if has_dependencies(manifest):
                unlocked.append(manifest)
            continue
        lock_of[manifest] = lock
        if lock not in locks:
            try:
                locks[lock] = parse_lock(lock.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError) as exc:
                raise fail(f"cannot read {_rel(lock, source_dir)}: {exc}") from exc
    if unlocked:
        where = ", ".join(_rel(m, source_dir) for m in unlocked)
        raise fail(
            f"Rust sdist: {where} has dependencies but no Cargo.lock, so the crates it would "
            "build with are unknown; add a Cargo.lock with a patch, or allow-list a pre-built "
            "wheel in its settings ([build] prebuilt = true)"
        )
    all_crates = sorted({c for crates in locks.values() for c in crates})
    record = RustSources(
        manifests=tuple(_rel(m, source_dir) for m in manifests),
        lockfiles=tuple(_rel(lock, source_dir) for lock in locks),
        crates=len(all_crates),
        vendored_dir=None,
        vendored_by="sdist",
        lock_sha256=lock_digest(all_crates),
    )
    if not all_crates:
        return record

    # Cargo reads its configuration from where it runs: the manifest's folder and up.
    missing: set[Crate] = set()
    used: set[Path] = set()
    for manifest, lock in lock_of.items():
        gone, dirs = missing_crates(locks[lock], source_tables(source_dir, manifest.parent))
        missing.update(gone)
        used |= dirs
    if not missing:
        vendored = ", ".join(sorted(_rel(d, source_dir) for d in used))
        return dataclasses.replace(record, vendored_dir=vendored)

    absent = sorted(missing)
    if not network():
        hosts = "crates.io" if all(c.origin == CRATES_IO for c in absent) else "their sources"
        raise fail(
            f"Rust sdist: {len(absent)} of {len(all_crates)} crates are not vendored "
            f"({_sample(absent)}) and {hosts} cannot be reached from here, so it cannot be "
            "built offline; allow-list a pre-built wheel in its settings "
            "([build] prebuilt = true) or vendor the crates with a patch"
        )
    if runner is None or log is None:
        raise fail(f"Rust sdist: {len(absent)} crates are not vendored and no runner was given")
    roots = [next(m for m, lk in lock_of.items() if lk == lock) for lock in locks]
    _cargo_vendor(
        source_dir,
        roots,
        all_crates,
        runner=runner,
        log=log,
        fail=fail,
        confine=confine,
        home=home or source_dir.parent / "home",
    )
    # What cargo vendor did is checked the same way as a vendored sdist.
    still, _dirs = missing_crates(all_crates, source_tables(source_dir, source_dir))
    if still:
        raise fail(
            f"Rust sdist: `cargo vendor` left {len(still)} of {len(all_crates)} crates "
            f"missing ({_sample(still)})"
        )
    return dataclasses.replace(record, vendored_dir=VENDOR_DIR, vendored_by="cargo vendor")


def _cargo_vendor(
    source_dir: Path,
    roots: list[Path],
    crates: list[Crate],
    *,
    runner: Runner,
    log: Path,
    fail: Callable[[str], BuildError],
    confine: Confinement | None,
    home: Path,
) -> None:
    config_dir = source_dir / ".cargo"
    existing = _config_files(source_dir)
    if existing and "source" in (_load_toml(existing[0]) or {}):
        # Its own replacement is incomplete; merging two is for a patch, not for guessing.
        raise fail(
            f"Rust sdist: {_rel(existing[0], source_dir)} replaces crate sources but does not "
            "hold every crate of Cargo.lock; fix it with a patch, or allow-list a pre-built wheel "
            "in its settings ([build] prebuilt = true)"
        )
    # One manifest per lock file: cargo vendor syncs the others into the same folder.
    cmd = ["cargo", "vendor", "--locked", "--manifest-path", str(roots[0])]
    for other in roots[1:]:
        cmd += ["--sync", str(other)]
    cmd.append(VENDOR_DIR)
    env = scrubbed_environ(os.environ, home=home)
    env["CARGO_HOME"] = str(home / ".cargo")
    try:
        (home / ".cargo").mkdir(parents=True, exist_ok=True)
        net = dataclasses.replace(confine, network=True) if confine is not None else None
        runner(cmd, cwd=source_dir, env=env, log=log, confine=net)
    except (CommandFailed, OSError) as exc:
        raise fail(f"Rust sdist: `cargo vendor` failed: {exc}") from exc
    config_dir.mkdir(exist_ok=True)
    text = vendor_config(crates, VENDOR_DIR)
    target = existing[0] if existing else config_dir / "config.toml"
    before = target.read_text(encoding="utf-8") + "\n" if target.exists() else ""
    target.write_text(before + text, encoding="utf-8")
