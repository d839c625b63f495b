"""In-memory fakes for the resolver, the metadata source and the bootstrap.

- ``FakeUpstream`` implements ``rewheel.core.types.Upstream`` from a dict
  ``{project (as written): {version: Release | [requires_dist...]}}``. Sdists it "downloads" are
  small real archives (tar.gz or zip) holding a PKG-INFO, so ``metadata.read_pkg_info`` works.
- ``StaticMetadata`` implements ``resolver.MetadataSource`` from the same dict.
- ``FakeSteps`` implements ``bootstrap.Steps``: it resolves with the real ``Resolver`` over a
  ``FakeUpstream`` and simulates builds with short sleeps, recording what happened so that tests
  can check order, concurrency and duplicate work.
- ``FakeRunner`` implements ``rewheel.core.types.Runner``: it records every call as a
  ``RunnerCall`` and hands it to ``respond`` (a callback, or a method a subclass overrides).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from rewheel.core.bootstrap import Built, Cached, Prepared
from rewheel.core.durations import SdistFeatures
from rewheel.core.errors import BuildError
from rewheel.core.records import BuildExtras, BuildRecord
from rewheel.core.resolver import Pin, Resolution, Resolver, TargetEnvironment
from rewheel.core.types import Confinement, EdgeKind, IndexFile, ProjectPage, WheelRef
from rewheel.repo.wheelfile import requires_dist

_FIXED_MTIME = 1_600_000_000

# {project as written: {version: Release | [Requires-Dist, ...]}}
Projects = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Release:
    """One version of a project on the fake index."""

    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None
    yanked: bool = False
    sdist: bool = True
    sdist_format: str = "tar.gz"  # or "zip"
    wheels: tuple[str, ...] = ()  # tags of the upstream wheels, e.g. ("py3-none-any",)
    wheel_metadata: bool = True  # whether the wheels' core metadata is served (PEP 658)
    pkg_info: str | None = None  # the sdist's PKG-INFO; default: Metadata 2.2, static
    has_pkg_info: bool = True  # False: an sdist without PKG-INFO (not a valid sdist, but seen)


def core_metadata(
    name: str,
    version: str,
    requires: Sequence[str],
    *,
    metadata_version: str = "2.1",
    dynamic: Sequence[str] = (),
    requires_python: str | None = None,
) -> str:
    lines = [f"Metadata-Version: {metadata_version}", f"Name: {name}", f"Version: {version}"]
    lines += [f"Dynamic: {d}" for d in dynamic]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n\n"


def dist_name(name: str) -> str:
    return canonicalize_name(name).replace("-", "_")


def sdist_bytes(name: str, version: str, pkg_info: str | None, fmt: str = "tar.gz") -> bytes:
    """A minimal deterministic sdist: ``{dist}-{version}/PKG-INFO`` and a ``setup.py``."""
    top = f"{dist_name(name)}-{version}"
    members = {f"{top}/setup.py": b"raise SystemExit(1)\n"}
    if pkg_info is not None:
        members[f"{top}/PKG-INFO"] = pkg_info.encode()
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w") as zf:
            for path, data in members.items():
                zf.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)
    else:
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for path, data in members.items():
                info = tarfile.TarInfo(path)
                info.size = len(data)
                info.mtime = _FIXED_MTIME
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_sdist(
    dest_dir: Path, name: str, version: str, pkg_info: str, fmt: str = "tar.gz"
) -> Path:
    path = dest_dir / f"{dist_name(name)}-{version}.{fmt}"
    path.write_bytes(sdist_bytes(name, version, pkg_info, fmt))
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeUpstream:
    """``rewheel.core.types.Upstream`` over a dict of projects; counts what is asked of it."""

    def __init__(self, projects: Projects) -> None:
        self.releases: dict[NormalizedName, dict[str, Release]] = {}
        self.written: dict[NormalizedName, str] = {}
        self._content: dict[str, bytes] = {}  # filename -> sdist bytes or wheel METADATA
        self._pages: dict[NormalizedName, ProjectPage] = {}
        for project, versions in projects.items():
            key = canonicalize_name(project)
            self.written[key] = project
            self.releases[key] = {
                v: r if isinstance(r, Release) else Release(requires_dist=tuple(r))
                for v, r in versions.items()
            }
            self._pages[key] = ProjectPage(key, tuple(self._files(project, self.releases[key])))
        self.lock = threading.Lock()
        self.page_requests: Counter[str] = Counter()
        self.metadata_requests: list[str] = []
        self.downloads: list[str] = []

    def _files(self, project: str, releases: Mapping[str, Release]) -> list[IndexFile]:
        files = []
        dist = project.replace("-", "_").replace(".", "_")  # keeps the case: Foo_Bar-1.0.tar.gz
        for version, rel in releases.items():
            if rel.sdist:
                pkg_info = rel.pkg_info or core_metadata(
                    project,
                    version,
                    rel.requires_dist,
                    metadata_version="2.2",
                    requires_python=rel.requires_python,
                )
                filename = f"{dist}-{version}.{rel.sdist_format}"
                data = sdist_bytes(
                    project, version, pkg_info if rel.has_pkg_info else None, rel.sdist_format
                )
                self._content[filename] = data
                files.append(self._file(filename, data, rel))
            for tag in rel.wheels:
                filename = f"{dist}-{version}-{tag}.whl"
                meta = core_metadata(project, version, rel.requires_dist).encode()
                self._content[filename] = meta
                files.append(self._file(filename, meta, rel, has_metadata=rel.wheel_metadata))
        return files

    @staticmethod
    def _file(filename: str, data: bytes, rel: Release, has_metadata: bool = False) -> IndexFile:
        return IndexFile(
            filename=filename,
            url=f"https://fake.invalid/files/{filename}",
            sha256=_sha256(data),
            requires_python=rel.requires_python,
            yanked=rel.yanked,
            has_metadata=has_metadata,
            size=len(data),
        )

    def get_project(self, name: NormalizedName) -> ProjectPage:
        # Callers must normalize (PEP 503); a fake that forgave them would hide the bug.
        assert name == canonicalize_name(name), f"not a normalized name: {name!r}"
        with self.lock:
            self.page_requests[name] += 1
        missing = f"HTTP 404 at https://fake.invalid/simple/{name}/"
        return self._pages.get(name, ProjectPage(name, (), missing=missing))

    def get_metadata(self, file: IndexFile) -> bytes | None:
        with self.lock:
            self.metadata_requests.append(file.filename)
        if not file.has_metadata:
            return None
        return self._content[file.filename]

    def download(self, file: IndexFile, dest_dir: Path) -> Path:
        with self.lock:
            self.downloads.append(file.filename)
        dest_dir.mkdir(parents=True, exist_ok=True)
        path = dest_dir / file.filename
        path.write_bytes(self._content[file.filename])
        return path

    def requires(self, name: NormalizedName, version: Version) -> list[Requirement]:
        for v, rel in self.releases[name].items():
            if Version(v) == version:
                return [Requirement(r) for r in rel.requires_dist]
        raise KeyError((name, version))


class StaticMetadata:
    """``resolver.MetadataSource`` that answers from the fake index's dict; counts the calls."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.calls: Counter[str] = Counter()

    def requires_dist(
        self, name: NormalizedName, version: Version, sdist: IndexFile
    ) -> list[Requirement]:
        self.calls[f"{name}=={version}"] += 1
        return self.upstream.requires(name, version)


# -- bootstrap steps ------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeEnv:
    node: str
    name: str
    wheels: tuple[WheelRef, ...]


@dataclass
class _Stats:
    active_builds: int = 0
    max_builds: int = 0
    active_busy: int = 0  # get_requires or build: the work done under a slot
    max_busy: int = 0


def node_id(pin: Pin) -> str:
    return f"{pin.name}=={pin.version}"


@dataclass
class FakeSteps:
    """``bootstrap.Steps`` that pretends to build: no files, no subprocesses.

    Per-node settings are keyed by ``"name==version"`` or by project name (normalized).
    ``build_requires``: build-system.requires; ``backend_requires``: get_requires_for_build_wheel;
    ``durations``: seconds a build sleeps; ``prepare_durations``: seconds ``prepare`` sleeps;
    ``fail``: nodes whose build raises ``BuildError``; ``drift``: nodes whose built wheel's
    Requires-Dist is the given list instead of what the index predicted; ``prebuilt``: nodes
    whose upstream wheel is taken (as the settings' ``prebuilt = true`` does); ``features``:
    what ``prepare`` says a node's sdist holds (for the estimate of its build's seconds).
    Saved records are the cache: ``cached`` answers from them while ``use_cache`` is set.
    """

    upstream: FakeUpstream
    build_requires: Mapping[str, Sequence[str]] = field(default_factory=dict)
    backend_requires: Mapping[str, Sequence[str]] = field(default_factory=dict)
    durations: Mapping[str, float] = field(default_factory=dict)
    prepare_durations: Mapping[str, float] = field(default_factory=dict)
    fail: Collection[str] = ()
    drift: Mapping[str, Sequence[str]] = field(default_factory=dict)
    prebuilt_nodes: Collection[str] = ()
    features: Mapping[str, SdistFeatures] = field(default_factory=dict)
    default_duration: float = 0.002
    use_cache: bool = True
    key_salt: str = ""
    target: TargetEnvironment | None = None

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []  # (event, node) in the order they happened
        self.resolves: list[str] = []  # the purpose of each resolve call
        self.builds: Counter[str] = Counter()
        self.prepares: Counter[str] = Counter()
        self.build_envs: dict[str, list[str]] = {}  # node -> node ids of its build env
        self.published: dict[str, WheelRef] = {}  # node -> wheel
        self.published_requires: dict[str, list[str]] = {}  # node -> built Requires-Dist
        self.records: dict[str, BuildRecord] = {}
        self.violations: list[str] = []
        self._stats = _Stats()
        self.metadata = _StepsMetadata(self)
        self.resolver = Resolver(self.upstream, self.metadata, target=self.target)

    @property
    def max_concurrent_builds(self) -> int:
        return self._stats.max_builds

    @property
    def max_concurrent_busy(self) -> int:
        return self._stats.max_busy

    def _get(self, table: Mapping[str, Any], pin: Pin, default: Any) -> Any:
        node = node_id(pin)
        if node in table:
            return table[node]
        return table.get(pin.name, default)

    def _event(self, event: str, node: str) -> None:
        with self.lock:
            self.events.append((event, node))

    def _wheel(self, pin: Pin) -> WheelRef:
        filename = f"{pin.name.replace('-', '_')}-{pin.version}-py3-none-any.whl"
        return WheelRef(pin.name, str(pin.version), filename, _sha256(filename.encode()))

    # -- Steps ---------------------------------------------------------------------------------

    def resolve(
        self,
        requirements: Sequence[Requirement],
        *,
        kinds: Mapping[str, EdgeKind],
        parent: Pin | None,
        preferred: Mapping[NormalizedName, Version],
        purpose: str,
    ) -> Resolution:
        with self.lock:
            self.resolves.append(purpose)
        kind = EdgeKind.TOPLEVEL if parent is None else EdgeKind.BUILD_SYSTEM
        return self.resolver.resolve(
            requirements,
            kind=kind,
            parent=parent,
            kinds=kinds,
            preferred=preferred,
            purpose=purpose,
        )

    def cached(self, pin: Pin) -> Cached | None:
        with self.lock:
            record = self.records.get(node_id(pin)) if self.use_cache else None
        if record is None:
            return None
        return Cached(
            wheel=self.published[node_id(pin)],
            build_requires=record.build_system_requires,
            backend_requires=record.backend_requires,
            cache_key=str(record.cache_key),
            record=record,
        )

    def cache_key(self, pin: Pin, build_env: Sequence[WheelRef]) -> str:
        parts = [node_id(pin), self.key_salt, *sorted(w.filename for w in build_env)]
        return _sha256("|".join(parts).encode())

    def prepare(self, pin: Pin) -> Prepared:
        node = node_id(pin)
        self._event("prepare", node)
        with self.lock:
            self.prepares[node] += 1
        time.sleep(float(self._get(self.prepare_durations, pin, 0.0)))
        return Prepared(
            pin=pin,
            sdist_path=Path("/nonexistent/sdists") / pin.sdist.filename,
            sdist_sha256=pin.sdist.sha256 or "",
            source_dir=Path("/nonexistent/work") / node,
            build_requires=tuple(self._get(self.build_requires, pin, ())),
            backend=node,
            features=self._get(self.features, pin, None),
        )

    def create_env(self, prepared: Prepared, wheels: Sequence[WheelRef], *, name: str) -> Any:
        node = node_id(prepared.pin)
        self._event(f"create-{name}", node)
        self._check_published(node, wheels, f"create_env({name})")
        return FakeEnv(node, name, tuple(wheels))

    def get_requires(self, prepared: Prepared, env: Any) -> list[str]:
        node = node_id(prepared.pin)
        self._event("get-requires", node)
        self._enter(build=False)
        try:
            time.sleep(0.0005)
        finally:
            self._leave(build=False)
        return list(self._get(self.backend_requires, prepared.pin, ()))

    def build(self, prepared: Prepared, env: Any) -> Built:
        pin = prepared.pin
        node = node_id(pin)
        assert isinstance(env, FakeEnv) and env.node == node
        self._enter(build=True)
        try:
            self._event("build-start", node)
            with self.lock:
                self.builds[node] += 1
                self.build_envs[node] = [f"{w.name}=={w.version}" for w in env.wheels]
            self._check_published(node, env.wheels, "build")
            seconds = float(self._get(self.durations, pin, self.default_duration))
            time.sleep(seconds)
            if node in self.fail or pin.name in self.fail:
                self._event("build-failed", node)
                raise BuildError(
                    "the fake build failed", package=pin.name, version=str(pin.version)
                )
            drifted = self._get(self.drift, pin, None)
            requires = (
                list(drifted)
                if drifted is not None
                else [str(r) for r in self.upstream.requires(pin.name, pin.version)]
            )
            wheel = self._wheel(pin)
            with self.lock:
                self.published[node] = wheel
                self.published_requires[node] = requires
            self._event("build-end", node)
        finally:
            self._leave(build=True)
        metadata = core_metadata(pin.name, str(pin.version), requires).encode()
        return Built(wheel=wheel, metadata=metadata, seconds=seconds, log=Path("/nonexistent.log"))

    def drifted(self, pin: Pin, built_metadata: bytes) -> bool:
        predicted = {str(r) for r in self.upstream.requires(pin.name, pin.version)}
        return predicted != {str(r) for r in requires_dist(built_metadata)}

    def prebuilt(self, pin: Pin) -> Built | None:
        node = node_id(pin)
        if node not in self.prebuilt_nodes and pin.name not in self.prebuilt_nodes:
            return None
        wheel = self._wheel(pin)
        requires = [str(r) for r in self.upstream.requires(pin.name, pin.version)]
        with self.lock:
            self.published[node] = wheel
            self.published_requires[node] = requires
        metadata = core_metadata(pin.name, str(pin.version), requires).encode()
        return Built(wheel=wheel, metadata=metadata, seconds=0.3, log=Path("/nonexistent.log"))

    def record_extras(self, pin: Pin) -> BuildExtras:
        return BuildExtras()

    def save_record(self, record: BuildRecord) -> BuildRecord:
        with self.lock:
            self.records[record.node] = record
        return record

    # -- bookkeeping ---------------------------------------------------------------------------

    def _check_published(self, node: str, wheels: Sequence[WheelRef], where: str) -> None:
        with self.lock:
            have = {w.filename for w in self.published.values()}
            for w in wheels:
                if w.filename not in have:
                    self.violations.append(f"{node}: {where} before {w.filename} existed")

    def _enter(self, *, build: bool) -> None:
        with self.lock:
            s = self._stats
            s.active_busy += 1
            s.max_busy = max(s.max_busy, s.active_busy)
            if build:
                s.active_builds += 1
                s.max_builds = max(s.max_builds, s.active_builds)

    def _leave(self, *, build: bool) -> None:
        with self.lock:
            self._stats.active_busy -= 1
            if build:
                self._stats.active_builds -= 1

    def index(self, event: str, node: str) -> int:
        """Position of the first ``(event, node)`` in ``events``."""
        return self.events.index((event, node))


class _StepsMetadata:
    """What the resolver inside ``FakeSteps`` reads: a built wheel's truth, else the index."""

    def __init__(self, steps: FakeSteps) -> None:
        self.steps = steps

    def requires_dist(
        self, name: NormalizedName, version: Version, sdist: IndexFile
    ) -> list[Requirement]:
        with self.steps.lock:
            built = self.steps.published_requires.get(f"{name}=={version}")
        if built is not None:
            return [Requirement(r) for r in built]
        return self.steps.upstream.requires(name, version)


@dataclass(frozen=True)
class RunnerCall:
    """One call of a ``Runner``, as ``FakeRunner`` saw it."""

    cmd: list[str]
    cwd: Path
    env: dict[str, str]
    log: Path
    timeout: float | None
    isolate_network: bool
    confine: Confinement | None


class FakeRunner:
    """A ``Runner`` that records its calls and hands each to ``respond`` (default: nothing)."""

    def __init__(self, respond: Callable[[RunnerCall], None] | None = None) -> None:
        self.calls: list[RunnerCall] = []
        self._respond = respond

    def __call__(
        self,
        cmd: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log: Path,
        timeout: float | None = None,
        isolate_network: bool = False,
        confine: Confinement | None = None,
    ) -> None:
        call = RunnerCall(
            [str(c) for c in cmd], cwd, dict(env), log, timeout, isolate_network, confine
        )
        self.calls.append(call)
        self.respond(call)

    def respond(self, call: RunnerCall) -> None:
        if self._respond is not None:
            self._respond(call)


def make_record(name: str, version: str, **fields: Any) -> BuildRecord:
    """A build record of a wheel ``name-version-py3-none-any.whl``, other fields as given."""
    defaults: dict[str, Any] = {
        "sdist_url": f"https://files.example/{name.replace('-', '_')}-{version}.tar.gz",
        "sdist_sha256": "5" * 64,
        "wheel": f"{name.replace('-', '_')}-{version}-py3-none-any.whl",
        "wheel_sha256": "9" * 64,
    }
    return BuildRecord(name=name, version=version, **{**defaults, **fields})
