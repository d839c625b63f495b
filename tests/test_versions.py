"""The one place versions are sorted and compared (rewheel.core.versions)."""

from __future__ import annotations

from rewheel.core.versions import newest_first, normal_version, same_version, version_key


def test_valid_versions_sort_in_pep440_order_and_the_rest_after_as_text() -> None:
    versions = ["1.10", "not-a-version", "1.9", "1.0rc1", "1.0", "abc"]
    assert sorted(versions, key=version_key) == [
        "1.0rc1",
        "1.0",
        "1.9",
        "1.10",
        "abc",
        "not-a-version",
    ]
    assert newest_first(versions) == ["1.10", "1.9", "1.0", "1.0rc1", "abc", "not-a-version"]


def test_spellings_of_one_release_meet() -> None:
    assert normal_version("1.0-RC1") == normal_version("1.0rc1") == "1.0rc1"
    assert normal_version("not a version") == "not a version"
    assert same_version("1.0", "1.0.0") and not same_version("1.0", "1.1")
    assert same_version("x", "x") and not same_version("x", "1.0")
