"""What a check of the chain of custody finds, wherever the wheels are: on disk (``chain``) or
served over HTTP (``served``). Each wheel gets three verdicts (built from source, its
dependencies, its build tools) and the problems that explain them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


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
