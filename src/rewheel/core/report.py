"""What a bootstrap reports while it runs and what it returns: light, so that a command can
show progress or a result without loading the build machinery."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .errors import RewheelError
from .records import BuildRecord


class Reporter:
    """Progress hooks; each does nothing by default."""

    def resolved(self, purpose: str, count: int) -> None:
        pass

    def step(self, node: str, step: str) -> None:
        pass

    def done(
        self,
        node: str,
        wheel: str,
        *,
        cached: bool,
        seconds: float,
        prebuilt: bool = False,
        from_cache: bool = False,
    ) -> None:
        """``node`` is in the repository: reused (``cached``), taken from the shared build cache
        (``from_cache``, with ``cached``), taken pre-built (``prebuilt``: the upstream's own
        wheel, allow-listed by the settings) or built."""

    def failed(self, node: str, error: RewheelError) -> None:
        pass


class Outcome(enum.StrEnum):
    """What became of one package (a node, ``name==version``) in a run."""

    BUILT = "built"  # built from its sdist by this run
    REUSED = "reused"  # its wheel, built by an earlier run, reused from the cache
    PREBUILT = "prebuilt"  # the upstream's own wheel, taken because the settings allow-list it
    FROM_CACHE = "from-cache"  # built elsewhere, taken from the shared build cache (--cache-url)
    FAILED = "failed"  # its own step failed
    DEPENDENCY_FAILED = "dependency-failed"  # not built: its build environment needs a failure
    NOT_ATTEMPTED = "not-attempted"  # not built: the run stopped (first failure, interrupted)

    @property
    def in_repository(self) -> bool:
        """Whether the run left a wheel of the package in the repository."""
        return self in (Outcome.BUILT, Outcome.REUSED, Outcome.PREBUILT, Outcome.FROM_CACHE)


@dataclass
class BootstrapResult:
    order: list[BuildRecord]  # build-order.json
    graph: dict[str, Any]  # graph.json
    failures: dict[str, RewheelError]  # node -> its own error (not "a dependency failed")
    built: int = 0  # built from source by this run (pre-built wheels are not counted here)
    reused: int = 0
    prebuilt: int = 0  # upstream wheels taken pre-built (allow-listed by the settings)
    from_cache: int = 0  # taken from the shared build cache (--cache-url), not built here
    # Every node of the graph and what became of it; a node of the graph missing here (a run
    # cut short) was not attempted.
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    # node -> why it was not built, for the nodes a failure left unbuilt (DEPENDENCY_FAILED,
    # NOT_ATTEMPTED); their own errors are in ``failures``.
    unbuilt: dict[str, RewheelError] = field(default_factory=dict)
    drifted: list[str] = field(default_factory=list)
    max_parallel_builds: int = 0
    built_nodes: set[str] = field(default_factory=set)  # built or pre-built (not reused) here
    # Wall and CPU seconds from the first build slot taken to the last given back.
    build_window_seconds: float = 0.0
    build_window_cpu_seconds: float = 0.0
    # Wall seconds during which work waited for a build slot, and the machine's (busy, total)
    # CPU time over them.
    queued_seconds: float = 0.0
    queued_cpu: tuple[int, int] = (0, 0)

    @property
    def ok(self) -> bool:
        return not self.failures
