"""Publishing what a build made: the wheel into the repository, its provenance by a witness,
the index pages; or, for runs that publish nothing, the wheel kept aside."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..core.bootstrap import Prepared
from ..core.errors import BuildError, IntegrityError, Step
from ..core.fsutil import sha256_file
from ..core.records import Attestation
from ..core.resolver import Pin, Resolution
from ..core.types import WheelRef
from ..repo.repository import Repository
from .buildenv import BuildEnvironment
from .builder import Deliver, FreshWheel
from .conditions import BuildConditions, RecordedConditions


@dataclass(frozen=True)
class HowBuilt:
    """How a published wheel was built, as its provenance tells it (a ``FreshWheel`` says the
    same of a wheel built here; a Dask worker's result of one built there)."""

    env: BuildEnvironment  # as the build hook had it
    reproducibility: Mapping[str, str]
    started: float  # wall clock, when the build began
    build_path: Path
    log: Path
    system: Sequence[Mapping[str, Any]] = ()  # the system tools its settings took
    # None: not recorded (rebuilds); a worker's, as its result carried them (RecordedConditions)
    conditions: BuildConditions | RecordedConditions | None = None


class Witness(Protocol):
    """What LocalSteps tells about each build, and asks to write its provenance once published.

    ``trust.attest.Attestor`` implements it; the build layer only knows this interface, so that
    signing stays in the trust layer (and in rewheel's own process, after the build's sandbox).
    """

    def saw_resolution(self, resolution: Resolution) -> None: ...

    def saw_backend_requires(self, pin: Pin, requires: Sequence[str]) -> None: ...

    def attest(self, prepared: Prepared, wheel: WheelRef, how: HowBuilt) -> Path:
        """Write the provenance of ``wheel`` (just published, built from ``prepared`` as
        ``how`` says) beside it; return its path."""
        ...

    def attestation(self, name: str, version: str) -> Attestation | None:
        """What writing the provenance of a package added to its record (None: not attested)."""
        ...


class NoWitness:
    """A ``Witness`` for runs that publish nothing (rebuild checks, Dask workers)."""

    def saw_resolution(self, resolution: Resolution) -> None:
        return None

    def saw_backend_requires(self, pin: Pin, requires: Sequence[str]) -> None:
        return None

    def attest(self, prepared: Prepared, wheel: WheelRef, how: HowBuilt) -> Path:
        raise BuildError(
            "this run publishes nothing, so it attests nothing",
            package=prepared.pin.name,
            version=str(prepared.pin.version),
            step=Step.PROVENANCE,
        )

    def attestation(self, name: str, version: str) -> Attestation | None:
        return None


class Publisher:
    """Puts wheels into the repository: the wheel, then its provenance (by the witness), then the
    index pages."""

    def __init__(self, repo: Repository, *, witness: Witness | None = None) -> None:
        self.repo = repo
        # Who writes the provenance of what is published (trust.attest.Attestor, wired by the
        # app); nothing where nothing is published.
        self.witness: Witness = witness or NoWitness()

    def deliver(
        self, prepared: Prepared, fresh: FreshWheel, *, system: Sequence[Mapping[str, Any]] = ()
    ) -> WheelRef:
        """Publish a wheel built here (what a ``Deliver`` does, with the system tools the build
        took from the machine, for its provenance)."""
        return self.publish(
            prepared,
            fresh.path,
            env=fresh.env,
            reproducibility=fresh.reproducibility,
            started=fresh.started,
            build_path=fresh.build_path,
            log=fresh.log,
            system=system,
            conditions=fresh.conditions,
        )

    def publish(
        self,
        prepared: Prepared,
        wheel: Path,
        *,
        env: BuildEnvironment,
        reproducibility: Mapping[str, str],
        started: float,
        build_path: Path,
        log: Path,
        system: Sequence[Mapping[str, Any]] = (),
        expected_sha256: str | None = None,
        conditions: BuildConditions | RecordedConditions | None = None,
    ) -> WheelRef:
        """Publish ``wheel`` built from ``prepared`` (here or on a Dask worker) with its
        provenance; with ``expected_sha256``, refuse a wheel that is not those bytes.
        ``conditions``: how the build ran, when the builder recorded it."""
        pin = prepared.pin
        ref = self.repo.publish_wheel(wheel)
        if expected_sha256 is not None and ref.sha256 != expected_sha256:
            raise IntegrityError(
                f"{wheel.name} changed while being published",
                package=pin.name,
                version=str(pin.version),
                step=Step.PUBLISH,
                log_path=log,
            )
        how = HowBuilt(env, reproducibility, started, build_path, log, system, conditions)
        self.witness.attest(prepared, ref, how)
        self.repo.regenerate_project(ref.name)
        return ref

    def publish_prebuilt(self, wheel: Path) -> WheelRef:
        """Publish an upstream's own wheel (no provenance: it was not built here)."""
        ref = self.repo.publish_wheel(wheel)
        self.repo.regenerate_project(ref.name)
        return ref


def keep_in(folder: Path) -> Deliver:
    """A ``Deliver`` that moves the wheel into ``folder`` and publishes nothing (``rebuild``'s
    checks, Dask workers, which upload it)."""

    def deliver(_prepared: Prepared, fresh: FreshWheel) -> WheelRef:
        folder.mkdir(parents=True, exist_ok=True)
        kept = Path(shutil.move(fresh.path, folder / fresh.path.name))
        return WheelRef(
            name=fresh.name, version=fresh.version, filename=kept.name, sha256=sha256_file(kept)
        )

    return deliver
