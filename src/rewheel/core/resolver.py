"""Resolution of requirements to one consistent set of sdists, with resolvelib.

Pure logic: the index is read through the ``Upstream`` interface and dependency metadata through a
``MetadataSource``. Only sdists are candidates; wheels on the index are never picked.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import resolvelib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version
from resolvelib.structs import RequirementInformation

from .errors import (
    CauseKind,
    Chain,
    Excluded,
    Exclusion,
    Link,
    NoSdistError,
    ResolutionCause,
    ResolutionError,
    UpstreamError,
)
from .types import EdgeKind, IndexFile, ProjectPage, Upstream

_SDIST_SUFFIXES = (".tar.gz", ".zip")


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


@dataclass(frozen=True)
class _Offer:
    """What the index has of one version, for the target Python."""

    sdist: IndexFile | None  # the sdist to build; None: no sdist fits
    requires_python: str | None = None  # with no sdist: the Requires-Python that left them out
    wheels_only: bool = False  # with no sdist: the version has none at all


def _offers(
    page: ProjectPage,
    python_version: Version,
    *,
    wheels: bool = False,
    allowed: AbstractSet[str] | None = None,
) -> dict[Version, _Offer]:
    """Each version on ``page`` with an sdist: the sdist to build for ``python_version``, or the
    Requires-Python that leaves them all out. With ``wheels``, the versions that have only wheels
    too (parsing every wheel's name costs: a page can list thousands).

    Where a version has several sdists, one whose listed sha256 is among ``allowed`` (the hashes
    a requirement file or lock gives for the project) comes first, as pip picks in hash-checking
    mode; then ``.tar.gz`` (PEP 625). Only a file whose name parses as this project's sdist is
    ever taken, whatever hash another file lists.
    """
    sdists: dict[Version, IndexFile] = {}
    too_new: dict[Version, str] = {}  # versions whose sdists all need another Python
    others: set[Version] = set()  # versions seen in other files (wheels)
    for f in page.files:
        if f.filename.endswith(_SDIST_SUFFIXES):
            try:
                name, version = parse_sdist_filename(f.filename)
            except (InvalidSdistFilename, InvalidVersion):
                continue
            if name != page.name:
                continue
            if not _fits_python(f.requires_python, python_version):
                too_new.setdefault(version, f.requires_python or "")
                continue
            current = sdists.get(version)
            if current is None or _rank(f, allowed) > _rank(current, allowed):
                sdists[version] = f
        elif wheels and f.filename.endswith(".whl"):
            try:
                name, version, _, _ = parse_wheel_filename(f.filename)
            except (InvalidWheelFilename, InvalidVersion):
                continue
            if name == page.name:
                others.add(version)
    offers = {v: _Offer(f) for v, f in sdists.items()}
    for v, requires_python in too_new.items():
        offers.setdefault(v, _Offer(None, requires_python=requires_python))
    for v in others:
        offers.setdefault(v, _Offer(None, wheels_only=True))
    return offers


def _rank(sdist: IndexFile, allowed: AbstractSet[str] | None) -> tuple[bool, bool]:
    """How much one sdist of a version is preferred over another: its listed sha256 allowed by
    the hashes given, then ``.tar.gz``."""
    listed = sdist.sha256.lower() if sdist.sha256 else None
    return (
        allowed is not None and listed is not None and listed in allowed,
        sdist.filename.endswith(".tar.gz"),
    )


def _refused_by_hashes(sdist: IndexFile, allowed: AbstractSet[str] | None) -> bool:
    """Whether the index lists ``sdist`` with a sha256 the hashes given for its project do not
    allow (it will not be built)."""
    return allowed is not None and sdist.sha256 is not None and sdist.sha256.lower() not in allowed


def _fits_python(requires_python: str | None, python_version: Version) -> bool:
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(python_version, prereleases=True)
    except ValueError:
        return False  # an unparsable Requires-Python: pip skips such files too


def sdist_versions(page: ProjectPage, python_version: Version) -> dict[Version, IndexFile]:
    """The sdist of each version on ``page`` that supports ``python_version``.

    Where a version has several sdists, ``.tar.gz`` is preferred (PEP 625).
    """
    return {v: o.sdist for v, o in _offers(page, python_version).items() if o.sdist is not None}


def _allows(spec: SpecifierSet, version: Version, allow_prereleases: bool) -> bool:
    if allow_prereleases:
        return spec.contains(version, prereleases=True)
    # A pre-release only where the specifier itself names one. Explicit, since packaging 26
    # admits pre-releases in ``contains`` by default.
    return spec.contains(version, prereleases=bool(spec.prereleases))


def _left_out(
    version: Version,
    offer: _Offer,
    specifiers: Sequence[SpecifierSet],
    constraint: SpecifierSet | None,
    *,
    allow_prereleases: bool,
    exact_pin: bool,
) -> Iterator[tuple[Exclusion, str]]:
    """Why ``version`` is not a candidate, in the order of ``Exclusion`` (none: it is one)."""
    inside = [s for s in specifiers if s.contains(version, prereleases=True)]
    if len(inside) < len(specifiers):
        yield Exclusion.SPECIFIER, str(next(s for s in specifiers if s not in inside))
    if constraint is not None:
        if constraint.contains(version, prereleases=True):
            inside.append(constraint)
        else:
            yield Exclusion.CONSTRAINT, str(constraint)
    if offer.sdist is None:
        if offer.wheels_only:
            yield Exclusion.NO_SDIST, ""
        else:
            yield Exclusion.PYTHON, offer.requires_python or ""
    elif offer.sdist.yanked and not exact_pin:
        yield Exclusion.YANKED, ""  # PEP 592
    if not all(_allows(s, version, allow_prereleases) for s in inside):
        yield Exclusion.PRERELEASE, ""


class _Provider(resolvelib.AbstractProvider):  # type: ignore[type-arg]
    def __init__(
        self,
        upstream: Upstream,
        metadata: MetadataSource,
        target: TargetEnvironment,
        constraints: Mapping[NormalizedName, SpecifierSet],
        allow_prereleases: bool,
        preferred: Mapping[NormalizedName, Version],
        sdist_hashes: Mapping[NormalizedName, AbstractSet[str]],
    ) -> None:
        self.upstream = upstream
        self.sdist_hashes = sdist_hashes
        self.metadata = metadata
        self.target = target
        self.constraints = constraints
        self.allow_prereleases = allow_prereleases
        self.preferred = preferred
        # Who asked for what, for the chains of a failure's report: the packages that asked for
        # each name, and the kind of the requirement of each name asked for directly.
        self.asked_by: dict[NormalizedName, set[str]] = defaultdict(set)
        self.direct: dict[NormalizedName, EdgeKind] = {}
        self.direct_kinds: dict[str, EdgeKind] = {}  # by requirement as written

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
        specifiers = [r.specifier for r in reqs]
        constraint = self.constraints.get(name)
        exact_pin = any(_is_exact_pin(r) for r in reqs)
        out = []
        offers = _offers(page, self.target.python_version, allowed=self.sdist_hashes.get(name))
        for version, offer in offers.items():
            if version in bad or offer.sdist is None:
                continue
            reasons = _left_out(
                version,
                offer,
                specifiers,
                constraint,
                allow_prereleases=self.allow_prereleases,
                exact_pin=exact_pin,
            )
            if next(reasons, None) is None:
                out.append(Candidate(name, version, offer.sdist, extras))
        preferred = self.preferred.get(name)
        out.sort(key=lambda c: (c.version == preferred, c.version), reverse=True)
        return out

    def is_satisfied_by(self, requirement: Requirement, candidate: Candidate) -> bool:
        if canonicalize_name(requirement.name) != candidate.name:
            return False
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: Candidate) -> list[Requirement]:
        deps: list[Requirement] = []
        if candidate.extras:
            # name[extra] needs name itself at the same version, and its extra's requirements.
            deps.append(Requirement(f"{candidate.name}=={candidate.version}"))
        if _refused_by_hashes(candidate.sdist, self.sdist_hashes.get(candidate.name)):
            # The bootstrap refuses this sdist by its hash before anything is built: what its
            # metadata asks for (it could name anything) is not read, nor resolved.
            return deps
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

    def chain(self, requirement: Requirement, parent: Candidate | None) -> Chain:
        """The shortest chain from a requirement asked for directly down to ``requirement``
        of ``parent``: the packages on the way, then the requirement itself."""
        if parent is None:
            kind = self.direct_kinds.get(str(requirement), EdgeKind.TOPLEVEL)
            return (Link(str(requirement), kind),)
        # Breadth-first upwards through who asked for whom.
        start = str(parent)
        seen = {start}
        queue: deque[list[str]] = deque([[start]])
        path = [start]
        while queue:
            candidate_path = queue.popleft()
            name = _name_of(candidate_path[-1])
            askers = self.asked_by.get(name, set())
            if name in self.direct or not askers:
                path = candidate_path
                break
            for asker in sorted(askers):
                if asker not in seen:
                    seen.add(asker)
                    queue.append([*candidate_path, asker])
        top, *below = reversed(path)
        return (
            Link(top, self.direct.get(_name_of(top), EdgeKind.TOPLEVEL)),
            *(Link(p, EdgeKind.INSTALL) for p in below),
            Link(str(requirement), EdgeKind.INSTALL),
        )


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
        sdist_hashes: Mapping[NormalizedName, Collection[str]] | None = None,
    ) -> None:
        """``sdist_hashes``: the sha256 digests a requirement file or lock allows for a project's
        sdist; where a version has several sdists, one the index lists with such a digest is
        chosen (the bootstrap still checks the file, before and after downloading it)."""
        self.upstream = upstream
        self.sdist_hashes = {
            name: frozenset(d.lower() for d in digests)
            for name, digests in (sdist_hashes or {}).items()
        }
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
            self.sdist_hashes,
        )
        by_kind = kinds or {}
        for r in wanted:  # so that a chain stops at a package asked for directly
            provider.direct_kinds[str(r)] = by_kind.get(str(r), kind)
            provider.direct.setdefault(canonicalize_name(r.name), by_kind.get(str(r), kind))
        resolver: resolvelib.Resolver[Requirement, Candidate, str] = resolvelib.Resolver(
            provider, _NullReporter()
        )
        try:
            result = resolver.resolve(wanted, max_rounds=self.max_rounds)
        except resolvelib.ResolutionImpossible as exc:
            raise self._explain(exc, provider, parent) from None
        except resolvelib.ResolutionTooDeep as exc:
            where = f" for {purpose}" if purpose else ""
            raise ResolutionError(
                f"gave up after {self.max_rounds} rounds of backtracking{where}",
                package=parent.name if parent else None,
                version=str(parent.version) if parent else None,
            ) from exc

        pins: dict[NormalizedName, Pin] = {}
        for cand in result.mapping.values():
            pins[cand.name] = Pin(cand.name, cand.version, cand.sdist)
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
        parent: Pin | None,
    ) -> ResolutionError:
        """The typed error that says why: per project, not on the index, no version usable, or
        requirements that conflict; each with the chains of requirements that led there."""
        by_project: dict[NormalizedName, list[tuple[Requirement, Chain]]] = {}
        for info in exc.causes:
            req: Requirement = info.requirement
            chain = provider.chain(req, info.parent)
            asked = by_project.setdefault(canonicalize_name(req.name), [])
            if (req, chain) not in asked:
                asked.append((req, chain))
        causes = [self._cause(name, asked) for name, asked in by_project.items()]
        error = NoSdistError if causes and all(c.wheels_only for c in causes) else ResolutionError
        return error(
            causes=causes,
            package=parent.name if parent else None,
            version=str(parent.version) if parent else None,
            build_env=parent is not None,
            python=str(self.target.python_version),
        )

    def _cause(
        self, name: NormalizedName, asked: Sequence[tuple[Requirement, Chain]]
    ) -> ResolutionCause:
        chains = tuple(chain for _, chain in asked)
        page = _safe_page(self.upstream, name)
        if page is None:  # the index failed when asked again: what is known is the conflict
            return ResolutionCause(CauseKind.CONFLICT, name, chains)
        if page.missing is not None:
            return ResolutionCause(CauseKind.NOT_FOUND, name, chains, missing=page.missing)
        offers = _offers(
            page, self.target.python_version, wheels=True, allowed=self.sdist_hashes.get(name)
        )
        # A requirement that no version satisfies alone is the cause; else they conflict.
        unmet = [
            (chain, alone)
            for req, chain in asked
            if (alone := self._sort_out(offers, req)).usable == 0
        ]
        if not unmet:
            return ResolutionCause(CauseKind.CONFLICT, name, chains)
        first = unmet[0][1]
        return ResolutionCause(
            CauseKind.NO_MATCH,
            name,
            tuple(chain for chain, _ in unmet),
            excluded=first.excluded,
            closest=first.closest,
        )

    def _sort_out(self, offers: Mapping[Version, _Offer], req: Requirement) -> _SortedOut:
        """What the versions on the index are to ``req`` alone (with the constraints)."""
        constraint = self.constraints.get(canonicalize_name(req.name))
        groups: dict[tuple[Exclusion, str], list[Version]] = defaultdict(list)
        usable = 0
        closest: Version | None = None
        for version in sorted(offers, reverse=True):
            reasons = list(
                _left_out(
                    version,
                    offers[version],
                    [req.specifier],
                    constraint,
                    allow_prereleases=self.allow_prereleases,
                    exact_pin=_is_exact_pin(req),
                )
            )
            if not reasons:
                usable += 1
                continue
            groups[reasons[0]].append(version)
            # The one to suggest instead: what only the specifier left out, not yanked (though
            # pinning it would take it) and not a pre-release unless they are allowed.
            only_specifier = [why for why, _ in reasons] == [Exclusion.SPECIFIER]
            sdist = offers[version].sdist
            yanked = sdist is not None and sdist.yanked
            allowed = self.allow_prereleases or not version.is_prerelease
            if closest is None and only_specifier and allowed and not yanked:
                closest = version
        order = list(Exclusion)
        excluded = tuple(
            Excluded(why, tuple(str(v) for v in versions), detail)
            for (why, detail), versions in sorted(
                groups.items(), key=lambda item: (order.index(item[0][0]), item[0][1])
            )
        )
        return _SortedOut(excluded, usable, None if closest is None else str(closest))


class _SortedOut(NamedTuple):
    excluded: tuple[Excluded, ...]  # the versions left out, grouped by their first reason
    usable: int  # how many are candidates
    closest: str | None  # the newest only the requirement's specifier left out


def _is_exact_pin(req: Requirement) -> bool:
    """Whether ``req`` pins one version exactly, as PEP 592 means it (a yanked one is taken)."""
    if len(req.specifier) != 1:
        return False
    spec = next(iter(req.specifier))
    return spec.operator == "===" or (spec.operator == "==" and not spec.version.endswith(".*"))


def _name_of(candidate: str) -> NormalizedName:
    """The project of a candidate as ``str(Candidate)`` writes it: ``name[extras]==version``."""
    return canonicalize_name(candidate.split("[", 1)[0].split("==", 1)[0])


def _safe_page(upstream: Upstream, name: NormalizedName) -> ProjectPage | None:
    try:
        return upstream.get_project(name)
    except UpstreamError:
        return None


def _dedupe(edges: Iterable[Edge]) -> list[Edge]:
    seen: set[Edge] = set()
    out = []
    for e in edges:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out
