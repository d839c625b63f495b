"""Requirements and constraints files: one PEP 508 requirement a line.

Comments, blank lines, line continuations and nested ``-r``/``-c`` files are understood, and so
are ``--hash=sha256:<hex>`` options after a requirement (what ``rewheel lock`` and
``pip-compile --generate-hashes`` write): they are collected by project, for ``rewheel install``
to allow only those files. Other options, such as those that would point rewheel at another index,
are refused: the index is given on the command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from .core.errors import ConfigError, Step


@dataclass
class RequirementSet:
    requirements: list[Requirement] = field(default_factory=list)
    constraints: list[Requirement] = field(default_factory=list)
    # The sha256 digests ``--hash`` options allow, by project (requirements and constraints alike,
    # as pip takes them); a project without an entry is not restricted.
    hashes: dict[NormalizedName, set[str]] = field(default_factory=dict)


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


def read_file(path: Path, into: RequirementSet, *, constraint: bool, seen: set[Path]) -> None:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path} includes itself", step=Step.INPUT)
    seen = seen | {path}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", step=Step.INPUT) from exc
    for number, line in _logical_lines(text):
        where = f"{path}:{number}"
        if line.startswith(("-r ", "--requirement ", "-c ", "--constraint ")):
            option, _, target = line.partition(" ")
            nested = (path.parent / target.strip()).resolve()
            is_constraint = constraint or option in ("-c", "--constraint")
            read_file(nested, into, constraint=is_constraint, seen=seen)
            continue
        if line.startswith("-"):
            raise ConfigError(
                f"{where}: option {line.split()[0]!r} is not supported", step=Step.INPUT
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
        (into.constraints if constraint else into.requirements).append(req)


def collect(
    requirements: list[str], requirement_files: list[Path], constraint_files: list[Path]
) -> RequirementSet:
    out = RequirementSet()
    for text in requirements:
        out.requirements.append(parse_requirement(text))
    for path in requirement_files:
        read_file(path, out, constraint=False, seen=set())
    for path in constraint_files:
        read_file(path, out, constraint=True, seen=set())
    return out
