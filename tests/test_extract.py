from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from rewheel.build.extract import ExtractLimits, extract_sdist
from rewheel.core.errors import RewheelError, UnsafeArchiveError

TarMember = tuple[tarfile.TarInfo, bytes | None]


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> TarMember:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def _link(name: str, target: str, kind: bytes) -> TarMember:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _special(name: str, kind: bytes) -> TarMember:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def make_tar(path: Path, members: list[TarMember], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:  # type: ignore[call-overload]
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def make_zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    """Members as (name, data, unix mode incl. file type); mode 0 leaves external_attr empty."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Callable[[], set[Path]]]:
    """An archive dir, the extraction parent, and a snapshot of everything under tmp_path."""
    archives = tmp_path / "archives"
    archives.mkdir()
    work = tmp_path / "work"

    def snapshot() -> set[Path]:
        return {p for p in tmp_path.rglob("*") if not p.is_relative_to(archives)}

    return archives, work, snapshot


SDIST = [
    _file("demo-1.0/pyproject.toml", b"[build-system]\n"),
    _file("demo-1.0/demo/__init__.py", b"X = 1\n"),
    _file("demo-1.0/run.sh", b"#!/bin/sh\n", mode=0o755),
]


@pytest.mark.parametrize(
    ("suffix", "mode"),
    [(".tar.gz", "w:gz"), (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz"), (".tgz", "w:gz")],
)
def test_normal_sdist_returns_its_top_directory(tmp_path: Path, suffix: str, mode: str) -> None:
    archive = make_tar(tmp_path / f"demo-1.0{suffix}", SDIST, mode)
    root = extract_sdist(archive, tmp_path / "work", package="demo")
    assert root.name == "demo-1.0"
    assert root.parent.parent == tmp_path / "work"
    assert (root / "demo" / "__init__.py").read_bytes() == b"X = 1\n"
    assert (root / "run.sh").stat().st_mode & 0o111


def test_several_top_level_entries_return_the_extraction_dir(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "flat.tar.gz", [_file("setup.py"), _file("pkg/__init__.py")])
    root = extract_sdist(archive, tmp_path / "work", name="flat")
    assert root == tmp_path / "work" / "flat"
    assert sorted(p.name for p in root.iterdir()) == ["pkg", "setup.py"]


def test_named_destination_must_be_new(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "demo-1.0.tar.gz", SDIST)
    (tmp_path / "work" / "taken").mkdir(parents=True)
    with pytest.raises(RewheelError, match="already exists") as info:
        extract_sdist(archive, tmp_path / "work", package="demo", name="taken")
    assert info.value.step == "extract"
    assert list((tmp_path / "work" / "taken").iterdir()) == []


def test_each_extraction_gets_a_new_directory(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "demo-1.0.tar.gz", SDIST)
    first = extract_sdist(archive, tmp_path / "work")
    second = extract_sdist(archive, tmp_path / "work")
    assert first != second
    assert first.is_dir() and second.is_dir()


HOSTILE_TARS: dict[str, list[TarMember]] = {
    "dotdot": [_file("demo-1.0/ok"), _file("demo-1.0/../../evil")],
    "absolute": [_file("/tmp/rewheel-test-evil")],
    "symlink-absolute": [_link("demo-1.0/link", "/etc", tarfile.SYMTYPE)],
    "symlink-out": [_link("demo-1.0/link", "../../outside", tarfile.SYMTYPE)],
    "symlink-then-write-through": [
        _link("up", "..", tarfile.SYMTYPE),
        _file("up/evil"),
    ],
    "hardlink-out": [_link("demo-1.0/hard", "../../outside", tarfile.LNKTYPE)],
    "hardlink-absolute": [_link("demo-1.0/hard", "/etc/hostname", tarfile.LNKTYPE)],
    "char-device": [_special("demo-1.0/dev", tarfile.CHRTYPE)],
    "block-device": [_special("demo-1.0/blk", tarfile.BLKTYPE)],
    "fifo": [_special("demo-1.0/fifo", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("allow_links", [False, True], ids=["links-refused", "links-allowed"])
@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
def test_hostile_tar_is_refused_and_nothing_is_left(
    layout: tuple[Path, Path, Callable[[], set[Path]]], case: str, allow_links: bool
) -> None:
    archives, work, snapshot = layout
    (archives.parent / "outside").write_text("keep")
    archive = make_tar(archives / "demo-1.0.tar.gz", HOSTILE_TARS[case])
    before = snapshot()
    with pytest.raises(UnsafeArchiveError) as info:
        extract_sdist(archive, work, package="demo", allow_links=allow_links)
    assert info.value.package == "demo"
    assert info.value.step == "extract"
    assert snapshot() - before <= {work}  # only the (now empty) parent may be new
    assert list(work.iterdir()) == []
    assert (archives.parent / "outside").read_text() == "keep"
    assert not Path("/tmp/rewheel-test-evil").exists()


IN_TREE_LINKS = [
    _file("demo-1.0/real.txt", b"data"),
    _link("demo-1.0/sym.txt", "real.txt", tarfile.SYMTYPE),
    _link("demo-1.0/hard.txt", "demo-1.0/real.txt", tarfile.LNKTYPE),
]


def test_links_inside_the_tree_are_allowed_when_asked(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "demo-1.0.tar.gz", IN_TREE_LINKS)
    root = extract_sdist(archive, tmp_path / "work", allow_links=True)
    assert (root / "sym.txt").is_symlink()
    assert (root / "sym.txt").read_bytes() == b"data"
    assert (root / "hard.txt").read_bytes() == b"data"
    assert (root / "hard.txt").stat().st_ino == (root / "real.txt").stat().st_ino


def test_links_to_files_of_the_tree_are_copied_by_default(tmp_path: Path) -> None:
    """Without ``allow_links`` no link is made: each becomes a file of its own with the bytes
    (and the normalized mode) of the file it names."""
    archive = make_tar(tmp_path / "demo-1.0.tar.gz", IN_TREE_LINKS)
    root = extract_sdist(archive, tmp_path / "work", package="demo")
    for name in ("sym.txt", "hard.txt"):
        copy = root / name
        assert not copy.is_symlink() and copy.is_file()
        assert copy.read_bytes() == b"data"
        assert copy.stat().st_ino != (root / "real.txt").stat().st_ino
        assert stat.S_IMODE(copy.stat().st_mode) == 0o644


@pytest.mark.parametrize(("member", "kind"), [("hard.txt", "hard")])
def test_hard_links_to_a_folder_are_refused_naming_package_member_and_setting(
    tmp_path: Path, member: str, kind: str
) -> None:
    links = [
        _file("demo-1.0/sub/f.txt"),
        _link(f"demo-1.0/{member}", "demo-1.0/sub", tarfile.LNKTYPE),
    ]
    archive = make_tar(tmp_path / "demo-1.0.tar.gz", links)
    with pytest.raises(UnsafeArchiveError) as info:
        extract_sdist(archive, tmp_path / "work", package="demo")
    text = str(info.value)
    assert info.value.package == "demo" and text.startswith("demo [extract]")
    assert f"demo-1.0/{member}" in text and f"{kind} link" in text
    assert "the directory 'demo-1.0/sub'" in text
    assert "allow_links = true" in text
    assert list((tmp_path / "work").iterdir()) == []


def test_tar_extraction_does_not_need_the_data_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every check is ours: a Python without tarfile's filters (or with holes in them) is safe."""
    monkeypatch.delattr(tarfile, "data_filter")
    monkeypatch.delattr(tarfile, "tar_filter")
    archive = make_tar(tmp_path / "demo-1.0.tar.gz", SDIST)
    assert (extract_sdist(archive, tmp_path / "work") / "run.sh").is_file()
    hostile = make_tar(tmp_path / "evil-1.0.tar.gz", HOSTILE_TARS["symlink-then-write-through"])
    with pytest.raises(UnsafeArchiveError):
        extract_sdist(hostile, tmp_path / "work", package="evil", allow_links=True)
    assert not (tmp_path / "work" / "evil").exists()  # "up/evil" through "up" -> ".."


def test_member_count_limit(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "many.tar.gz", [_file(f"d/f{i}") for i in range(20)])
    with pytest.raises(UnsafeArchiveError, match="more than 10 members"):
        extract_sdist(archive, tmp_path / "work", limits=ExtractLimits(max_members=10))
    assert list((tmp_path / "work").iterdir()) == []


def test_total_size_limit(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "big.tar.gz", [_file("d/a", b"a" * 600), _file("d/b", b"b" * 600)]
    )
    with pytest.raises(UnsafeArchiveError, match="uncompressed size"):
        extract_sdist(archive, tmp_path / "work", limits=ExtractLimits(max_total_size=1000))
    assert list((tmp_path / "work").iterdir()) == []


def test_compression_ratio_limit(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "bomb.tar.gz", [_file("d/zeros", bytes(4 << 20))])
    assert archive.stat().st_size < 64 << 10
    limits = ExtractLimits(max_ratio=50, ratio_floor=1 << 20)
    with pytest.raises(UnsafeArchiveError, match="compression ratio"):
        extract_sdist(archive, tmp_path / "work", limits=limits)
    assert list((tmp_path / "work").iterdir()) == []
    # Under the floor, the same ratio is fine: small archives of text compress well too.
    root = extract_sdist(archive, tmp_path / "work", limits=ExtractLimits(max_ratio=50))
    assert (root / "zeros").stat().st_size == 4 << 20


def test_corrupt_and_unknown_archives(tmp_path: Path) -> None:
    bad = tmp_path / "demo-1.0.tar.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(UnsafeArchiveError):
        extract_sdist(bad, tmp_path / "work", package="demo")
    odd = tmp_path / "demo-1.0.rar"
    odd.write_bytes(b"")
    with pytest.raises(UnsafeArchiveError, match="not a supported"):
        extract_sdist(odd, tmp_path / "work", package="demo")


def test_normal_zip(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "demo-1.0.zip",
        [
            ("demo-1.0/", b"", stat.S_IFDIR | 0o755),
            ("demo-1.0/setup.py", b"print()\n", stat.S_IFREG | 0o644),
            ("demo-1.0/tool.sh", b"#!/bin/sh\n", stat.S_IFREG | 0o755),
            ("demo-1.0/pkg/__init__.py", b"", 0),
        ],
    )
    root = extract_sdist(archive, tmp_path / "work")
    assert root.name == "demo-1.0"
    assert (root / "setup.py").read_bytes() == b"print()\n"
    assert (root / "tool.sh").stat().st_mode & 0o111
    assert not (root / "setup.py").stat().st_mode & 0o111
    assert (root / "pkg" / "__init__.py").is_file()


HOSTILE_ZIPS: dict[str, list[tuple[str, bytes, int]]] = {
    "dotdot": [("demo-1.0/../../evil", b"x", 0)],
    "absolute": [("/tmp/rewheel-test-evil", b"x", 0)],
    "windows-drive": [("C:/evil", b"x", 0)],
    "backslash-dotdot": [("demo-1.0\\..\\..\\evil", b"x", 0)],
    "symlink": [("demo-1.0/link", b"/etc/passwd", stat.S_IFLNK | 0o777)],
    "char-device": [("demo-1.0/dev", b"", stat.S_IFCHR | 0o644)],
    "fifo": [("demo-1.0/fifo", b"", stat.S_IFIFO | 0o644)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ZIPS))
def test_hostile_zip_is_refused_and_nothing_is_left(
    layout: tuple[Path, Path, Callable[[], set[Path]]], case: str
) -> None:
    archives, work, snapshot = layout
    archive = make_zip(archives / "demo-1.0.zip", [("demo-1.0/ok", b"x", 0), *HOSTILE_ZIPS[case]])
    before = snapshot()
    with pytest.raises(UnsafeArchiveError) as info:
        extract_sdist(archive, work, package="demo")
    assert info.value.package == "demo"
    assert info.value.step == "extract"
    assert snapshot() - before <= {work}
    assert list(work.iterdir()) == []
    assert not Path("/tmp/rewheel-test-evil").exists()


def test_zip_bomb_limits(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", [("d/zeros", bytes(4 << 20), 0)])
    with pytest.raises(UnsafeArchiveError, match="compression ratio"):
        extract_sdist(archive, tmp_path / "work", limits=ExtractLimits(ratio_floor=1 << 20))
    with pytest.raises(UnsafeArchiveError, match="uncompressed size"):
        extract_sdist(archive, tmp_path / "work", limits=ExtractLimits(max_total_size=1 << 20))
    many = make_zip(tmp_path / "many.zip", [(f"d/f{i}", b"", 0) for i in range(5)])
    with pytest.raises(UnsafeArchiveError, match="members"):
        extract_sdist(many, tmp_path / "work", limits=ExtractLimits(max_members=4))
    assert list((tmp_path / "work").iterdir()) == []


# -- read_root_file: one small file of the source tree, read without extracting ----------------


def test_a_root_file_is_read_from_the_top_folder_or_the_root(tmp_path: Path) -> None:
    from rewheel.build.extract import read_root_file

    nested = make_tar(
        tmp_path / "p-1.0.tar.gz",
        [_file("p-1.0/pyproject.toml", b"[build-system]\n"), _file("p-1.0/pkg/pyproject.toml")],
    )
    assert read_root_file(nested, "pyproject.toml") == b"[build-system]\n"
    flat = make_tar(tmp_path / "q-1.0.tar.gz", [_file("a/x"), _file("pyproject.toml", b"flat")])
    assert read_root_file(flat, "pyproject.toml") == b"flat"  # two tops: the root is the tree
    legacy = make_tar(tmp_path / "r-1.0.tar.gz", [_file("r-1.0/setup.py")])
    assert read_root_file(legacy, "pyproject.toml") is None
    zipped = make_zip(tmp_path / "s-1.0.zip", [("s-1.0/pyproject.toml", b"z", 0o100644)])
    assert read_root_file(zipped, "pyproject.toml") == b"z"
    assert not list(tmp_path.glob("*/")), "nothing is extracted"


@pytest.mark.parametrize(
    ("members", "said"),
    [
        ([_file("p-1.0/../../pyproject.toml")], "member path with '..'"),
        ([_link("p-1.0/pyproject.toml", "/etc/passwd", tarfile.SYMTYPE)], "not a regular file"),
        ([_file("p-1.0/pyproject.toml", b"x" * ((1 << 20) + 1))], "over 1048576 bytes"),
    ],
    ids=["climbs out", "a link", "too large"],
)
def test_a_hostile_root_file_is_refused(
    tmp_path: Path, members: list[TarMember], said: str
) -> None:
    from rewheel.build.extract import read_root_file

    archive = make_tar(tmp_path / "p-1.0.tar.gz", members)
    with pytest.raises(UnsafeArchiveError, match=said):
        read_root_file(archive, "pyproject.toml", package="p")
    with pytest.raises(UnsafeArchiveError, match="more than 2 members"):
        read_root_file(
            make_tar(tmp_path / "many-1.0.tar.gz", [_file(f"m/{i}") for i in range(3)]),
            "pyproject.toml",
            limits=ExtractLimits(max_members=2),
        )
