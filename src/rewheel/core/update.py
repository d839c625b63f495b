"""What ``rewheel update`` would build, found without building: the bootstrap's own orchestration
run over ``PlanningSteps``, which resolve against the upstream for real and build nothing.

The cache decides what a bootstrap rebuilds: a package is reused when its record's cache key (its
sdist's sha256, every build-environment wheel's sha256, the interpreter, its settings) is the one
computed now. ``PlanningSteps`` hand the ``Bootstrapper`` everything real but the builds: the
resolutions (of the requested packages, and of each build environment from the requirements its
record names), the records, the cache keys. A package that would be built gets a placeholder
wheel, whose made-up sha256 changes the cache key of every build whose environment holds it, as
the real new wheel will. ``plan`` then reads the result: each package new (a version the
repository has no build of), rebuilt (and what changed: its sdist, its build environment, or its
settings), taken from the shared build cache (``--cache-url``: a ``SharedCache`` that checks what
it can and takes nothing, so that its wheel's signed sha256 gives its dependents' keys), taken
pre-built, or staying as it is; and the repository's packages the tree no longer reaches.

What a plan cannot know without running build code: what a backend's
``get_requires_for_build_wheel`` asks for (a rebuilt package's recorded answer is used; a new
version's is not known, so build tools only its backend asks for are found when it is built). A
new version's ``build-system.requires`` are read from its sdist (``peek``: downloaded apart and
extracted, no code run).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import NormalizedName
from packaging.version import Version

from .bootstrap import Built, Cached, Prepared, Steps
from .records import BuildExtras, BuildRecord, EnvEntry, record_node
from .report import BootstrapResult, Outcome
from .resolver import Pin, Resolution
from .types import EdgeKind, WheelRef

__all__ = ["Change", "PlanEntry", "PlanningSteps", "UpdatePlan", "plan"]

# The sha256 of a wheel that is not built yet, in a plan: unique per package, never a real one.
_PLACEHOLDER = "to-be-built:"


class Change(enum.StrEnum):
    NEW = "new"  # a version the repository has no build of
    REBUILD = "rebuild"  # built before, but its cache key changed
    PREBUILT = "prebuilt"  # the upstream's own wheel will be taken (allow-listed)
    FROM_CACHE = "from-cache"  # new or rebuilt, but the shared build cache has it, signed
    STAYS = "stays"  # reused as it is
    UNKNOWN = "unknown"  # it cannot be planned (its sdist cannot be read, say): the reason says


@dataclass(frozen=True)
class PlanEntry:
    node: str
    change: Change
    reasons: tuple[str, ...] = ()  # for a rebuild: what changed


@dataclass(frozen=True)
class UpdatePlan:
    entries: tuple[PlanEntry, ...]  # the tree, bottom-up
    unreached: tuple[str, ...] = ()  # packages of the repository the tree no longer has

    def of(self, change: Change) -> list[PlanEntry]:
        return [e for e in self.entries if e.change is change]


class PlanningSteps:
    """``Steps`` that resolve and read the cache for real, and build nothing (see the module)."""

    def __init__(
        self,
        steps: Steps[Any],
        *,
        recorded: Callable[[Pin], BuildRecord | None],
        prebuilt_allowed: Callable[[Pin], bool],
        peek: Callable[[Pin], Sequence[str]] | None = None,
    ) -> None:
        self._steps = steps
        self._recorded = recorded
        self._prebuilt_allowed = prebuilt_allowed
        self._peek = peek

    def resolve(
        self,
        requirements: Sequence[Requirement],
        *,
        kinds: Mapping[str, EdgeKind],
        parent: Pin | None,
        preferred: Mapping[NormalizedName, Version],
        purpose: str,
    ) -> Resolution:
        return self._steps.resolve(
            requirements, kinds=kinds, parent=parent, preferred=preferred, purpose=purpose
        )

    def cached(self, pin: Pin) -> Cached | None:
        return self._steps.cached(pin)

    def cache_key(self, pin: Pin, build_env: Sequence[WheelRef]) -> str:
        return self._steps.cache_key(pin, build_env)

    def record_extras(self, pin: Pin) -> BuildExtras:
        return self._steps.record_extras(pin)

    def prepare(self, pin: Pin) -> Prepared:
        record = self._recorded(pin)
        if record is not None:
            requires = tuple(record.build_system_requires)
        else:  # a new version's are in its sdist: read there (``peek``), if it may be
            requires = tuple(self._peek(pin)) if self._peek is not None else ()
        return Prepared(
            pin=pin,
            sdist_path=Path(),
            sdist_sha256=pin.sdist.sha256 or "",
            source_dir=Path(),
            build_requires=requires,
        )

    def create_env(self, prepared: Prepared, wheels: Sequence[WheelRef], *, name: str) -> None:
        return None

    def get_requires(self, prepared: Prepared, env: object) -> list[str]:
        record = self._recorded(prepared.pin)
        return list(record.backend_requires) if record is not None else []

    def build(self, prepared: Prepared, env: object) -> Built:
        return _placeholder(prepared.pin)

    def prebuilt(self, pin: Pin) -> Built | None:
        return _placeholder(pin) if self._prebuilt_allowed(pin) else None

    def drifted(self, pin: Pin, built_metadata: bytes) -> bool:
        return False

    def save_record(self, record: BuildRecord) -> BuildRecord:
        return record  # nothing is written


def _placeholder(pin: Pin) -> Built:
    node = record_node(pin.name, str(pin.version))
    wheel = WheelRef(pin.name, str(pin.version), f"({node}, to be built)", _PLACEHOLDER + node)
    return Built(wheel=wheel, metadata=b"", seconds=0.0, log=Path())


def _env(entries: Sequence[EnvEntry]) -> dict[str, EnvEntry]:
    return {e.name: e for e in entries}


def _reasons(before: BuildRecord, planned: BuildRecord) -> list[str]:
    """What changed in a package's build since ``before``, as far as a plan can tell."""
    reasons = []
    if planned.sdist_sha256 and before.sdist_sha256 != planned.sdist_sha256:
        reasons.append("its sdist is not the one it was built from (the index has another file)")
    old, new = _env(before.build_env), _env(planned.build_env)
    for name in sorted(old.keys() | new.keys()):
        was, now = old.get(name), new.get(name)
        if was is None and now is not None:
            reasons.append(f"build tool {name} {now.version} added")
        elif now is None and was is not None:
            reasons.append(f"build tool {name} {was.version} no longer needed")
        elif was is not None and now is not None and was.version != now.version:
            reasons.append(f"build tool {name} {was.version} -> {now.version}")
        elif was is not None and now is not None and now.sha256.startswith(_PLACEHOLDER):
            reasons.append(f"build tool {name} {now.version} is rebuilt")
    if not reasons:
        reasons.append("its settings, system tools or the interpreter changed")
    return reasons


def plan(
    result: BootstrapResult,
    *,
    recorded: Mapping[str, BuildRecord],
    held: Sequence[str] = (),
) -> UpdatePlan:
    """The plan a planning run's ``result`` tells: ``recorded`` are the repository's records by
    node, ``held`` the nodes of its wheels (those the tree no longer reaches are listed)."""
    entries = []
    wheels = set(held)
    for planned in result.order:
        node = planned.node
        outcome = result.outcomes.get(node)
        before = recorded.get(node)
        if outcome is Outcome.REUSED:
            entries.append(PlanEntry(node, Change.STAYS))
        elif outcome is Outcome.PREBUILT:
            entries.append(PlanEntry(node, Change.PREBUILT))
        elif outcome is Outcome.FROM_CACHE:
            instead = (
                "new"
                if before is None
                else f"instead of a rebuild ({'; '.join(_reasons(before, planned))})"
            )
            where = f"from the build cache {planned.from_cache}, {instead}"
            entries.append(PlanEntry(node, Change.FROM_CACHE, (where,)))
        elif before is None:
            entries.append(PlanEntry(node, Change.NEW))
        elif node not in wheels:
            entries.append(PlanEntry(node, Change.REBUILD, ("its wheel is not in the repository",)))
        else:
            entries.append(PlanEntry(node, Change.REBUILD, tuple(_reasons(before, planned))))
    for node, exc in sorted({**result.unbuilt, **result.failures}.items()):
        lines = exc.message.strip().splitlines()
        entries.append(
            PlanEntry(node, Change.UNKNOWN, (lines[0] if lines else type(exc).__name__,))
        )
    in_tree = {e.node for e in entries}
    return UpdatePlan(tuple(entries), tuple(sorted(n for n in wheels if n not in in_tree)))
