"""The chain of custody, walked the same way wherever the wheels are: on disk (``chain``) or
served over HTTP (``served``), each a ``WheelSource``.

Each wheel gets three verdicts (built from source, its dependencies, its build tools) and the
problems that explain them. What makes one wheel sound (its record, statement, signature, what
installers are told of it) is the source's to check; following its build tools and dependencies,
and merging their verdicts into its own, is ``CustodyWalk``'s.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from packaging.requirements import Requirement
from packaging.version import Version


class Verdict(enum.IntEnum):
    """Ordered from best to worst, so that ``max`` combines them."""

    OK = 0
    PREBUILT = 1  # a pre-built wheel, accepted by --allow-prebuilt
    BROKEN = 2

    def __str__(self) -> str:
        return {0: "ok", 1: "pre-built", 2: "BROKEN"}[self.value]


@dataclass
class ChainEntry:
    name: str
    version: str
    wheel: str | None
    source: Verdict
    dependencies: Verdict
    build_tools: Verdict
    problems: list[str] = field(default_factory=list)  # each names the package it is about
    signer: str | None = None  # the key id whose valid signature its provenance carries

    @property
    def ok(self) -> bool:
        return Verdict.BROKEN not in (self.source, self.dependencies, self.build_tools)


@dataclass
class ChainReport:
    entries: list[ChainEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why
    problems: list[str] = field(default_factory=list)  # of the repository, not of one wheel
    # Key id -> how many wheels it signed (checked with a published key, or the pinned one).
    signers: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entries) and not self.problems


Result = tuple[Verdict, list[str]]
# Build environments of build environments followed at most this deep (a real tree is a few
# levels; an index that signs its own chain, or whoever writes a repository, could make one as
# deep as they like, and each level is a call deeper).
MAX_TOOL_DEPTH = 100


def dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class _Wheel(Protocol):
    @property
    def filename(self) -> str: ...


W = TypeVar("W", bound=_Wheel)  # a wheel as its source knows it: a WheelRef, an IndexFile


@dataclass(frozen=True)
class BuildTool(Generic[W]):
    """A wheel a build's environment held: its name, version and sha256 as the build's record
    or statement gives them, and the source's wheel that has them (None: the source has none)."""

    name: str
    version: str
    sha256: str
    wheel: W | None


class WheelSource(Protocol[W]):
    """Where the wheels of a chain of custody are read: the repository on disk, or an index over
    HTTP. The walk asks it about one wheel at a time, by the wheel or by a project's name; each
    answer that names a wheel's problems begins with ``label(wheel)``."""

    # The end of "build tool NAME VERSION (sha256 ...) is not ..." and of "dependency REQ has
    # no wheel ...": where the wheel was looked for.
    tool_absent: str
    dependency_absent: str

    def key(self, wheel: W) -> str:
        """What tells one wheel from another (its file name, its URL)."""
        ...

    def label(self, wheel: W) -> str:
        """``"<name> <version>"``: its entry's name and version, and how problems name it."""
        ...

    def tool_label(self, tool: BuildTool[W], wheel: W) -> str:
        """How problems name a build tool that is not sound (``wheel``: the source's)."""
        ...

    def check_wheel(self, wheel: W) -> Result:
        """The wheel itself: built from source here (or pre-built, when allowed), by what its
        record, statement and signature say and what installers are told of it. The walk asks
        once per wheel."""
        ...

    def unknown_tools(self, wheel: W, own: Verdict) -> Result | None:
        """The verdict on its build tools when the source does not know them (no record, no
        verified provenance; ``own``: its ``check_wheel`` verdict), else None."""
        ...

    def build_tools(self, wheel: W) -> Iterable[BuildTool[W]]:
        """The wheels of its build environment (the walk follows each before it asks for the
        next)."""
        ...

    def requirements(self, wheel: W) -> list[Requirement]:
        """What it needs at run time here (from its own METADATA; [] when that is unreadable,
        which ``check_wheel`` reports)."""
        ...

    def wheels_named(self, name: str) -> Sequence[tuple[W, str | Version]]:
        """The wheels of project ``name`` the dependencies may be taken from, with their
        versions."""
        ...

    def signer(self, wheel: W) -> str | None:
        """The key id of the valid signature ``wheel``'s provenance carries (after
        ``check_wheel``), or None."""
        ...


class CustodyWalk(Generic[W]):
    """The chain of custody of the wheels of ``source``: each wheel's own verdict, those of its
    build tools (recursively, at most ``max_tool_depth`` deep) and those of its
    dependencies (recursively), merged into one ``ChainEntry`` per wheel. Every verdict is
    worked out once per wheel."""

    def __init__(self, source: WheelSource[W], *, max_tool_depth: int = MAX_TOOL_DEPTH) -> None:
        self.source = source
        self.max_tool_depth = max_tool_depth
        self._own: dict[str, Result] = {}
        self._tools: dict[str, Result] = {}
        self._visiting: set[str] = set()

    def own(self, wheel: W) -> Result:
        key = self.source.key(wheel)
        if key not in self._own:
            self._own[key] = self.source.check_wheel(wheel)
        return self._own[key]

    # -- its build environment, recursively

    def tools(self, wheel: W) -> Result:
        key = self.source.key(wheel)
        if key in self._tools:
            return self._tools[key]
        label = self.source.label(wheel)
        if key in self._visiting:
            return Verdict.BROKEN, [f"{label}: its build environment needs itself"]
        if len(self._visiting) >= self.max_tool_depth:
            return Verdict.BROKEN, [
                f"{label}: build environments nested deeper than {self.max_tool_depth}: not"
                " followed"
            ]
        self._visiting.add(key)
        try:
            result = self._check_tools(wheel, label)
        finally:
            self._visiting.discard(key)
        self._tools[key] = result
        return result

    def _check_tools(self, wheel: W, label: str) -> Result:
        unknown = self.source.unknown_tools(wheel, self.own(wheel)[0])
        if unknown is not None:
            return unknown
        verdict, problems = Verdict.OK, []
        for tool in self.source.build_tools(wheel):
            if tool.wheel is None:
                verdict = Verdict.BROKEN
                problems.append(
                    f"{label}: build tool {tool.name} {tool.version} (sha256"
                    f" {tool.sha256[:12]}...) is not {self.source.tool_absent}"
                )
                continue
            for sub_verdict, sub_problems in (self.own(tool.wheel), self.tools(tool.wheel)):
                verdict = max(verdict, sub_verdict)
                if sub_verdict == Verdict.BROKEN:
                    named = self.source.tool_label(tool, tool.wheel)
                    problems.append(f"{label}: build tool {named} is not sound")
                    problems.extend(sub_problems)
        return verdict, dedupe(problems)

    # -- what it needs at run time

    def dependencies(self, wheel: W) -> tuple[list[W], list[str]]:
        """Every wheel ``wheel`` needs at run time, recursively, and what cannot be found."""
        seen = {self.source.key(wheel)}
        todo, found, problems = [wheel], [], []
        while todo:
            current = todo.pop()
            for req in self.source.requirements(current):
                candidates = [
                    w
                    for w, version in self.source.wheels_named(req.name)
                    if req.specifier.contains(version, prereleases=True)
                ]
                if not candidates:
                    problems.append(
                        f"{self.source.label(current)}: dependency {req} has no wheel"
                        f" {self.source.dependency_absent}"
                    )
                for w in candidates:
                    key = self.source.key(w)
                    if key not in seen:
                        seen.add(key)
                        found.append(w)
                        todo.append(w)
        return found, problems

    def entry(self, wheel: W) -> ChainEntry:
        source, problems = self.own(wheel)
        problems = list(problems)
        deps, missing = self.dependencies(wheel)
        dep_verdict = Verdict.BROKEN if missing else Verdict.OK
        problems += missing
        tools_verdict, tool_problems = self.tools(wheel)
        problems += tool_problems
        for dep in deps:
            verdict, found = self.own(dep)
            dep_verdict = max(dep_verdict, verdict)
            if verdict == Verdict.BROKEN:
                problems += found
            verdict, found = self.tools(dep)
            tools_verdict = max(tools_verdict, verdict)
            if verdict == Verdict.BROKEN:
                problems += found
        name, _, version = self.source.label(wheel).partition(" ")
        return ChainEntry(
            name=name,
            version=version,
            wheel=wheel.filename,
            source=source,
            dependencies=dep_verdict,
            build_tools=tools_verdict,
            problems=dedupe(problems),
            signer=self.source.signer(wheel),
        )
