"""Shared value types and interfaces.

The resolver, the builder and the repository talk to each other only through what is defined here,
so that none of them imports another and tests can hand each of them fakes.
"""

from __future__ import annotations

import enum
import re
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


# A character that may continue a file name: a path followed by one of these is another path
# (``/w/pkg-1.0`` is not a prefix of ``/w/pkg-1.0.1``).
_NAME_CHAR = r"[\w.+~-]"


@dataclass(frozen=True)
class Relocation:
    """A folder of the machine (``host``) that a boxed command sees at another path (``box``).

    The package's work folder is mounted at one fixed path in every box, so that what a build
    records of its own paths (compiled-in file names, generated modules, ``sys.prefix``) is the
    same whatever the build root. ``aliases``: other spellings of ``host`` (its resolved path).
    The host path itself does not exist in the box.
    """

    host: Path
    box: Path
    aliases: tuple[Path, ...] = ()

    def _pattern(self) -> re.Pattern[str]:
        spellings = sorted({str(self.host), *(str(a) for a in self.aliases)}, key=len, reverse=True)
        alternatives = "|".join(re.escape(s) for s in spellings if s != "/")
        return re.compile(f"(?:{alternatives})(?!{_NAME_CHAR})")

    def path(self, path: Path) -> Path:
        """Where ``path`` (of the machine) is in the box: moved if it is under ``host``."""
        return Path(self.text(str(path))) if self.covers(path) else path

    def covers(self, path: Path) -> bool:
        """Whether ``path`` is ``host`` or under it (in any of its spellings)."""
        roots = (self.host, *self.aliases)
        return any(path == r or r in path.parents for r in roots)

    def text(self, text: str) -> str:
        """``text`` (an argument, a variable's value) with every path under ``host`` moved to
        the box: whole values, ``PATH``-like lists and flags such as ``-I/host/...`` alike."""
        box = str(self.box)
        return self._pattern().sub(lambda _m: box, text)


@dataclass(frozen=True)
class Confinement:
    """What an untrusted command (a build hook, a recipe's compiler) may see of this machine.

    With the sandbox on, only these paths (and a read-only view of the system) exist for it:
    ``readable`` read-only, ``writable`` read-write (mounted after the readable ones, so a
    writable folder may sit inside a readable one). ``network``: whether it keeps the network.
    ``relocated``: a folder the box shows at a fixed path instead of its own (the paths above
    under it are mounted there, and the command's arguments, folder and variables are rewritten
    to match); only a sandbox can do this, so it is set only when the run has one.
    """

    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    network: bool = False
    relocated: Relocation | None = None

    def adding(
        self, *, readable: Sequence[Path] = (), writable: Sequence[Path] = ()
    ) -> Confinement:
        return Confinement(
            readable=(*self.readable, *readable),
            writable=(*self.writable, *writable),
            network=self.network,
            relocated=self.relocated,
        )

    def in_box(self, path: Path) -> Path:
        """Where the boxed command sees ``path`` of the machine."""
        return path if self.relocated is None else self.relocated.path(path)


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
