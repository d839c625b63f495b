"""Writes the provenance of each wheel a bootstrap builds (the I/O half of ``provenance``).

``LocalSteps`` tells an ``Attestor`` what it sees while it works (why each package is needed,
what its backend asked for), and after publishing a wheel asks it to write the statement, with
how the build ran (``build.conditions.BuildConditions``, from the builder); the settings applied
to each package it reads from the run's ``Settings``. The fields it adds to the build record come
from here too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..build.buildenv import BuildEnvironment
from ..build.conditions import BuildConditions, RecordedConditions
from ..build.settings import PackageSettings, Settings
from ..core.bootstrap import Prepared
from ..core.fsutil import sha256_file
from ..core.records import Attestation
from ..core.resolver import Pin, Resolution
from ..core.types import WheelRef
from ..repo.repository import Repository
from .provenance import (
    BuildFacts,
    EnvWheel,
    Signer,
    Tool,
    build_platform,
    statement,
    system_tools,
    write_provenance,
)

_Key = tuple[str, str]


def _key(pin: Pin) -> _Key:
    return (pin.name, str(pin.version))


def _relative(path: Path, folder: Path | None) -> str:
    """``path`` as named from the settings folder (its file name if it is elsewhere)."""
    if folder is not None:
        try:
            return path.resolve().relative_to(folder.resolve()).as_posix()
        except (ValueError, OSError):
            pass
    return path.name


def settings_parameters(settings: Settings, pkg: PackageSettings) -> dict[str, Any]:
    """Every setting applied to one build, for ``externalParameters.settings``."""
    record = pkg.as_record()
    return {
        "digest": pkg.digest(),
        "variant": settings.variant,
        "files": [_relative(Path(f), settings.folder) for f in pkg.sources],
        "env": record["env"],
        "configSettings": record["config_settings"],
        "requiresAdd": record["requires_add"],
        "requiresRemove": record["requires_remove"],
        "systemTools": record["system_tools"],
        "recipe": record["recipe"],
        "prebuilt": record["prebuilt"],
        "allowLinks": record["allow_links"],
        "patches": [
            {"file": _relative(p.path, settings.folder), "sha256": p.sha256} for p in pkg.patches
        ],
    }


class Attestor:
    """Remembers what a run learns about each build and writes its provenance. Thread-safe."""

    def __init__(
        self,
        repo: Repository,
        *,
        signer: Signer | None = None,
        network_isolated: bool = True,
        sandbox: Mapping[str, Any] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.repo = repo
        # The run's settings: what each package's provenance says was applied to its build.
        self.settings = settings or Settings()
        self.sandbox = dict(sandbox or {"kind": "none"})
        self.signer = signer
        self.network_isolated = network_isolated
        self._lock = threading.Lock()
        self._why: dict[_Key, list[dict[str, str | None]]] = {}
        self._backend_requires: dict[_Key, list[str]] = {}
        self._attested: dict[_Key, Attestation] = {}

    def saw_resolution(self, resolution: Resolution) -> None:
        with self._lock:
            for edge in resolution.edges:
                child = resolution.pins.get(edge.child)
                if child is None:
                    continue
                why = {
                    "package": str(edge.parent) if edge.parent is not None else None,
                    "requirement": edge.requirement,
                    "kind": edge.kind.value,
                }
                known = self._why.setdefault(_key(child), [])
                if why not in known:
                    known.append(why)

    def saw_backend_requires(self, pin: Pin, requires: Sequence[str]) -> None:
        with self._lock:
            self._backend_requires[_key(pin)] = list(requires)

    def attest(
        self,
        prepared: Prepared,
        env: BuildEnvironment,
        wheel: WheelRef,
        *,
        reproducibility: Mapping[str, str],
        started: float,
        build_path: Path,
        log: Path,
        system: Sequence[Mapping[str, Any]] = (),
        conditions: BuildConditions | RecordedConditions | None = None,
    ) -> Path:
        """Write the provenance of ``wheel`` (just published) beside it; return its path."""
        pin = prepared.pin
        finished = time.time()
        with self._lock:
            why = list(self._why.get(_key(pin), []))
            backend_requires = list(self._backend_requires.get(_key(pin), []))
        tools = list(system_tools())
        for t in system:  # tools the package's settings take from the system (cmake, ...)
            path = t.get("path")
            uri = f"file://{path}" if path else None
            tools.append(Tool(str(t.get("name")), str(t.get("version")), uri))
        epoch = int(reproducibility["SOURCE_DATE_EPOCH"])
        facts = BuildFacts(
            name=pin.name,
            version=str(pin.version),
            wheel_filename=wheel.filename,
            wheel_sha256=wheel.sha256,
            sdist_url=pin.sdist.url,
            sdist_sha256=prepared.sdist_sha256,
            build_env=[EnvWheel(w.name, w.version, w.sha256, w.filename) for w in env.installed],
            build_system_requires=list(prepared.build_requires),
            backend_requires=backend_requires,
            why=why,
            tools=tools,
            platform=build_platform(),
            reproducibility=reproducibility,
            source_date_epoch=epoch,
            build_path=str(build_path),
            network_isolated=self.network_isolated,
            sandbox=self.sandbox,
            started=started,
            finished=finished,
            log_name=log.name,
            log_sha256=sha256_file(log) if log.is_file() else None,
            settings=settings_parameters(
                self.settings, self.settings.for_package(pin.name, pin.version)
            ),
            conditions=None if conditions is None else conditions.as_record(),
        )
        path = write_provenance(self.repo.wheel_path(wheel), statement(facts), signer=self.signer)
        with self._lock:
            self._attested[_key(pin)] = Attestation(
                provenance=path.name, source_date_epoch=epoch, build_env_dir=env.path.name
            )
        return path

    def attestation(self, name: str, version: str) -> Attestation | None:
        """What to add to the build record of a package (None if not attested)."""
        with self._lock:
            return self._attested.get((name, version))
