"""The I/O of ``rewheel prune``: listing the repository's folders, reading the build environments
of its records, removing files, and keeping what describes the repository consistent.

Safety: a file is removed only when it is a regular file directly inside one of the
repository's known folders (``core.prune.Folder``), named exactly as the folder's own listing
names it, and opened through that folder's descriptor without following a link (a folder
replaced by a link is refused). No path is ever built from what a record says: a record
naming ``../../etc/passwd`` as its wheel, log or sdist decides nothing here. The plan
(``core.prune``) ties each listed file to its package by its name alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from packaging.utils import canonicalize_name

from ..core.errors import RepositoryError, Step
from ..core.prune import Folder, RepoFile, file_node, pruned_graph, pruned_order
from ..core.records import BuildRecord, record_node
from ..core.runstate import LAST_RUN
from ..core.versions import normal_version
from .repository import Repository

_STEP = Step.PRUNE
# A record larger than this is not read (one is a few kB).
MAX_RECORD = 16 << 20


@contextlib.contextmanager
def _folder_fd(repo: Repository, folder: Folder) -> Iterator[int | None]:
    """A descriptor of ``folder`` under the repository's root, each part opened without
    following links; None when it is not there."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(repo.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise RepositoryError(f"cannot open {repo.root}: {exc}", step=_STEP) from exc
    try:
        for part in folder.value.split("/"):
            try:
                inner = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                yield None
                return
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    # A link or a file where a folder should be: nothing of the repository's.
                    yield None
                    return
                raise RepositoryError(
                    f"cannot open {repo.root / folder.value}: {exc}", step=_STEP
                ) from exc
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def _regular_files(fd: int) -> list[str]:
    out = []
    for name in os.listdir(fd):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            out.append(name)
    return sorted(out)


def list_files(repo: Repository) -> tuple[list[RepoFile], list[str]]:
    """Every regular file directly inside the repository's known folders (links and folders
    are not files of a package; hidden and temporary files are listed, and left alone), and
    notes on the folders that are links or files (nothing in them is touched)."""
    files: list[RepoFile] = []
    notes: list[str] = []
    for folder in Folder:
        path = repo.root / folder.value
        with _folder_fd(repo, folder) as fd:
            if fd is not None:
                files.extend(RepoFile(folder, name) for name in _regular_files(fd))
            elif path.is_symlink() or path.exists():
                notes.append(f"{path} is not a folder (a link or a file): left alone")
    return files, notes


def _read_record(fd: int, name: str) -> BuildRecord:
    rfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    with os.fdopen(rfd, "rb") as f:
        if os.fstat(rfd).st_size > MAX_RECORD:
            raise ValueError(f"larger than {MAX_RECORD} bytes")
        return BuildRecord.from_json(json.loads(f.read(MAX_RECORD + 1)))


def build_envs(
    repo: Repository, files: Iterable[RepoFile]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each record's build environment as node ids, by the node its file name gives, and the
    records that cannot be read (node -> why). A record whose content is of another package
    than its name says is counted as unreadable."""
    envs: dict[str, list[str]] = {}
    unreadable: dict[str, str] = {}
    records = [f for f in files if f.folder is Folder.RECORDS]
    with _folder_fd(repo, Folder.RECORDS) as fd:
        if fd is None:
            return envs, unreadable
        for file in records:
            node = file_node(file)
            if node is None:
                continue
            try:
                record = _read_record(fd, file.name)
            except (OSError, ValueError) as exc:  # RecordError is a ValueError
                unreadable[node] = f"records/{file.name} cannot be read: {exc}"
                continue
            own = record_node(canonicalize_name(record.name), normal_version(record.version))
            if own != node:
                unreadable[node] = f"records/{file.name} is the record of {own}"
                continue
            envs[node] = [
                record_node(canonicalize_name(e.name), normal_version(e.version))
                for e in record.build_env
            ]
    return envs, unreadable


def remove_files(repo: Repository, files: Iterable[RepoFile]) -> list[RepoFile]:
    """Remove each of ``files`` that is, now, a regular file its folder lists under that exact
    name; return those removed. Nothing else is touched."""
    removed = []
    by_folder: dict[Folder, list[str]] = {}
    for file in files:
        by_folder.setdefault(file.folder, []).append(file.name)
    for folder, names in sorted(by_folder.items()):
        with _folder_fd(repo, folder) as fd:
            if fd is None:
                continue
            listed = set(_regular_files(fd))
            for name in sorted(set(names)):
                if name not in listed or name in (".", "..") or "/" in name:
                    continue
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise RepositoryError(
                        f"cannot remove {folder.value}/{name}: {exc}", step=_STEP
                    ) from exc
                removed.append(RepoFile(folder, name))
    return removed


def _read_json(path: Path) -> object | None:
    try:
        data: object = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


def after_removal(repo: Repository, removed_nodes: Iterable[str]) -> None:
    """Make what describes the repository agree with what is left: the index pages, the last
    run's ``build-order.json`` and ``graph.json`` (without the removed packages and their
    edges), and the no-op check's state (the next bootstrap looks again). The run files are
    history and stay as they are."""
    gone = set(removed_nodes)
    repo.regenerate_index()
    order = _read_json(repo.root / "build-order.json")
    if isinstance(order, list):
        repo.write_json("build-order.json", pruned_order(order, gone))
    graph = _read_json(repo.root / "graph.json")
    if isinstance(graph, Mapping):
        repo.write_json("graph.json", pruned_graph(graph, gone))
    (repo.root / LAST_RUN).unlink(missing_ok=True)
