"""Pure decisions of the build steps (rewheel.core.policy)."""

from __future__ import annotations

from fakes import make_record
from packaging.tags import Tag
from packaging.utils import canonicalize_name
from packaging.version import Version

from rewheel.core.policy import best_wheel, reusable_wheel
from rewheel.core.types import IndexFile, WheelRef

TAGS = [Tag("cp311", "cp311", "manylinux_2_17_x86_64"), Tag("py3", "none", "any")]


def _file(name: str, *, yanked: bool = False) -> IndexFile:
    return IndexFile(filename=name, url=f"https://x/{name}", sha256="0" * 64, yanked=yanked)


def test_the_most_specific_wheel_of_that_version_wins() -> None:
    files = [
        _file("demo-1.0-py3-none-any.whl"),
        _file("demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"),
        _file("demo-1.1-cp311-cp311-manylinux_2_17_x86_64.whl"),  # another version
        _file("demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl"),  # not for this interpreter
        _file("demo-1.0.tar.gz"),
        _file("not a wheel name.whl"),
    ]
    chosen = best_wheel(files, Version("1.0"), TAGS)
    assert chosen is not None and chosen.filename.startswith("demo-1.0-cp311")
    assert best_wheel(files[:1], Version("1.0"), TAGS) == files[0]


def test_yanked_and_unfitting_wheels_are_never_chosen() -> None:
    files = [
        _file("demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", yanked=True),
        _file("demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl"),
    ]
    assert best_wheel(files, Version("1.0"), TAGS) is None


def test_a_record_is_reused_only_for_the_same_sdist_and_the_very_wheel_it_names() -> None:
    ref = WheelRef(canonicalize_name("demo"), "1.0", "demo-1.0-py3-none-any.whl", "a" * 64)
    record = make_record(
        "demo", "1.0", sdist_sha256="s" * 64, wheel=ref.filename, wheel_sha256=ref.sha256
    )
    assert reusable_wheel(record, "s" * 64, [ref]) == ref
    assert reusable_wheel(record, "t" * 64, [ref]) is None  # another sdist
    assert reusable_wheel(record, None, [ref]) is None  # an sdist without a listed hash
    replaced = WheelRef(ref.name, "1.0", ref.filename, "b" * 64)
    assert reusable_wheel(record, "s" * 64, [replaced]) is None  # the wheel was swapped
    assert reusable_wheel(record, "s" * 64, []) is None  # or is gone
