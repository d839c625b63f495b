"""A project folder as input: ``rewheel bootstrap ./project [--extra NAME] [--group NAME]``.

The folder's ``pyproject.toml`` gives the project's name and version (``[project]``, PEP 621),
its optional dependencies and its dependency groups (PEP 735, resolved by PyPA's
``dependency-groups``: ``include-group`` followed, cycles refused). The roots of the tree are
the project itself, with the chosen extras, at its own version, and the requirements of the
chosen groups.

The folder is then packed, as pip builds a local project in its tree, into an sdist
(``pack_project``): a gzipped tar of its files under ``{name}-{version}/``, VCS folders, caches,
virtual environments and the repository left out, links that lead out of the folder refused,
bounded in files and bytes. No code of the project runs here: its backend runs later, like any
sdist's, in the sandbox, from an extracted copy, in a build environment of wheels built from
source (``[build-system] requires`` included). With static ``dependencies`` and
``optional-dependencies`` the archive carries a ``PKG-INFO`` (Metadata-Version 2.2, made by
PyPA's ``pyproject-metadata``) that tells the resolver its requirements up front; with dynamic
ones it carries none, and the bootstrap learns them from the built wheel (a second pass).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from .core.errors import ConfigError, Step
from .core.fsutil import sha256_file
from .index.local import LocalSdist
from .reqfile import parse_requirement

if TYPE_CHECKING:
    import tarfile

# pyproject-metadata, dependency-groups and tarfile are imported where a project folder is read or
# packed: a run that names none (every no-op re-run) does not load them.

MAX_PYPROJECT_BYTES = 1 << 20
# Folders never packed: version control, caches of tools, and (any folder with a pyvenv.cfg)
# virtual environments. None of them is source a build needs.
SKIPPED_FOLDERS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".bzr",
        "__pycache__",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
)


@dataclass(frozen=True)
class PackLimits:
    """Bounds on what is packed of a project folder: far above any real project's source."""

    max_files: int = 100_000
    max_bytes: int = 1 << 30


@dataclass(frozen=True)
class Project:
    """A project folder read: what to build of it."""

    folder: Path  # absolute
    name: NormalizedName
    version: str  # normalized
    roots: tuple[Requirement, ...]  # the project (with the chosen extras), then the groups'
    pkg_info: bytes | None  # the PKG-INFO its sdist carries (None: dependencies are dynamic)
    requires_python: str | None = None

    @property
    def sdist_name(self) -> str:
        """``{name}-{version}.tar.gz``, the name PEP 625 gives its sdist."""
        return f"{self.name.replace('-', '_')}-{self.version}.tar.gz"


def looks_like_path(arg: str) -> bool:
    """Whether a command-line argument names a folder rather than a requirement.

    As pip tells them apart: ``.``, ``..``, anything starting with ``./``, ``../`` or ``/``, and
    anything else with a path separator that is not a valid requirement. A bare name is a
    requirement even when a folder of that name exists here (write ``./name`` for the folder).
    """
    if arg in (".", "..") or arg.startswith(("./", "../", "/")):
        return True
    if "/" in arg or os.sep in arg:
        try:
            Requirement(arg)
        except InvalidRequirement:
            return True
    return False


def read_project(arg: str, *, extras: Sequence[str] = (), groups: Sequence[str] = ()) -> Project:
    """The project in folder ``arg``, with the roots ``extras`` and ``groups`` ask for."""
    folder = Path(arg).absolute()
    if not folder.is_dir():
        raise ConfigError(
            f"{arg!r} is not a folder",
            step=Step.INPUT,
            hint="give a project folder (with a pyproject.toml), or a requirement",
        )
    folder = folder.resolve()
    data = _read_pyproject(folder / "pyproject.toml", arg)
    return project_from_pyproject(data, folder, extras=extras, groups=groups)


def _read_pyproject(path: Path, arg: str) -> dict[str, Any]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ConfigError(
            f"the folder {arg!r} has no pyproject.toml",
            step=Step.INPUT,
            hint="give the folder of a project with a pyproject.toml, or a requirement",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror or exc} (a link is not followed)",
            step=Step.PYPROJECT,
        ) from exc
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ConfigError(f"{path} is not a regular file", step=Step.PYPROJECT)
        raw = f.read(MAX_PYPROJECT_BYTES + 1)
    if len(raw) > MAX_PYPROJECT_BYTES:
        raise ConfigError(
            f"{path} is larger than {MAX_PYPROJECT_BYTES} bytes; refused", step=Step.PYPROJECT
        )
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", step=Step.PYPROJECT) from exc


def project_from_pyproject(
    data: Mapping[str, Any],
    folder: Path,
    *,
    extras: Sequence[str] = (),
    groups: Sequence[str] = (),
) -> Project:
    """The project ``data`` (a parsed pyproject.toml) describes, and the roots to build."""
    where = folder / "pyproject.toml"
    table = data.get("project")
    if not isinstance(table, Mapping):
        raise ConfigError(
            f"{where} has no [project] table, which rewheel reads the project's name, version"
            " and dependencies from (PEP 621)",
            step=Step.PYPROJECT,
            hint="add a [project] table with name, version and dependencies",
        )
    raw_name = table.get("name")
    package = raw_name if isinstance(raw_name, str) else None
    dynamic = table.get("dynamic", [])
    if not isinstance(dynamic, list) or not all(isinstance(d, str) for d in dynamic):
        raise ConfigError(
            f"{where}: project.dynamic must be a list of strings",
            package=package,
            step=Step.PYPROJECT,
        )
    if "version" in dynamic or "name" in dynamic:
        raise ConfigError(
            f"{where}: the project's version is dynamic (set by its build backend); rewheel needs"
            " it written in [project] to name the sdist and the wheel before building",
            package=package,
            step=Step.PYPROJECT,
            hint='write version = "..." in [project] (and remove "version" from dynamic)',
        )
    # Only the fields that say what to install: the rest (readme, license files) would make
    # pyproject-metadata read files of the folder, and the PKG-INFO is only a prediction.
    kept_dynamic = [d for d in dynamic if d in ("dependencies", "optional-dependencies")]
    minimal = {
        key: table[key]
        for key in ("name", "version", "requires-python", "dependencies", "optional-dependencies")
        if key in table
    }
    minimal["dynamic"] = kept_dynamic
    import pyproject_metadata

    try:
        metadata = pyproject_metadata.StandardMetadata.from_pyproject(
            {"project": minimal}, folder, metadata_version="2.2"
        )
    except pyproject_metadata.ConfigurationError as exc:
        raise ConfigError(f"{where}: {exc}", package=package, step=Step.PYPROJECT) from exc
    name = canonicalize_name(metadata.name)
    try:
        version = str(Version(str(metadata.version)))
    except InvalidVersion as exc:  # pragma: no cover - pyproject-metadata checked it
        raise ConfigError(f"{where}: {exc}", package=name, step=Step.PYPROJECT) from exc
    chosen = _chosen_extras(table, kept_dynamic, extras, name, version, where)
    group_requirements = _group_requirements(data, groups, name, version, where)
    spelled = f"[{','.join(chosen)}]" if chosen else ""
    roots = (Requirement(f"{name}{spelled}=={version}"), *group_requirements)
    static = not kept_dynamic
    return Project(
        folder=folder,
        name=name,
        version=version,
        roots=roots,
        pkg_info=bytes(metadata.as_rfc822()) if static else None,
        requires_python=None if metadata.requires_python is None else str(metadata.requires_python),
    )


def _chosen_extras(
    table: Mapping[str, Any],
    dynamic: Sequence[str],
    extras: Sequence[str],
    name: str,
    version: str,
    where: Path,
) -> list[str]:
    chosen: list[str] = sorted({canonicalize_name(e) for e in extras})
    if "optional-dependencies" in dynamic:
        return chosen  # only the backend knows them: the built wheel will tell
    declared = table.get("optional-dependencies") or {}
    known = {canonicalize_name(e) for e in declared}
    unknown = [e for e in chosen if e not in known]
    if unknown:
        listed = ", ".join(sorted(known)) if known else "none"
        raise ConfigError(
            f"{where} declares no extra {', '.join(repr(e) for e in unknown)} (its extras:"
            f" {listed})",
            package=name,
            version=version,
            step=Step.INPUT,
            hint="give --extra one of its extras",
        )
    return chosen


def _group_requirements(
    data: Mapping[str, Any], groups: Sequence[str], name: str, version: str, where: Path
) -> list[Requirement]:
    if not groups:
        return []
    table = data.get("dependency-groups", {})
    if not isinstance(table, Mapping):
        raise ConfigError(
            f"{where}: [dependency-groups] is not a table", package=name, step=Step.PYPROJECT
        )
    import dependency_groups

    known = sorted(canonicalize_name(g) for g in table)
    out: list[Requirement] = []
    for group in groups:
        if canonicalize_name(group) not in known:
            listed = ", ".join(known) if known else "none"
            raise ConfigError(
                f"{where} has no dependency group {group!r} (its groups: {listed})",
                package=name,
                version=version,
                step=Step.INPUT,
                hint="give --group one of its dependency groups (PEP 735)",
            )
        try:
            texts = dependency_groups.resolve(table, group)
        except (LookupError, ValueError, TypeError) as exc:  # cycles are ValueErrors
            raise ConfigError(
                f"{where}: dependency group {group!r}: {exc}",
                package=name,
                version=version,
                step=Step.PYPROJECT,
            ) from exc
        for text in texts:
            out.append(parse_requirement(text, where=f"dependency group {group!r} of {where}"))
    return out


def pack_project(
    project: Project,
    dest_dir: Path,
    *,
    exclude: Sequence[Path] = (),
    limits: PackLimits = PackLimits(),
) -> LocalSdist:
    """Pack ``project``'s folder into ``dest_dir/<sdist name>`` and describe it as an sdist.

    ``exclude``: folders left out when they are inside the project (the repository, the work
    folder). Links are followed only to a file inside the folder (packed as a copy); one that
    leads out of it, to a folder or nowhere is refused, naming it.
    """
    import tarfile

    top = project.sdist_name.removesuffix(".tar.gz")
    target = dest_dir / project.sdist_name
    excluded = {p.absolute().resolve() for p in exclude}
    count = 0
    total = 0
    with (
        target.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        if project.pkg_info is not None:
            info = _info(f"{top}/PKG-INFO", len(project.pkg_info), 0o644, 0)
            tar.addfile(info, io.BytesIO(project.pkg_info))
        for relative, path in _files(project, excluded):
            if relative == "PKG-INFO":
                continue  # the folder's own, if any, is not what is packed: ours is
            with _open_file(project.folder, relative, path) as (f, st):
                count += 1
                total += st.st_size
                if count > limits.max_files or total > limits.max_bytes:
                    raise ConfigError(
                        f"the project folder {project.folder} holds more than"
                        f" {limits.max_files} files or {limits.max_bytes} bytes (VCS"
                        " folders, caches and virtual environments left out); refused",
                        package=project.name,
                        version=project.version,
                        step=Step.INPUT,
                        hint="move what the build does not need (data, build output)"
                        " out of the folder",
                    )
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                info = _info(f"{top}/{relative}", st.st_size, mode, int(st.st_mtime))
                try:
                    tar.addfile(info, f)
                except OSError as exc:  # it shrank while being read
                    raise ConfigError(
                        f"{path} changed while it was being packed: {exc}",
                        package=project.name,
                        step=Step.INPUT,
                        hint="run again once nothing writes into the project folder",
                    ) from exc
    digest = sha256_file(target)
    return LocalSdist(
        name=project.name,
        version=project.version,
        path=target,
        sha256=digest,
        folder=project.folder,
        requires_python=project.requires_python,
    )


def _info(name: str, size: int, mode: int, mtime: int) -> tarfile.TarInfo:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = max(mtime, 0)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _files(project: Project, excluded: set[Path]) -> Iterator[tuple[str, Path]]:
    """Every file to pack, as (path relative to the folder with ``/``, path), sorted."""
    root = project.folder

    def unreadable(exc: OSError) -> None:  # a folder left out would be a different project
        raise ConfigError(
            f"cannot read {exc.filename} in the project folder: {exc.strerror or exc}",
            package=project.name,
            version=project.version,
            step=Step.INPUT,
        ) from exc

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        here = Path(dirpath)
        kept = []
        for d in sorted(dirnames):
            sub = here / d
            if d in SKIPPED_FOLDERS or sub in excluded or (sub / "pyvenv.cfg").exists():
                continue
            if sub.is_symlink():
                _refuse_link(project, sub, "a folder")
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            path = here / name
            relative = path.relative_to(root).as_posix()
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue  # removed since the folder was listed
            if stat.S_ISLNK(st.st_mode):
                try:
                    resolved = path.resolve(strict=True)
                except (OSError, RuntimeError):  # dangling, or a loop of links
                    _refuse_link(project, path, "nowhere")
                if not resolved.is_relative_to(root) or not resolved.is_file():
                    _refuse_link(project, path, "outside the project folder, or not a file")
                yield relative, resolved
            elif stat.S_ISREG(st.st_mode):
                yield relative, path
            # sockets, pipes and devices hold no source: left out


def _refuse_link(project: Project, path: Path, what: str) -> NoReturn:
    target = os.readlink(path)
    raise ConfigError(
        f"{path.relative_to(project.folder)} in the project folder is a link to {target!r}"
        f" ({what}); rewheel packs only the folder's own files",
        package=project.name,
        version=project.version,
        step=Step.INPUT,
        hint="replace the link with the file itself, or remove it",
    )


@contextlib.contextmanager
def _open_file(folder: Path, relative: str, path: Path) -> Iterator[tuple[Any, os.stat_result]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(
            f"cannot read {relative} in {folder}: {exc.strerror or exc}", step=Step.INPUT
        ) from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{relative} in {folder} is not a regular file", step=Step.INPUT)
        yield f, st
