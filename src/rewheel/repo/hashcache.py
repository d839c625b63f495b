"""The sha256 of the repository's files, remembered between runs.

A run that changes nothing must not read every wheel again to learn hashes it computed last
time: at 10,000 wheels that is most of the run. ``HashCache`` keeps, per file (its path below the
repository), the hash with the file's inode, size, mtime and ctime when it was hashed, in
``cache/hashes.json`` (the repository's private folder). An entry is used only while all four
still match the file: any write, rename over it, ``chmod`` or ``touch`` changes the ctime, which a
user cannot set back, so a replaced or edited file is hashed again.

Who may use it: only a run's own decisions (is the last run's result still there, what do the
index pages say). ``rewheel verify`` and everything else that proves what the repository holds
hash every file itself, and the ``Repository`` they make has no ``HashCache``: whoever can write
the cache (the user, root, a ``--no-sandbox`` build running as the user) could otherwise make a
changed wheel look unchanged, and root can also set the clock back to fake a ctime.

The file is trusted only when it and its folder belong to this user and nobody else may write
them (the folder is 0700, the file 0600); it is opened without following links. Anything else is
ignored (every file is hashed again) and not written over. Entries whose ctime is younger than
``RACY_SECONDS`` are not kept: a file changed again within the file system's timestamp
granularity could keep its stat.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.fsutil import atomic_write_bytes, sha256_file

HASHES_FILE = "hashes.json"
FORMAT = 1
MAX_SIZE = 64 << 20  # some 1.5 MB for 10,000 wheels
RACY_SECONDS = 2.0


@dataclass(frozen=True)
class FileStat:
    """What identifies one version of a file: a change of content changes one of these."""

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class HashCache:
    """sha256 of files below ``root``, kept in ``folder/hashes.json`` between runs.

    ``hasher`` computes a hash the cache does not have (tests count its calls).
    """

    def __init__(
        self,
        root: Path,
        folder: Path,
        *,
        hasher: Callable[[Path], str] = sha256_file,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self._prefix = os.fspath(root).rstrip("/") + "/"
        self.path = folder / HASHES_FILE
        self.hasher = hasher
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[FileStat, str]] = {}
        self._used: set[str] = set()  # entries asked for or made by this run: their files exist
        self._pages: dict[str, str] = {}  # project -> digest of its pages' inputs and outputs
        self._dirty = False
        self._trusted_folder = False
        self._load()

    # -- the file --------------------------------------------------------------------------------

    def _private(self, st: os.stat_result) -> bool:
        return st.st_uid == os.getuid() and not st.st_mode & 0o022

    def _load(self) -> None:
        folder = self.path.parent
        try:
            st = os.lstat(folder)
        except OSError:
            return
        self._trusted_folder = stat.S_ISDIR(st.st_mode) and self._private(st)
        if not self._trusted_folder:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or not self._private(st) or st.st_size > MAX_SIZE:
                return
            try:
                data = json.loads(f.read(MAX_SIZE + 1))
            except (OSError, ValueError):
                return
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return
        entries = data.get("files")
        if not isinstance(entries, dict):
            return
        pages = data.get("pages", {})
        if isinstance(pages, dict):
            self._pages = {k: v for k, v in pages.items() if isinstance(v, str)}
        for name, entry in entries.items():
            if (
                isinstance(entry, list)
                and len(entry) == 5
                and all(type(x) is int for x in entry[:4])
                and isinstance(entry[4], str)
                and len(entry[4]) == 64
            ):
                self._entries[name] = (FileStat(*entry[:4]), entry[4])

    def save(self) -> None:
        """Write the entries down, if any changed and the folder is one this user alone owns.

        Entries of files no longer there (a pruned wheel, a removed sdist) are left out: each
        folder of the entries this run did not use is listed once (one listing of ``wheels/``,
        not a ``stat`` per wheel), and only when the file is written anyway."""
        with self._lock:
            if not self._dirty or not self._trusted_folder:
                return
            unused = [name for name in self._entries if name not in self._used]
        gone = self._gone(unused)
        with self._lock:
            for name in gone:
                self._entries.pop(name, None)
            files = {
                name: [key.inode, key.size, key.mtime_ns, key.ctime_ns, sha]
                for name, (key, sha) in self._entries.items()
            }
            pages = dict(self._pages)
            self._dirty = False
        data = json.dumps(
            {"format": FORMAT, "files": files, "pages": pages}, sort_keys=True
        ).encode()
        with contextlib.suppress(OSError):  # a cache: not writing it loses nothing
            atomic_write_bytes(self.path, data, private=True, durable=False)

    def _gone(self, names: list[str]) -> list[str]:
        """Those of ``names`` whose folder, listed now, does not hold them."""
        by_folder: dict[str, list[str]] = {}
        for name in names:
            folder, _, base = name.rpartition("/")
            by_folder.setdefault(folder, []).append(base)
        gone = []
        for folder, bases in by_folder.items():
            try:
                listed = set(os.listdir(os.path.join(self.root, folder)))
            except FileNotFoundError:
                listed = set()
            except OSError:
                continue  # cannot tell: kept (an entry counts only while its stat matches)
            prefix = f"{folder}/" if folder else ""
            gone += [prefix + base for base in bases if base not in listed]
        return gone

    # -- hashes ----------------------------------------------------------------------------------

    def _name(self, path: Path) -> str:
        """``path`` below ``root``, as the entries name it (without pathlib's slow way)."""
        text = os.fspath(path)
        if text.startswith(self._prefix):
            return text[len(self._prefix) :]
        return path.relative_to(self.root).as_posix()

    def sha256(self, path: Path) -> str:
        """The sha256 of ``path`` (a file below ``root``): remembered if its stat is unchanged,
        else computed. Raises ``FileNotFoundError`` as reading the file would."""
        name = self._name(path)
        before = FileStat.of(path.stat())
        with self._lock:
            self._used.add(name)
            known = self._entries.get(name)
        if known is not None and known[0] == before:
            return known[1]
        digest = self.hasher(path)
        after = FileStat.of(path.stat())
        with self._lock:
            if after != before or self.clock() - after.ctime_ns / 1e9 < RACY_SECONDS:
                # Changed while read, or too recently to tell a later change: not kept.
                if self._entries.pop(name, None) is not None:
                    self._dirty = True
            else:
                self._entries[name] = (after, digest)
                self._dirty = True
        return digest

    def remember(self, path: Path, st: FileStat, sha256: str) -> None:
        """``path``, as ``st`` describes it, holds bytes whose hash is ``sha256``: known because
        this process wrote them (a publication hashes what it writes, then renames it in place),
        so the entry is kept however recent it is."""
        name = self._name(path)
        with self._lock:
            self._used.add(name)
            self._entries[name] = (st, sha256)
            self._dirty = True

    # -- index pages -----------------------------------------------------------------------------

    def page(self, project: str) -> str | None:
        """The digest (of the inputs and the written pages) last recorded for ``project``."""
        with self._lock:
            return self._pages.get(project)

    def set_page(self, project: str, digest: str | None) -> None:
        with self._lock:
            if digest is None:
                changed = self._pages.pop(project, None) is not None
            else:
                changed = self._pages.get(project) != digest
                self._pages[project] = digest
            self._dirty = self._dirty or changed
