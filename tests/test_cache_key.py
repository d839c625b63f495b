"""What changes a wheel's cache key, and what does not."""

from __future__ import annotations

from typing import Any

import pytest
from packaging.utils import canonicalize_name

from rewheel.build.pipeline import build_cache_key
from rewheel.build.systools import SystemTool
from rewheel.core.types import WheelRef

TOOL = WheelRef(canonicalize_name("tool"), "1.0", "tool-1.0-py3-none-any.whl", "a" * 64)
OTHER = WheelRef(canonicalize_name("other"), "2.0", "other-2.0-py3-none-any.whl", "b" * 64)
BASE: dict[str, Any] = {
    "sdist_sha256": "c" * 64,
    "build_env": [TOOL, OTHER],
    "interpreter": "cpython-3.11-cp311-cp311-manylinux_2_36_x86_64",
    "settings_digest": "d" * 64,
    "system_tools": [SystemTool("patchelf", "/usr/bin/patchelf", "0.14.3")],
}


def key(**changes: Any) -> str:
    return build_cache_key(**{**BASE, **changes})


def test_the_same_inputs_give_the_same_key() -> None:
    assert key() == key()
    # The build environment is a set: its order does not matter.
    assert key(build_env=[OTHER, TOOL]) == key()


@pytest.mark.parametrize(
    "changes",
    [
        {"sdist_sha256": "e" * 64},
        {"build_env": [TOOL]},
        {"build_env": [TOOL, WheelRef(OTHER.name, OTHER.version, OTHER.filename, "f" * 64)]},
        {"interpreter": "cpython-3.12-cp312-cp312-manylinux_2_36_x86_64"},
        {"settings_digest": "0" * 64},
        {"system_tools": [SystemTool("patchelf", "/usr/bin/patchelf", "0.18.0")]},
        {"system_tools": []},
    ],
    ids=[
        "sdist",
        "a wheel less",
        "a rebuilt wheel",
        "interpreter",
        "settings",
        "tool version",
        "no tool",
    ],
)
def test_each_input_changes_the_key(changes: dict[str, Any]) -> None:
    assert key(**changes) != key()


def test_a_wheel_with_the_same_bytes_under_another_name_is_the_same_input() -> None:
    # Only the content counts: a wheel's sha256 already says everything about it.
    renamed = WheelRef(TOOL.name, TOOL.version, "tool-1.0-0-py3-none-any.whl", TOOL.sha256)
    assert key(build_env=[renamed, OTHER]) == key()
