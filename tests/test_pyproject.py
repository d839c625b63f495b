from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rewheel.build.pyproject import (
    LEGACY_BACKEND,
    BuildSystem,
    parse_build_system,
    read_build_system,
)
from rewheel.core.errors import ConfigError

DEFAULT = BuildSystem(requires=("setuptools>=40.8.0",), backend=LEGACY_BACKEND, backend_path=())


def test_no_pyproject_or_no_table_means_setuptools_legacy() -> None:
    assert parse_build_system(None) == DEFAULT
    assert parse_build_system({"project": {"name": "x"}}) == DEFAULT
    assert LEGACY_BACKEND == "setuptools.build_meta:__legacy__"


def test_table_without_backend_keeps_its_requires() -> None:
    bs = parse_build_system({"build-system": {"requires": ["setuptools>=64", "wheel"]}})
    assert bs == BuildSystem(("setuptools>=64", "wheel"), LEGACY_BACKEND, ())


def test_full_table() -> None:
    bs = parse_build_system(
        {
            "build-system": {
                "requires": [],
                "build-backend": "backend.sub:hooks.obj",
                "backend-path": [".", "tools/build"],
            }
        }
    )
    assert bs == BuildSystem((), "backend.sub:hooks.obj", (".", "tools/build"))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("not a table", "not a table"),
        ({"build-backend": "hatchling.build"}, "no 'requires'"),
        ({"requires": "setuptools"}, "list of strings"),
        ({"requires": [1]}, "list of strings"),
        ({"requires": ["not a valid requirement!!"]}, "invalid requirement"),
        ({"requires": [], "build-backend": 3}, "invalid build-backend"),
        ({"requires": [], "build-backend": "a b"}, "invalid build-backend"),
        ({"requires": [], "build-backend": "mod:"}, "invalid build-backend"),
        ({"requires": [], "build-backend": "mod:a:b"}, "invalid build-backend"),
        ({"requires": [], "build-backend": "1mod"}, "invalid build-backend"),
        ({"requires": [], "build-backend": "m", "backend-path": "."}, "list of strings"),
        ({"requires": [], "build-backend": "m", "backend-path": ["/abs"]}, "outside"),
        ({"requires": [], "build-backend": "m", "backend-path": [".."]}, "outside"),
        ({"requires": [], "build-backend": "m", "backend-path": ["a/../../b"]}, "outside"),
        ({"requires": [], "build-backend": "m", "backend-path": ["a\\..\\.."]}, "outside"),
        ({"requires": [], "build-backend": "m", "backend-path": ["C:\\x"]}, "outside"),
        ({"requires": [], "build-backend": "m", "backend-path": [""]}, "outside"),
    ],
)
def test_invalid_tables(table: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_build_system({"build-system": table}, package="demo")
    assert info.value.package == "demo"
    assert info.value.step == "pyproject"


def test_backend_path_may_use_dotdot_inside_the_tree() -> None:
    table = {"requires": [], "build-backend": "m", "backend-path": ["a/../b", "./c"]}
    assert parse_build_system({"build-system": table}).backend_path == ("a/../b", "./c")


def test_read_from_tree(tmp_path: Path) -> None:
    assert read_build_system(tmp_path) == DEFAULT
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.2,<4"]\nbuild-backend = "flit_core.buildapi"\n'
    )
    assert read_build_system(tmp_path) == BuildSystem(
        ("flit_core>=3.2,<4",), "flit_core.buildapi", ()
    )


def test_read_invalid_toml(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[build-system\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        read_build_system(tmp_path, package="demo")
    assert info.value.package == "demo"
    (tmp_path / "pyproject.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_build_system(tmp_path, package="demo")
