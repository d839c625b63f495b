"""Decisions the build steps take, as pure functions: which pre-built wheel fits this
interpreter, and whether a recorded build may be reused. The adapters (``build.pipeline``) do the
I/O around them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from .records import BuildRecord
from .types import IndexFile, WheelRef


def best_wheel(
    files: Iterable[IndexFile], version: Version, tags: Sequence[Tag]
) -> IndexFile | None:
    """The upstream wheel of ``version`` whose tags rank best in ``tags`` (most specific first,
    as ``packaging.tags.sys_tags`` orders them); yanked files and other versions never."""
    ranks = {tag: i for i, tag in enumerate(tags)}
    best: tuple[int, IndexFile] | None = None
    for f in files:
        if not f.filename.endswith(".whl") or f.yanked:
            continue
        try:
            _n, wheel_version, _b, wheel_tags = parse_wheel_filename(f.filename)
        except InvalidWheelFilename:
            continue
        rank = min((ranks[t] for t in wheel_tags if t in ranks), default=None)
        if wheel_version == version and rank is not None and (best is None or rank < best[0]):
            best = (rank, f)
    return None if best is None else best[1]


def reusable_wheel(
    record: BuildRecord, sdist_sha256: str | None, published: Iterable[WheelRef]
) -> WheelRef | None:
    """The published wheel a build record describes, if the record may be reused for an sdist
    with ``sdist_sha256``: the same sdist (an sdist without a listed hash is never reused), and
    the very wheel the record names (file name and sha256) still in the repository."""
    if sdist_sha256 is None or record.sdist_sha256 != sdist_sha256:
        return None
    for ref in published:
        if (ref.filename, ref.sha256) == record.wheel_ref:
            return ref
    return None
