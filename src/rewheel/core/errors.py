"""The one error root of rewheel.

Every error carries data (package, version, step, log path) so that the CLI can report it in one
place and a caller can act on it without parsing text.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path


class Step(enum.StrEnum):
    """Where in the work something happened: the ``step`` of an error, of a progress report, of
    a Dask job. A ``str``, so records, JSON and messages show its value."""

    BACKEND_SETUP = "backend-setup"
    BROWSE = "browse"
    BUILD = "build"
    BUILD_ENV = "build-env"
    BUILD_WHEEL = "build-wheel"
    CHECK_CACHE = "check-cache"
    DASK = "dask"
    DOWNLOAD = "download"
    EXTRACT = "extract"
    GET_REQUIRES = "get-requires"
    GRAPH = "graph"
    HOOK_OUTPUT = "hook-output"
    INDEX = "index"
    INPUT = "input"
    INSTALL = "install"
    LOCK = "lock"
    METADATA = "metadata"
    PATCH = "patch"
    PREBUILT = "prebuilt"
    PREPARE = "prepare"
    PROVENANCE = "provenance"
    PUBLISH = "publish"
    PYPROJECT = "pyproject"
    REBUILD = "rebuild"
    RECIPE_MATURIN_CARGO = "recipe-maturin-cargo"
    RECORD = "record"
    REPOSITORY = "repository"
    RESOLVE = "resolve"
    RUST_VENDOR = "rust-vendor"
    SANDBOX = "sandbox"
    SBOM = "sbom"
    SCHEDULING = "scheduling"
    SERVE = "serve"
    SETTINGS = "settings"
    SIGN = "sign"
    SUBPROCESS = "subprocess"
    SYSTEM_TOOLS = "system-tools"
    UPLOAD = "upload"
    VERIFY = "verify"
    WAITING = "waiting"
    WORK_DIR = "work-dir"
    WRITE = "write"


class RewheelError(Exception):
    """Base of every error rewheel raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        package: str | None = None,
        version: str | None = None,
        step: str | None = None,
        log_path: Path | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.package = package
        self.version = version
        self.step = step
        self.log_path = log_path
        self.hint = hint  # what the user can do about it

    def __str__(self) -> str:
        where = ""
        if self.package:
            where = self.package + (f"=={self.version}" if self.version else "")
        if self.step:
            where = f"{where} [{self.step}]" if where else f"[{self.step}]"
        text = f"{where}: {self.message}" if where else self.message
        if self.log_path is not None:
            text += f" (log: {self.log_path})"
        if self.hint:
            text += f"; {self.hint}"
        return text


class UpstreamError(RewheelError):
    """The upstream index could not be read, or answered with something unusable."""


class NoSdistError(RewheelError):
    """No version of a project has an sdist that satisfies the requirement."""


class IntegrityError(RewheelError):
    """A file's content does not match the hash that vouches for it."""


class UnsafeArchiveError(RewheelError):
    """An archive member would escape its extraction directory, or is otherwise refused."""


class ConfigError(RewheelError):
    """An invalid pyproject.toml, settings file or command-line input."""


class BuildError(RewheelError):
    """A PEP 517 hook, a build environment or a wheel build failed."""


class ResolutionError(RewheelError):
    """Requirements that no set of versions satisfies.

    ``chains`` holds, for each conflicting requirement, the path of requirements that led to it,
    as human-readable strings from the top level down.
    """

    def __init__(
        self,
        message: str,
        *,
        chains: Sequence[Sequence[str]] = (),
        package: str | None = None,
        step: str | None = Step.RESOLVE,
    ) -> None:
        super().__init__(message, package=package, step=step)
        self.chains = [list(c) for c in chains]

    def __str__(self) -> str:
        text = super().__str__()
        for chain in self.chains:
            text += "\n  " + " -> ".join(chain)
        return text


class RepositoryError(RewheelError):
    """The local repository is inconsistent, locked by another run, or cannot be written."""


class VerifyError(RewheelError):
    """An installed environment holds files that are not from the repository."""


class CommandFailed(RewheelError):
    """A subprocess exited non-zero or timed out. Callers wrap it with the package and step."""

    def __init__(
        self,
        message: str,
        *,
        cmd: Sequence[str],
        returncode: int | None,
        log_path: Path | None = None,
        timed_out: bool = False,
        limit: str | None = None,
    ) -> None:
        super().__init__(message, log_path=log_path, step=Step.SUBPROCESS)
        self.cmd = list(cmd)
        self.returncode = returncode
        self.timed_out = timed_out
        self.limit = limit  # the resource limit that stopped it ("wall time", ...), if one did
