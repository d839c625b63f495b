"""What a bootstrap reports while it runs and what it returns: light, so that a command can
show progress or a result without loading the build machinery."""

from __future__ import annotations

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

    def done(self, node: str, wheel: str, *, cached: bool, seconds: float) -> None:
        pass

    def failed(self, node: str, error: RewheelError) -> None:
        pass


@dataclass
class BootstrapResult:
    order: list[BuildRecord]  # build-order.json
    graph: dict[str, Any]  # graph.json
    failures: dict[str, RewheelError]  # node -> its own error (not "a dependency failed")
    built: int = 0
    reused: int = 0
    drifted: list[str] = field(default_factory=list)
    max_parallel_builds: int = 0
    built_nodes: set[str] = field(default_factory=set)  # built (not reused) in this run
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
