"""Build roots are private to the user: ``rewheel-build-<uid>``, made 0700, and an existing one (or
its lock) is used only if it is a real folder (file) of this user's that no one else could write.

Another local user who pre-creates the root (or a symlink in its place) could otherwise swap a
package's sources during a run. Tests that need a folder of "another user" chown it to a uid that
is not ours, so they run only as root.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rewheel.build.reproducible import claimed_work_root, default_build_root, ensure_private_dir
from rewheel.core.errors import RepositoryError

OTHER_UID = 12345
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture
def parent(tmp_path: Path) -> Path:
    """A folder of ours, not writable by others: where the build root is made."""
    folder = tmp_path / "shm"
    folder.mkdir(mode=0o755)
    return folder


@pytest.fixture
def no_umask() -> Iterator[None]:
    """Umask 0, so that private modes come from rewheel, not from the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _refused(base: Path, *words: str) -> RepositoryError:
    with pytest.raises(RepositoryError) as info, claimed_work_root(base):
        pytest.fail("a build root that fails the checks was used")
    text = str(info.value)
    assert info.value.step == "work-dir"
    for word in words:
        assert word in text, text
    return info.value


def test_default_build_root_is_per_user() -> None:
    root = default_build_root()
    assert root.name == f"rewheel-build-{os.geteuid()}"
    assert root.parent in (Path("/dev/shm"), Path("/tmp"))


def test_new_root_and_lock_are_private(parent: Path, no_umask: None) -> None:
    base = parent / f"rewheel-build-{os.geteuid()}"
    with claimed_work_root(base) as root:
        assert root == base
        assert _mode(root) == 0o700
        assert os.lstat(root).st_uid == os.geteuid()
        lock = parent / f"{base.name}.lock"
        assert stat.S_ISREG(os.lstat(lock).st_mode)
        assert _mode(lock) == 0o600
        # A second run at the same time moves aside to a folder just as private.
        with claimed_work_root(base) as second:
            assert second == parent / f"{base.name}-2"
            assert _mode(second) == 0o700
            assert _mode(parent / f"{base.name}-2.lock") == 0o600


@as_root
def test_root_made_by_another_user_is_refused(parent: Path) -> None:
    base = parent / "rewheel-build-0"
    base.mkdir()
    base.chmod(0o777)  # as the hijacker leaves it: open to everyone
    os.chown(base, OTHER_UID, OTHER_UID)
    _refused(base, str(base), f"belongs to uid {OTHER_UID}", "remove it", "--work-dir")
    # Left as it was, and not passed over for another name.
    assert os.lstat(base).st_uid == OTHER_UID and _mode(base) == 0o777
    assert not (parent / "rewheel-build-0-2").exists()


@as_root
def test_lock_made_by_another_user_is_refused(parent: Path) -> None:
    base = parent / "rewheel-build-0"
    lock = parent / "rewheel-build-0.lock"
    lock.touch(mode=0o666)
    os.chown(lock, OTHER_UID, OTHER_UID)
    _refused(base, str(lock), f"belongs to uid {OTHER_UID}", "--work-dir")
    assert not base.exists()


@as_root
def test_parent_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, OTHER_UID, OTHER_UID)
    _refused(theirs / "rewheel-build-0", str(theirs), f"belongs to uid {OTHER_UID}", "--work-dir")
    assert list(theirs.iterdir()) == []


def test_symlink_root_is_refused_and_its_target_untouched(parent: Path, tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    base = parent / "rewheel-build-x"
    base.symlink_to(planted)
    _refused(base, str(base), "symbolic link", "remove it", "--work-dir")
    assert base.is_symlink()
    assert _mode(planted) == 0o777  # never chmod-ed through the link
    assert list(planted.iterdir()) == []


def test_symlink_lock_is_refused_and_its_target_not_made(parent: Path, tmp_path: Path) -> None:
    base = parent / "rewheel-build-x"
    (parent / "rewheel-build-x.lock").symlink_to(tmp_path / "victim")
    _refused(base, "rewheel-build-x.lock", "symbolic link")
    assert not (tmp_path / "victim").exists()
    assert not base.exists()


def test_file_in_place_of_root_is_refused(parent: Path) -> None:
    base = parent / "rewheel-build-x"
    base.write_text("not a folder")
    _refused(base, str(base), "not a folder")


def test_world_writable_root_of_ours_is_refused(parent: Path) -> None:
    """Ours, but anyone could have put files (or links) in it before this run: not used."""
    base = parent / "rewheel-build-x"
    base.mkdir()
    base.chmod(0o777)
    (base / "pkg-1.0").mkdir()  # as planted by someone else
    _refused(base, str(base), "writable by group or others", "0777", "remove it")
    assert _mode(base) == 0o777


def test_readable_root_of_ours_is_made_private(parent: Path) -> None:
    """Nobody else could write in a 0755 folder of ours: it is kept, and narrowed to 0700."""
    base = parent / "rewheel-build-x"
    base.mkdir()
    base.chmod(0o755)
    (parent / "rewheel-build-x.lock").touch()
    (parent / "rewheel-build-x.lock").chmod(0o666)
    with claimed_work_root(base) as root:
        assert root == base
        assert _mode(base) == 0o700
        assert _mode(parent / "rewheel-build-x.lock") == 0o600


@pytest.mark.parametrize(("mode", "ok"), [(0o777, False), (0o1777, True)])
def test_parent_writable_by_everyone_must_be_sticky(tmp_path: Path, mode: int, ok: bool) -> None:
    """In a world-writable folder without the sticky bit (unlike /tmp and /dev/shm) anyone could
    rename the private root away and put their own in its place."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    base = shared / "rewheel-build-x"
    if ok:
        with claimed_work_root(base) as root:
            assert _mode(root) == 0o700
    else:
        _refused(base, str(shared), "writable by everyone and not sticky", "--work-dir")
        assert not base.exists()


def test_ensure_private_dir_makes_and_keeps(tmp_path: Path, no_umask: None) -> None:
    folder = tmp_path / "private"
    ensure_private_dir(folder)
    assert _mode(folder) == 0o700
    (folder / "kept").touch()
    ensure_private_dir(folder)  # an existing private folder of ours is used as it is
    assert (folder / "kept").exists()
