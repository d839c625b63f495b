"""Finding the build machine's own paths in a wheel.

A wheel that names the folder it was built in, the interpreter's install prefix or the
repository (in a RUNPATH, debug data, a generated ``__config__.py``) tells about the machine that
built it, and cannot be reproduced anywhere else. ``paths_in_wheel`` reads every member (in
pieces, so a large member is never held whole) and says which of the given paths it holds, and
where first.

A path counts only as a whole path: ``/work/repo`` is not found in ``/work/repo-2`` (the byte
after it must end a path name). Paths of the system itself (``/``, ``/usr``, ``/usr/local``) are
not looked for: they are the same on every machine, and every script names them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .wheelfile import WheelReader

# Never looked for: the same path on every machine.
_SYSTEM_PATHS = frozenset({"/", "/usr", "/usr/local", "/tmp", "/dev/shm", "/home", "/root"})
# Bytes that continue a path name: a path followed by one of these is another path.
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+~")


@dataclass(frozen=True)
class PathInWheel:
    """``path`` (one of the machine's) found in the wheel's ``member``, first at ``offset``."""

    member: str
    path: str
    offset: int

    def __str__(self) -> str:
        return f"{self.member} names {self.path} (at byte {self.offset})"


def searched_paths(paths: Iterable[str | Path]) -> list[str]:
    """The paths worth looking for: absolute, normalized, each also as its real path (a link
    such as ``/tmp`` -> ``/private/tmp`` is written either way), the system's own left out,
    without repeats."""
    out: list[str] = []
    for given in paths:
        text = os.fspath(given)
        if not os.path.isabs(text):
            continue
        for form in (os.path.normpath(text), os.path.realpath(text)):
            if form not in _SYSTEM_PATHS and form not in out:
                out.append(form)
    return out


def first_offsets(chunks: Iterable[bytes], needles: Sequence[bytes]) -> dict[bytes, int]:
    """Where each of ``needles`` first occurs as a whole path in the stream of ``chunks``.

    Streaming: a needle split between two chunks is found, and no more than one chunk and the
    longest needle are held at once.
    """
    wanted = [n for n in needles if n]
    if not wanted:
        return {}
    keep = max(len(n) for n in wanted)  # enough to see a match and the byte after it
    found: dict[bytes, int] = {}
    buf, base = b"", 0  # base: the offset of buf[0] in the stream
    for chunk in _then_end(chunks):
        final = chunk is None
        if chunk:
            buf += chunk
        # Only matches that start before ``limit`` are judged now; the rest are seen again.
        limit = len(buf) if final else max(len(buf) - keep, 0)
        for needle in wanted:
            if needle in found:
                continue
            start = 0
            while (at := buf.find(needle, start)) != -1 and at < limit:
                end = at + len(needle)
                if end == len(buf) or buf[end] not in _NAME_BYTES:
                    found[needle] = base + at
                    break
                start = at + 1
        if final or len(found) == len(wanted):
            break
        buf, base = buf[limit:], base + limit
    return found


def _then_end(chunks: Iterable[bytes]) -> Iterator[bytes | None]:
    yield from chunks
    yield None


def paths_in_wheel(wheel: Path, paths: Iterable[str | Path]) -> list[PathInWheel]:
    """Which of ``paths`` (see ``searched_paths``) each member of ``wheel`` holds, in member
    order, then by where in the member. Raises what ``WheelReader`` raises on a damaged zip."""
    searched = searched_paths(paths)
    needles = [os.fsencode(p) for p in searched]
    out: list[PathInWheel] = []
    with WheelReader(wheel) as reader:
        for info in reader.members:
            if info.is_dir():
                continue
            offsets = first_offsets(reader.chunks(info), needles)
            for needle, offset in sorted(offsets.items(), key=lambda item: item[1]):
                out.append(PathInWheel(info.filename, os.fsdecode(needle), offset))
    return out
