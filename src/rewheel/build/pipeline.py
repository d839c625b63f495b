"""The concrete steps of a bootstrap on this machine: the I/O half of ``bootstrap.Steps``.

Each step works on one (name, version) in its own folder under the repository's ``work/`` folder
and writes one log per package under ``logs/``. A failed step leaves its folder for inspection;
the next attempt starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import NormalizedName
from packaging.version import Version

from ..core.bootstrap import Built, Cached, Prepared
from ..core.errors import BuildError, IntegrityError, Step
from ..core.policy import best_wheel, reusable_wheel
from ..core.records import BuildExtras, BuildRecord
from ..core.resolver import Pin, Resolution, Resolver
from ..core.runstate import CACHE_FORMAT, interpreter_tag
from ..core.types import EdgeKind, Runner, Upstream, WheelRef
from ..repo.repository import Repository
from ..repo.wheelfile import read_metadata_bytes
from .buildenv import BuildEnvironment, EnvBuilder
from .builder import CoreBudget, FreshWheel, WheelBuilder
from .conditions import BuildProbe, HostProbe
from .metadata import MetadataSource
from .prepare import SdistSource, SourcePreparer
from .publisher import Publisher, Witness
from .recipes import BuildRecipe, load_recipe
from .reproducible import default_build_root
from .rust import crates_io_reachable
from .sandbox import SandboxPolicy
from .settings import PackageSettings, Settings, apply_to_requirements
from .systools import SystemTool, check_tools
from .workspace import Workspace


def default_work_root(repo: Repository | None = None) -> Path:
    """Where sdists are extracted and build environments made: <root>/<name>-<version>.

    The same folder in every run and for every repository (on a memory file system when there is
    one), so that build paths cannot make two builds differ. ``reproducible.claimed_work_root``
    keeps two runs out of each other's way.
    """
    return default_build_root()


def build_cache_key(
    *,
    sdist_sha256: str | None,
    build_env: Sequence[WheelRef],
    interpreter: str,
    settings_digest: str,
    system_tools: Sequence[SystemTool],
) -> str:
    """What a wheel's bytes can depend on, hashed: equal keys mean a build may be reused.

    The order of the build environment does not matter, nor do names or versions beyond what
    the wheels' sha256 already say; where the wheels were installed from does not either.
    """
    data = {
        "format": CACHE_FORMAT,
        "sdist_sha256": sdist_sha256,
        "build_env": sorted(w.sha256 for w in build_env),
        "interpreter": interpreter,
        "settings": settings_digest,
        "system_tools": [t.as_record() for t in system_tools],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class LocalSteps:
    """Implements ``bootstrap.Steps`` on this machine: resolution against the upstream index,
    the cache of build records, and the three parts of a build, each its own object so that a
    run that publishes nothing (``rebuild``, a Dask worker) takes only the first two:

    - ``preparer`` (``prepare.SourcePreparer``): sdist downloaded, checked, extracted, patched;
    - ``builder`` (``builder.WheelBuilder``): build environments, backend or recipe, the wheel;
    - ``publisher`` (``publisher.Publisher``): the wheel, its provenance, the index pages.

    Made by ``local_steps``; nothing is changed after construction.
    """

    def __init__(
        self,
        *,
        repo: Repository,
        upstream: Upstream,
        resolver: Resolver,
        metadata: MetadataSource,
        settings: Settings,
        sandbox: SandboxPolicy,
        workspace: Workspace,
        preparer: SourcePreparer,
        builder: WheelBuilder,
        publisher: Publisher,
    ) -> None:
        self.repo = repo
        self.upstream = upstream
        self.resolver = resolver
        self.metadata = metadata
        self.settings = settings
        self.sandbox = sandbox
        self.workspace = workspace
        self.preparer = preparer
        self.builder = builder
        self.publisher = publisher
        self.tag = interpreter_tag()
        # The system tools each build environment was found to need (filled by ``resolve``).
        self._tools: dict[tuple[str, str], list[SystemTool]] = {}

    @property
    def witness(self) -> Witness:
        return self.publisher.witness

    # -- resolution and cache ----------------------------------------------------------------

    def resolve(
        self,
        requirements: Sequence[Requirement],
        *,
        kinds: Mapping[str, EdgeKind],
        parent: Pin | None,
        preferred: Mapping[NormalizedName, Version],
        purpose: str,
    ) -> Resolution:
        kind = EdgeKind.TOPLEVEL if parent is None else EdgeKind.BUILD_SYSTEM
        if parent is not None:
            # A build environment: the package's settings add, drop, or leave to the system.
            pkg = self.package_settings(parent)
            texts, system = apply_to_requirements([str(r) for r in requirements], pkg)
            # Every declared tool is checked and recorded, asked for by the build or not.
            asked = {r.name for r in system}
            declared = [r for r in pkg.system_tools if r.name not in asked]
            tools = check_tools(
                [*system, *declared], package=parent.name, version=str(parent.version)
            )
            self._tools[(parent.name, str(parent.version))] = tools
            requirements = [Requirement(t) for t in texts]
            if not requirements:
                return Resolution(pins={})
        resolution = self.resolver.resolve(
            requirements,
            kind=kind,
            parent=parent,
            kinds=kinds,
            preferred=preferred,
            purpose=purpose,
        )
        self.witness.saw_resolution(resolution)  # why each package is needed, for provenance
        return resolution

    def cache_key(self, pin: Pin, build_env: Sequence[WheelRef]) -> str:
        return build_cache_key(
            sdist_sha256=pin.sdist.sha256,
            build_env=build_env,
            interpreter=self.tag,
            settings_digest=self.package_settings(pin).digest(),
            system_tools=self._tools.get(self._key(pin), []),
        )

    @staticmethod
    def _key(pin: Pin) -> tuple[str, str]:
        return (pin.name, str(pin.version))

    def package_settings(self, pin: Pin) -> PackageSettings:
        return self.settings.for_package(pin.name, pin.version)

    def record_extras(self, pin: Pin) -> BuildExtras:
        """What the settings and the system contributed to a build, for its record."""
        pkg = self.package_settings(pin)
        rust = self.preparer.rust(pin)
        return BuildExtras(
            system_tools=self.system_tools(pin),
            sandbox=self.sandbox.as_record(network_isolated=self.workspace.isolate_network),
            settings=None if pkg.is_default else pkg.as_record(),
            rust=None if rust is None else rust.as_record(),
        )

    def prebuilt(self, pin: Pin) -> Built | None:
        """The upstream's wheel of ``pin``, if its settings allow-list it, checked and published."""
        if not self.package_settings(pin).prebuilt:
            return None
        started = time.monotonic()
        chosen = best_wheel(
            self.upstream.get_project(pin.name).files, pin.version, list(sys_tags())
        )
        if chosen is None:
            raise BuildError(
                "allow-listed as pre-built, but the index has no wheel of it for this interpreter",
                package=pin.name,
                version=str(pin.version),
                step=Step.PREBUILT,
            )
        if chosen.sha256 is None:
            raise IntegrityError(
                f"pre-built wheel {chosen.filename} is listed without a sha256",
                package=pin.name,
                version=str(pin.version),
                step=Step.PREBUILT,
            )
        path = self.upstream.download(chosen, self.repo.root / "cache" / "prebuilt")
        ref = self.publisher.publish_prebuilt(path)
        log = self.workspace.log(pin)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"# {pin}: pre-built wheel {chosen.url} (sha256 {chosen.sha256})\n")
        return Built(
            wheel=ref,
            metadata=read_metadata_bytes(path),
            seconds=time.monotonic() - started,
            log=log,
        )

    def cached(self, pin: Pin) -> Cached | None:
        record = self.repo.load_record(pin.name, str(pin.version))
        if record is None:
            return None
        ref = reusable_wheel(
            record, pin.sdist.sha256, self.repo.find_wheels(pin.name, str(pin.version))
        )
        if ref is None:
            return None
        return Cached(
            wheel=ref,
            build_requires=record.build_system_requires,
            backend_requires=record.backend_requires,
            cache_key=str(record.cache_key),
            record=record,
        )

    def save_record(self, record: BuildRecord) -> BuildRecord:
        attested = self.witness.attestation(record.name, record.version)
        saved = record if attested is None else record.attested(attested)
        self.repo.save_record(saved)
        return saved

    def drifted(self, pin: Pin, built_metadata: bytes) -> bool:
        return self.metadata.drift(pin.name, pin.version, built_metadata)

    def system_tools(self, pin: Pin) -> tuple[Mapping[str, Any], ...]:
        """The system tools the build of ``pin`` takes, as its record and provenance list them."""
        return tuple(t.as_record() for t in self._tools.get(self._key(pin), []))

    # -- building: each step is one part's ----------------------------------------------------

    def prepare(self, pin: Pin) -> Prepared:
        return self.preparer.prepare(pin)

    def create_env(
        self, prepared: Prepared, wheels: Sequence[WheelRef], *, name: str
    ) -> BuildEnvironment:
        return self.builder.create_env(prepared, wheels, name=name)

    def get_requires(self, prepared: Prepared, env: BuildEnvironment) -> list[str]:
        requires = self.builder.get_requires(prepared, env)
        self.preparer.recheck_rust(prepared, requires)  # a Rust build the backend revealed
        self.witness.saw_backend_requires(prepared.pin, requires)
        return requires

    def build(self, prepared: Prepared, env: BuildEnvironment) -> Built:
        """Build the wheel and publish it with its provenance."""
        system = self.system_tools(prepared.pin)

        def deliver(prepared: Prepared, fresh: FreshWheel) -> WheelRef:
            return self.publisher.deliver(prepared, fresh, system=system)

        return self.builder.build(prepared, env, deliver)


def local_steps(
    *,
    repo: Repository,
    upstream: Upstream,
    resolver: Resolver,
    metadata: MetadataSource,
    env_builder: EnvBuilder,
    runner: Runner,
    work_root: Path | None = None,
    build_timeout: float | None = None,
    isolate_network: bool = True,
    settings: Settings | None = None,
    witness: Witness | None = None,
    sandbox: SandboxPolicy | None = None,
    cores: CoreBudget | None = None,
    crates_io: Callable[[], bool] = crates_io_reachable,
    recipes: Callable[[str], BuildRecipe] = load_recipe,
    probe: BuildProbe | None = None,
    notice: Callable[[str], None] | None = None,
) -> LocalSteps:
    """The ``LocalSteps`` of a bootstrap: its three parts made here, on one work folder layout.

    ``probe`` asks the machine how each build ran, for its provenance (default: a
    ``conditions.HostProbe`` for this run); ``notice`` hears of wheels that name paths of this
    machine (the repository among them)."""
    settings = settings or Settings()
    workspace = Workspace(
        work_root=work_root or repo.work_dir,
        logs_dir=repo.logs_dir,
        isolate_network=isolate_network,
        box_root=None if sandbox is None else sandbox.work_in_box,
    )
    parts = build_parts(
        workspace=workspace,
        sdists=upstream,
        sdists_dir=repo.sdists_dir,
        env_builder=env_builder,
        runner=runner,
        settings=settings,
        build_timeout=build_timeout,
        cores=cores,
        crates_io=crates_io,
        recipes=recipes,
        probe=probe or HostProbe(),
        private_paths=(repo.root,),
        notice=notice,
    )
    return LocalSteps(
        repo=repo,
        upstream=upstream,
        resolver=resolver,
        metadata=metadata,
        settings=settings,
        sandbox=sandbox or SandboxPolicy(bwrap=None),
        workspace=workspace,
        preparer=parts.preparer,
        builder=parts.builder,
        publisher=Publisher(repo, witness=witness),
    )


@dataclass(frozen=True)
class BuildParts:
    """A preparer and a builder on one workspace: all a run that publishes nothing needs."""

    workspace: Workspace
    preparer: SourcePreparer
    builder: WheelBuilder


def build_parts(
    *,
    workspace: Workspace,
    sdists: SdistSource,
    sdists_dir: Path,
    env_builder: EnvBuilder,
    runner: Runner,
    settings: Settings,
    build_timeout: float | None = None,
    cores: CoreBudget | None = None,
    crates_io: Callable[[], bool] = crates_io_reachable,
    recipes: Callable[[str], BuildRecipe] = load_recipe,
    probe: BuildProbe | None = None,
    private_paths: Sequence[Path] = (),
    notice: Callable[[str], None] | None = None,
) -> BuildParts:
    """The one factory of a build's preparer and builder: for a bootstrap (``local_steps``),
    ``rebuild --check`` and a Dask worker alike. With ``probe``, the builder records how each
    build ran (for provenance: only runs that publish need it)."""
    return BuildParts(
        workspace=workspace,
        preparer=SourcePreparer(
            upstream=sdists,
            sdists_dir=sdists_dir,
            workspace=workspace,
            runner=runner,
            settings=settings,
            crates_io=crates_io,
        ),
        builder=WheelBuilder(
            workspace=workspace,
            env_builder=env_builder,
            runner=runner,
            settings=settings,
            build_timeout=build_timeout,
            cores=cores,
            recipes=recipes,
            probe=probe,
            private_paths=private_paths,
            on_notice=notice,
        ),
    )
