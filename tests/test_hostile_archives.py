"""Hostile archives beyond tests/test_extract.py: mode bits, sdists that combine, links that try to
lead extraction out of its folder (CVE-2025-4517 among them), wheels at publish time and RECORD
entries that escape at verify time."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from support.damage import damaged
from support.sdists import SdistSpec, make_sdist, make_wheel

from rewheel.build.extract import ExtractLimits, extract_sdist, link_target_problem
from rewheel.build.metadata import read_pkg_info
from rewheel.build.reproducible import source_date_epoch
from rewheel.core.errors import RewheelError, UnsafeArchiveError
from rewheel.core.paths import unsafe_member_name
from rewheel.repo.repository import Repository
from rewheel.repo.wheelfile import READ_ERRORS, check_wheel, read_metadata_bytes
from rewheel.trust.verify import verify_venv


@pytest.fixture
def no_umask() -> Iterator[None]:
    """Umask 0, so that a stripped bit was stripped by the extraction, not by the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _tar_file(name: str, mode: int = 0o644, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _tar_entry(
    name: str, kind: bytes, mode: int = 0o755, link: str = ""
) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info, None


HIGH_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


# -- sdists --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_damaged_sdists_are_refused_with_rewheel_errors_only(tmp_path: Path, fmt: str) -> None:
    """Every reader of an sdist (its PKG-INFO while resolving, its extraction, its member
    times) refuses a damaged one with a RewheelError: never a traceback of tarfile or zipfile."""
    whole = make_sdist(SdistSpec("demo", "1.0", sdist_format=fmt), tmp_path / "whole")
    readers = {
        "read_pkg_info": read_pkg_info,
        "extract_sdist": lambda p: extract_sdist(p, p.parent / "out", package="demo"),
        "source_date_epoch": source_date_epoch,
    }
    escaped = []
    for i, data in enumerate(damaged(whole.read_bytes(), seed=len(fmt))):
        path = tmp_path / str(i) / whole.name
        path.parent.mkdir()
        path.write_bytes(data)
        for name, read in readers.items():
            try:
                read(path)
            except RewheelError:
                pass
            except Exception as exc:  # what the test looks for
                escaped.append(f"{name} of variant {i}: {type(exc).__name__}: {exc}")
    assert escaped == []


def test_damaged_wheels_raise_only_what_their_readers_say(tmp_path: Path) -> None:
    """A damaged wheel (a build's output, an upstream's pre-built one) raises a RewheelError or
    one of ``READ_ERRORS``, which every caller turns into an error of its own."""
    whole = make_wheel(SdistSpec("demo", "1.0"), tmp_path / "whole")
    escaped = []
    for i, data in enumerate(damaged(whole.read_bytes(), seed=3)):
        path = tmp_path / str(i) / whole.name
        path.parent.mkdir()
        path.write_bytes(data)
        for read in (check_wheel, read_metadata_bytes):
            try:
                read(path)
            except (RewheelError, *READ_ERRORS):
                pass
            except Exception as exc:  # what the test looks for
                escaped.append(f"{read.__name__} of variant {i}: {type(exc).__name__}: {exc}")
    assert escaped == []


def test_tar_setuid_setgid_sticky_and_world_writable_bits_are_stripped(
    tmp_path: Path, no_umask: None
) -> None:
    archive = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [
            _tar_entry("demo-1.0", tarfile.DIRTYPE, mode=0o7777),
            _tar_file("demo-1.0/suid", 0o4755),
            _tar_file("demo-1.0/sgid", 0o2755),
            _tar_file("demo-1.0/sticky", 0o1644),
            _tar_file("demo-1.0/writable", 0o666),
            _tar_entry("demo-1.0/sub", tarfile.DIRTYPE, mode=0o6777),
        ],
    )
    root = extract_sdist(archive, tmp_path / "work")
    modes = {p.name: p.stat().st_mode for p in [root, *root.iterdir()]}
    assert all(mode & HIGH_BITS == 0 for mode in modes.values()), modes
    for name in ("suid", "sgid", "sticky", "writable"):
        assert modes[name] & (stat.S_IWGRP | stat.S_IWOTH) == 0, name
    assert modes["suid"] & stat.S_IXUSR  # the executable bit itself is kept


def test_zip_setuid_and_world_writable_bits_are_stripped(tmp_path: Path, no_umask: None) -> None:
    archive = tmp_path / "demo-1.0.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, mode in [("demo-1.0/suid", 0o104777), ("demo-1.0/plain", 0o100666)]:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, b"x")
    root = extract_sdist(archive, tmp_path / "work")
    assert stat.S_IMODE((root / "suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "plain").stat().st_mode) == 0o644


def test_two_sdists_never_share_a_tree(tmp_path: Path) -> None:
    """The first plants a link, the second writes through the same name: each extraction gets
    its own new directory, so the second never meets the first's link."""
    outside = tmp_path / "victim"
    outside.mkdir()
    first = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [
            _tar_entry("demo-1.0", tarfile.DIRTYPE),
            _tar_entry("demo-1.0/real", tarfile.DIRTYPE),
            _tar_entry("demo-1.0/pkg", tarfile.SYMTYPE, link="real"),  # inside: allowed
        ],
    )
    (tmp_path / "other").mkdir()
    second = _tar(
        tmp_path / "other" / "demo-1.0.tar.gz", [_tar_file("demo-1.0/pkg/planted.py", data=b"evil")]
    )
    work = tmp_path / "work"
    a = extract_sdist(first, work, package="demo", allow_links=True)
    b = extract_sdist(second, work, package="demo", allow_links=True)
    assert a != b and a.parent != b.parent
    assert (a / "pkg").is_symlink()
    assert list((a / "real").iterdir()) == []  # nothing was written through the first's link
    assert not (b / "pkg").is_symlink()
    assert (b / "pkg" / "planted.py").read_bytes() == b"evil"
    assert list(outside.iterdir()) == []
    # Named extractions (as the pipeline makes them) must be new as well.
    extract_sdist(first, work, package="demo", name="demo-1.0", allow_links=True)
    with pytest.raises(RewheelError, match="already exists"):
        extract_sdist(second, work, package="demo", name="demo-1.0", allow_links=True)


def test_zip_member_under_a_file_is_refused_and_cleaned(tmp_path: Path) -> None:
    archive = tmp_path / "demo-1.0.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("demo-1.0/link", b"../../outside")
        zf.writestr("demo-1.0/link/evil", b"x")
    with pytest.raises(RewheelError):
        extract_sdist(archive, tmp_path / "work", package="demo")
    assert list((tmp_path / "work").iterdir()) == []


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("pkg/mod.py", False),
        ("pkg/", False),
        ("pkg/..data", False),
        ("../x", True),
        ("pkg/../../x", True),
        ("/etc/passwd", True),
        ("\\evil", True),
        ("C:/evil", True),
        ("pkg\\..\\..\\x", True),
        ("pkg/\x00x", True),
        ("", True),
    ],
)
def test_unsafe_member_name(name: str, refused: bool) -> None:
    assert (unsafe_member_name(name) is not None) == refused


def _outside_of(tmp_path: Path, dest_parent: Path) -> set[Path]:
    """Everything under tmp_path that is not under ``dest_parent`` (where extractions go)."""
    return {p for p in tmp_path.rglob("*") if not p.is_relative_to(dest_parent)}


def _cve_2025_4517_tar(path: Path, levels: int, payload: bytes, *, escape: bool = True) -> Path:
    """The public shape of CVE-2025-4517 (CPython gh-135034), aimed at ``<dest>/../..``.

    Each level is a directory with a 247-character name and a one-letter symlink to it, so the
    member names stay short (``a/b/c/...``) while the paths they resolve to grow by 248 per level.
    Past PATH_MAX, ``os.path.realpath`` (non-strict) stops resolving and goes on lexically, which
    is all tarfile's ``data`` filter checks with: ``<letters>/lll`` -> ``../`` * levels is really
    the extraction directory, but looks like a directory deep inside it, so ``escape`` ->
    ``<letters>/lll/../..`` looks inside too, and the file written through ``escape`` lands two
    levels above the extraction directory.
    """
    long_dir = "d" * 247
    letters = [chr(ord("a") + i) for i in range(levels)]
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    here = ""
    for letter in letters:
        members.append(_tar_entry(f"{here}{long_dir}", tarfile.DIRTYPE))
        members.append(_tar_entry(f"{here}{letter}", tarfile.SYMTYPE, link=long_dir))
        here += f"{letter}/"
    deep_link = here + "l" * 254
    members.append(_tar_entry(deep_link, tarfile.SYMTYPE, link="../" * levels))
    if escape:
        members.append(_tar_entry("escape", tarfile.SYMTYPE, link=deep_link + "/../.."))
        members.append(_tar_file("escape/outside/evil.pth", data=payload))
    return _tar(path, members)


@pytest.mark.parametrize("allow_links", [False, True], ids=["links-refused", "links-allowed"])
def test_cve_2025_4517_symlink_chain_past_path_max_is_refused(
    tmp_path: Path, allow_links: bool
) -> None:
    """On Pythons whose tarfile has the hole (3.11.7 here) the data filter lets this write
    ``outside/evil.pth``; the extraction must refuse it and write nothing outside its folder."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "archives").mkdir()
    work = tmp_path / "work"
    levels = 16
    dest = work / "src"
    # Really past PATH_MAX: what the deep link's path resolves to is too long to lstat.
    assert len(str(dest)) + levels * 248 + 1 + 254 > os.pathconf("/", "PC_PATH_MAX")
    archive = _cve_2025_4517_tar(tmp_path / "archives" / "evil-1.0.tar.gz", levels, b"import os\n")
    before = _outside_of(tmp_path, work)
    with pytest.raises(UnsafeArchiveError) as info:
        extract_sdist(archive, work, package="evil", name="src", allow_links=allow_links)
    assert info.value.package == "evil"
    # With links allowed, "a" itself or "a/ddd..." through it; without, the links are only noted
    # for copying and "escape" is refused by its text ('..' after a name).
    assert ("member 'a" if allow_links else "member 'escape'") in str(info.value)
    assert list((tmp_path / "outside").iterdir()) == []
    assert _outside_of(tmp_path, work) == before
    assert list(work.iterdir()) == []


def test_link_that_climbs_after_a_name_is_refused_whatever_the_member_order(
    tmp_path: Path,
) -> None:
    """``m -> a/b/l/../../..`` reads as ``.`` but, once ``a/b/l -> ../../q`` exists, the kernel
    resolves it to ``<dest>/..``: a text-only check must not accept ``..`` after a name."""
    climbing: tuple[tarfile.TarInfo, bytes | None]
    climbing = _tar_entry("demo-1.0/m", tarfile.SYMTYPE, link="a/b/l/../../..")
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [
        _tar_entry("demo-1.0/q", tarfile.DIRTYPE),
        _tar_entry("demo-1.0/a/b", tarfile.DIRTYPE),
        _tar_entry("demo-1.0/a/b/l", tarfile.SYMTYPE, link="../../q"),
    ]
    for order in ([climbing, *members], [*members, climbing]):
        archive = _tar(tmp_path / "demo-1.0.tar.gz", order)
        with pytest.raises(UnsafeArchiveError, match=r"'\.\.' after a name"):
            extract_sdist(archive, tmp_path / "work", package="demo", allow_links=True)
        assert list((tmp_path / "work").iterdir()) == []


def test_member_through_an_extracted_link_is_refused(tmp_path: Path) -> None:
    """Even a link that stays inside is never written through (it could be swapped or climb)."""
    archive = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [
            _tar_entry("demo-1.0/real", tarfile.DIRTYPE),
            _tar_entry("demo-1.0/pkg", tarfile.SYMTYPE, link="real"),
            _tar_file("demo-1.0/pkg/planted.py", data=b"evil"),
        ],
    )
    with pytest.raises(UnsafeArchiveError, match=r"runs through the symbolic link 'demo-1\.0/pkg'"):
        extract_sdist(archive, tmp_path / "work", package="demo", allow_links=True)
    assert list((tmp_path / "work").iterdir()) == []


@pytest.mark.parametrize(
    "second",
    [
        _tar_file("demo-1.0/link", data=b"replaces the link"),
        _tar_entry("demo-1.0/link", tarfile.SYMTYPE, link="other"),
        _tar_entry("demo-1.0/link", tarfile.LNKTYPE, link="demo-1.0/other"),
    ],
    ids=["file", "symlink", "hardlink"],
)
def test_a_member_never_replaces_a_link(
    tmp_path: Path, second: tuple[tarfile.TarInfo, bytes | None]
) -> None:
    archive = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [
            _tar_file("demo-1.0/other"),
            _tar_entry("demo-1.0/link", tarfile.SYMTYPE, link="other"),
            second,
        ],
    )
    with pytest.raises(UnsafeArchiveError, match="would replace the symbolic link"):
        extract_sdist(archive, tmp_path / "work", package="demo", allow_links=True)


@pytest.mark.parametrize(
    ("members", "why"),
    [
        (
            [
                _tar_entry("demo-1.0/real", tarfile.DIRTYPE),
                _tar_file("demo-1.0/real/f"),
                _tar_entry("demo-1.0/pkg", tarfile.SYMTYPE, link="real"),
                _tar_entry("demo-1.0/hard", tarfile.LNKTYPE, link="demo-1.0/pkg/f"),
            ],
            "runs through the symbolic link",
        ),
        (
            [
                _tar_file("demo-1.0/f"),
                _tar_entry("demo-1.0/sym", tarfile.SYMTYPE, link="f"),
                _tar_entry("demo-1.0/hard", tarfile.LNKTYPE, link="demo-1.0/sym"),
            ],
            "hard link to the symbolic link",
        ),
        ([_tar_entry("demo-1.0/hard", tarfile.LNKTYPE, link="demo-1.0/nothing")], "not extracted"),
        ([_tar_entry("demo-1.0/hard", tarfile.LNKTYPE, link="demo-1.0/../..")], "not a member"),
    ],
    ids=["through-symlink", "to-symlink", "to-missing", "dotdot"],
)
def test_hard_links_only_to_earlier_files_of_the_tree(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], why: str
) -> None:
    archive = _tar(tmp_path / "demo-1.0.tar.gz", members)
    with pytest.raises(UnsafeArchiveError, match=why):
        extract_sdist(archive, tmp_path / "work", package="demo", allow_links=True)
    assert list((tmp_path / "work").iterdir()) == []


def _zip_with_link(path: Path, link: str, target: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("demo-1.0/real.txt", b"data")
        info = zipfile.ZipInfo(link)
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return path


def test_zip_links_follow_the_same_rules(tmp_path: Path) -> None:
    inside = _zip_with_link(tmp_path / "demo-1.0.zip", "demo-1.0/sym.txt", "real.txt")
    copied = extract_sdist(inside, tmp_path / "work", package="demo")
    assert not (copied / "sym.txt").is_symlink() and (copied / "sym.txt").read_bytes() == b"data"
    folder = _zip_with_link(tmp_path / "folder-1.0.zip", "demo-1.0/sym.txt", ".")
    with pytest.raises(UnsafeArchiveError, match="allow_links"):
        extract_sdist(folder, tmp_path / "work3", package="demo")
    root = extract_sdist(inside, tmp_path / "work", package="demo", allow_links=True)
    assert (root / "sym.txt").is_symlink() and (root / "sym.txt").read_bytes() == b"data"
    out = _zip_with_link(tmp_path / "evil-1.0.zip", "demo-1.0/sym.txt", "../../../etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="leaves the extraction directory"):
        extract_sdist(out, tmp_path / "work2", package="evil", allow_links=True)
    assert list((tmp_path / "work2").iterdir()) == []


@pytest.mark.parametrize(
    ("member", "target", "refused"),
    [
        ("d/link", "x", False),
        ("d/link", "./x/../", True),
        ("d/link", "..", False),  # the extraction directory itself
        ("d/e/link", "../../x/y", False),
        ("d/link", "../..", True),
        ("link", "..", True),
        ("d/link", "x/../y", True),
        ("d/link", "/etc/passwd", True),
        ("d/link", "C:/evil", True),
        ("d/link", "..\\..\\x", True),
        ("d/link", "", True),
        ("d/link", "x\x00", True),
    ],
)
def test_link_target_problem(member: str, target: str, refused: bool) -> None:
    parts = tuple(member.split("/"))
    assert (link_target_problem(parts, target) is not None) == refused


# -- wheels at publish time ----------------------------------------------------------------------


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def _rewrite_wheel(
    wheel: Path,
    *,
    extra: Sequence[tuple[zipfile.ZipInfo, bytes]] = (),
    record_extra: str = "",
) -> Path:
    """``wheel`` with more members and RECORD lines, rewritten in place."""
    with zipfile.ZipFile(wheel) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    out = io.BytesIO()
    # zipfile warns about a duplicate name, which is just what some cases want.
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as zf:
        warnings.simplefilter("ignore")
        for info, data in members:
            if info.filename.endswith(".dist-info/RECORD"):
                data += record_extra.encode()
            zf.writestr(info, data)
        for info, data in extra:
            zf.writestr(info, data)
    wheel.write_bytes(out.getvalue())
    return wheel


def _member(name: str, mode: int = 0o100644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


HOSTILE_WHEELS = {
    "dotdot-member": {"extra": [(_member("../../evil.py"), b"x")]},
    "nested-dotdot-member": {"extra": [(_member("demo/../../evil.py"), b"x")]},
    "absolute-member": {"extra": [(_member("/tmp/rewheel-evil.py"), b"x")]},
    "backslash-member": {"extra": [(_member("demo\\..\\..\\evil.py"), b"x")]},
    "data-scheme-dotdot": {"extra": [(_member("demo-1.0.data/data/../../../evil"), b"x")]},
    "symlink-member": {"extra": [(_member("demo/link", stat.S_IFLNK | 0o777), b"/etc/passwd")]},
    "device-member": {"extra": [(_member("demo/dev", stat.S_IFCHR | 0o644), b"")]},
    "duplicate-member": {"extra": [(_member("demo/__init__.py"), b"import os\n")]},
    "record-absolute": {"record_extra": _record_line("/etc/cron.d/evil", b"x")},
    "record-dotdot": {"record_extra": _record_line("../../../bin/evil", b"x")},
}


@pytest.mark.parametrize("case", sorted(HOSTILE_WHEELS))
def test_publish_refuses_hostile_wheels(tmp_path: Path, case: str) -> None:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    wheel = make_wheel(SdistSpec("demo", "1.0"), tmp_path / "built")
    _rewrite_wheel(wheel, **HOSTILE_WHEELS[case])  # type: ignore[arg-type]
    with pytest.raises(UnsafeArchiveError) as info:
        repo.publish_wheel(wheel)
    assert info.value.package == "demo"
    assert info.value.step == "publish"
    assert wheel.name in str(info.value)
    assert list(repo.wheels_dir.iterdir()) == []
    repo.regenerate_index()
    assert not (repo.simple_dir / "demo").exists()


def test_publish_accepts_members_of_the_data_schemes(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    wheel = make_wheel(SdistSpec("demo", "1.0"), tmp_path / "built")
    data_member = _member("demo-1.0.data/scripts/tool")
    _rewrite_wheel(wheel, extra=[(data_member, b"#!python\n")])
    assert repo.publish_wheel(wheel).filename == wheel.name


# -- installed RECORD entries at verify time -----------------------------------------------------


def _fake_install(venv: Path, wheel: Path) -> Path:
    """Install ``wheel`` by hand into a fresh venv (python -m venv, no pip); its dist-info."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    record = ""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            if info.filename.endswith("/RECORD"):
                continue
            (site / info.filename).parent.mkdir(parents=True, exist_ok=True)
            (site / info.filename).write_bytes(data)
            record += _record_line(info.filename, data)
    (dist_info,) = site.glob("*.dist-info")
    (dist_info / "RECORD").write_text(record + f"{dist_info.name}/RECORD,,\n")
    return dist_info


def test_record_entries_escaping_site_packages_are_reported(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    ref = repo.publish_wheel(make_wheel(SdistSpec("demo", "1.0"), tmp_path / "built"))
    venv = tmp_path / "venv"
    dist_info = _fake_install(venv, repo.wheel_path(ref))
    wheels = [(ref, repo.wheel_path(ref))]
    assert verify_venv(venv, wheels).ok

    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"x")
    (venv / "bin" / "evil").write_bytes(b"x")
    # A symlinked directory inside site-packages that points out of the venv.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "mod.py").write_bytes(b"x")
    (dist_info.parent / "escape").symlink_to(tmp_path / "elsewhere")
    hostile = {
        "../../../../outside.txt": "outside the venv",
        str(outside): "outside the venv",
        "escape/mod.py": "outside the venv",
        "../../../bin/evil": "not a file of",
    }
    with (dist_info / "RECORD").open("a") as f:
        for path in hostile:
            f.write(_record_line(path, b"x"))
    report = verify_venv(venv, wheels)
    found = {p.path: p.reason for p in report.problems}
    for path, reason in hostile.items():
        key = "bin/evil" if path.endswith("bin/evil") else path
        assert key in found, (path, report.problems)
        assert reason in found[key], found[key]
    assert not report.ok


# -- links extracted as copies (links not allowed, the default) -----------------------------------


def test_link_to_a_later_member_is_copied(tmp_path: Path) -> None:
    """Copies are made once every member is written, so the target may come after the link."""
    archive = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [
            _tar_entry("demo-1.0/docs/CONTRIBUTING.md", tarfile.SYMTYPE, link="../CONTRIBUTING.md"),
            _tar_entry("demo-1.0/run", tarfile.SYMTYPE, link="bin/run.sh"),
            _tar_file("demo-1.0/CONTRIBUTING.md", data=b"be nice"),
            _tar_file("demo-1.0/bin/run.sh", mode=0o4777, data=b"#!/bin/sh\n"),
        ],
    )
    root = extract_sdist(archive, tmp_path / "work", package="demo")
    copy = root / "docs" / "CONTRIBUTING.md"
    assert not copy.is_symlink() and copy.read_bytes() == b"be nice"
    assert not (root / "run").is_symlink() and (root / "run").read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE((root / "run").lstat().st_mode) == 0o755  # the target's, normalized


def test_hard_link_is_copied(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [
            _tar_file("demo-1.0/a.txt", data=b"same"),
            _tar_entry("demo-1.0/b.txt", tarfile.LNKTYPE, link="demo-1.0/a.txt"),
        ],
    )
    root = extract_sdist(archive, tmp_path / "work", package="demo")
    assert (root / "b.txt").read_bytes() == b"same"
    assert (root / "b.txt").stat().st_ino != (root / "a.txt").stat().st_ino
    assert (root / "b.txt").stat().st_nlink == 1


def test_link_to_a_link_is_followed_a_few_hops(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [
            _tar_entry("demo-1.0/x/first", tarfile.SYMTYPE, link="../second"),
            _tar_entry("demo-1.0/second", tarfile.LNKTYPE, link="demo-1.0/third"),
            _tar_entry("demo-1.0/third", tarfile.SYMTYPE, link="real"),
            _tar_file("demo-1.0/real", data=b"end"),
        ],
    )
    root = extract_sdist(archive, tmp_path / "work", package="demo")
    for name in ("x/first", "second", "third"):
        assert not (root / name).is_symlink() and (root / name).read_bytes() == b"end"
    longest = extract_sdist(_tar(tmp_path / "chain-1.0.tar.gz", _chain(9)), tmp_path / "work")
    assert (longest / "l0").read_bytes() == b"end"  # 8 hops from l0 to l8


def _chain(length: int) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    links = [_tar_entry(f"demo-1.0/l{i}", tarfile.SYMTYPE, link=f"l{i + 1}") for i in range(length)]
    return [*links, _tar_file(f"demo-1.0/l{length}", data=b"end")]


@pytest.mark.parametrize(
    ("members", "why"),
    [
        (
            [
                _tar_file("demo-1.0/sub/f"),
                _tar_entry("demo-1.0/l", tarfile.LNKTYPE, link="demo-1.0/sub"),
            ],
            "the directory 'demo-1.0/sub'",
        ),
        (
            [_tar_file("demo-1.0/f"), _tar_entry("demo-1.0/l", tarfile.SYMTYPE, link="..")],
            "the extraction directory",
        ),
        ([_tar_entry("demo-1.0/l", tarfile.SYMTYPE, link="gone")], "which is not extracted"),
        (
            [_tar_entry("demo-1.0/l", tarfile.LNKTYPE, link="demo-1.0/gone")],
            "which is not extracted",
        ),
        (
            [
                _tar_entry("demo-1.0/a", tarfile.SYMTYPE, link="b"),
                _tar_entry("demo-1.0/b", tarfile.SYMTYPE, link="a"),
            ],
            "a loop",
        ),
        (_chain(10), "a chain of more than 8 links to links"),
        (
            # A path through a link to a file.
            [
                _tar_file("demo-1.0/real"),
                _tar_entry("demo-1.0/l", tarfile.SYMTYPE, link="d/f"),
                _tar_entry("demo-1.0/d", tarfile.SYMTYPE, link="real"),
            ],
            "'demo-1.0/real/f', whose folder is not extracted",
        ),
    ],
    ids=[
        "hard-to-folder",
        "to-root",
        "to-missing",
        "hard-to-missing",
        "loop",
        "long-chain",
        "through-a-file",
    ],
)
def test_links_that_name_no_file_are_refused_by_default(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], why: str
) -> None:
    archive = _tar(tmp_path / "demo-1.0.tar.gz", members)
    with pytest.raises(UnsafeArchiveError, match="allow_links = true") as info:
        extract_sdist(archive, tmp_path / "work", package="demo")
    assert why in str(info.value)
    assert list((tmp_path / "work").iterdir()) == []


def test_a_copy_never_replaces_a_later_member(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [
            _tar_file("demo-1.0/real"),
            _tar_entry("demo-1.0/l", tarfile.SYMTYPE, link="real"),
            _tar_file("demo-1.0/l/inside"),
        ],
    )
    with pytest.raises(UnsafeArchiveError, match="would replace the directory"):
        extract_sdist(archive, tmp_path / "work", package="demo")


def test_many_links_to_one_big_file_hit_the_size_limit(tmp_path: Path) -> None:
    """A bomb: one big file (compresses to nothing) and many links to it. Each copy counts."""
    big = b"\0" * (1 << 20)
    members = [_tar_file("demo-1.0/big", data=big)]
    members += [_tar_entry(f"demo-1.0/l{i}", tarfile.SYMTYPE, link="big") for i in range(20)]
    archive = _tar(tmp_path / "demo-1.0.tar.gz", members)
    limits = ExtractLimits(max_total_size=8 << 20)
    with pytest.raises(UnsafeArchiveError, match="uncompressed size exceeds"):
        extract_sdist(archive, tmp_path / "work", package="demo", limits=limits)
    assert list((tmp_path / "work").iterdir()) == []
    zipped = tmp_path / "demo-1.0.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("demo-1.0/big", big)
        for i in range(20):
            info = zipfile.ZipInfo(f"demo-1.0/l{i}")
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "big")
    with pytest.raises(UnsafeArchiveError, match="uncompressed size exceeds"):
        extract_sdist(zipped, tmp_path / "work", package="demo", limits=limits)
    assert list((tmp_path / "work").iterdir()) == []


# -- links to folders, extracted as copies of the folder (links not allowed, the default) --------


def _no_links_under(root: Path) -> None:
    assert not [p for p in root.rglob("*") if p.is_symlink()]


def test_a_link_to_a_folder_is_copied_with_the_links_inside_it(tmp_path: Path) -> None:
    """The shape of real sdists: ``pkg/docs -> ../doc`` (before its target in the archive), a
    folder that links a file (``LICENSE -> ../LICENSE``) and a folder of its own
    (``img -> ../assets``), and a path through a link (``readme -> docs/index.rst``)."""
    archive = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [
            _tar_entry("demo-1.0/pkg/docs", tarfile.SYMTYPE, link="../doc"),
            _tar_entry("demo-1.0/readme", tarfile.SYMTYPE, link="pkg/docs/index.rst"),
            _tar_file("demo-1.0/pkg/__init__.py", data=b""),
            _tar_file("demo-1.0/doc/index.rst", data=b"Demo"),
            _tar_file("demo-1.0/doc/api/ref.rst", data=b"ref"),
            _tar_file("demo-1.0/doc/run.sh", mode=0o4777, data=b"#!/bin/sh\n"),
            _tar_entry("demo-1.0/doc/LICENSE", tarfile.SYMTYPE, link="../LICENSE"),
            _tar_entry("demo-1.0/doc/img", tarfile.SYMTYPE, link="../assets"),
            _tar_file("demo-1.0/LICENSE", data=b"MIT"),
            _tar_file("demo-1.0/assets/logo.png", data=b"\x89PNG"),
        ],
    )
    root = extract_sdist(archive, tmp_path / "work", package="demo")
    docs = root / "pkg" / "docs"
    assert docs.is_dir() and not docs.is_symlink()
    found = {str(p.relative_to(docs)): p.read_bytes() for p in docs.rglob("*") if p.is_file()}
    assert found == {
        "index.rst": b"Demo",
        "api/ref.rst": b"ref",
        "run.sh": b"#!/bin/sh\n",
        "LICENSE": b"MIT",
        "img/logo.png": b"\x89PNG",
    }
    assert stat.S_IMODE((docs / "run.sh").stat().st_mode) == 0o755  # the target's, normalized
    assert (root / "readme").read_bytes() == b"Demo"
    assert (root / "doc" / "LICENSE").read_bytes() == b"MIT"  # the link inside, copied too
    _no_links_under(tmp_path / "work")


def test_a_zip_link_to_a_folder_is_copied(tmp_path: Path) -> None:
    zipped = tmp_path / "demo-1.0.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("demo-1.0/doc/index.rst", "Demo")
        info = zipfile.ZipInfo("demo-1.0/docs")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "doc")
    root = extract_sdist(zipped, tmp_path / "work", package="demo")
    assert (root / "docs" / "index.rst").read_bytes() == b"Demo"
    _no_links_under(tmp_path / "work")


def _folder_chain(length: int) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    links = [_tar_entry(f"demo-1.0/l{i}", tarfile.SYMTYPE, link=f"l{i + 1}") for i in range(length)]
    return [*links, _tar_file(f"demo-1.0/l{length}/f", data=b"end")]


def _fan_out(levels: int, files: list[tuple[tarfile.TarInfo, bytes | None]]) -> list[Any]:
    """Folder d0 holds ``files``; each d<i> holds two links to d<i-1>: 2**levels copies of d0."""
    members = list(files)
    for i in range(1, levels + 1):
        for side in ("a", "b"):
            members.append(
                _tar_entry(f"demo-1.0/d{i}/{side}", tarfile.SYMTYPE, link=f"../d{i - 1}")
            )
    members.append(_tar_entry("demo-1.0/top", tarfile.SYMTYPE, link=f"d{levels}"))
    return members


@pytest.mark.parametrize(
    ("members", "why"),
    [
        (
            [_tar_file("demo-1.0/a/f"), _tar_entry("demo-1.0/a/up", tarfile.SYMTYPE, link="..")],
            "the directory 'demo-1.0', which holds it (its copy would never end)",
        ),
        (
            [_tar_file("demo-1.0/a/f"), _tar_entry("demo-1.0/a/me", tarfile.SYMTYPE, link=".")],
            "the directory 'demo-1.0/a', which holds it (its copy would never end)",
        ),
        (
            # Through another link: b/back names a, which holds the link a/x being copied.
            [
                _tar_file("demo-1.0/a/f"),
                _tar_entry("demo-1.0/a/x", tarfile.SYMTYPE, link="../b"),
                _tar_entry("demo-1.0/b/back", tarfile.SYMTYPE, link="../a"),
            ],
            "which holds it (its copy would never end)",
        ),
        (
            # A loop that does not hold the first link: b/y -> c, c/z -> b.
            [
                _tar_entry("demo-1.0/a/x", tarfile.SYMTYPE, link="../b"),
                _tar_entry("demo-1.0/b/y", tarfile.SYMTYPE, link="../c"),
                _tar_entry("demo-1.0/c/z", tarfile.SYMTYPE, link="../b"),
            ],
            "a loop of links to folders that hold them",
        ),
        (
            [
                _tar_file("demo-1.0/real/f"),
                _tar_entry("demo-1.0/a", tarfile.SYMTYPE, link="b"),
                _tar_entry("demo-1.0/b", tarfile.SYMTYPE, link="a/f"),
            ],
            "a chain of more than 8 links to links (or a loop)",
        ),
        (_folder_chain(10), "a chain of more than 8 links to links"),
        (
            # A member written where a link to a folder is to be copied.
            [
                _tar_file("demo-1.0/real/f"),
                _tar_entry("demo-1.0/l", tarfile.SYMTYPE, link="real"),
                _tar_file("demo-1.0/l/planted.py"),
            ],
            "would replace the directory of the same name",
        ),
    ],
    ids=["parent", "itself", "through-a-link", "loop", "loop-through", "long-chain", "planted"],
)
def test_links_to_folders_that_never_end_or_lead_nowhere_are_refused(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], why: str
) -> None:
    archive = _tar(tmp_path / "demo-1.0.tar.gz", members)
    with pytest.raises(UnsafeArchiveError) as info:
        extract_sdist(archive, tmp_path / "work", package="demo")
    assert why in str(info.value)
    assert info.value.package == "demo"
    assert list((tmp_path / "work").iterdir()) == []


def test_a_folder_chain_of_eight_hops_is_copied(tmp_path: Path) -> None:
    root = extract_sdist(_tar(tmp_path / "demo-1.0.tar.gz", _folder_chain(9)), tmp_path / "work")
    assert (root / "l0" / "f").read_bytes() == b"end"


def test_links_to_folders_that_fan_out_are_counted_against_the_bomb_limits(
    tmp_path: Path,
) -> None:
    """d0 is copied 2**12 times through links to links of folders: each copy's bytes and files
    count, so the fan-out stops at the limits instead of filling the disk."""
    big = [_tar_file("demo-1.0/d0/big", data=b"\0" * (1 << 20))]
    archive = _tar(tmp_path / "demo-1.0.tar.gz", _fan_out(12, big))
    with pytest.raises(UnsafeArchiveError, match="uncompressed size exceeds"):
        extract_sdist(archive, tmp_path / "work", limits=ExtractLimits(max_total_size=16 << 20))
    assert list((tmp_path / "work").iterdir()) == []
    small = [_tar_file(f"demo-1.0/d0/f{i}", data=b"") for i in range(8)]
    archive = _tar(tmp_path / "demo-1.0.tar.gz", _fan_out(12, small))
    with pytest.raises(UnsafeArchiveError, match="more than 2000 members"):
        extract_sdist(archive, tmp_path / "work", limits=ExtractLimits(max_members=2000))
    assert list((tmp_path / "work").iterdir()) == []


def test_a_folders_copy_deeper_than_the_depth_limit_is_refused(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "demo-1.0.tar.gz",
        [
            _tar_file("demo-1.0/a/b/c/f"),
            _tar_entry("demo-1.0/x/y/l", tarfile.SYMTYPE, link="../../a"),
        ],
    )
    with pytest.raises(UnsafeArchiveError, match="whose copy would be deeper than 5 folders"):
        extract_sdist(archive, tmp_path / "work", limits=ExtractLimits(max_depth=5))
    assert list((tmp_path / "work").iterdir()) == []


def test_the_cve_2025_4517_chain_of_links_to_folders_is_never_copied(tmp_path: Path) -> None:
    """Without its last link (refused by its text alone), the chain is links to folders: the
    letters name long folders through which the next level's members are written, and the deep
    link names the extraction directory. Copying them as folders is refused, nothing written."""
    (tmp_path / "archives").mkdir()
    work = tmp_path / "work"
    archive = _cve_2025_4517_tar(tmp_path / "archives" / "evil-1.0.tar.gz", 16, b"", escape=False)
    before = _outside_of(tmp_path, work)
    with pytest.raises(UnsafeArchiveError) as info:
        extract_sdist(archive, work, package="evil", name="src")
    # The next level's members made "a" a folder, which the copy of the link "a" may not replace.
    assert "member 'a': would replace the directory of the same name" in str(info.value)
    assert _outside_of(tmp_path, work) == before
    assert list(work.iterdir()) == []
