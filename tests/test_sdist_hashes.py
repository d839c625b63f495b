"""Hash-pinned requirements and PEP 751 locks as the input of a bootstrap: each listed sdist is
used only when its sha256 is among the hashes given for it, checked before anything is built."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import Upstream
from fakes import FakeSteps, FakeUpstream, Release
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.sdists import SdistSpec, make_sdist

from rewheel import app
from rewheel.cli import Runs, main
from rewheel.core.bootstrap import Bootstrapper, BootstrapResult, Prepared
from rewheel.core.errors import DigestMismatch, HashMismatch
from rewheel.index.http import HttpClient
from rewheel.index.upstream import HttpUpstream
from rewheel.repo.repository import Repository

TIMEOUT = 60


def _run(steps: FakeSteps, reqs: list[str], hashes: dict[str, set[str]]) -> BootstrapResult:
    out: list[BootstrapResult | BaseException] = []

    def target() -> None:
        try:
            out.append(
                Bootstrapper(
                    steps,
                    jobs=2,
                    keep_going=True,
                    sdist_hashes={canonicalize_name(k): v for k, v in hashes.items()},
                ).run([Requirement(r) for r in reqs])
            )
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive()
    (result,) = out
    if isinstance(result, BaseException):
        raise result
    return result


def _sdist_sha(upstream: FakeUpstream, name: str, version: str) -> str:
    for f in upstream.get_project(canonicalize_name(name)).files:
        if f.filename.endswith(f"-{version}.tar.gz"):
            assert f.sha256 is not None
            return f.sha256
    raise AssertionError(f"no sdist of {name} {version}")


PROJECTS = {"alpha": {"1.0": ["beta"]}, "beta": {"1.0": [], "2.0": []}}


def test_a_tampered_sdist_stops_the_run_before_anything_is_prepared_or_built() -> None:
    upstream = FakeUpstream(PROJECTS)
    steps = FakeSteps(upstream)
    real = _sdist_sha(upstream, "beta", "2.0")
    wanted = {"a" * 64, "b" * 64}
    with pytest.raises(HashMismatch) as info:
        _run(
            steps,
            ["alpha==1.0", "beta==2.0"],
            {"alpha": {_sdist_sha(upstream, "alpha", "1.0")}, "beta": wanted},
        )
    err = info.value
    assert (err.package, err.version, err.found, err.expected) == (
        "beta",
        "2.0",
        real,
        tuple(sorted(wanted)),
    )
    assert f"has sha256 {real}" in str(err) and "a" * 64 in str(err)
    assert "beta-2.0.tar.gz" in str(err) and err.step == "download"
    assert err.hint is not None and "nothing was built from it" in err.hint
    assert not steps.prepares and not steps.builds and not steps.published


def test_the_listed_sdists_build_and_hashes_of_other_files_do_not_matter() -> None:
    upstream = FakeUpstream(PROJECTS)
    steps = FakeSteps(upstream)
    hashes = {
        # uv and pip-compile list wheel hashes next to the sdist's: only the sdist's counts.
        "alpha": {"f" * 64, _sdist_sha(upstream, "alpha", "1.0")},
        "beta": {_sdist_sha(upstream, "beta", "2.0")},
    }
    result = _run(steps, ["alpha==1.0", "beta==2.0"], hashes)
    assert result.ok
    assert sorted(steps.builds) == ["alpha==1.0", "beta==2.0"]


def test_a_build_tool_not_listed_is_resolved_and_a_listed_one_is_held_to_its_hashes() -> None:
    projects = {
        "alpha": {"1.0": []},
        "beta": {"1.0": []},
        "tool": {"1.0": [], "2.0": []},
    }
    upstream = FakeUpstream(projects)
    hashes = {
        "alpha": {_sdist_sha(upstream, "alpha", "1.0")},
        "beta": {_sdist_sha(upstream, "beta", "1.0")},
    }
    # A build tool the file does not list is resolved as always (checked against the index).
    steps = FakeSteps(upstream, build_requires={"alpha": ["tool"]})
    assert _run(steps, ["alpha==1.0"], hashes).ok
    assert "tool==2.0" in steps.builds
    # A project the file lists with hashes is held to them wherever it is built: here beta is a
    # build tool of alpha too, in the very version listed (accepted) ...
    steps = FakeSteps(upstream, build_requires={"alpha": ["beta"]})
    assert _run(steps, ["alpha==1.0", "beta==1.0"], hashes).ok
    # ... and a build environment that wants another version of it is refused that sdist.
    hashes["tool"] = {_sdist_sha(upstream, "tool", "2.0")}
    steps = FakeSteps(upstream, build_requires={"alpha": ["tool<2"]})
    result = _run(steps, ["alpha==1.0", "tool==2.0"], hashes)
    refused = result.failures["tool==1.0"]
    assert isinstance(refused, HashMismatch)
    assert refused.hint is not None and "pass the file with -c as well" in refused.hint
    assert "tool==1.0" not in steps.builds and "alpha==1.0" not in steps.builds


class _IndexWithoutHashes(FakeUpstream):
    """An index that lists no sha256 for its files."""

    def get_project(self, name: Any) -> Any:
        page = super().get_project(name)
        files = tuple(dataclasses.replace(f, sha256=None) for f in page.files)
        return dataclasses.replace(page, files=files)


def test_an_sdist_the_hash_check_prepared_is_not_prepared_again_by_its_build() -> None:
    # The index lists no sha256, so the check before any build downloads and extracts each
    # hashed sdist; its node then builds from that, not from a second download and extraction.
    upstream = _IndexWithoutHashes(PROJECTS)
    real = {
        n: _sdist_sha(FakeUpstream(PROJECTS), n, v) for n, v in (("alpha", "1.0"), ("beta", "2.0"))
    }

    class Steps(FakeSteps):
        def prepare(self, pin: Any) -> Prepared:
            prepared = super().prepare(pin)
            return dataclasses.replace(prepared, sdist_sha256=real[str(pin.name)])

    steps = Steps(upstream)
    result = _run(steps, ["alpha==1.0", "beta==2.0"], {n: {d} for n, d in real.items()})
    assert result.ok, result.failures
    assert dict(steps.prepares) == {"alpha==1.0": 1, "beta==2.0": 1}


def test_packages_without_hashes_are_checked_against_the_index_only() -> None:
    upstream = FakeUpstream({"alpha": {"1.0": Release()}, "beta": {"1.0": []}})
    steps = FakeSteps(upstream)
    result = _run(
        steps, ["alpha==1.0", "beta==1.0"], {"alpha": {_sdist_sha(upstream, "alpha", "1.0")}}
    )
    assert result.ok and sorted(steps.builds) == ["alpha==1.0", "beta==1.0"]


# -- the command line ------------------------------------------------------------------------


def _cli(
    argv: list[str], capsys: pytest.CaptureFixture[str], runs: Runs | None = None
) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv, runs=runs)
    code = exc.value.code
    return (code if isinstance(code, int) else 0), capsys.readouterr().err


@pytest.fixture
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("REWHEEL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _recording() -> tuple[list[app.BootstrapOptions], Runs]:
    seen: list[app.BootstrapOptions] = []

    def fake_bootstrap(options: app.BootstrapOptions, **_: Any) -> BootstrapResult:
        seen.append(options)
        return BootstrapResult(order=[], graph={}, failures={})

    return seen, Runs(bootstrap=fake_bootstrap)


@pytest.mark.usefixtures("_clean")
def test_the_files_index_url_must_be_the_runs_upstream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = "c" * 64
    lock = tmp_path / "locked.txt"
    lock.write_text(
        f"--index-url https://pypi.org/simple/\n\nsix==1.17.0 \\\n    --hash=sha256:{digest}\n"
    )
    seen, runs = _recording()
    code, _ = _cli(["bootstrap", "-r", str(lock), "--repo", str(tmp_path / "r")], capsys, runs)
    assert code == 0
    assert seen[0].sdist_hashes == {"six": frozenset({digest})}
    assert [str(r) for r in seen[0].requirements] == ["six==1.17.0"]

    code, err = _cli(
        ["bootstrap", "-r", str(lock), "--index-url", "https://mirror.invalid/simple"], capsys, runs
    )
    assert code == 2 and len(seen) == 1
    assert "locked.txt:1: --index-url https://pypi.org/simple/ is not the upstream" in err
    assert "give it on the command line: --index-url https://pypi.org/simple/" in err

    code, err = _cli(["bootstrap", "-r", str(lock), "pip==25.0"], capsys, runs)
    assert code == 2 and "the command line: 'pip==25.0' has no --hash" in err


@pytest.mark.usefixtures("_clean")
def test_update_is_held_to_the_hashes_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = tmp_path / "locked.txt"
    lock.write_text(f"six==1.17.0 --hash=sha256:{'c' * 64}\nidna==3.10\n")
    code, err = _cli(["update", "-r", str(lock), "--dry-run"], capsys)
    assert code == 2 and "locked.txt:2: 'idna==3.10' has no --hash" in err


# -- end to end, through the command line, with real sdists, index and builds ----------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bootstrap(
    upstream: Upstream, tmp_path: Path, lock: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, Repository]:
    repo = tmp_path / "repo"
    argv = ["bootstrap", "-r", str(lock), "--index-url", upstream.url, "--repo", str(repo)]
    argv += ["--work-dir", str(tmp_path / "work"), "-j", "2", "-q"]
    code, err = _cli(argv, capsys)
    return code, err, Repository(repo)


def _tree(upstream: Upstream) -> dict[str, Path]:
    sdists = {
        "alpha": upstream.sdist(
            "alpha", "1.0", install_requires=["beta>=1", "gamma; sys_platform == 'win32'"]
        ),
        "beta": upstream.sdist("beta", "2.0"),
        "gamma": upstream.sdist("gamma", "3.0"),
    }
    upstream.sdist("beta", "2.1")  # newer than the lock: not taken
    upstream.wheel("beta", "2.0")
    return sdists


def _uv_compiled(upstream: Upstream, sdists: dict[str, Path], beta: str | None = None) -> str:
    """The exact shape `uv pip compile --generate-hashes --emit-index-url` writes."""
    wheel = "9" * 64  # a wheel's hash, listed next to the sdist's as uv does
    return (
        "# This file was autogenerated by uv via the following command:\n"
        "#    uv pip compile --generate-hashes --emit-index-url requirements.in\n"
        f"--index-url {upstream.url}\n"
        "\n"
        "alpha==1.0 \\\n"
        f"    --hash=sha256:{wheel} \\\n"
        f"    --hash=sha256:{_sha(sdists['alpha'])}\n"
        "    # via -r requirements.in\n"
        "beta==2.0 \\\n"
        f"    --hash=sha256:{beta or _sha(sdists['beta'])} \\\n"
        f"    --hash=sha256:{wheel}\n"
        "    # via alpha\n"
        "gamma==3.0 ; sys_platform == 'win32' \\\n"
        f"    --hash=sha256:{_sha(sdists['gamma'])}\n"
        "    # via alpha\n"
    )


@pytest.mark.usefixtures("_clean")
def test_uv_compiled_hashes_build_exactly_the_pinned_versions(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sdists = _tree(upstream)
    lock = tmp_path / "requirements.txt"
    lock.write_text(_uv_compiled(upstream, sdists))
    code, err, repo = _bootstrap(upstream, tmp_path, lock, capsys)
    assert code == 0, err
    assert sorted((w.name, w.version) for w in repo.wheels()) == [("alpha", "1.0"), ("beta", "2.0")]
    record = repo.load_record("beta", "2.0")
    assert record is not None and record.sdist_sha256 == _sha(sdists["beta"])
    # The same pins with other hashes are no "nothing changed" re-run: the wheels already
    # built from the sdist are refused with it.
    lock.write_text(_uv_compiled(upstream, sdists, beta="0" * 64))
    code, err, _ = _bootstrap(upstream, tmp_path, lock, capsys)
    assert code == 2 and "beta==2.0 [download]: sdist beta-2.0.tar.gz has sha256" in err


@pytest.mark.usefixtures("_clean")
@pytest.mark.parametrize("listed", [True, False], ids=["index-lists-sha256", "index-lists-none"])
def test_a_tampered_hash_is_refused_before_anything_is_built(
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    listed: bool,
) -> None:
    sdists = _tree(upstream)
    if not listed:  # an index that lists no sha256: the sdist is downloaded and checked first
        upstream.index.add(sdists["beta"], omit_hash=True)
    other = "0" * 64
    lock = tmp_path / "requirements.txt"
    lock.write_text(_uv_compiled(upstream, sdists, beta=other))
    code, err, repo = _bootstrap(upstream, tmp_path, lock, capsys)
    assert code == 2
    assert f"beta==2.0 [download]: sdist beta-2.0.tar.gz has sha256 {_sha(sdists['beta'])}" in err
    assert f"allow only {other}, {'9' * 64}" in err
    assert repo.wheels() == [] and repo.load_records() == []  # alpha was not built either
    assert not list((tmp_path / "work").rglob("*.whl"))


def _pylock(upstream: Upstream, sdists: dict[str, Path], alpha: str | None = None) -> str:
    """The shape `uv export --format pylock.toml` writes: beta with wheels only (as `pip lock`
    writes every package that has a wheel), gamma for Windows only."""
    url = upstream.url.removesuffix("/simple")
    return (
        "# This file was autogenerated by uv via the following command:\n"
        "#    uv export --format pylock.toml\n"
        'lock-version = "1.0"\ncreated-by = "uv"\nrequires-python = ">=3.11"\n\n'
        '[[packages]]\nname = "alpha"\nversion = "1.0"\n'
        f'index = "{upstream.url}"\n'
        f'sdist = {{ url = "{url}/files/alpha-1.0.tar.gz", hashes = {{ sha256 = '
        f'"{alpha or _sha(sdists["alpha"])}" }} }}\n\n'
        '[[packages]]\nname = "beta"\nversion = "2.0"\n'
        f'index = "{upstream.url}"\n'
        f'wheels = [{{ url = "{url}/files/beta-2.0-py3-none-any.whl", hashes = {{ sha256 = '
        f'"{"9" * 64}" }} }}]\n\n'
        '[[packages]]\nname = "gamma"\nversion = "3.0"\nmarker = "sys_platform == \'win32\'"\n'
        f'index = "{upstream.url}"\n'
        f'sdist = {{ url = "{url}/files/gamma-3.0.tar.gz", hashes = {{ sha256 = '
        f'"{_sha(sdists["gamma"])}" }} }}\n'
    )


@pytest.mark.usefixtures("_clean")
def test_a_pylock_builds_its_versions_for_this_platform(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sdists = _tree(upstream)
    lock = tmp_path / "pylock.toml"
    lock.write_text(_pylock(upstream, sdists))
    code, err, repo = _bootstrap(upstream, tmp_path, lock, capsys)
    assert code == 0, err
    assert sorted((w.name, w.version) for w in repo.wheels()) == [("alpha", "1.0"), ("beta", "2.0")]
    assert "the lock carries no sdist hash for beta==2.0" in err


@pytest.mark.usefixtures("_clean")
def test_a_pylock_with_a_tampered_sdist_hash_builds_nothing(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sdists = _tree(upstream)
    lock = tmp_path / "pylock.web.toml"
    lock.write_text(_pylock(upstream, sdists, alpha="1" * 64))
    code, err, repo = _bootstrap(upstream, tmp_path, lock, capsys)
    assert code == 2
    assert (
        f"alpha==1.0 [download]: sdist alpha-1.0.tar.gz has sha256 {_sha(sdists['alpha'])}" in err
    )
    assert repo.wheels() == [] and repo.load_records() == []


@pytest.mark.usefixtures("_clean")
@pytest.mark.parametrize("command", ["install", "lock"])
def test_commands_that_read_the_repository_take_no_index_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    lock = tmp_path / "locked.txt"
    lock.write_text("-i https://pypi.org/simple\nsix==1.17.0\n")
    argv = [command, "-r", str(lock), "--repo", str(tmp_path / "repo")]
    if command == "install":
        argv += ["--venv", str(tmp_path / "venv")]
    code, err = _cli(argv, capsys)
    assert code == 2
    assert "locked.txt:1: the index https://pypi.org/simple is not used here" in err
    assert not (tmp_path / "venv").exists()


@pytest.mark.usefixtures("_clean")
def test_a_lock_made_against_another_index_is_built_from_the_upstream_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = "d" * 64
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        'lock-version = "1.0"\ncreated-by = "pip"\n[[packages]]\nname = "six"\n'
        'version = "1.17.0"\nindex = "https://mirror.invalid/simple"\n'
        'sdist = { url = "https://mirror.invalid/six.tar.gz",'
        f' hashes = {{ sha256 = "{digest}" }} }}\n'
    )
    seen, runs = _recording()
    code, err = _cli(["bootstrap", "-r", str(lock)], capsys, runs)
    assert code == 0
    assert seen[0].index_url == "https://pypi.org/simple"
    assert seen[0].sdist_hashes == {"six": frozenset({digest})}
    assert "the lock's packages came from https://mirror.invalid/simple" in err


# -- a release with several sdists -----------------------------------------------------------


def _two_sdists(upstream: Upstream) -> tuple[Path, Path]:
    """alpha 1.0 as a .tar.gz and as a .zip (other bytes), both listed by the index."""
    tar = upstream.sdist("alpha", "1.0")
    zipped = upstream.sdist("alpha", "1.0", sdist_format="zip")
    assert _sha(tar) != _sha(zipped)
    return tar, zipped


def _hashed(tmp_path: Path, *digests: str) -> Path:
    lock = tmp_path / "requirements.txt"
    lock.write_text("alpha==1.0 " + " ".join(f"--hash=sha256:{d}" for d in digests) + "\n")
    return lock


@pytest.mark.usefixtures("_clean")
def test_of_a_releases_two_sdists_the_one_the_hashes_allow_is_built(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tar, zipped = _two_sdists(upstream)
    code, err, repo = _bootstrap(upstream, tmp_path, _hashed(tmp_path, _sha(zipped)), capsys)
    assert code == 0, err
    record = repo.load_record("alpha", "1.0")
    assert record is not None and record.sdist_sha256 == _sha(zipped)
    assert record.sdist_url.endswith("/alpha-1.0.zip")
    assert ("GET", "/files/alpha-1.0.tar.gz") not in upstream.index.requests
    # Without hashes, the usual choice (PEP 625's .tar.gz) stays.
    code, err = _cli(
        [
            *["bootstrap", "alpha==1.0", "--index-url", upstream.url],
            *["--repo", str(tmp_path / "r2"), "--work-dir", str(tmp_path / "w2"), "-q"],
        ],
        capsys,
    )
    assert code == 0, err
    record = Repository(tmp_path / "r2").load_record("alpha", "1.0")
    assert record is not None and record.sdist_sha256 == _sha(tar)


@pytest.mark.usefixtures("_clean")
def test_an_allowed_hash_listed_for_a_file_that_is_no_sdist_is_never_taken(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hostile index serves a tampered .tar.gz, and lists the sha256 of the real one (which the
    lock allows) for a file of another kind: a "wheel" holding the real sdist's bytes."""
    real = make_sdist(SdistSpec("alpha", "1.0"), tmp_path / "real")
    decoy = upstream.files / "alpha-1.0-py3-none-any.whl"
    decoy.write_bytes(real.read_bytes())
    upstream.index.add(decoy)
    tampered = upstream.sdist("alpha", "1.0", fail_build=True)
    code, err, repo = _bootstrap(upstream, tmp_path, _hashed(tmp_path, _sha(real)), capsys)
    assert code == 2
    assert f"alpha==1.0 [download]: sdist alpha-1.0.tar.gz has sha256 {_sha(tampered)}" in err
    assert f"allow only {_sha(real)}" in err
    assert repo.wheels() == [] and repo.load_records() == []
    assert ("GET", "/files/alpha-1.0-py3-none-any.whl") not in upstream.index.requests


@pytest.mark.usefixtures("_clean")
def test_the_allowed_sdist_served_with_other_bytes_than_listed_is_a_hash_mismatch(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The index lists the .zip with the sha256 the lock allows, then serves other bytes."""
    tar = upstream.sdist("alpha", "1.0")
    zipped = make_sdist(SdistSpec("alpha", "1.0", sdist_format="zip"), upstream.files)
    upstream.index.add(zipped, wrong_hash=True)
    (listed,) = [
        f.sha256
        for f in HttpUpstream(upstream.url, HttpClient())
        .get_project(canonicalize_name("alpha"))
        .files
        if f.filename == "alpha-1.0.zip"
    ]
    assert listed is not None and listed != _sha(zipped)
    code, err, repo = _bootstrap(upstream, tmp_path, _hashed(tmp_path, listed), capsys)
    assert code == 2, err
    assert f"alpha==1.0 [download]: sdist alpha-1.0.zip has sha256 {_sha(zipped)}" in err
    assert f"the hashes given for alpha allow only {listed}" in err
    assert "served other bytes" in err
    assert repo.wheels() == [] and repo.load_records() == []
    assert ("GET", "/files/alpha-1.0.tar.gz") not in upstream.index.requests
    assert _sha(tar) not in err


def test_a_build_environments_download_of_other_bytes_is_a_hash_mismatch_of_its_package() -> None:
    upstream = FakeUpstream({"alpha": {"1.0": []}, "tool": {"1.0": []}})
    real = _sdist_sha(upstream, "tool", "1.0")

    class Steps(FakeSteps):
        def prepare(self, pin: Any) -> Prepared:
            if pin.name == "tool":
                raise DigestMismatch(
                    "served other bytes",
                    filename="tool-1.0.tar.gz",
                    found="c" * 64,
                    expected=real,
                    package="tool",
                    version="1.0",
                )
            return super().prepare(pin)

    steps = Steps(upstream, build_requires={"alpha": ["tool"]})
    result = _run(steps, ["alpha==1.0"], {"tool": {real}})
    failed = result.failures["tool==1.0"]
    assert isinstance(failed, HashMismatch), failed
    assert (failed.package, failed.version, failed.found) == ("tool", "1.0", "c" * 64)
    assert failed.expected == (real,)
    # A project without hashes keeps the index's own error.
    result = _run(Steps(upstream, build_requires={"alpha": ["tool"]}), ["alpha==1.0"], {})
    assert type(result.failures["tool==1.0"]) is DigestMismatch


@pytest.mark.usefixtures("_clean")
@pytest.mark.parametrize("listed", [True, False], ids=["index-lists-sha256", "index-lists-none"])
def test_what_a_tampered_sdist_asks_for_is_never_resolved(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str], listed: bool
) -> None:
    """The index serves a tampered sdist (its sha256 not allowed) whose PKG-INFO asks for a
    project of the attacker's choosing: the run stops with the hash mismatch, and that project
    is never looked up (no error of its making hides the mismatch)."""
    real = make_sdist(SdistSpec("alpha", "1.0"), tmp_path / "real")
    tampered = upstream.sdist("alpha", "1.0", install_requires=["evil-helper"])
    if not listed:  # the sdist is downloaded for its metadata before any check: not read
        upstream.index.add(tampered, omit_hash=True)
    code, err, repo = _bootstrap(upstream, tmp_path, _hashed(tmp_path, _sha(real)), capsys)
    assert code == 2, err
    assert f"alpha==1.0 [download]: sdist alpha-1.0.tar.gz has sha256 {_sha(tampered)}" in err
    assert not [p for _, p in upstream.index.requests if "evil" in p]
    if listed:
        assert ("GET", "/files/alpha-1.0.tar.gz") not in upstream.index.requests
    assert repo.wheels() == []
