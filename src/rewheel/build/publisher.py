"""Publishing what a build made: the witness that writes its provenance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..core.bootstrap import Prepared
from ..core.errors import BuildError, Step
from ..core.records import Attestation
from ..core.resolver import Pin, Resolution
from ..core.types import WheelRef
from .buildenv import BuildEnvironment


class Witness(Protocol):
    """What LocalSteps tells about each build, and asks to write its provenance once published.

    ``trust.attest.Attestor`` implements it; the build layer only knows this interface, so that
    signing stays in the trust layer (and in rewheel's own process, after the build's sandbox).
    """

    def saw_resolution(self, resolution: Resolution) -> None: ...

    def saw_backend_requires(self, pin: Pin, requires: Sequence[str]) -> None: ...

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
    ) -> Path: ...

    def attestation(self, name: str, version: str) -> Attestation | None:
        """What writing the provenance of a package added to its record (None: not attested)."""
        ...


class NoWitness:
    """A ``Witness`` for runs that publish nothing (rebuild checks, Dask workers)."""

    def saw_resolution(self, resolution: Resolution) -> None:
        return None

    def saw_backend_requires(self, pin: Pin, requires: Sequence[str]) -> None:
        return None

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
    ) -> Path:
        raise BuildError(
            "this run publishes nothing, so it attests nothing",
            package=prepared.pin.name,
            version=str(prepared.pin.version),
            step=Step.PROVENANCE,
        )

    def attestation(self, name: str, version: str) -> Attestation | None:
        return None
