"""The concrete steps of a bootstrap on this machine: the I/O half of ``bootstrap.Steps``.

Each step works on one (name, version) in its own folder under the repository's ``work/`` folder
and writes one log per package under ``logs/``. A failed step leaves its folder for inspection;
the next attempt starts afresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..core.bootstrap import Built, Cached, Prepared
from ..core.errors import BuildError, CommandFailed, IntegrityError, Step
from ..core.fsutil import remove_tree, sha256_file
from ..core.policy import best_wheel, reusable_wheel
from ..core.records import BuildExtras, BuildRecord
from ..core.resolver import Pin, Resolution, Resolver
from ..core.runstate import CACHE_FORMAT, interpreter_tag
from ..core.types import Confinement, EdgeKind, Runner, Upstream, WheelRef
from ..repo.repository import Repository
from ..repo.wheelfile import read_metadata_bytes, wheel_name_version
from .backend import Backend
from .buildenv import BuildEnvironment, EnvBuilder
from .builder import CoreBudget, compile_parallelism
from .extract import extract_sdist
from .metadata import MetadataSource
from .publisher import NoWitness, Witness
from .pyproject import BuildSystem, read_build_system
from .recipes import RecipeContext, load_recipe
from .reproducible import default_build_root, reproducible_env, source_date_epoch
from .rust import RustSources, check_rust_sources, crates_io_reachable
from .sandbox import SandboxPolicy
from .settings import PackageSettings, Settings, apply_to_requirements
from .systools import SystemTool, check_tools

# The folders of a package's work folder that its build code may write: the extracted sdist
# (with the build's TMPDIR inside it), its HOME and the wheel's output folder.
_BUILD_WRITABLE = ("src", "home", "dist", "tmp")


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
    """Implements ``bootstrap.Steps`` with the upstream index, uv, pyproject-hooks and the repo."""

    def __init__(
        self,
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
        logs_dir: Path | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._tools: dict[tuple[str, str], list[SystemTool]] = {}
        self._rust: dict[tuple[str, str], RustSources] = {}
        self.repo = repo
        self.work_root = work_root or repo.work_dir
        self.upstream = upstream
        self.resolver = resolver
        self.metadata = metadata
        self.env_builder = env_builder
        self.runner = runner
        self.build_timeout = build_timeout
        self.isolate_network = isolate_network
        # PYTHONHASHSEED here: the build environment's scrubbing drops every PYTHON* variable.
        # CARGO_NET_OFFLINE: cargo fails at once on a missing crate instead of retrying the net.
        self.cores = cores or CoreBudget()
        self.logs_dir = logs_dir or repo.logs_dir  # one log per package
        self.extra_env = {
            "PYTHONHASHSEED": "0",
            "CARGO_NET_OFFLINE": "true",
        }
        # How builds were contained, for every record and provenance.
        self.sandbox = sandbox or SandboxPolicy(bwrap=None)
        # Who writes the provenance of what is published (trust.attest.Attestor, wired by the
        # app); nothing where nothing is published.
        self.attestor: Witness = witness or NoWitness()
        self.tag = interpreter_tag()

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
        self.attestor.saw_resolution(resolution)  # why each package is needed, for provenance
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
        rust = self._rust.get(self._key(pin))
        return BuildExtras(
            system_tools=tuple(t.as_record() for t in self._tools.get(self._key(pin), [])),
            sandbox=self.sandbox.as_record(network_isolated=self.isolate_network),
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
        ref = self.repo.publish_wheel(path)
        self.repo.regenerate_index()
        log = self._log(pin)
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
        attested = self.attestor.attestation(record.name, record.version)
        saved = record if attested is None else record.attested(attested)
        self.repo.save_record(saved)
        return saved

    def drifted(self, pin: Pin, built_metadata: bytes) -> bool:
        return self.metadata.drift(pin.name, pin.version, built_metadata)

    # -- building ----------------------------------------------------------------------------

    def _workdir(self, pin: Pin) -> Path:
        return self.work_root / f"{pin.name}-{pin.version}"

    def confinement(self, pin: Pin) -> Confinement:
        """What the build code of ``pin`` may see: its work folder read-only (its build
        environments, the compile settings rewheel writes), and inside it, writable, its source
        tree, home and output folders. Nothing else of the machine's but the system view."""
        work = self._workdir(pin)
        writable = tuple(work / d for d in _BUILD_WRITABLE)
        for d in writable:
            d.mkdir(parents=True, exist_ok=True)
        return Confinement(readable=(work,), writable=writable, network=not self.isolate_network)

    def _log(self, pin: Pin) -> Path:
        return self.logs_dir / f"{pin.name}-{pin.version}.log"

    def prepare(self, pin: Pin) -> Prepared:
        log = self._log(pin)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"# rewheel build log of {pin}\n# sdist {pin.sdist.url}\n")
        sdist = self.upstream.download(pin.sdist, self.repo.sdists_dir)
        digest = sha256_file(sdist)
        if pin.sdist.sha256 is not None and digest != pin.sdist.sha256:
            raise IntegrityError(
                f"sdist {sdist.name} has sha256 {digest}, the index says {pin.sdist.sha256}",
                package=pin.name,
                version=str(pin.version),
                step=Step.DOWNLOAD,
            )
        work = self._workdir(pin)
        if work.exists():
            remove_tree(work)  # the last build's: its code may have left anything there
        work.mkdir(parents=True)
        # A fixed name, not a random one: the build path must not change from run to run.
        source = extract_sdist(
            sdist,
            work,
            package=pin.name,
            name="src",
            allow_links=self.package_settings(pin).allow_links,
        )
        self._apply_patches(pin, source, log)
        rust = check_rust_sources(
            source,
            package=pin.name,
            version=str(pin.version),
            network=crates_io_reachable,
            runner=self.runner,
            log=log,
            confine=self.confinement(pin),
            home=work / "home",
        )
        if rust is not None:
            self._rust[self._key(pin)] = rust
        build_system = read_build_system(source, package=pin.name)
        return Prepared(
            pin=pin,
            sdist_path=sdist,
            sdist_sha256=digest,
            source_dir=source,
            build_requires=build_system.requires,
            backend=build_system,
        )

    def _apply_patches(self, pin: Pin, source: Path, log: Path) -> None:
        for patch in self.package_settings(pin).patches:
            try:
                self.runner(
                    ["patch", "-p1", "--batch", "--forward", "-i", str(patch.path)],
                    cwd=source,
                    env=dict(os.environ),
                    log=log,
                )
            except CommandFailed as exc:
                raise BuildError(
                    f"patch {patch.path.name} does not apply",
                    package=pin.name,
                    version=str(pin.version),
                    step=Step.PATCH,
                    log_path=log,
                ) from exc

    def create_env(
        self, prepared: Prepared, wheels: Sequence[WheelRef], *, name: str
    ) -> BuildEnvironment:
        pin = prepared.pin
        work = self._workdir(pin)
        dest = work / name
        if dest.exists():
            remove_tree(dest)
        return self.env_builder.create(
            dest,
            wheels,
            log=self._log(pin),
            home=work / "home",
            package=pin.name,
            version=str(pin.version),
        )

    def _with_build_vars(self, prepared: Prepared, env: BuildEnvironment) -> BuildEnvironment:
        """The environment with what every build gets added, then the package's settings."""
        return BuildEnvironment(
            path=env.path,
            python=env.python,
            environ={
                **env.environ,
                # A temporary folder the sandbox lets it write (the build step moves it into
                # the source tree's parent, see reproducible_env).
                "TMPDIR": str(self._workdir(prepared.pin) / "tmp"),
                **self.extra_env,
                **self.package_settings(prepared.pin).env,
            },
            installed=env.installed,
        )

    def _backend(self, prepared: Prepared, env: BuildEnvironment) -> Backend:
        assert isinstance(prepared.backend, BuildSystem)
        env = self._with_build_vars(prepared, env)
        return Backend(
            prepared.source_dir,
            prepared.backend,
            env,
            self.runner,
            log=self._log(prepared.pin),
            package=prepared.pin.name,
            version=str(prepared.pin.version),
            timeout=self.build_timeout,
            isolate_network=self.isolate_network,
            confine=self.confinement(prepared.pin),
        )

    def get_requires(self, prepared: Prepared, env: BuildEnvironment) -> list[str]:
        pkg = self.package_settings(prepared.pin)
        if pkg.recipe is not None:
            # A recipe replaces the declared backend, which may not even be installed.
            self.attestor.saw_backend_requires(prepared.pin, [])
            return []
        config = pkg.config_settings or None
        requires = self._backend(prepared, env).get_requires_for_build_wheel(config)
        self.attestor.saw_backend_requires(prepared.pin, requires)
        return requires

    def build(
        self, prepared: Prepared, env: BuildEnvironment, *, unpublished_dir: Path | None = None
    ) -> Built:
        """Build the wheel and publish it with its provenance; with ``unpublished_dir``, move it
        there instead (a check by ``rebuild``: no provenance, the repository left alone)."""
        pin = prepared.pin
        started, wall_started = time.monotonic(), time.time()
        out = self._workdir(pin) / "dist"
        out.mkdir(parents=True, exist_ok=True)
        repro = reproducible_env(
            env.environ,
            source_dir=prepared.source_dir,
            name=pin.name,
            version=str(pin.version),
            epoch=source_date_epoch(prepared.sdist_path),
        )
        cores = self.cores.take()
        try:
            compile_vars = compile_parallelism(cores, self._workdir(pin))
            env = dataclasses.replace(env, environ={**env.environ, **repro, **compile_vars})
            return self._build(prepared, env, out, repro, started, wall_started, unpublished_dir)
        finally:
            self.cores.give(cores)

    def _build(
        self,
        prepared: Prepared,
        env: BuildEnvironment,
        out: Path,
        repro: Mapping[str, str],
        started: float,
        wall_started: float,
        unpublished_dir: Path | None,
    ) -> Built:
        pin = prepared.pin
        pkg = self.package_settings(pin)
        if pkg.recipe is not None:
            build_env = self._with_build_vars(prepared, env)
            wheel = load_recipe(pkg.recipe).build_wheel(
                RecipeContext(
                    name=pin.name,
                    version=pin.version,
                    source_dir=prepared.source_dir,
                    out_dir=out,
                    python=build_env.python,
                    environ=build_env.environ,
                    runner=self.runner,
                    log=self._log(pin),
                    config_settings=pkg.config_settings,
                    confine=self.confinement(pin),
                )
            )
            if wheel.is_symlink() or not wheel.is_file():
                raise BuildError(
                    f"the recipe's wheel {wheel.name} is not a plain file",
                    package=pin.name,
                    version=str(pin.version),
                    step=Step.BUILD_WHEEL,
                    log_path=self._log(pin),
                )
        else:
            wheel = self._backend(prepared, env).build_wheel(out, pkg.config_settings or None)
        name, version = wheel_name_version(wheel.name)
        if name != canonicalize_name(pin.name) or Version(version) != pin.version:
            raise BuildError(
                f"the backend built {wheel.name}, not a wheel of {pin}",
                package=pin.name,
                version=str(pin.version),
                step=Step.BUILD_WHEEL,
                log_path=self._log(pin),
            )
        metadata = read_metadata_bytes(wheel)
        if unpublished_dir is not None:
            unpublished_dir.mkdir(parents=True, exist_ok=True)
            kept = Path(shutil.move(wheel, unpublished_dir / wheel.name))
            ref = WheelRef(name=name, version=version, filename=kept.name, sha256=sha256_file(kept))
        else:
            ref = self.repo.publish_wheel(wheel)
            self.attestor.attest(
                prepared,
                env,
                ref,
                reproducibility=repro,
                started=wall_started,
                build_path=self._workdir(pin),
                log=self._log(pin),
                system=self.record_extras(pin).system_tools,
            )
            self.repo.regenerate_index()
        seconds = time.monotonic() - started
        with contextlib.suppress(OSError):
            remove_tree(self._workdir(pin))
        return Built(wheel=ref, metadata=metadata, seconds=seconds, log=self._log(pin))
