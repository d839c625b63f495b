"""Resolution of requirements to one consistent set of sdists, with resolvelib.

Pure logic: the index is read through the ``Upstream`` interface and dependency metadata through a
``MetadataSource``. Only sdists are candidates; wheels on the index are never picked.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import resolvelib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import Specifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
)
from packaging.version import InvalidVersion, Version
from resolvelib.structs import RequirementInformation

from .errors import NoSdistError, ResolutionError, Step, UpstreamError
from .types import EdgeKind, IndexFile, ProjectPage, Upstream

_SDIST_SUFFIXES = (".tar.gz", ".zip")
_REQUESTED = "(requested)"  # the top of a conflict's chain: the caller's own requirements


@dataclass(frozen=True)
class Candidate:
    name: NormalizedName
    version: Version
    sdist: IndexFile
    extras: frozenset[str] = frozenset()

    def __str__(self) -> str:
        extras = f"[{','.join(sorted(self.extras))}]" if self.extras else ""
        return f"{self.name}{extras}=={self.version}"


@dataclass(frozen=True)
class Pin:
    """A package chosen by a resolution: one version, one sdist."""

    name: NormalizedName
    version: Version
    sdist: IndexFile

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Edge:
    parent: Pin | None  # None: asked for directly
    requirement: str
    child: NormalizedName
    kind: EdgeKind


@dataclass
class Resolution:
    pins: dict[NormalizedName, Pin]
    edges: list[Edge] = field(default_factory=list)

    def sorted_pins(self) -> list[Pin]:
        return [self.pins[k] for k in sorted(self.pins)]


class MetadataSource(Protocol):
    def requires_dist(
        self, name: NormalizedName, version: Version, sdist: IndexFile
    ) -> list[Requirement]:
        """The ``Requires-Dist`` of the wheel that ``sdist`` builds into."""
        ...


class TargetEnvironment:
    """Markers and Python version of the interpreter the wheels are built for."""

    def __init__(self, markers: Mapping[str, str] | None = None) -> None:
        self.markers: dict[str, str] = dict(markers or default_environment())  # type: ignore[arg-type]
        self.python_version = Version(self.markers["python_full_version"].rstrip("+"))

    def applies(self, req: Requirement, extras: Iterable[str] = ("",)) -> bool:
        if req.marker is None:
            return True
        return any(req.marker.evaluate({**self.markers, "extra": e}) for e in extras)


def sdist_versions(page: ProjectPage, python_version: Version) -> dict[Version, IndexFile]:
    """The sdist of each version on ``page`` that supports ``python_version``.

    Where a version has several sdists, ``.tar.gz`` is preferred (PEP 625).
    """
    found: dict[Version, IndexFile] = {}
    for f in page.files:
        if not f.filename.endswith(_SDIST_SUFFIXES):
            continue
        try:
            name, version = parse_sdist_filename(f.filename)
        except (InvalidSdistFilename, InvalidVersion):
            continue
        if name != page.name:
            continue
        if f.requires_python:
            try:
                if not SpecifierSet(f.requires_python).contains(python_version, prereleases=True):
                    continue
            except ValueError:
                continue  # an unparsable Requires-Python: pip skips such files too
        current = found.get(version)
        if current is None or (
            f.filename.endswith(".tar.gz") and not current.filename.endswith(".tar.gz")
        ):
            found[version] = f
    return found


class _Provider(resolvelib.AbstractProvider):  # type: ignore[type-arg]
    def __init__(
        self,
        upstream: Upstream,
        metadata: MetadataSource,
        target: TargetEnvironment,
        constraints: Mapping[NormalizedName, SpecifierSet],
        allow_prereleases: bool,
        preferred: Mapping[NormalizedName, Version],
    ) -> None:
        self.upstream = upstream
        self.metadata = metadata
        self.target = target
        self.constraints = constraints
        self.allow_prereleases = allow_prereleases
        self.preferred = preferred
        # Who asked for what, for the chains of a conflict report.
        self.asked_by: dict[NormalizedName, set[str]] = defaultdict(set)

    def identify(self, requirement_or_candidate: Requirement | Candidate) -> str:
        if isinstance(requirement_or_candidate, Candidate):
            name, extras = requirement_or_candidate.name, requirement_or_candidate.extras
        else:
            name = canonicalize_name(requirement_or_candidate.name)
            extras = frozenset(canonicalize_name(e) for e in requirement_or_candidate.extras)
        return f"{name}[{','.join(sorted(extras))}]" if extras else name

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Iterator[RequirementInformation[Requirement, Candidate]]],
        backtrack_causes: Sequence[RequirementInformation[Requirement, Candidate]],
    ) -> Any:
        infos = list(information[identifier])
        pinned = any(
            s.operator in ("==", "===") and "*" not in s.version
            for info in infos
            for s in info.requirement.specifier
        )
        in_causes = any(self.identify(c.requirement) == identifier for c in backtrack_causes)
        return (not in_causes, not pinned, identifier)

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[Requirement]],
        incompatibilities: Mapping[str, Iterator[Candidate]],
    ) -> list[Candidate]:
        name = NormalizedName(identifier.split("[", 1)[0])
        extras = (
            frozenset(identifier[len(name) + 1 : -1].split(","))
            if "[" in identifier
            else frozenset()
        )
        reqs = list(requirements[identifier])
        bad = {c.version for c in incompatibilities[identifier]}
        page = self.upstream.get_project(name)
        versions = sdist_versions(page, self.target.python_version)
        constraint = self.constraints.get(name)
        exact_pin = any(len(r.specifier) == 1 and _is_exact(next(iter(r.specifier))) for r in reqs)
        out = []
        for version, sdist in versions.items():
            if version in bad:
                continue
            if sdist.yanked and not exact_pin:
                continue  # PEP 592
            if not all(self._allows(r.specifier, version) for r in reqs):
                continue
            if constraint is not None and not self._allows(constraint, version):
                continue
            out.append(Candidate(name, version, sdist, extras))
        preferred = self.preferred.get(name)
        out.sort(key=lambda c: (c.version == preferred, c.version), reverse=True)
        return out

    def _allows(self, spec: SpecifierSet, version: Version) -> bool:
        if self.allow_prereleases:
            return spec.contains(version, prereleases=True)
        # A pre-release only where the specifier itself names one. Explicit, since packaging 26
        # admits pre-releases in ``contains`` by default.
        return spec.contains(version, prereleases=bool(spec.prereleases))

    def is_satisfied_by(self, requirement: Requirement, candidate: Candidate) -> bool:
        if canonicalize_name(requirement.name) != candidate.name:
            return False
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: Candidate) -> list[Requirement]:
        deps: list[Requirement] = []
        if candidate.extras:
            # name[extra] needs name itself at the same version, and its extra's requirements.
            deps.append(Requirement(f"{candidate.name}=={candidate.version}"))
        extras = sorted(candidate.extras) if candidate.extras else [""]
        for req in self.metadata.requires_dist(candidate.name, candidate.version, candidate.sdist):
            if candidate.extras:
                # Only the extras' own requirements: the base ones come through name==version.
                if req.marker is None or not self.target.applies(req, extras):
                    continue
                if self.target.applies(req, [""]):
                    continue
            elif not self.target.applies(req):
                continue
            deps.append(req)
        for dep in deps:
            self.asked_by[canonicalize_name(dep.name)].add(str(candidate))
        return deps


class _NullReporter(resolvelib.BaseReporter):  # type: ignore[type-arg]
    pass


class Resolver:
    """Resolves a set of requirements against the upstream index, taking sdists only."""

    def __init__(
        self,
        upstream: Upstream,
        metadata: MetadataSource,
        *,
        target: TargetEnvironment | None = None,
        constraints: Sequence[Requirement] = (),
        allow_prereleases: bool = False,
        max_rounds: int = 20000,
    ) -> None:
        self.upstream = upstream
        self.metadata = metadata
        self.target = target or TargetEnvironment()
        self.allow_prereleases = allow_prereleases
        self.max_rounds = max_rounds
        merged: dict[NormalizedName, SpecifierSet] = {}
        for c in constraints:
            if not self.target.applies(c):
                continue
            key = canonicalize_name(c.name)
            merged[key] = merged.get(key, SpecifierSet()) & c.specifier
        self.constraints = merged
        self._lock = threading.Lock()

    def resolve(
        self,
        requirements: Sequence[Requirement],
        *,
        kind: EdgeKind = EdgeKind.TOPLEVEL,
        parent: Pin | None = None,
        kinds: Mapping[str, EdgeKind] | None = None,
        preferred: Mapping[NormalizedName, Version] | None = None,
        purpose: str | None = None,
    ) -> Resolution:
        """Resolve ``requirements`` into one consistent set of pins.

        ``kind``/``parent`` label the edges of the requirements given here; ``kinds`` overrides the
        kind per requirement string (a build environment mixes build-system and backend ones).
        ``preferred`` versions are tried first when they fit.
        """
        wanted = [r for r in requirements if self.target.applies(r)]
        provider = _Provider(
            self.upstream,
            self.metadata,
            self.target,
            self.constraints,
            self.allow_prereleases,
            preferred or {},
        )
        for r in wanted:  # so that a conflict's chain stops at a package asked for directly
            provider.asked_by[canonicalize_name(r.name)].add(_REQUESTED)
        resolver: resolvelib.Resolver[Requirement, Candidate, str] = resolvelib.Resolver(
            provider, _NullReporter()
        )
        try:
            result = resolver.resolve(wanted, max_rounds=self.max_rounds)
        except resolvelib.ResolutionImpossible as exc:
            raise self._explain(exc, provider, purpose) from None
        except resolvelib.ResolutionTooDeep as exc:
            raise ResolutionError(
                f"gave up after {self.max_rounds} rounds of backtracking", package=purpose
            ) from exc

        pins: dict[NormalizedName, Pin] = {}
        for cand in result.mapping.values():
            pins[cand.name] = Pin(cand.name, cand.version, cand.sdist)
        by_kind = kinds or {}
        edges = [
            Edge(parent, str(r), canonicalize_name(r.name), by_kind.get(str(r), kind))
            for r in wanted
        ]
        # Requirements that came through an extra are edges of the base package.
        for cand in result.mapping.values():
            for dep in provider.get_dependencies(cand):
                child = canonicalize_name(dep.name)
                if child != cand.name and child in pins:
                    edges.append(Edge(pins[cand.name], str(dep), child, EdgeKind.INSTALL))
        return Resolution(pins, _dedupe(edges))

    def _explain(
        self,
        exc: resolvelib.ResolutionImpossible,  # type: ignore[type-arg]
        provider: _Provider,
        purpose: str | None,
    ) -> ResolutionError | NoSdistError:
        chains: list[list[str]] = []
        no_sdist: list[str] = []
        for cause in exc.causes:
            req: Requirement = cause.requirement
            name = canonicalize_name(req.name)
            page = _safe_page(self.upstream, name)
            if (
                page is not None
                and page.files
                and not sdist_versions(page, self.target.python_version)
            ):
                no_sdist.append(name)
            chain = _chain_to_top(provider.asked_by, cause.parent)
            chains.append([*chain, str(req)])
        where = f" for {purpose}" if purpose else ""
        if no_sdist:
            names = ", ".join(sorted(set(no_sdist)))
            return NoSdistError(
                f"no sdist{where}: {names} has files on the index but no source distribution "
                "for this Python; rewheel builds from source only",
                package=sorted(set(no_sdist))[0],
                step=Step.RESOLVE,
            )
        return ResolutionError(f"conflicting requirements{where}", chains=chains, package=purpose)


def _is_exact(spec: Specifier) -> bool:
    """An exact pin as PEP 592 means it: ``===`` or ``==`` without a wildcard."""
    return spec.operator == "===" or (spec.operator == "==" and not spec.version.endswith(".*"))


def _safe_page(upstream: Upstream, name: NormalizedName) -> ProjectPage | None:
    try:
        return upstream.get_project(name)
    except UpstreamError:
        return None


def _chain_to_top(
    asked_by: Mapping[NormalizedName, set[str]], parent: Candidate | None
) -> list[str]:
    """The shortest path of requirers from a top-level requirement down to ``parent``."""
    if parent is None:
        return [_REQUESTED]
    # Breadth-first search upwards through who asked for whom.
    start = str(parent)
    seen = {start}
    queue: deque[list[str]] = deque([[start]])
    while queue:
        path = queue.popleft()
        name = canonicalize_name(path[-1].split("[", 1)[0].split("==", 1)[0])
        askers = asked_by.get(name, set())
        if not askers or _REQUESTED in askers:
            return [_REQUESTED, *reversed(path)]
        for asker in sorted(askers):
            if asker not in seen:
                seen.add(asker)
                queue.append([*path, asker])
    return [_REQUESTED, start]


def _dedupe(edges: Iterable[Edge]) -> list[Edge]:
    seen: set[Edge] = set()
    out = []
    for e in edges:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out
