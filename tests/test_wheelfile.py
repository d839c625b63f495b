"""repo.wheelfile, the one wheel module: reading a wheel, checking it, writing one."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from packaging.metadata import Metadata

from rewheel.core.errors import IntegrityError, RewheelError, UnsafeArchiveError
from rewheel.repo.wheelfile import (
    READ_ERRORS,
    WheelReader,
    check_wheel,
    parse_metadata,
    parse_record,
    parse_wheel_info,
    read_metadata_bytes,
    read_record,
    record_hash,
    render_record,
    requires_dist,
    unsafe_wheel_member,
    write_wheel,
)

DIST_INFO = "demo-1.0.dist-info"
METADATA = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"


def _info(name: str, mode: int = stat.S_IFREG | 0o644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def _zip(
    path: Path, members: Sequence[tuple[zipfile.ZipInfo | str, bytes]], *, hole: int = 0
) -> Path:
    """A zip of ``members`` in this order; ``hole`` bytes of nothing after the first one."""
    with zipfile.ZipFile(path, "w") as zf:
        for i, (info, data) in enumerate(members):
            zf.writestr(info, data)
            if i == 0:
                zf.start_dir += hole  # the next member starts past a (sparse) hole
    return path


def _wheel(
    tmp_path: Path, *extra: tuple[zipfile.ZipInfo | str, bytes], record: bytes = b""
) -> Path:
    members: list[tuple[zipfile.ZipInfo | str, bytes]] = [
        ("demo/__init__.py", b"x = 1\n"),
        (f"{DIST_INFO}/METADATA", METADATA),
        *extra,
        (f"{DIST_INFO}/RECORD", record),
    ]
    return _zip(tmp_path / "demo-1.0-py3-none-any.whl", members)


# -- formats ------------------------------------------------------------------------------------


def test_parse_wheel_info() -> None:
    info = parse_wheel_info(
        b"Wheel-Version: 1.0\nGenerator: x\nRoot-Is-Purelib: True \n"
        b"Tag: cp311-cp311-linux_x86_64\nTag: cp311-abi3-linux_x86_64\n"
    )
    assert info.root_is_purelib
    assert info.tags == ("cp311-cp311-linux_x86_64", "cp311-abi3-linux_x86_64")
    assert not parse_wheel_info(b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\n").root_is_purelib
    assert parse_wheel_info(b"Wheel-Version: 1.0\n") == parse_wheel_info(b"")
    assert not parse_wheel_info(b"").root_is_purelib


# What setuptools and bdist_wheel wrote for years: Metadata-Version 2.0 (never a real version),
# License-File before metadata 2.4, a Summary over two lines, a name packaging refuses.
OLD_BACKEND_METADATA = b"""\
Metadata-Version: 2.0
Name: old_thing.
Version: 1.0
Summary: two
  lines
License-File: LICENSE.txt
Requires-Python: >=2.7, !=3.0.*
Requires-Dist: six (>=1.10)
Requires-Dist: enum34; python_version < "3.4"

The description.
"""


def test_parse_metadata_reads_what_full_validation_refuses() -> None:
    raw = parse_metadata(OLD_BACKEND_METADATA)
    with pytest.raises(ExceptionGroup):
        Metadata.from_raw(raw)
    assert raw["metadata_version"] == "2.0"
    assert raw["name"] == "old_thing."
    assert raw["version"] == "1.0"
    assert raw["summary"] == "two\n  lines"
    assert raw["license_files"] == ["LICENSE.txt"]
    assert raw["requires_python"] == ">=2.7, !=3.0.*"
    assert raw["requires_dist"] == ["six (>=1.10)", 'enum34; python_version < "3.4"']
    assert raw["description"] == "The description.\n"
    assert [str(r) for r in requires_dist(OLD_BACKEND_METADATA)] == [
        "six>=1.10",
        'enum34; python_version < "3.4"',
    ]


def test_parse_metadata_decodes_utf8() -> None:
    text = 'Name: x\nSummary: Café, naïve ©\nRequires-Dist: y; extra == "é"\n'
    raw = parse_metadata(text.encode())
    assert raw["summary"] == "Café, naïve ©"
    assert [str(r) for r in requires_dist(text.encode())] == ['y; extra == "é"']


def test_parse_metadata_keeps_fields_parse_email_sets_apart() -> None:
    # Given twice though single-valued: the first value, as the email parser gave it.
    raw = parse_metadata(b"Name: first\nName: second\nVersion: 1\nVersion: 2\n")
    assert (raw["name"], raw["version"]) == ("first", "1")
    # Not UTF-8: still read (as Latin-1), not silently dropped.
    raw = parse_metadata(b"Name: x\nSummary: caf\xe9\nRequires-Dist: y\xff\n")
    assert raw["summary"] == "café"
    assert raw["requires_dist"] == ["y\xff"]
    with pytest.raises(RewheelError, match="invalid Requires-Dist"):
        requires_dist(b"Name: x\nRequires-Dist: y\xff\n")
    # Fields rewheel does not read stay out.
    assert "keywords" not in parse_metadata(b"Keywords: a\nKeywords: b\n")


def test_requires_dist() -> None:
    assert requires_dist(b"Metadata-Version: 2.1\nName: x\nVersion: 1\n") == []
    with pytest.raises(RewheelError, match="invalid Requires-Dist 'not a requirement!'"):
        requires_dist(b"Requires-Dist: not a requirement!\n")


# -- reading ------------------------------------------------------------------------------------


def test_the_reader_gives_members_in_archive_order_with_their_contents(tmp_path: Path) -> None:
    big = bytes(range(256)) * (12 << 10)  # 3 MiB: digested in several chunks
    wheel = _wheel(tmp_path, ("demo/big.bin", big), record=b"demo/__init__.py,sha256=abc,6\n")
    with zipfile.ZipFile(wheel, "a") as zf:
        zf.comment = b"a comment"
    with WheelReader(wheel) as reader:
        assert [i.filename for i in reader.members] == [
            "demo/__init__.py",
            f"{DIST_INFO}/METADATA",
            "demo/big.bin",
            f"{DIST_INFO}/RECORD",
        ]
        assert reader.comment == b"a comment"
        assert reader.read("demo/__init__.py") == b"x = 1\n"
        assert reader.read(reader.members[2]) == big
        assert reader.digest("demo/big.bin") == record_hash(big)
        assert reader.digest(reader.members[0]) == record_hash(b"x = 1\n")
        assert reader.dist_info() == DIST_INFO
        assert reader.metadata() == METADATA
        assert [(e.path, e.hash, e.size) for e in reader.record()] == [
            ("demo/__init__.py", "sha256=abc", 6)
        ]
        with pytest.raises(KeyError):
            reader.read("demo/missing.py")
    assert read_metadata_bytes(wheel) == METADATA
    assert read_record(wheel) == parse_record(b"demo/__init__.py,sha256=abc,6\n")


@pytest.mark.parametrize("folders", [[], ["demo-1.0.dist-info", "other-1.0.dist-info"]])
def test_the_reader_needs_one_dist_info_folder(tmp_path: Path, folders: list[str]) -> None:
    members = [("demo/__init__.py", b""), *((f"{f}/METADATA", METADATA) for f in folders)]
    wheel = _zip(tmp_path / "demo-1.0-py3-none-any.whl", members)
    with WheelReader(wheel) as reader:
        assert len(reader.members) == 1 + len(folders)  # reading members needs no folder
        with pytest.raises(IntegrityError, match=rf"has {len(folders)} \.dist-info directories"):
            reader.metadata()
    with pytest.raises(IntegrityError, match=r"\.dist-info directories"):
        read_record(wheel)


def test_check_wheel_accepts_a_sound_wheel(tmp_path: Path) -> None:
    check_wheel(_wheel(tmp_path, ("demo/sub/", b""), record=b"demo/__init__.py,,\n"))


def test_check_wheel_refuses_bytes_before_the_first_member(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    wheel.write_bytes(b"\0" * 16 + wheel.read_bytes())  # zip readers would skip the padding
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read(f"{DIST_INFO}/METADATA") == METADATA
    with pytest.raises(IntegrityError, match="does not start with a zip member") as info:
        check_wheel(wheel)
    assert wheel.name in str(info.value)


def test_check_wheel_refuses_a_hole_between_members(tmp_path: Path) -> None:
    members = [("demo/__init__.py", b""), (f"{DIST_INFO}/METADATA", METADATA)]
    check_wheel(_zip(tmp_path / "small.whl", members, hole=1 << 10))
    wheel = _zip(tmp_path / "big.whl", members, hole=2 << 20)
    with pytest.raises(IntegrityError, match=r"holds \d+ bytes outside its members"):
        check_wheel(wheel)


@pytest.mark.parametrize(
    ("extra", "record", "message"),
    [
        ((_info("../evil.py"), b""), "", r"member path with '\.\.'"),
        ((_info("demo/link", stat.S_IFLNK | 0o777), b"/etc/passwd"), "", "symlink member"),
        ((_info("demo/fifo", stat.S_IFIFO | 0o644), b""), "", "special file"),
        ((_info("demo/d/", stat.S_IFREG | 0o644), b""), "", "directory 'demo/d/' of type"),
        ((_info("demo/__init__.py"), b"import os\n"), "", "appears twice"),
        ((), "/etc/cron.d/evil,,\n", "RECORD lists absolute member path"),
    ],
)
def test_check_wheel_refuses_unsafe_members(
    tmp_path: Path, extra: tuple[zipfile.ZipInfo, bytes] | tuple[()], record: str, message: str
) -> None:
    duplicate = "twice" in message
    with pytest.warns(UserWarning, match="Duplicate") if duplicate else contextlib.nullcontext():
        wheel = _wheel(tmp_path, *([extra] if extra else []), record=record.encode())
    with pytest.raises(UnsafeArchiveError, match=message) as info:
        check_wheel(wheel)
    assert str(info.value).startswith(f"wheel {wheel.name}: ")


def test_check_wheel_refuses_an_unreadable_record(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, record=b"demo/\xff,,\n")
    with pytest.raises(IntegrityError, match=f"unreadable {DIST_INFO}/RECORD"):
        check_wheel(wheel)


def test_check_wheel_refuses_a_corrupt_member(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    data = wheel.read_bytes()
    at = data.index(b"x = 1\n")  # stored, not compressed: the member's bytes as they are
    wheel.write_bytes(data[:at] + b"y" + data[at + 1 :])
    with pytest.raises(IntegrityError, match=r"has a corrupt member 'demo/__init__\.py'"):
        check_wheel(wheel)


def test_check_wheel_lets_zip_errors_through(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 and then nothing a zip reader understands")
    with pytest.raises(READ_ERRORS):
        check_wheel(wheel)


def test_unsafe_wheel_member_accepts_plain_files_and_folders() -> None:
    assert unsafe_wheel_member(_info("demo/x.py")) is None
    assert unsafe_wheel_member(_info("demo/x.py", 0)) is None  # no unix mode: a plain file
    assert unsafe_wheel_member(_info("demo/", stat.S_IFDIR | 0o755)) is None
    assert unsafe_wheel_member(_info("demo/tool", stat.S_IFREG | 0o755)) is None


# -- writing ------------------------------------------------------------------------------------

WRITTEN = {
    f"{DIST_INFO}/METADATA": METADATA,
    "demo/tool": b"#!/bin/sh\n",
    "demo/__init__.py": b"x = 1\n" * 100,
    f"{DIST_INFO}/licenses/LICENSE": b"MIT\n",
    "demo/empty.txt": b"",
}


def test_record_hash_is_the_urlsafe_sha256_without_padding() -> None:
    expected = base64.urlsafe_b64encode(hashlib.sha256(b"x").digest()).decode().rstrip("=")
    assert record_hash(b"x") == f"sha256={expected}"
    assert "=" not in record_hash(b"x").removeprefix("sha256=")


def test_a_written_wheel_lists_every_member_in_a_record_that_verifies(tmp_path: Path) -> None:
    wheel = write_wheel(
        tmp_path / "demo-1.0-py3-none-any.whl",
        WRITTEN,
        executable={"demo/tool"},
        epoch=1_700_000_000,
    )
    assert wheel == tmp_path / "demo-1.0-py3-none-any.whl"
    check_wheel(wheel)
    with zipfile.ZipFile(wheel) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == [
            "demo/__init__.py",
            "demo/empty.txt",
            "demo/tool",
            f"{DIST_INFO}/METADATA",
            f"{DIST_INFO}/licenses/LICENSE",
            f"{DIST_INFO}/RECORD",
        ]
        record = parse_record(zf.read(f"{DIST_INFO}/RECORD"))
        assert [e.path for e in record] == [i.filename for i in infos]
        for entry in record[:-1]:
            data = zf.read(entry.path)
            assert data == WRITTEN[entry.path]
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert (entry.hash, entry.size) == (f"sha256={digest.decode()}", len(data))
        assert (record[-1].hash, record[-1].size) == (None, None)
        modes = {i.filename: (i.external_attr >> 16) for i in infos}
        assert {i.date_time for i in infos} == {(2023, 11, 14, 22, 13, 20)}  # in UTC
    assert modes.pop("demo/tool") == stat.S_IFREG | 0o755
    assert set(modes.values()) == {stat.S_IFREG | 0o644}
    assert not list(tmp_path.glob("*.part"))


def test_the_same_members_give_the_same_bytes(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    first = write_wheel(tmp_path / "1" / "demo-1.0-py3-none-any.whl", WRITTEN, epoch=0)
    reordered = dict(reversed(WRITTEN.items()))
    again = write_wheel(tmp_path / "2" / "demo-1.0-py3-none-any.whl", reordered, epoch=0)
    assert first.read_bytes() == again.read_bytes()
    later = write_wheel(tmp_path / "later.whl", WRITTEN, epoch=1_700_000_000)
    assert later.read_bytes() != first.read_bytes()


def test_write_wheel_clamps_times_before_1980(tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "demo-1.0-py3-none-any.whl", WRITTEN, epoch=0)
    with zipfile.ZipFile(wheel) as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"demo/__init__.py": b""}, r"one \.dist-info folder, not \[\]"),
        ({"a-1.dist-info/METADATA": b"", "b-1.dist-info/METADATA": b""}, "not .'a-1.dist-info'"),
        ({f"{DIST_INFO}/RECORD": b""}, "RECORD is written by write_wheel"),
    ],
)
def test_write_wheel_needs_one_dist_info_folder_and_writes_its_record(
    tmp_path: Path, members: dict[str, bytes], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_wheel(tmp_path / "demo-1.0-py3-none-any.whl", members)
    assert list(tmp_path.iterdir()) == []


def test_render_record_writes_plain_lines_and_quotes_what_csv_needs() -> None:
    record = render_record([("a/x.py", b"x"), ('a/b, "c".txt', b"")], "a-1.dist-info/RECORD")
    assert record.decode().splitlines() == [
        f"a/x.py,{record_hash(b'x')},1",
        f'"a/b, ""c"".txt",{record_hash(b"")},0',
        "a-1.dist-info/RECORD,,",
    ]
    assert record.endswith(b"\n") and b"\r" not in record
    assert [e.path for e in parse_record(record)] == [
        "a/x.py",
        'a/b, "c".txt',
        "a-1.dist-info/RECORD",
    ]


def test_a_written_wheel_with_a_comma_in_a_name_passes_the_checks(tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "demo-1.0-py3-none-any.whl", {**WRITTEN, "demo/a,b.txt": b"ab"})
    check_wheel(wheel)
    entries = {e.path: e for e in read_record(wheel)}
    assert (entries["demo/a,b.txt"].hash, entries["demo/a,b.txt"].size) == (record_hash(b"ab"), 2)
