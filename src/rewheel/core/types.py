"""Shared value types and interfaces.

The resolver, the builder and the repository talk to each other only through what is defined here,
so that none of them imports another and tests can hand each of them fakes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from packaging.utils import NormalizedName


class EdgeKind(enum.StrEnum):
    """Why one package is needed by another."""

    TOPLEVEL = "toplevel"  # asked for by the user
    BUILD_SYSTEM = "build-system"  # PEP 518 build-system.requires
    BUILD_BACKEND = "build-backend"  # PEP 517 get_requires_for_build_wheel
    INSTALL = "install"  # Requires-Dist of the wheel


@dataclass(frozen=True)
class IndexFile:
    """One file listed on a project page of an index (PEP 503 / PEP 691)."""

    filename: str
    url: str  # absolute
    sha256: str | None
    requires_python: str | None = None
    yanked: bool = False
    yanked_reason: str | None = None
    # PEP 658/714: a core metadata file is served at url + ".metadata".
    has_metadata: bool = False
    metadata_sha256: str | None = None
    size: int | None = None
    # PEP 740: the URL of the file's provenance object (absolute), when the page gives one.
    provenance: str | None = None


@dataclass(frozen=True)
class ProjectPage:
    """A project's page on an index.

    A project the index does not know has no files, and ``missing`` says how the index told
    ("HTTP 404 at <url>"); a project it knows has ``missing`` None, even with no files listed.
    """

    name: NormalizedName
    files: tuple[IndexFile, ...]
    missing: str | None = None


class Upstream(Protocol):
    """The index that sdists come from. Implemented over HTTP; replaced by fakes in tests."""

    def get_project(self, name: NormalizedName) -> ProjectPage:
        """The project's page, fetched at most once per run. Unknown project: no files, and
        ``missing`` set."""
        ...

    def get_metadata(self, file: IndexFile) -> bytes | None:
        """The PEP 658 core metadata of ``file``, checked against its hash; None if not served."""
        ...

    def download(self, file: IndexFile, dest_dir: Path) -> Path:
        """``file`` as a local path in ``dest_dir``, its sha256 checked.

        A file already there is reused only if its hash matches.
        """
        ...


@dataclass(frozen=True)
class WheelRef:
    """A wheel published in the local repository."""

    name: NormalizedName
    version: str
    filename: str
    sha256: str

    def as_record(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class Why:
    """One reason a package is in the tree: ``requirement`` of ``parent`` (None: the user)."""

    parent: str | None  # "name==version" of the package that asked, or None for top level
    requirement: str
    kind: EdgeKind

    def as_record(self) -> dict[str, str | None]:
        return {"package": self.parent, "requirement": self.requirement, "kind": self.kind.value}


@dataclass(frozen=True)
class Confinement:
    """What an untrusted command (a build hook, a recipe's compiler) may see of this machine.

    With the sandbox on, only these paths (and a read-only view of the system) exist for it:
    ``readable`` read-only, ``writable`` read-write (mounted after the readable ones, so a
    writable folder may sit inside a readable one). ``network``: whether it keeps the network.
    """

    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    network: bool = False

    def adding(
        self, *, readable: Sequence[Path] = (), writable: Sequence[Path] = ()
    ) -> Confinement:
        return Confinement(
            readable=(*self.readable, *readable),
            writable=(*self.writable, *writable),
            network=self.network,
        )


class Runner(Protocol):
    """Runs a subprocess, its output appended to ``log``.

    With ``confine``, the command is untrusted build code: it runs in the sandbox (when the run
    has one), seeing only what ``confine`` names. Raises ``rewheel.core.errors.CommandFailed`` on a
    non-zero exit, a timeout or another limit reached.
    """

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
    ) -> None: ...
