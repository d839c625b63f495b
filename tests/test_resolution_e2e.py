"""What the user reads when a resolution fails: through the command line, against a local index.

The four cases users meet: a requested name the index does not have, a requested version it does
not have, a build requirement it does not have (met in a build environment, deep in the tree),
and two requested packages that need versions of a third that cannot go together.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Upstream

from rewheel.cli import main


def bootstrap(
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *requirements: str,
) -> tuple[int, str]:
    """``rewheel bootstrap REQUIREMENTS``: its exit code and what it wrote to stderr."""
    monkeypatch.chdir(tmp_path)  # no rewheel.toml of the working folder
    args = ["bootstrap", "--repo", str(tmp_path / "repo"), "--index-url", upstream.url]
    args += ["--work-dir", str(tmp_path / "work"), "-j", "1", *requirements]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert isinstance(info.value.code, int)
    return info.value.code, capsys.readouterr().err


def test_a_requested_name_the_index_does_not_have(
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream.sdist("real", "1.0")
    code, err = bootstrap(upstream, tmp_path, capsys, monkeypatch, "real", "this-does-not-exist")
    assert code == 2, err
    assert err == (
        "rewheel: error: this-does-not-exist [resolve]: no such project on the index: "
        f"this-does-not-exist (HTTP 404 at {upstream.url}/this-does-not-exist/)\n"
        "  this-does-not-exist (requested)\n"
        "  fix: check the name 'this-does-not-exist'; if the project is on another (private) "
        "index, pass that index with --index-url\n"
    )


def test_a_requested_version_the_index_does_not_have(
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for version in ("2.30.0", "2.31.0", "2.32.0", "2.32.1"):
        upstream.sdist("requests", version)
    upstream.sdist("requests", "3.0.0b1")
    upstream.wheel("requests", "2.33.0")
    code, err = bootstrap(upstream, tmp_path, capsys, monkeypatch, "requests==999")
    assert code == 2, err
    assert err == (
        "rewheel: error: requests [resolve]: no version of requests matches requests==999\n"
        "  requests==999 (requested)\n"
        "  on the index: 6 versions, 6 outside ==999 (newest 3.0.0b1, 2.33.0, 2.32.1, …)\n"
        "  fix: ask for a version the index has; the newest it can build: requests==2.32.1\n"
    )


def test_a_build_requirement_the_index_does_not_have(
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As platformdirs, which black needs, asks for python-sbom[hatch] to build.
    upstream.sdist("hatchling", "1.27")
    upstream.sdist("platformdirs", "4.3.8", build_requires=["hatchling", "python-sbom[hatch]"])
    upstream.sdist("black", "24.1.0", install_requires=["platformdirs>=2"])
    code, err = bootstrap(upstream, tmp_path, capsys, monkeypatch, "black")
    assert code == 1, err
    headline = (
        "platformdirs==4.3.8 [resolve]: no such project on the index: python-sbom "
        f"(HTTP 404 at {upstream.url}/python-sbom/), needed by its build environment"
    )
    # Reported once in full, as it happens ...
    full = (
        f"{headline}\n"
        "  black==24.1.0 (requested) -> platformdirs==4.3.8 (install) -> "
        "python-sbom[hatch] (build-system)\n"
        "  fix: check the name 'python-sbom'; if the project is on another (private) index, pass "
        "that index with --index-url\n"
        "  or: if platformdirs builds without it, drop it in the build settings of platformdirs: "
        "in the folder given with --settings, file platformdirs.toml:\n"
        "      [build]\n"
        '      requires_remove = ["python-sbom"]\n'
    )
    assert f"platformdirs==4.3.8: FAILED: {full}" in err
    # ... and in the summary at the end: its first line, then the fix on one line.
    summary = err[err.index(f"  failed: {headline}\n") :]
    assert summary.count("requires_remove") == 1, summary
    assert err.count("requires_remove") == 2
    assert "conflicting" not in err


def test_two_requested_packages_that_conflict(
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream.sdist("c", "1.0")
    upstream.sdist("c", "2.0")
    upstream.sdist("a", "1.0", install_requires=["c==1.0"])
    upstream.sdist("b", "1.0", install_requires=["lib"])
    upstream.sdist("lib", "1.0", install_requires=["c>=2"])
    code, err = bootstrap(upstream, tmp_path, capsys, monkeypatch, "a", "b")
    assert code == 2, err
    lines = err.splitlines()
    assert lines[0] == "rewheel: error: c [resolve]: conflicting requirements for c"
    assert sorted(lines[1:3]) == [
        "  a==1.0 (requested) -> c==1.0 (install)",
        "  b==1.0 (requested) -> lib==1.0 (install) -> c>=2 (install)",
    ]
    assert lines[3].startswith("  fix: change one of these requirements so that they agree")
    assert len(lines) == 4
    assert not list((tmp_path / "repo").glob("wheels/*.whl"))
