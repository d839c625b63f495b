"""CycloneDX SBOMs of a venv or of a whole repository, build-time components included.

Every wheel is a ``library`` component with its package URL (``pkg:pypi/name@version``), the
sha256 of the wheel file, its licences (METADATA ``License-Expression``, else a one-line
``License``, else the ``License ::`` classifiers) and its sdist as a ``source-distribution``
external reference (with the sdist's sha256).

Build-time dependencies are described with standard CycloneDX means only:

- the dependency graph holds both kinds of edges: a component ``dependsOn`` what it needs at run
  time and the wheels of its build environment;
- each build-environment edge is also named by a ``rewheel:build-dependency`` property (one per
  wheel, value: its bom-ref) on the component that was built with it;
- a component needed only to build others (not at run time) has ``scope: excluded`` (CycloneDX:
  "not reachable within a call graph at runtime") and the property ``rewheel:build-only=true``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentScope, ComponentType
from cyclonedx.model.license import License, LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.metadata import RawMetadata
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from .. import __version__
from ..core.errors import RewheelError, Step
from ..core.records import BuildRecord
from ..core.versions import normal_version
from ..repo.repository import Repository
from ..repo.wheelfile import parse_metadata, read_metadata_bytes, run_requirements_of
from .verify import venv_layout

PROPERTY_BUILD_ONLY = "rewheel:build-only"
PROPERTY_BUILD_DEPENDENCY = "rewheel:build-dependency"
PROPERTY_WHEEL = "rewheel:wheel"
PROPERTY_PROVENANCE = "rewheel:provenance"
PROPERTY_PREBUILT = "rewheel:prebuilt"


@dataclass
class Package:
    """One component of an SBOM, as plain data."""

    name: str
    version: str
    ref: str  # bom-ref: the wheel file name, or name==version when no wheel is known
    metadata: RawMetadata | None = None
    sha256: str | None = None
    sdist_url: str | None = None
    sdist_sha256: str | None = None
    provenance: str | None = None
    prebuilt: bool = False
    build_env: list[str] = field(default_factory=list)  # bom-refs
    runtime_deps: list[str] = field(default_factory=list)  # bom-refs
    build_only: bool = False


# ---------------------------------------------------------------- licences (pure)


def _one_line(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    return text if text and "\n" not in text and len(text) <= 100 else None


def licenses_of(metadata: RawMetadata | None) -> list[License]:
    """The licences core metadata declares, best source first."""
    if metadata is None:
        return []
    factory = LicenseFactory()
    expression = _one_line(metadata.get("license_expression"))
    if expression:
        return [factory.make_from_string(expression)]
    text = _one_line(metadata.get("license"))
    if text and text.upper() not in ("UNKNOWN", "NONE"):
        return [factory.make_from_string(text)]
    out: list[License] = []
    for classifier in metadata.get("classifiers") or []:
        parts = [p.strip() for p in classifier.split("::")]
        if parts[0] == "License" and len(parts) > 1 and parts[-1] != "OSI Approved":
            lic = factory.make_with_name(parts[-1])
            if lic not in out:
                out.append(lic)
    return out


def link_runtime(packages: Sequence[Package]) -> None:
    """Fill each package's ``runtime_deps`` from its Requires-Dist, among ``packages``."""
    by_name: dict[str, list[Package]] = {}
    for p in packages:
        by_name.setdefault(canonicalize_name(p.name), []).append(p)
    for p in packages:
        for req in run_requirements_of(p.metadata):
            for q in by_name.get(canonicalize_name(req.name), []):
                if req.specifier.contains(q.version, prereleases=True) and q.ref not in (
                    p.runtime_deps
                ):
                    p.runtime_deps.append(q.ref)


# ---------------------------------------------------------------- the BOM (pure)


def make_bom(packages: Sequence[Package], *, subject: str, roots: Iterable[str]) -> Bom:
    """A CycloneDX BOM of ``packages``; ``subject`` (a venv, a repository) depends on ``roots``."""
    bom = Bom()
    root = Component(name=subject, type=ComponentType.APPLICATION, bom_ref="rewheel-subject")
    bom.metadata.component = root
    bom.metadata.tools.components.add(
        Component(
            name="rewheel",
            version=__version__,
            type=ComponentType.APPLICATION,
            purl=PackageURL(type="pypi", name="rewheel", version=__version__),
        )
    )
    components: dict[str, Component] = {}
    for p in packages:
        properties = [Property(name=PROPERTY_BUILD_DEPENDENCY, value=r) for r in p.build_env]
        if p.build_only:
            properties.append(Property(name=PROPERTY_BUILD_ONLY, value="true"))
        if p.sha256 is not None:
            properties.append(Property(name=PROPERTY_WHEEL, value=p.ref))
        if p.provenance:
            properties.append(Property(name=PROPERTY_PROVENANCE, value=p.provenance))
        if p.prebuilt:
            properties.append(Property(name=PROPERTY_PREBUILT, value="true"))
        references = []
        if p.sdist_url:
            references.append(
                ExternalReference(
                    type=ExternalReferenceType.SOURCE_DISTRIBUTION,
                    url=XsUri(p.sdist_url),
                    hashes=[HashType(alg=HashAlgorithm.SHA_256, content=p.sdist_sha256)]
                    if p.sdist_sha256
                    else None,
                )
            )
        licenses = licenses_of(p.metadata)
        expressions: list[License] = [e for e in licenses if isinstance(e, LicenseExpression)]
        if expressions:  # CycloneDX: an expression stands alone
            licenses = expressions[:1]
        summary = p.metadata.get("summary") if p.metadata is not None else None
        components[p.ref] = Component(
            name=canonicalize_name(p.name),
            version=p.version,
            type=ComponentType.LIBRARY,
            bom_ref=p.ref,
            description=str(summary).strip() if summary else None,
            purl=PackageURL(type="pypi", name=canonicalize_name(p.name), version=p.version),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=p.sha256)] if p.sha256 else None,
            licenses=licenses,
            scope=ComponentScope.EXCLUDED if p.build_only else ComponentScope.REQUIRED,
            external_references=references,
            properties=properties,
        )
    for c in components.values():
        bom.components.add(c)
    for p in packages:
        targets = [components[r] for r in [*p.runtime_deps, *p.build_env] if r in components]
        bom.register_dependency(components[p.ref], targets)
    root_targets = [components[r] for r in roots if r in components]
    bom.register_dependency(root, root_targets or list(components.values()))
    return bom


def bom_json(bom: Bom) -> str:
    text: str = JsonV1Dot6(bom).output_as_string(indent=2)
    return text + "\n"


# ---------------------------------------------------------------- collecting (I/O)


def _record_index(repo: Repository) -> dict[tuple[str, str], BuildRecord]:
    out: dict[tuple[str, str], BuildRecord] = {}
    for record in repo.load_records() if repo.records_dir.is_dir() else []:
        out[(canonicalize_name(record.name), normal_version(record.version))] = record
    return out


def _wheel_metadata(repo: Repository, filename: str) -> RawMetadata | None:
    path = repo.wheels_dir / filename
    meta = path.with_name(filename + ".metadata")
    try:
        return parse_metadata(meta.read_bytes() if meta.is_file() else read_metadata_bytes(path))
    except (OSError, KeyError, ValueError, RewheelError):
        return None


class _Collector:
    """Packages of the repository, found by wheel sha256, with their build records."""

    def __init__(self, repo: Repository | None) -> None:
        self.repo = repo
        self.wheels = repo.wheels() if repo is not None and repo.wheels_dir.is_dir() else []
        self.by_sha = {w.sha256: w for w in self.wheels}
        self.records = _record_index(repo) if repo is not None else {}
        self.packages: dict[str, Package] = {}

    def from_wheel(self, sha256: str) -> Package | None:
        """The package of a repository wheel, with its build environment, recursively."""
        ref = self.by_sha.get(sha256)
        if ref is None or self.repo is None:
            return None
        if ref.filename in self.packages:
            return self.packages[ref.filename]
        record = self.records.get((ref.name, normal_version(ref.version)))
        if record is not None and record.wheel_sha256 != ref.sha256:
            record = None  # a record of another wheel of this release
        package = Package(
            name=ref.name,
            version=ref.version,
            ref=ref.filename,
            metadata=_wheel_metadata(self.repo, ref.filename),
            sha256=ref.sha256,
            sdist_url=None if record is None else record.sdist_url,
            sdist_sha256=None if record is None else record.sdist_sha256,
            provenance=None if record is None else record.provenance,
            prebuilt=record is not None and record.prebuilt,
        )
        self.packages[ref.filename] = package
        for entry in () if record is None else record.build_env:
            tool = self.from_wheel(entry.sha256)
            if tool is not None:
                package.build_env.append(tool.ref)
        return package


def _best_wheel(candidates: Sequence[str]) -> str | None:
    """Of several wheels of one release, the one an installer here would choose."""
    rank = {t: i for i, t in enumerate(sys_tags())}

    def key(filename: str) -> int:
        tags = parse_wheel_filename(filename)[3]
        return min((rank[t] for t in tags if t in rank), default=len(rank))

    return min(candidates, key=key) if candidates else None


def venv_packages(venv: Path, repo: Repository | None) -> tuple[list[Package], list[str]]:
    """The distributions installed in ``venv`` (plus, with ``repo``, their build-time closure),
    and the bom-refs of the installed ones."""
    layout = venv_layout(venv)
    collector = _Collector(repo)
    installed: list[Package] = []
    for site in layout.site_dirs:
        for dist_info in sorted((layout.root / site).glob("*.dist-info")):
            try:
                metadata = parse_metadata((dist_info / "METADATA").read_bytes())
            except OSError:
                continue
            name, version = metadata.get("name") or "", metadata.get("version") or ""
            if not name or not version:
                continue
            matching = [
                w
                for w in collector.wheels
                if w.name == canonicalize_name(name)
                and normal_version(w.version) == normal_version(version)
            ]
            best = _best_wheel([w.filename for w in matching])
            package = next(
                (collector.from_wheel(w.sha256) for w in matching if w.filename == best), None
            )
            if package is None:
                package = Package(name=name, version=version, ref=f"{name}=={version}")
                collector.packages[package.ref] = package
            package.metadata = metadata  # what is installed is what the SBOM describes
            installed.append(package)
    packages = list(collector.packages.values())
    runtime_refs = {p.ref for p in installed}
    link_runtime(installed)
    for p in packages:
        p.build_only = p.ref not in runtime_refs
    return packages, sorted(runtime_refs)


def repository_packages(repo: Repository) -> tuple[list[Package], list[str]]:
    """Every wheel of the repository, and the bom-refs of what was asked for at the top level.

    What ``graph.json`` shows to be reachable from the top-level requests only through build
    environments is build-only; wheels the graph does not know (earlier runs) are not marked.
    """
    collector = _Collector(repo)
    for w in collector.wheels:
        collector.from_wheel(w.sha256)
    packages = list(collector.packages.values())
    link_runtime(packages)
    by_node: dict[str, list[Package]] = {}
    for p in packages:
        by_node.setdefault(f"{canonicalize_name(p.name)}=={normal_version(p.version)}", []).append(
            p
        )
    try:
        graph = json.loads((repo.root / "graph.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return packages, []
    edges = graph.get("edges", []) if isinstance(graph, dict) else []
    tops = [e.get("to") for e in edges if e.get("from") is None]
    runtime_next: dict[str, list[str]] = {}
    for e in edges:
        if e.get("kind") == "install" and e.get("from"):
            runtime_next.setdefault(str(e["from"]), []).append(str(e.get("to")))
    reachable, todo = set(), [str(t) for t in tops]
    while todo:
        node = todo.pop()
        if node not in reachable:
            reachable.add(node)
            todo.extend(runtime_next.get(node, []))
    known = {str(n.get("id")) for n in graph.get("nodes", []) if isinstance(n, dict)}
    for node, group in by_node.items():
        for p in group:
            p.build_only = node in known and node not in reachable
    roots = [p.ref for t in tops for p in by_node.get(str(t), [])]
    return packages, roots


def write_sbom(
    output: Path | None,
    *,
    venv: Path | None,
    repo_root: Path | None,
) -> str:
    """The SBOM of ``venv`` (with ``repo_root``'s build information) or of the repository."""
    repo = Repository(repo_root) if repo_root is not None and repo_root.is_dir() else None
    if venv is not None:
        packages, roots = venv_packages(venv, repo)
        subject = venv.resolve().name
    elif repo is not None:
        packages, roots = repository_packages(repo)
        subject = f"rewheel repository {repo.root.resolve().name}"
    else:
        raise RewheelError(f"no repository at {repo_root}", step=Step.SBOM)
    text = bom_json(make_bom(packages, subject=subject, roots=roots))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    return text
