"""Requirements and constraints files: one PEP 508 requirement a line; and PEP 751 lock files.

Comments, blank lines, line continuations and nested ``-r``/``-c`` files are understood, and so
are ``--hash=sha256:<hex>`` options after a requirement (what ``rewheel lock``,
``pip-compile --generate-hashes`` and ``uv pip compile --generate-hashes`` write): they are
collected by project, for ``rewheel install`` to allow only those wheels and for ``rewheel
bootstrap`` only those sdists. ``check_hash_mode`` is pip's hash-checking mode: once one
requirement has hashes (or a file says ``--require-hashes``), every one must be pinned with
``==`` and have hashes.

Options that point at another index are recorded (``--index-url``) or refused
(``--extra-index-url``, ``--find-links``, ``--no-index``): the index is given on the command
line. Editable and path requirements are refused with the command that builds a project folder.
Options that only steer pip's choice between wheels and sdists are ignored with a note: rewheel
builds every package from its sdist.

A file named ``pylock.toml`` or ``pylock.<name>.toml`` is a PEP 751 lock, read by
``core.pylock_reader``: its packages for this interpreter, each pinned, with its sdist's hashes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from .core.errors import ConfigError, Step
from .core.pylock_reader import is_pylock_name, read_pylock

# The largest requirements or lock file read; real ones are a few hundred KiB.
MAX_FILE_BYTES = 32 << 20


@dataclass(frozen=True)
class Line:
    """Where a requirement was written, and whether ``--hash`` options came with it."""

    where: str
    requirement: Requirement
    hashed: bool


@dataclass
class RequirementSet:
    requirements: list[Requirement] = field(default_factory=list)
    constraints: list[Requirement] = field(default_factory=list)
    # The sha256 digests ``--hash`` options allow, by project (requirements and constraints alike,
    # as pip takes them); a project without an entry is not restricted.
    hashes: dict[NormalizedName, set[str]] = field(default_factory=dict)
    # The sha256 of the sdists PEP 751 locks give, by project: for a bootstrap only (what
    # ``rewheel install`` checks are the repository's wheels, which no upstream lock names).
    lock_sdist_hashes: dict[NormalizedName, set[str]] = field(default_factory=dict)
    # Every requirement of the command line and of requirements files (not constraints, not
    # lock files), for pip's hash-checking mode (``check_hash_mode``).
    lines: list[Line] = field(default_factory=list)
    require_hashes: bool = False  # a file said --require-hashes
    index_urls: list[tuple[str, str]] = field(default_factory=list)  # (where, --index-url)
    lock_indexes: list[tuple[str, str]] = field(default_factory=list)  # (where, packages.index)
    notes: list[str] = field(default_factory=list)  # what was ignored, for the user to see

    def sdist_hashes(self) -> dict[NormalizedName, set[str]]:
        """What a bootstrap holds each project's sdist to: the ``--hash`` options (pip-compile
        and uv list the sdist's next to the wheels') and the locks' sdist hashes."""
        out = {name: set(digests) for name, digests in self.hashes.items()}
        for name, digests in self.lock_sdist_hashes.items():
            out.setdefault(name, set()).update(digests)
        return out

    def hash_checking(self) -> bool:
        return self.require_hashes or any(line.hashed for line in self.lines)

    def check_hash_mode(self) -> None:
        """pip's hash-checking mode: once a requirement has ``--hash`` options (or a file says
        ``--require-hashes``), every requirement must be pinned to one version and have them."""
        if not self.hash_checking():
            return
        for line in self.lines:
            problem = None
            if not _pinned(line.requirement):
                problem = "is not pinned to one version with == or ==="
            elif not line.hashed:
                problem = "has no --hash"
            if problem is not None:
                raise ConfigError(
                    f"{line.where}: {str(line.requirement)!r} {problem}; with hashes in the"
                    " requirements, every requirement needs an exact pin and hashes (pip's"
                    " hash-checking mode)",
                    step=Step.INPUT,
                    hint="generate the file with `uv pip compile --generate-hashes` or"
                    " `pip-compile --generate-hashes`, or add `name==version --hash=sha256:...`",
                )


# ``--hash=sha256:<hex>`` (or ``--hash sha256:<hex>``) after a requirement.
_HASH_OPTION = re.compile(r"\s--hash(?:=|\s+)(?P<value>\S+)")
_SHA256 = re.compile(r"sha256:(?P<hex>[0-9a-fA-F]{64})")


def parse_requirement(text: str, *, where: str = "the command line") -> Requirement:
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise ConfigError(
            f"invalid requirement {text!r} in {where}: {exc}", step=Step.INPUT
        ) from exc
    if req.url:
        raise ConfigError(
            f"{text!r} in {where}: direct URL requirements are not supported; rewheel takes "
            "sdists from the index",
            step=Step.INPUT,
        )
    return req


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            out.append((start, full))
    return out


def _pinned(req: Requirement) -> bool:
    specs = list(req.specifier)
    return (
        len(specs) == 1
        and specs[0].operator in ("==", "===")
        and not specs[0].version.endswith(".*")
    )


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", step=Step.INPUT) from exc
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB: not a requirements file",
            step=Step.INPUT,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc.reason}", step=Step.INPUT) from None


# Options of pip's requirement files, and what becomes of them here.
_INDEX_OPTIONS = {"-i": "--index-url", "--index-url": "--index-url"}
_REFUSED = {
    "--extra-index-url": "rewheel takes every sdist from one upstream, so that no second index"
    " can offer a project of the same name; give the index that serves them all as --index-url"
    " on the command line and remove this line",
    "--find-links": "rewheel takes sdists from its upstream index only; serve these files from"
    " an index and give it as --index-url on the command line",
    "-f": "rewheel takes sdists from its upstream index only; serve these files from an index and"
    " give it as --index-url on the command line",
    "--no-index": "rewheel builds from its upstream index; remove this line",
    "--pre": "give --pre on the command line",
    "-e": "rewheel builds a project folder with `rewheel bootstrap ./project`",
    "--editable": "rewheel builds a project folder with `rewheel bootstrap ./project`",
}
_IGNORED = {
    "--no-binary": "rewheel builds every package from its sdist",
    "--only-binary": "rewheel builds every package from its sdist",
    "--prefer-binary": "rewheel builds every package from its sdist",
    "--trusted-host": "rewheel checks the upstream's TLS certificate always",
}
# A requirement that is a path or a file URL: a project folder or a local archive.
_PATH_LIKE = re.compile(r"(\.{1,2}(/|$)|/|~|file:)")


def _option(line: str) -> tuple[str, str]:
    """``--name value``, ``--name=value`` or ``-n value`` as (name, value)."""
    head, _, rest = line.partition(" ")
    if head.startswith("--") and "=" in head:
        head, _, value = head.partition("=")
        return head, (value + " " + rest).strip()
    if not head.startswith("--") and len(head) > 2:  # -ihttps://...
        return head[:2], (head[2:] + " " + rest).strip()
    return head, rest.strip()


def read_file(
    path: Path,
    into: RequirementSet,
    *,
    constraint: bool,
    seen: set[Path],
    environment: Mapping[str, str] | None = None,
) -> None:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path} includes itself", step=Step.INPUT)
    seen = seen | {path}
    if is_pylock_name(path.name):
        _read_lock(path, into, constraint=constraint, environment=environment)
        return
    text = _read_text(path)
    for number, line in _logical_lines(text):
        where = f"{path}:{number}"
        if line.startswith("-") and not line.startswith("--hash"):
            name, value = _option(line)
            if name in ("-r", "--requirement", "-c", "--constraint"):
                nested = (path.parent / value).resolve()
                is_constraint = constraint or name in ("-c", "--constraint")
                read_file(
                    nested, into, constraint=is_constraint, seen=seen, environment=environment
                )
            elif name in _INDEX_OPTIONS:
                into.index_urls.append((where, value))
            elif name == "--require-hashes":
                into.require_hashes = True
            elif name in _REFUSED:
                raise ConfigError(
                    f"{where}: {name} is not supported here", step=Step.INPUT, hint=_REFUSED[name]
                )
            elif name in _IGNORED:
                into.notes.append(f"{where}: {name} ignored: {_IGNORED[name]}")
            else:
                raise ConfigError(f"{where}: option {name!r} is not supported", step=Step.INPUT)
            continue
        if _PATH_LIKE.match(line):
            raise ConfigError(
                f"{where}: {line.split()[0]!r} is a path, not a requirement of the index",
                step=Step.INPUT,
                hint=_REFUSED["-e"],
            )
        values = [m["value"] for m in _HASH_OPTION.finditer(" " + line)]
        req = parse_requirement(_HASH_OPTION.sub("", " " + line).strip(), where=where)
        for value in values:
            digest = _SHA256.fullmatch(value)
            if digest is None:
                raise ConfigError(
                    f"{where}: --hash={value} is not sha256:<64 hex digits> (the only hash that"
                    " wheels here are known by)",
                    step=Step.INPUT,
                )
            into.hashes.setdefault(canonicalize_name(req.name), set()).add(digest["hex"].lower())
        if constraint:
            into.constraints.append(req)
        else:
            into.requirements.append(req)
            into.lines.append(Line(where, req, hashed=bool(values)))


def _read_lock(
    path: Path,
    into: RequirementSet,
    *,
    constraint: bool,
    environment: Mapping[str, str] | None,
) -> None:
    """A PEP 751 lock: each package for this interpreter pinned, its sdist's hashes allowed."""
    env = dict(environment or {k: str(v) for k, v in default_environment().items()})
    locked = read_pylock(_read_text(path), where=str(path), environment=env)
    into.notes.extend(locked.notes)
    for package in locked.packages:
        req = Requirement(f"{package.name}=={package.version}")
        (into.constraints if constraint else into.requirements).append(req)
        if package.index is not None:
            into.lock_indexes.append((f"{path} ({package.name})", package.index))
        if package.sdist_sha256 is None:
            into.notes.append(
                f"{path}: the lock carries no sdist hash for {req} (only wheels): its sdist is"
                " taken from the upstream and checked against the index's sha256 only"
            )
            continue
        into.lock_sdist_hashes.setdefault(package.name, set()).update(package.sdist_sha256)


def collect(
    requirements: list[str],
    requirement_files: list[Path],
    constraint_files: list[Path],
    *,
    environment: Mapping[str, str] | None = None,
) -> RequirementSet:
    """Requirements of the command line and of the files; ``environment``: the marker values of
    the target interpreter, for the markers of lock files (default: this interpreter's)."""
    out = RequirementSet()
    for text in requirements:
        req = parse_requirement(text)
        out.requirements.append(req)
        out.lines.append(Line("the command line", req, hashed=False))
    for path in requirement_files:
        read_file(path, out, constraint=False, seen=set(), environment=environment)
    for path in constraint_files:
        read_file(path, out, constraint=True, seen=set(), environment=environment)
    return out
