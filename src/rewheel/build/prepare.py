"""Preparing a source tree: download the sdist, check it, extract it, patch it, read its build
system, and (for a build that compiles Rust) make sure its crates are at hand."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from ..core.bootstrap import Prepared
from ..core.durations import SourceCensus
from ..core.errors import BuildError, CommandFailed, DigestMismatch, Step
from ..core.fsutil import remove_tree, sha256_file
from ..core.resolver import Pin
from ..core.types import IndexFile, Runner
from .extract import extract_sdist
from .pyproject import read_build_system
from .rust import (
    RustSources,
    check_rust_sources,
    crates_io_reachable,
    rust_build_reason,
    rust_tools,
)
from .settings import Settings
from .workspace import Workspace


class SdistSource(Protocol):
    """Where the preparer gets sdists: the upstream index in a bootstrap, the repository's own
    copies in a rebuild, the coordinator on a Dask worker."""

    def download(self, file: IndexFile, dest_dir: Path) -> Path: ...


def download_checked(upstream: SdistSource, pin: Pin, folder: Path) -> tuple[Path, str]:
    """``pin``'s sdist downloaded into ``folder``, and its sha256, checked against the index's."""
    sdist = upstream.download(pin.sdist, folder)
    digest = sha256_file(sdist)
    if pin.sdist.sha256 is not None and digest != pin.sdist.sha256:
        raise DigestMismatch(
            f"sdist {sdist.name} has sha256 {digest}, the index says {pin.sdist.sha256}",
            filename=sdist.name,
            found=digest,
            expected=pin.sdist.sha256,
            package=pin.name,
            version=str(pin.version),
        )
    return sdist, digest


def peek_build_requires(
    upstream: SdistSource, pin: Pin, settings: Settings, folder: Path
) -> tuple[str, ...]:
    """The ``build-system.requires`` of ``pin``'s sdist, from a copy downloaded (its sha256
    checked) and extracted into ``folder``, for a plan (``core.update``): nothing of the
    repository changes, no build code runs. The settings' patches are not applied."""
    sdist, _ = download_checked(upstream, pin, folder)
    pkg = settings.for_package(pin.name, pin.version)
    source = extract_sdist(
        sdist,
        folder,
        package=pin.name,
        version=str(pin.version),
        allow_links=pkg.allow_links,
    )
    return read_build_system(source, package=pin.name).requires


class SourcePreparer:
    """Turns a pin into a ``Prepared`` source tree in the package's work folder.

    ``crates_io`` says whether crates.io answers from here (asked only for a Rust sdist whose
    crates are not vendored); tests pass their own.
    """

    def __init__(
        self,
        *,
        upstream: SdistSource,
        sdists_dir: Path,
        workspace: Workspace,
        runner: Runner,
        settings: Settings,
        crates_io: Callable[[], bool] = crates_io_reachable,
    ) -> None:
        self.upstream = upstream
        self.sdists_dir = sdists_dir
        self.workspace = workspace
        self.runner = runner
        self.settings = settings
        self.crates_io = crates_io
        self._rust: dict[tuple[str, str], RustSources] = {}
        self._lock = threading.Lock()

    def rust(self, pin: Pin) -> RustSources | None:
        """What ``prepare`` found of a Rust sdist's crates (None: not a Rust sdist)."""
        with self._lock:
            return self._rust.get((pin.name, str(pin.version)))

    def prepare(self, pin: Pin) -> Prepared:
        log = self.workspace.log(pin)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"# rewheel build log of {pin}\n# sdist {pin.sdist.url}\n")
        sdist, digest = download_checked(self.upstream, pin, self.sdists_dir)
        work = self.workspace.folder(pin)
        with self._lock:
            self._rust.pop((pin.name, str(pin.version)), None)  # found in the tree about to go
        if work.exists():
            remove_tree(work)  # the last build's: its code may have left anything there
        work.mkdir(parents=True)
        pkg = self.settings.for_package(pin.name, pin.version)
        census = SourceCensus()  # what the sdist holds, for the estimate of its build's time
        # A fixed name, not a random one: the build path must not change from run to run.
        source = extract_sdist(
            sdist,
            work,
            package=pin.name,
            version=str(pin.version),
            name="src",
            allow_links=pkg.allow_links,
            census=census,
        )
        self._apply_patches(pin, source, log)
        build_system = read_build_system(source, package=pin.name)
        # Rust by the build that will run, not by a Cargo.toml in the tree; what only the
        # backend's get_requires_for_build_wheel tells is checked by ``recheck_rust``.
        reason = rust_build_reason(
            source,
            requires=build_system.requires,
            backend=build_system.backend,
            recipe=pkg.recipe,
        )
        if reason is not None:
            self._check_rust(pin, source, reason)
        return Prepared(
            pin=pin,
            sdist_path=sdist,
            sdist_sha256=digest,
            source_dir=source,
            build_requires=build_system.requires,
            backend=build_system,
            features=census.features(),
        )

    def recheck_rust(self, prepared: Prepared, requirements: Iterable[str]) -> None:
        """Check the crates now if ``requirements``, known only after ``prepare`` (what the
        backend's get_requires_for_build_wheel returned, or the whole build environment), name
        a Rust build tool and they were not checked yet: before the wheel is built."""
        pin = prepared.pin
        if self.rust(pin) is not None:
            return
        tools = rust_tools(requirements)
        if tools:
            self._check_rust(pin, prepared.source_dir, f"its backend asks for {tools[0]}")

    def _check_rust(self, pin: Pin, source: Path, reason: str) -> None:
        rust = check_rust_sources(
            source,
            package=pin.name,
            version=str(pin.version),
            network=self.crates_io,
            runner=self.runner,
            log=self.workspace.log(pin),
            confine=self.workspace.confinement(pin),
            home=self.workspace.folder(pin) / "home",
            reason=reason,
        )
        if rust is not None:
            with self._lock:
                self._rust[(pin.name, str(pin.version))] = rust

    def _apply_patches(self, pin: Pin, source: Path, log: Path) -> None:
        for patch in self.settings.for_package(pin.name, pin.version).patches:
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
