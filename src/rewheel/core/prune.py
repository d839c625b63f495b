"""What ``rewheel prune`` keeps and removes: pure planning, values in, a plan out.

A repository gathers builds that nothing needs any more: older versions, packages a requirement
no longer names. Given what the kept requirements resolve to against the repository (their
run-time closure, ``roots``) and each build's build environment (from its record), ``keep``
finds every package they reach, at run time or as a build tool, recursively through each
record's ``build_env``, with the first reason found for each. ``plan`` sorts the repository's
files (as its own listing names them, never as a record names them) into those of kept
packages, those of the others (removed), and those that belong to no package (left alone).

Each file is tied to its package by its name alone, the way the repository names it:
``wheels/<wheel>`` (and ``<wheel>.metadata``, ``.provenance.json``, ``.provenance.dsse.json``,
``.provenance``)
by the wheel's file name, ``sdists/<sdist>`` by the sdist's, ``records/<name>-<version>.json``
and ``logs/<name>-<version>.log`` by the normalized name and version. The I/O (listing the
folders, reading the records, removing the files) is ``repo.prune``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .records import record_node
from .versions import normal_version

__all__ = [
    "WHEEL_SIDE_FILES",
    "Folder",
    "Kept",
    "PrunePlan",
    "RepoFile",
    "file_node",
    "keep",
    "plan",
    "pruned_graph",
    "pruned_order",
]


class Folder(enum.StrEnum):
    """The repository's folders prune may remove files from (relative to its root)."""

    WHEELS = "wheels"
    SDISTS = "sdists"
    RECORDS = "records"
    LOGS = "logs"
    REBUILD_LOGS = "logs/rebuild"  # rewheel rebuild --check's logs


# What the repository writes beside a wheel, named after it (core metadata, the in-toto
# statement, its DSSE envelope, the PEP 740 provenance object the index pages link).
WHEEL_SIDE_FILES = (".metadata", ".provenance.json", ".provenance.dsse.json", ".provenance")


@dataclass(frozen=True, order=True)
class RepoFile:
    """A file directly inside one of the repository's folders, by its listed name."""

    folder: Folder
    name: str

    def __str__(self) -> str:
        return f"{self.folder.value}/{self.name}"


@dataclass(frozen=True)
class Kept:
    """Why a package stays: the kept requirement that reaches it, and the build that needs it
    as a build tool (None: the requirement needs it at run time)."""

    requirement: str
    tool_of: str | None = None

    def __str__(self) -> str:
        if self.tool_of is None:
            return f"needed at run time by {self.requirement!r}"
        return f"build tool of {self.tool_of}, for {self.requirement!r}"


def keep(
    roots: Mapping[str, Sequence[str]], build_envs: Mapping[str, Sequence[str]]
) -> dict[str, Kept]:
    """Every package (node id, ``name==version``) the kept requirements reach, with why.

    ``roots``: each kept requirement (as given) and the nodes it resolves to, its run-time
    closure. ``build_envs``: each node's build environment, as node ids. Breadth first, the
    requirements in the order given: each package's reason is the first and shortest found.
    """
    kept: dict[str, Kept] = {}
    todo: deque[str] = deque()
    for requirement, nodes in roots.items():
        for node in nodes:
            if node not in kept:
                kept[node] = Kept(requirement)
                todo.append(node)
    while todo:
        node = todo.popleft()
        for tool in build_envs.get(node, ()):
            if tool not in kept:
                kept[tool] = Kept(kept[node].requirement, tool_of=node)
                todo.append(tool)
    return kept


def _node(name: str, version: str) -> str:
    return record_node(canonicalize_name(name), normal_version(version))


def _named_node(stem: str) -> str | None:
    """The node of ``<normalized name>-<version>`` (records and logs are named so), or None."""
    name, sep, version = stem.rpartition("-")
    if not sep or not name or canonicalize_name(name) != name:
        return None
    try:
        Version(version)
    except InvalidVersion:
        return None
    return _node(name, version)


def file_node(file: RepoFile) -> str | None:
    """The package (node id) ``file`` belongs to, from its name alone; None when it is no file
    of a package (hidden or temporary files, logs of installs, anything else)."""
    name = file.name
    if name.startswith(".") or "/" in name or "\\" in name:
        return None
    match file.folder:
        case Folder.WHEELS:
            for suffix in WHEEL_SIDE_FILES:
                if name.endswith(".whl" + suffix):
                    name = name.removesuffix(suffix)
                    break
            try:
                project, version, _, _ = parse_wheel_filename(name)
            except (InvalidWheelFilename, InvalidVersion):
                return None
            return _node(project, str(version))
        case Folder.SDISTS:
            try:
                project, version = parse_sdist_filename(name)
            except (InvalidSdistFilename, InvalidVersion):
                return None
            return _node(project, str(version))
        case Folder.RECORDS:
            return _named_node(name.removesuffix(".json")) if name.endswith(".json") else None
        case Folder.LOGS | Folder.REBUILD_LOGS:
            return _named_node(name.removesuffix(".log")) if name.endswith(".log") else None
    return None


@dataclass(frozen=True)
class PrunePlan:
    """What prune does: the packages kept (and why), those removed with their files, and the
    files that belong to no package (left alone)."""

    kept: Mapping[str, Kept]
    remove: Mapping[str, tuple[RepoFile, ...]]  # node -> its files, all removed
    kept_files: Mapping[str, tuple[RepoFile, ...]]  # node -> its files, all kept
    left_alone: tuple[RepoFile, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def removed_files(self) -> list[RepoFile]:
        return sorted(f for files in self.remove.values() for f in files)


def plan(
    files: Iterable[RepoFile], kept: Mapping[str, Kept], *, notes: Sequence[str] = ()
) -> PrunePlan:
    """Sort ``files`` (the repository's listing) by package: kept, removed, or no package's."""
    by_node: dict[str, list[RepoFile]] = {}
    left: list[RepoFile] = []
    for file in files:
        node = file_node(file)
        if node is None:
            left.append(file)
        else:
            by_node.setdefault(node, []).append(file)
    remove = {n: tuple(sorted(fs)) for n, fs in sorted(by_node.items()) if n not in kept}
    stay = {n: tuple(sorted(fs)) for n, fs in sorted(by_node.items()) if n in kept}
    return PrunePlan(
        kept=dict(sorted(kept.items())),
        remove=remove,
        kept_files=stay,
        left_alone=tuple(sorted(left)),
        notes=tuple(notes),
    )


def pruned_order(entries: Sequence[Any], removed: Iterable[str]) -> list[Any]:
    """``build-order.json`` without the entries of removed packages."""
    gone = set(removed)
    out = []
    for entry in entries:
        if isinstance(entry, Mapping):
            name, version = entry.get("name"), entry.get("version")
            if isinstance(name, str) and isinstance(version, str) and _node(name, version) in gone:
                continue
        out.append(entry)
    return out


def pruned_graph(graph: Mapping[str, Any], removed: Iterable[str]) -> dict[str, Any]:
    """``graph.json`` without the removed packages and every edge to or from them."""
    gone = set(removed)

    def kept_id(value: object) -> bool:
        if not isinstance(value, str):
            return True
        name, _, version = value.partition("==")
        return _node(name, version) not in gone

    out = dict(graph)
    nodes, edges = graph.get("nodes"), graph.get("edges")
    if isinstance(nodes, list):
        out["nodes"] = [n for n in nodes if not isinstance(n, Mapping) or kept_id(n.get("id"))]
    if isinstance(edges, list):
        out["edges"] = [
            e
            for e in edges
            if not isinstance(e, Mapping) or (kept_id(e.get("from")) and kept_id(e.get("to")))
        ]
    return out
