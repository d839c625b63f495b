"""What rewheel writes is readable the way the user's umask says, as a web server running as
another user expects: published files ``0o666 & ~umask``, folders ``0o777 & ~umask``; the HTTP
cache and the work and cache folders stay the user's own."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import make_record
from test_server import make_wheel

from rewheel.core.fsutil import (
    atomic_write_bytes,
    atomic_write_json,
    current_umask,
    public_file_mode,
)
from rewheel.repo.repository import Repository

SetUmask = Callable[[int], None]


@pytest.fixture
def umask() -> Iterator[SetUmask]:
    """Set the process's umask for the test, and put it back after."""
    old = os.umask(0o022)
    os.umask(old)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002], ids=oct)
def test_atomic_writes_follow_the_umask(tmp_path: Path, umask: SetUmask, mask: int) -> None:
    umask(mask)
    assert current_umask() == mask
    assert public_file_mode() == 0o666 & ~mask
    atomic_write_bytes(tmp_path / "new" / "page.html", b"x")
    atomic_write_json(tmp_path / "data.json", {"a": 1})
    assert _mode(tmp_path / "new" / "page.html") == 0o666 & ~mask
    assert _mode(tmp_path / "data.json") == 0o666 & ~mask
    assert _mode(tmp_path / "new") == 0o777 & ~mask
    # Never the temporary file's 0600, and nothing is left of it.
    assert not list(tmp_path.rglob(".*.tmp"))


def test_a_private_file_is_the_owners_only_whatever_the_umask(
    tmp_path: Path, umask: SetUmask
) -> None:
    umask(0o000)
    atomic_write_bytes(tmp_path / "cached", b"page", private=True)
    assert _mode(tmp_path / "cached") == 0o600
    # Replacing a public file with a private one makes it private, and back.
    atomic_write_bytes(tmp_path / "f", b"1")
    assert _mode(tmp_path / "f") == 0o666
    atomic_write_bytes(tmp_path / "f", b"2", private=True)
    assert _mode(tmp_path / "f") == 0o600


def test_reading_the_umask_does_not_change_it(umask: SetUmask) -> None:
    umask(0o027)
    for _ in range(3):
        assert current_umask() == 0o027


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=oct)
def test_every_published_file_of_a_repository_is_readable_under_the_umask(
    tmp_path: Path, umask: SetUmask, mask: int
) -> None:
    umask(mask)
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    ref = repo.publish_wheel(make_wheel(tmp_path / "build", "Tiny_Pkg", "1.0", "tiny_mod"))
    repo.regenerate_index()
    repo.save_record(make_record("tiny-pkg", "1.0", wheel=ref.filename))
    repo.write_json("build-order.json", [])
    repo.write_json("graph.json", {"nodes": [], "edges": []})

    published = [
        p
        for p in repo.root.rglob("*")
        if p.relative_to(repo.root).parts[0] not in ("work", "cache") and p.name != ".lock"
    ]
    names = {p.relative_to(repo.root).as_posix() for p in published}
    assert {
        f"wheels/{ref.filename}",
        f"wheels/{ref.filename}.metadata",
        "simple/index.html",
        "simple/index.json",
        "simple/tiny-pkg/index.html",
        "simple/tiny-pkg/index.json",
        "records/tiny-pkg-1.0.json",
        "build-order.json",
        "graph.json",
    } <= names
    for path in published:
        want = 0o777 & ~mask if path.is_dir() else 0o666 & ~mask
        assert _mode(path) == want, f"{path.relative_to(repo.root)}: {oct(_mode(path))}"
    # Build folders, uploads and caches: nobody else's.
    assert _mode(repo.work_dir) == 0o700
    assert _mode(repo.cache_dir) == 0o700
