"""The hash cache (repo.hashcache): a run hashes only what changed since it last hashed it, no
other user or link can feed it hashes, and verify never takes a hash from it."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from conftest import Upstream, run_bootstrap

from rewheel import app
from rewheel.core.fsutil import sha256_file
from rewheel.repo.hashcache import HASHES_FILE, HashCache
from rewheel.repo.repository import Repository
from rewheel.repo.wheelfile import write_wheel


class Counting:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, path: Path) -> str:
        self.paths.append(path.name)
        return sha256_file(path)


def _members(name: str, metadata: bytes) -> dict[str, bytes]:
    return {
        f"{name}/__init__.py": b"",
        f"{name}-1.0.dist-info/METADATA": metadata,
        f"{name}-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }


def _repo_with_wheels(root: Path, count: int) -> Repository:
    repo = Repository(root)
    repo.ensure_layout()
    for i in range(count):
        name = f"pkg{i}"
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n".encode()
        wheel = root / f"{name}-1.0-py3-none-any.whl"
        write_wheel(wheel, _members(name, meta))
        repo.publish_wheel(wheel)
        wheel.unlink()
    return repo


def later_clock() -> float:
    """A clock a minute ahead: the files just made are past the racy window, inside which the
    cache does not remember a hash (a ctime cannot be set back to test it otherwise)."""
    return time.time() + 60


def test_a_later_run_hashes_no_wheel_an_earlier_run_hashed(tmp_path: Path) -> None:
    _repo_with_wheels(tmp_path / "repo", 5)
    first, second = Counting(), Counting()
    repo = Repository(tmp_path / "repo")
    repo.remember_hashes(hasher=first, clock=later_clock)
    listed = repo.wheels()
    repo.save_hashes()
    assert len(first.paths) == 5
    again = Repository(tmp_path / "repo")  # the next run
    again.remember_hashes(hasher=second, clock=later_clock)
    assert again.wheels() == listed
    assert second.paths == []
    cache = tmp_path / "repo" / "cache" / HASHES_FILE
    assert cache.stat().st_mode & 0o777 == 0o600


def test_entries_of_files_gone_are_left_out_when_the_file_is_written(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    _repo_with_wheels(root, 3)
    repo = Repository(root)
    repo.remember_hashes(clock=later_clock)
    repo.wheels()
    repo.save_hashes()
    cache = root / "cache" / HASHES_FILE
    wheel = "wheels/pkg{}-1.0-py3-none-any.whl".format
    assert {wheel(0), wheel(1), wheel(2)} <= set(json.loads(cache.read_text())["files"])
    (root / wheel(1)).unlink()  # as prune removes it
    # A run that learns nothing new does not write the file, not even to drop an entry.
    unchanged = cache.read_bytes()
    again = Repository(root)
    again.remember_hashes(clock=later_clock)
    assert again.wheel_sha256(wheel(0).removeprefix("wheels/")) is not None
    again.save_hashes()
    assert cache.read_bytes() == unchanged
    # One that publishes writes it: without the wheel gone, with the one it did not look at.
    third = Repository(root)
    third.remember_hashes(clock=later_clock)
    made = root / "pkg9-1.0-py3-none-any.whl"
    write_wheel(made, _members("pkg9", b"Metadata-Version: 2.1\nName: pkg9\nVersion: 1.0\n\n"))
    third.publish_wheel(made)
    third.save_hashes()
    files = set(json.loads(cache.read_text())["files"])
    assert wheel(1) not in files
    assert {wheel(0), wheel(2), wheel(9)} <= files


def test_a_published_wheel_is_remembered_without_reading_it_again(tmp_path: Path) -> None:
    counting = Counting()
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    repo.remember_hashes(hasher=counting, clock=later_clock)
    wheel = tmp_path / "a-1.0-py3-none-any.whl"
    meta = b"Metadata-Version: 2.1\nName: a\nVersion: 1.0\n\n"
    write_wheel(wheel, _members("a", meta))
    ref = repo.publish_wheel(wheel)
    repo.save_hashes()
    later = Repository(tmp_path / "repo")
    later.remember_hashes(hasher=counting, clock=later_clock)
    assert later.wheels() == [ref]
    assert counting.paths == []


def test_a_wheel_changed_in_place_is_hashed_again(tmp_path: Path) -> None:
    repo = _repo_with_wheels(tmp_path / "repo", 2)
    repo = Repository(tmp_path / "repo")
    repo.remember_hashes(clock=later_clock)
    (old, _) = repo.wheels()
    repo.save_hashes()
    path = repo.wheel_path(old)
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF  # same size, same inode, mtime put back: only the ctime tells
    with path.open("r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    counting = Counting()
    later = Repository(tmp_path / "repo")
    later.remember_hashes(hasher=counting, clock=later_clock)
    (new, _) = later.wheels()
    assert counting.paths == [old.filename]
    assert new.sha256 == sha256_file(path) != old.sha256


def test_a_cache_file_others_may_write_is_not_believed_and_is_replaced(tmp_path: Path) -> None:
    _repo_with_wheels(tmp_path / "repo", 3)
    repo = Repository(tmp_path / "repo")
    repo.remember_hashes(clock=later_clock)
    repo.wheels()
    repo.save_hashes()
    cache = tmp_path / "repo" / "cache" / HASHES_FILE
    data = json.loads(cache.read_text())
    for entry in data["files"].values():
        entry[4] = "0" * 64  # what another user would like the run to believe
    cache.write_text(json.dumps(data))
    cache.chmod(0o666)
    counting = Counting()
    later = Repository(tmp_path / "repo")
    later.remember_hashes(hasher=counting, clock=later_clock)
    assert all(w.sha256 != "0" * 64 for w in later.wheels())
    assert len(counting.paths) == 3
    later.save_hashes()  # a private file of the true hashes in its place
    assert cache.stat().st_mode & 0o777 == 0o600
    assert {e[4] for e in json.loads(cache.read_text())["files"].values()} == {
        w.sha256 for w in later.wheels()
    }


def test_a_cache_folder_others_may_write_is_not_believed(tmp_path: Path) -> None:
    _repo_with_wheels(tmp_path / "repo", 2)
    repo = Repository(tmp_path / "repo")
    repo.remember_hashes(clock=later_clock)
    repo.wheels()
    repo.save_hashes()
    (tmp_path / "repo" / "cache").chmod(0o777)
    counting = Counting()
    later = Repository(tmp_path / "repo")
    later.remember_hashes(hasher=counting, clock=later_clock)
    later.wheels()
    assert len(counting.paths) == 2


def test_a_link_in_place_of_the_cache_file_is_not_followed(tmp_path: Path) -> None:
    _repo_with_wheels(tmp_path / "repo", 2)
    repo = Repository(tmp_path / "repo")
    repo.remember_hashes(clock=later_clock)
    repo.wheels()
    repo.save_hashes()
    cache = tmp_path / "repo" / "cache" / HASHES_FILE
    planted = tmp_path / "planted.json"
    planted.write_bytes(cache.read_bytes())
    planted.chmod(0o600)
    cache.unlink()
    cache.symlink_to(planted)
    counting = Counting()
    later = Repository(tmp_path / "repo")
    later.remember_hashes(hasher=counting, clock=later_clock)
    later.wheels()
    assert len(counting.paths) == 2


def test_a_file_hashed_within_the_racy_window_is_not_remembered(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir(mode=0o700)
    f = tmp_path / "f.whl"
    f.write_bytes(b"x")
    now = time.time()
    counting = Counting()
    young = HashCache(tmp_path, tmp_path / "cache", hasher=counting, clock=lambda: now)
    young.sha256(f)
    young.save()
    assert not (tmp_path / "cache" / HASHES_FILE).exists()
    old = HashCache(tmp_path, tmp_path / "cache", hasher=counting, clock=lambda: now + 60)
    old.sha256(f)
    old.save()
    HashCache(tmp_path, tmp_path / "cache", hasher=counting, clock=lambda: now + 60).sha256(f)
    assert counting.paths == ["f.whl", "f.whl"]  # the third did not read it


def test_a_no_op_bootstrap_hashes_no_wheel(upstream: Upstream, tmp_path: Path) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    assert run_bootstrap(upstream, repo, ["app"]).built == 2
    counting = Counting()
    again = run_bootstrap(upstream, repo, ["app"], machine=app.Machine(hasher=counting))
    assert (again.built, again.reused) == (0, 2)
    assert [p for p in counting.paths if p.endswith(".whl")] == []
    # A wheel touched since is read again (and only that one): its ctime changed.
    (touched,) = (repo / "wheels").glob("app-*.whl")
    os.utime(touched)
    third = run_bootstrap(upstream, repo, ["app"], machine=app.Machine(hasher=counting))
    assert (third.built, third.reused) == (0, 2)
    assert [p for p in counting.paths if p.endswith(".whl")] == [touched.name]


def test_verify_takes_no_hash_from_the_cache(upstream: Upstream, tmp_path: Path) -> None:
    """Whoever can write the cache could make a changed wheel look unchanged to the run's own
    no-op check; verify hashes every wheel itself, so it still finds the change."""
    upstream.sdist("app", "1.0")
    repo = tmp_path / "repo"
    assert run_bootstrap(upstream, repo, ["app"]).ok
    assert app.chain_of_custody(repo_root=repo, packages=None).ok
    (ref,) = Repository(repo).wheels()
    path = Repository(repo).wheel_path(ref)
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF
    path.write_bytes(data)
    st = path.stat()
    cache = repo / "cache" / HASHES_FILE
    entries = json.loads(cache.read_text()) if cache.exists() else {"format": 1, "files": {}}
    files = entries["files"]
    assert isinstance(files, dict)
    files[f"wheels/{ref.filename}"] = [
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        ref.sha256,  # the old hash, for the changed wheel
    ]
    cache.write_text(json.dumps(entries))
    cache.chmod(0o600)
    poisoned = Repository(repo)
    poisoned.remember_hashes(clock=later_clock)
    assert poisoned.wheels() == [ref]  # what a run would believe
    report = app.chain_of_custody(repo_root=repo, packages=None)
    assert not report.ok


# -- index pages made again only when what they are made from changed -----------------------------


def _pages(root: Path) -> dict[str, bytes]:
    simple = root / "simple"
    return {str(p.relative_to(simple)): p.read_bytes() for p in simple.rglob("*") if p.is_file()}


def _forget_file_hashes(root: Path) -> None:
    """Keep the recorded pages but not the hashes: a page made again then asks the hasher."""
    cache = root / "cache" / HASHES_FILE
    data = json.loads(cache.read_text())
    data["files"] = {}
    cache.write_text(json.dumps(data))


def _start_of_run(root: Path, counting: Counting) -> Repository:
    repo = Repository(root)
    repo.remember_hashes(hasher=counting, clock=later_clock)
    repo.regenerate_index()
    repo.save_hashes()
    return repo


def test_a_run_start_makes_again_only_the_pages_whose_inputs_changed(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    _repo_with_wheels(root, 4)
    _start_of_run(root, Counting())
    full = _pages(root)
    assert "pkg0/index.html" in full

    _forget_file_hashes(root)
    counting = Counting()
    _start_of_run(root, counting)
    assert counting.paths == []  # no page was made again: no wheel's hash was asked
    assert _pages(root) == full

    # A .metadata written again (another Requires-Python, say): that project's pages only.
    _forget_file_hashes(root)
    meta = root / "wheels" / "pkg2-1.0-py3-none-any.whl.metadata"
    meta.write_bytes(
        meta.read_bytes().replace(b"Version: 1.0\n", b"Version: 1.0\nRequires-Python: >=3.9\n")
    )
    counting = Counting()
    _start_of_run(root, counting)
    assert counting.paths == ["pkg2-1.0-py3-none-any.whl"]
    assert b"&gt;=3.9" in (root / "simple" / "pkg2" / "index.html").read_bytes()

    # A page changed by hand is made again (what the start of a run has always repaired).
    _forget_file_hashes(root)
    (root / "simple" / "pkg1" / "index.html").write_text("<html>planted</html>")
    counting = Counting()
    _start_of_run(root, counting)
    assert counting.paths == ["pkg1-1.0-py3-none-any.whl"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for f in (root / "wheels").iterdir():
        (fresh / "wheels").mkdir(exist_ok=True)
        (fresh / "wheels" / f.name).write_bytes(f.read_bytes())
    Repository(fresh).regenerate_index()  # no hash cache: every page from the wheels
    assert _pages(root) == _pages(fresh)


def test_pages_skipped_at_a_start_equal_pages_made_from_scratch(tmp_path: Path) -> None:
    """Seeded random changes between run starts; after each start, the pages are what a full
    regeneration without any cache writes."""
    rng = random.Random(16)
    root = tmp_path / "repo"
    repo = _repo_with_wheels(root, 6)
    for step in range(12):
        change = rng.choice(["publish", "remove", "metadata", "page", "provenance", "none"])
        wheels = sorted((root / "wheels").glob("*.whl"))
        if change == "publish":
            name = f"new{step}"
            meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n".encode()
            wheel = tmp_path / f"{name}-1.0-py3-none-any.whl"
            write_wheel(wheel, _members(name, meta))
            repo.publish_wheel(wheel)
        elif change == "remove" and len(wheels) > 1:
            victim = rng.choice(wheels)
            for f in (root / "wheels").glob(victim.name + "*"):
                f.unlink()
        elif change == "metadata" and wheels:
            (root / "wheels" / f"{rng.choice(wheels).name}.metadata").unlink(missing_ok=True)
        elif change == "page":
            pages = sorted((root / "simple").rglob("index.*"))
            if pages:
                rng.choice(pages).write_text("stale")
        elif change == "provenance" and wheels:
            (root / "wheels" / f"{rng.choice(wheels).name}.provenance").write_text("{}")
        _start_of_run(root, Counting())
        fresh = tmp_path / f"fresh{step}"
        (fresh / "wheels").mkdir(parents=True)
        for f in (root / "wheels").iterdir():
            (fresh / "wheels" / f.name).write_bytes(f.read_bytes())
        Repository(fresh).regenerate_index()
        assert _pages(root) == _pages(fresh), change
