"""Hostile archives beyond tests/test_extract.py: mode bits, sdists that combine, wheels at publish
time and RECORD entries that escape at verify time."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import tarfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from support.sdists import SdistSpec, make_wheel

from rewheel.errors import RewheelError, UnsafeArchiveError
from rewheel.extract import extract_sdist, unsafe_member_name
from rewheel.repository import Repository
from rewheel.verify import verify_venv


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
    a = extract_sdist(first, work, package="demo")
    b = extract_sdist(second, work, package="demo")
    assert a != b and a.parent != b.parent
    assert (a / "pkg").is_symlink()
    assert list((a / "real").iterdir()) == []  # nothing was written through the first's link
    assert not (b / "pkg").is_symlink()
    assert (b / "pkg" / "planted.py").read_bytes() == b"evil"
    assert list(outside.iterdir()) == []
    # Named extractions (as the pipeline makes them) must be new as well.
    extract_sdist(first, work, package="demo", name="demo-1.0")
    with pytest.raises(RewheelError, match="already exists"):
        extract_sdist(second, work, package="demo", name="demo-1.0")


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
    """Install ``wheel`` by hand into a minimal venv layout; the dist-info directory."""
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (venv / "bin").mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.0\n")
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
