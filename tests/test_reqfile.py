"""Requirement and constraint files (rewheel.reqfile)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewheel.core.errors import ConfigError
from rewheel.reqfile import collect


def _names(reqs: list[object]) -> list[str]:
    return [str(r) for r in reqs]


def test_lines_comments_continuations_and_nested_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.txt").write_text("attrs>=23  # trailing comment\n-c pins.txt\n")
    (tmp_path / "sub" / "pins.txt").write_text("urllib3<3\n")
    main = tmp_path / "requirements.txt"
    main.write_text(
        "# a comment\n"
        "\n"
        "requests[socks] \\\n"
        "    >=2.31\n"
        "-r sub/more.txt\n"
        "idna; python_version >= '3'\n"
    )
    out = collect(["click"], [main], [])
    assert _names(out.requirements) == [
        "click",
        "requests[socks]>=2.31",
        "attrs>=23",
        'idna; python_version >= "3"',
    ]
    assert _names(out.constraints) == ["urllib3<3"]


def test_everything_under_a_constraints_file_is_a_constraint(tmp_path: Path) -> None:
    (tmp_path / "inner.txt").write_text("six==1.17.0\n")
    (tmp_path / "c.txt").write_text("-r inner.txt\nidna<4\n")
    out = collect([], [], [tmp_path / "c.txt"])
    assert out.requirements == []
    assert _names(out.constraints) == ["six==1.17.0", "idna<4"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("--index-url https://example.invalid/simple\n", r"r\.txt:1: option '--index-url'"),
        ("requests\n-e .\n", r"r\.txt:2: option '-e'"),
        ("foo @ https://example.invalid/foo.tar.gz\n", "direct URL requirements"),
        ("not a requirement!\n", r"invalid requirement 'not a requirement!' in .*r\.txt:1"),
        ("-r r.txt\n", "includes itself"),
        ("-r missing.txt\n", "cannot read .*missing.txt"),
    ],
)
def test_what_is_refused_names_the_file_and_line(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "r.txt").write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        collect([], [tmp_path / "r.txt"], [])
    assert info.value.step == "input"


def test_hash_options_are_collected_by_project(tmp_path: Path) -> None:
    a, b, c = "a" * 64, "B" * 64, "c" * 64
    (tmp_path / "lock.txt").write_text(
        f"Alpha_Pkg==1.0 \\\n    --hash=sha256:{a} \\\n    --hash sha256:{b}\n"
        f"beta==2.0 --hash=sha256:{c}  # a comment\n"
        "gamma\n"
    )
    out = collect([], [tmp_path / "lock.txt"], [])
    assert _names(out.requirements) == ["Alpha_Pkg==1.0", "beta==2.0", "gamma"]
    assert out.hashes == {"alpha-pkg": {a, b.lower()}, "beta": {c}}


@pytest.mark.parametrize("value", ["md5:" + "0" * 32, "sha256:abc", "sha512:" + "0" * 128])
def test_a_hash_that_is_not_a_sha256_is_refused(tmp_path: Path, value: str) -> None:
    (tmp_path / "r.txt").write_text(f"alpha==1.0 --hash={value}\n")
    with pytest.raises(ConfigError, match=r"r\.txt:1: --hash=.* is not sha256"):
        collect([], [tmp_path / "r.txt"], [])
