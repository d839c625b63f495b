"""How a build ran, as its provenance records it: gathered by the builder, where the build runs.

``BuildConditions`` holds what the builder set or found for one build: the umask it ran with,
the cores it was given and the variables that tell build systems so, the variables the hooks
ran with, the ``sitecustomize.py`` of its build environment, the program that ran the hooks
(pyproject-hooks' runner script, or a recipe), the compilers its ``PATH`` finds and what the
wheel's compiled files link against. The last two come from a ``BuildProbe``, made once per run
(``HostProbe``: ``toolchain.Toolchain`` and ``linkage.SystemLibraries``), so that every build
asks the machine only what no earlier one did.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.metadata
import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..core.fsutil import is_plain_file, sha256_file
from .buildenv import SITECUSTOMIZE
from .linkage import Linkage, SystemLibraries
from .toolchain import Program, Toolchain

_MAX_SMALL_FILE = 1 << 20  # sitecustomize.py, the extra distutils config


class BuildProbe(Protocol):
    """What the builder asks the machine about a build: one per run."""

    def programs(
        self, environ: Mapping[str, str], *, untrusted: Sequence[Path] = ()
    ) -> tuple[Program, ...]:
        """The compilers a build with ``environ`` finds (files under ``untrusted`` not run)."""
        ...

    def linkage(self, wheel: Path) -> Linkage:
        """What the ELF files of ``wheel`` link against on this machine."""
        ...


@dataclass
class HostProbe:
    """``BuildProbe`` on this machine."""

    toolchain: Toolchain = field(default_factory=Toolchain)
    libraries: SystemLibraries = field(default_factory=SystemLibraries)

    def programs(
        self, environ: Mapping[str, str], *, untrusted: Sequence[Path] = ()
    ) -> tuple[Program, ...]:
        return self.toolchain.programs(environ, untrusted=untrusted)

    def linkage(self, wheel: Path) -> Linkage:
        return self.libraries.linkage(wheel)


@dataclass(frozen=True)
class BuildConditions:
    """How one build ran (see the module's docstring); ``as_record`` is its JSON form."""

    umask: str | None  # octal, as the build inherited it; None when it cannot be read
    cores: int
    parallelism: Mapping[str, str]  # builder.compile_parallelism's variables
    dist_extra_config: Mapping[str, str] | None  # {"path", "sha256"} of DIST_EXTRA_CONFIG
    environment: Mapping[str, str]  # the variables the build's hooks (or recipe) ran with
    sitecustomize: Mapping[str, Any] | None  # {"path", "sha256", "rewheel"}
    hook_runner: Mapping[str, Any]
    programs: tuple[Program, ...] = ()
    linkage: Linkage | None = None  # None: the wheel was not looked at

    def as_record(self) -> dict[str, Any]:
        return {
            "umask": self.umask,
            "cores": self.cores,
            "parallelism": dict(sorted(self.parallelism.items())),
            "distExtraConfig": None
            if self.dist_extra_config is None
            else dict(self.dist_extra_config),
            "environment": dict(sorted(self.environment.items())),
            "sitecustomize": None if self.sitecustomize is None else dict(self.sitecustomize),
            "hookRunner": dict(self.hook_runner),
            "programs": [p.as_record() for p in self.programs],
            "linkage": None if self.linkage is None else self.linkage.as_record(),
        }


@dataclass(frozen=True)
class RecordedConditions:
    """``BuildConditions`` made elsewhere, as their record: a Dask worker builds, reads how the
    build ran there and sends ``as_record()`` back; the coordinator publishes with this."""

    record: Mapping[str, Any]

    def as_record(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.record))


def process_umask(status: Path = Path("/proc/self/status")) -> str | None:
    """This process's umask (which every build inherits), read without changing it; None where
    the kernel does not say (Linux before 4.7)."""
    try:
        for line in status.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("Umask:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def small_file(path: Path) -> dict[str, str] | None:
    """{"path", "sha256"} of a small plain file; None if it is not one."""
    if not is_plain_file(path, max_size=_MAX_SMALL_FILE):
        return None
    try:
        return {"path": str(path), "sha256": sha256_file(path)}
    except OSError:
        return None


def sitecustomize_of(env_path: Path) -> dict[str, Any] | None:
    """The ``sitecustomize`` a build environment's interpreter imports: where, its sha256, and
    whether it is rewheel's (buildenv.SITECUSTOMIZE) or another (a wheel installed there put
    its own: a ``sitecustomize`` package even wins over the module, as imports look for
    packages first)."""
    ours = hashlib.sha256(SITECUSTOMIZE.encode("utf-8")).hexdigest()
    for site in sorted(env_path.glob("lib/python*/site-packages")):
        package = site / "sitecustomize" / "__init__.py"
        found = package if package.is_file() else site / "sitecustomize.py"
        if not found.is_file() and not found.is_symlink():
            continue
        facts = small_file(found)
        if facts is None:
            return {"path": str(found.relative_to(env_path)), "sha256": None, "rewheel": False}
        return {
            "path": str(found.relative_to(env_path)),
            "sha256": facts["sha256"],
            "rewheel": facts["sha256"] == ours,
        }
    return None


@functools.cache
def hook_runner() -> dict[str, Any]:
    """pyproject-hooks and the script of it that runs each hook in the build environment."""
    try:
        version: str | None = importlib.metadata.version("pyproject_hooks")
    except importlib.metadata.PackageNotFoundError:
        version = None
    script = importlib.resources.files("pyproject_hooks._in_process") / "_in_process.py"
    try:
        digest: str | None = hashlib.sha256(script.read_bytes()).hexdigest()
    except OSError:
        digest = None
    return {
        "kind": "pyproject-hooks",
        "version": version,
        "script": "pyproject_hooks/_in_process/_in_process.py",
        "sha256": digest,
    }


def recipe_runner(name: str, recipe: object) -> dict[str, Any]:
    """A recipe that replaced the backend: its name and the class that implements it."""
    kind = type(recipe)
    return {
        "kind": "recipe",
        "recipe": name,
        "implementation": f"{kind.__module__}:{kind.__qualname__}",
    }
