"""rebuild: how two wheels are compared, and which records a rebuild takes."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from fakes import make_record

from rewheel.core.errors import ConfigError
from rewheel.trust.rebuild import diff_wheels, select_records


def _zip(
    path: Path, members: dict[str, bytes], *, date: tuple[int, ...] = (2020, 1, 1, 0, 0, 0)
) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date), data)  # type: ignore[arg-type]
    return path


def test_identical_wheels_have_no_differences(tmp_path: Path) -> None:
    a = _zip(tmp_path / "a.whl", {"p/__init__.py": b"x"})
    b = _zip(tmp_path / "b.whl", {"p/__init__.py": b"x"})
    assert a.read_bytes() == b.read_bytes()
    assert diff_wheels(a, b) == [
        "same members, contents and metadata; the zip encoding itself differs"
    ]


def test_members_are_compared_by_name_and_content(tmp_path: Path) -> None:
    a = _zip(tmp_path / "a.whl", {"p/__init__.py": b"x", "p/old.py": b"", "p/same.py": b"s"})
    b = _zip(tmp_path / "b.whl", {"p/__init__.py": b"y", "p/new.py": b"", "p/same.py": b"s"})
    assert diff_wheels(a, b) == [
        "only in the published wheel: p/old.py",
        "only in the rebuilt wheel: p/new.py",
        "content differs: p/__init__.py",
    ]


def test_equal_contents_report_zip_metadata(tmp_path: Path) -> None:
    a = _zip(tmp_path / "a.whl", {"p/__init__.py": b"x"})
    b = _zip(tmp_path / "b.whl", {"p/__init__.py": b"x"}, date=(2024, 5, 6, 7, 8, 10))
    assert diff_wheels(a, b) == [
        "zip metadata differs: p/__init__.py: date_time (2020, 1, 1, 0, 0, 0) != "
        "(2024, 5, 6, 7, 8, 10)"
    ]


RECORDS = [make_record("tool-a", "1.0"), make_record("tool-a", "2.0"), make_record("app", "1.0")]


def test_select_records() -> None:
    assert [(r.name, r.version) for r in select_records(RECORDS, [])] == [
        ("app", "1.0"),
        ("tool-a", "1.0"),
        ("tool-a", "2.0"),
    ]
    assert select_records(RECORDS, ["Tool_A==2.0"]) == [RECORDS[1]]
    assert select_records(RECORDS, ["tool-a", "tool-a==1.0"]) == RECORDS[:2]
    with pytest.raises(ConfigError, match="no build record of other"):
        select_records(RECORDS, ["other"])
    with pytest.raises(ConfigError, match="not a package name"):
        select_records(RECORDS, ["=="])
