"""The one error root of rewheel.

Every error carries data (package, version, step, log path) so that the CLI can report it in one
place and a caller can act on it without parsing text.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Self

from .types import EdgeKind


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
    LOCK_FILE = "lock-file"
    METADATA = "metadata"
    PATCH = "patch"
    PREBUILT = "prebuilt"
    PREPARE = "prepare"
    PROVENANCE = "provenance"
    PRUNE = "prune"
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
    UPDATE = "update"
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


class IntegrityError(RewheelError):
    """A file's content does not match the hash that vouches for it."""


class DigestMismatch(IntegrityError):
    """A downloaded file whose sha256 is not the one the index listed for it. (The fields have
    defaults so that ``copy.copy`` and pickling, which call it with the message only, work.)"""

    def __init__(
        self,
        message: str,
        *,
        filename: str = "",
        found: str = "",
        expected: str = "",
        package: str | None = None,
        version: str | None = None,
        step: str | None = Step.DOWNLOAD,
    ) -> None:
        self.filename = filename
        self.found = found
        self.expected = expected
        super().__init__(message, package=package, version=version, step=step)


class HashMismatch(IntegrityError):
    """An sdist whose sha256 is not among those the requirement files or lock allow for it."""

    def __init__(
        self,
        *,
        package: str,
        version: str,
        filename: str,
        found: str,
        expected: Collection[str],
        hint: str | None = None,
    ) -> None:
        self.filename = filename
        self.found = found
        self.expected = tuple(sorted(expected))
        super().__init__(
            f"sdist {filename} has sha256 {found}; the hashes given for {package} allow only "
            + ", ".join(self.expected),
            package=package,
            version=version,
            step=Step.DOWNLOAD,
            hint=hint,
        )


class UnsafeArchiveError(RewheelError):
    """An archive member would escape its extraction directory, or is otherwise refused."""


class ConfigError(RewheelError):
    """An invalid pyproject.toml, settings file or command-line input."""


class BuildError(RewheelError):
    """A PEP 517 hook, a build environment or a wheel build failed."""


class CauseKind(enum.StrEnum):
    """What kind of reason a resolution failed for."""

    NOT_FOUND = "not-found"  # the index has no such project
    NO_MATCH = "no-match"  # the project is there, but no version of it is usable for a requirement
    CONFLICT = "conflict"  # each requirement has versions, but none satisfies them all


class Exclusion(enum.StrEnum):
    """Why a version on the index was left out, in the order they are checked: a version is
    counted under the first that applies, so that what the requirement asks for comes first."""

    SPECIFIER = "specifier"  # outside the requirement's own specifier
    CONSTRAINT = "constraint"  # outside a constraint (-c, or the settings' pins)
    NO_SDIST = "no-sdist"  # wheels only: rewheel builds from source
    PYTHON = "python"  # its sdist's Requires-Python leaves out the Python built for
    YANKED = "yanked"  # yanked (PEP 592) and not pinned exactly
    PRERELEASE = "pre-release"  # a pre-release, and neither --pre nor the specifier allows one


_SHOWN_VERSIONS = 3


def _shown(text: str) -> str:
    """``text`` from an index or a package's metadata, safe to print: every character that is not
    printable (escape sequences, newlines, bidirectional overrides) written as its escape, so
    that it can neither fake lines of the message nor drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Excluded:
    """The versions left out for one reason. ``detail``: the specifier, constraint or
    Requires-Python that did it, as written."""

    why: Exclusion
    versions: tuple[str, ...]  # newest first
    detail: str = ""

    def __str__(self) -> str:
        n = len(self.versions)
        text = {
            Exclusion.NO_SDIST: f"{n} with wheels only, no sdist",
            Exclusion.PYTHON: f"{n} need{'s' if n == 1 else ''} Python {_shown(self.detail)}",
            Exclusion.YANKED: f"{n} yanked",
            Exclusion.CONSTRAINT: f"{n} outside the constraint {_shown(self.detail)}",
            Exclusion.SPECIFIER: f"{n} outside {_shown(self.detail)}",
            Exclusion.PRERELEASE: f"{n} pre-release{'s' if n > 1 else ''}",
        }[self.why]
        shown = _shown(", ".join(self.versions[:_SHOWN_VERSIONS]))
        more = ", …" if n > _SHOWN_VERSIONS else ""
        return f"{text} ({'newest ' if more else ''}{shown}{more})"


@dataclass(frozen=True)
class Link:
    """One step of a chain of requirements: what was needed, and why the step before it needed
    it (``EdgeKind.TOPLEVEL``: the user asked for it)."""

    what: str  # "name==version" of a package picked, or the requirement at the chain's end
    kind: EdgeKind

    def __str__(self) -> str:
        why = "requested" if self.kind is EdgeKind.TOPLEVEL else self.kind.value
        return f"{_shown(self.what)} ({why})"


Chain = tuple[Link, ...]


@dataclass(frozen=True)
class ResolutionCause:
    """One reason a resolution failed, about one project.

    ``chains``: for each requirement on the project that is part of the reason, the chain from a
    package the user asked for down to that requirement. ``missing`` (``NOT_FOUND``): how the
    index said it has no such project. ``excluded`` (``NO_MATCH``): every version on the index,
    grouped by why it was left out; ``closest``: the newest one only the requirement's own
    specifier left out.
    """

    kind: CauseKind
    project: str  # normalized name
    chains: tuple[Chain, ...]
    missing: str | None = None
    excluded: tuple[Excluded, ...] = ()
    closest: str | None = None

    @property
    def seen(self) -> int:
        """How many versions of the project the index lists."""
        return sum(len(e.versions) for e in self.excluded)

    @property
    def requirements(self) -> list[str]:
        return list(dict.fromkeys(chain[-1].what for chain in self.chains if chain))

    def summary(self) -> str:
        """The cause in one line."""
        if self.kind is CauseKind.NOT_FOUND:
            return f"no such project on the index: {self.project} ({_shown(self.missing or '')})"
        if self.kind is CauseKind.CONFLICT:
            return f"conflicting requirements for {self.project}"
        if self.wheels_only:
            return (
                f"no source distribution of {self.project}: the index has wheels only, "
                "and rewheel builds from source"
            )
        wanted = _shown(" and ".join(self.requirements)) or self.project
        return f"no version of {self.project} matches {wanted}"

    @property
    def wheels_only(self) -> bool:
        return bool(self.excluded) and all(e.why is Exclusion.NO_SDIST for e in self.excluded)

    def lines(self) -> list[str]:
        """The chains, then (for ``NO_MATCH``) what the index has and why none was taken."""
        out = [" -> ".join(str(link) for link in chain) for chain in self.chains]
        if self.kind is CauseKind.NO_MATCH:
            if not self.excluded:
                out.append("the index lists no files for it")
            else:
                count = f"{self.seen} version{'s' if self.seen > 1 else ''}"
                out.append(f"on the index: {count}, " + "; ".join(map(str, self.excluded)))
        return out


class ResolutionError(RewheelError):
    """Requirements that no set of versions satisfies, and why: ``causes`` (none when the resolver
    gave up for another reason, such as too much backtracking).

    ``package``/``version``: the package whose build environment it was (``build_env``), else the
    project of the first cause. The message is the first cause in one line; ``str()`` adds each
    cause's chains and versions on lines of their own, then the fix. ``python``: the version
    built for, named where a Requires-Python left versions out.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        causes: Sequence[ResolutionCause] = (),
        package: str | None = None,
        version: str | None = None,
        build_env: bool = False,
        python: str | None = None,
        hint: str | None = None,
        step: str | None = Step.RESOLVE,
    ) -> None:
        self.causes = tuple(causes)
        self.build_env = build_env
        self.python = python
        if package is None and self.causes:
            package = self.causes[0].project
        if message is None:
            message = self._headline()
        super().__init__(message, package=package, version=version, step=step)
        # What the user can do, each its own line in ``str()`` (a settings snippet spans several).
        self.fixes: list[str] = [hint] if hint is not None else self._fixes()
        self.hint = "; ".join(" ".join(f.split()) for f in self.fixes) or None

    @property
    def chains(self) -> list[list[str]]:
        """Every cause's chains, each link as text, top first."""
        return [[str(link) for link in chain] for c in self.causes for chain in c.chains]

    def under(self, prefix: Sequence[Link]) -> Self:
        """This error again, its chains starting with ``prefix``: the chain that led to the
        package whose build environment failed to resolve. A new error, not a copy: where
        exceptions are copied by their pickle reducer (tblib, which Dask installs), a copy shares
        the original's attributes."""
        again = type(self)(
            self.message,
            causes=[
                replace(c, chains=tuple((*prefix, *chain) for chain in c.chains))
                for c in self.causes
            ],
            package=self.package,
            version=self.version,
            build_env=self.build_env,
            python=self.python,
            step=self.step,
        )
        again.fixes, again.hint, again.log_path = list(self.fixes), self.hint, self.log_path
        return again

    def _headline(self) -> str:
        if not self.causes:
            return "no set of versions satisfies the requirements"
        first = self.causes[0]
        text = first.summary()
        if self.build_env:
            conflict = first.kind is CauseKind.CONFLICT
            text += " in its build environment" if conflict else ", needed by its build environment"
        more = len(self.causes) - 1
        if more:
            text += f" (and {more} more problem{'s' if more > 1 else ''})"
        return text

    def __str__(self) -> str:
        if not self.causes:
            return super().__str__()
        where = self.package or ""
        if where and self.version:
            where += f"=={self.version}"
        where = f"{where} [{self.step}]" if where else f"[{self.step}]"
        lines = [f"{where}: {self.message}"]
        for i, cause in enumerate(self.causes):
            if i:
                lines.append(f"  and: {cause.summary()}")
            lines += [f"  {line}" for line in cause.lines()]
        for i, fix in enumerate(self.fixes):
            first, *rest = fix.splitlines()
            lines.append(f"  {'fix' if i == 0 else 'or'}: {first}")
            lines += [f"      {line}" for line in rest]
        return "\n".join(lines)

    # -- the fixes ----------------------------------------------------------------------------

    def _fixes(self) -> list[str]:
        return list(dict.fromkeys(f for c in self.causes for f in self._fixes_for(c)))

    def _fixes_for(self, cause: ResolutionCause) -> list[str]:
        if cause.kind is CauseKind.NOT_FOUND:
            return [
                f"check the name {cause.project!r}; if the project is on another (private) "
                "index, pass that index with --index-url",
                *self._other_parent(cause),
                *self._settings_snippet(cause, None),
            ]
        if cause.kind is CauseKind.CONFLICT:
            return [
                "change one of these requirements so that they agree: ask for other versions of "
                "the packages at the top of the chains, or narrow them with a constraint (-c)",
                *self._settings_snippet(cause, None),
            ]
        return self._no_match_fixes(cause)

    def _no_match_fixes(self, cause: ResolutionCause) -> list[str]:
        out: list[str] = []
        whys = {e.why: e for e in cause.excluded}
        if cause.wheels_only:
            out.append(
                f"leave {cause.project} out, or have its source published: rewheel builds every "
                "package from source"
            )
        if Exclusion.PYTHON in whys:
            than = f" than {self.python}" if self.python else ""
            out.append(
                f"the versions that need a newer Python{than} cannot be built for this one: run "
                "rewheel with a Python they support"
            )
        if Exclusion.YANKED in whys:
            out.append("a yanked version is taken only when pinned exactly (==version)")
        if Exclusion.CONSTRAINT in whys:
            out.append(
                f"the constraint {_shown(whys[Exclusion.CONSTRAINT].detail)} leaves them out: "
                "change it "
                "(in the -c file, or the settings' [pins])"
            )
        if Exclusion.PRERELEASE in whys:
            out.append("pass --pre to allow pre-releases")
        if cause.closest is not None:
            closest = f"{cause.project}=={cause.closest}"
            snippet = self._settings_snippet(cause, closest)
            out += snippet or [
                f"ask for a version the index has; the newest it can build: {closest}"
            ]
        else:
            out += self._settings_snippet(cause, None)
        out += self._other_parent(cause)
        return out

    def _settings_snippet(self, cause: ResolutionCause, replacement: str | None) -> list[str]:
        """For a build environment's own requirement (build-system.requires, or what
        ``get_requires_for_build_wheel`` returned): the package's settings that drop it, or put
        ``replacement`` in its place."""
        direct = self.build_env and any(
            chain and chain[-1].kind in (EdgeKind.BUILD_SYSTEM, EdgeKind.BUILD_BACKEND)
            for chain in cause.chains
        )
        if not direct or not self.package:
            return []
        add = (
            f'requires_add = ["{replacement}"]'
            if replacement
            else 'requires_add = ["..."]      # only to put another requirement in its place'
        )
        if cause.kind is CauseKind.CONFLICT:
            lead = f"replace the requirement of {self.package} itself"
        elif replacement:
            lead = "replace it"
        else:
            lead = f"if {self.package} builds without it, drop it"
        return [
            f"{lead} in the build settings of {self.package}: in the folder given with "
            f"--settings, file {self.package}.toml:\n"
            f'[build]\nrequires_remove = ["{cause.project}"]\n{add}'
        ]

    def _other_parent(self, cause: ResolutionCause) -> list[str]:
        """For a requirement of a package (its Requires-Dist): another version of that package
        may not have it."""
        parents = [
            chain[-2].what.split("==", 1)[0]
            for chain in cause.chains
            if len(chain) >= 2 and chain[-1].kind is EdgeKind.INSTALL
        ]
        if not parents:
            return []
        return [
            f"pick a version of {', '.join(dict.fromkeys(parents))} that does not ask for it, "
            "with a constraint (-c)"
        ]


class NoSdistError(ResolutionError):
    """No version of a project has an sdist: the index has its wheels only."""


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
