"""Where one package's build happens: its work folder, its log, and what its build code may see."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.resolver import Pin
from ..core.types import Confinement, Relocation

# The folders of a package's work folder that its build code may write: the extracted sdist
# (with the build's TMPDIR inside it), its HOME and the wheel's output folder.
BUILD_WRITABLE = ("src", "home", "dist", "tmp")


@dataclass(frozen=True)
class Workspace:
    """Each package's work folder, ``<work_root>/<name>-<version>/``, and its log,
    ``<logs_dir>/<name>-<version>.log``: one layout for the preparer, the builder, a Dask worker.

    ``box_root``: where build code sees the work folder (``sandbox.SandboxPolicy.work_in_box``,
    the same path for every package and on every machine); None when builds run without the
    sandbox, and see it where it is."""

    work_root: Path
    logs_dir: Path
    isolate_network: bool = True
    box_root: Path | None = None

    def folder(self, pin: Pin) -> Path:
        return self.work_root / f"{pin.name}-{pin.version}"

    def log(self, pin: Pin) -> Path:
        return self.logs_dir / f"{pin.name}-{pin.version}.log"

    def confinement(self, pin: Pin) -> Confinement:
        """What the build code of ``pin`` may see: its work folder read-only (its build
        environments, the compile settings rewheel writes), and inside it, writable, its source
        tree, home and output folders. Nothing else of the machine's but the system view. With a
        ``box_root``, all of it at that path."""
        work = self.folder(pin)
        writable = tuple(work / d for d in BUILD_WRITABLE)
        for d in writable:
            d.mkdir(parents=True, exist_ok=True)
        relocated = None
        if self.box_root is not None:
            real = work.resolve()
            aliases = (real,) if real != work else ()
            relocated = Relocation(host=work, box=self.box_root, aliases=aliases)
        return Confinement(
            readable=(work,),
            writable=writable,
            network=not self.isolate_network,
            relocated=relocated,
        )
