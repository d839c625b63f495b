"""`rewheel lock`: exact versions and the repository's hashes for what a requirement needs at
run time, which pip and uv install from the served repository, hashes required."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import uv
from click.testing import CliRunner
from conftest import Upstream, run_bootstrap
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_wheel

from rewheel import app
from rewheel.cli import cli
from rewheel.core.errors import IntegrityError, RewheelError
from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer
from rewheel.trust.chain import signing_note
from rewheel.trust.install import PinnedRelease, custody_check, parse_pins


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """tool-a builds itself; lib-b and App are built with it; App needs lib-b at run time;
    other is in the repository but not needed by App."""
    base = tmp_path_factory.mktemp("lock")
    files = base / "upstream-files"
    files.mkdir()
    with FakeIndex() as index:
        up = Upstream(index, files)
        up.sdist("tool-a", "1.0")
        up.sdist("lib-b", "1.0", build_requires=["tool-a"])
        up.sdist("App", "1.0", build_requires=["tool-a"], install_requires=["lib-b>=1"])
        up.sdist("other", "2.0")
        repo = base / "repo"
        result = run_bootstrap(up, repo, ["app", "other"])
        assert result.ok, result.failures
        yield repo


@pytest.fixture
def repo(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(built, copy)
    return copy


def _sha(repo: Path, prefix: str) -> str:
    (wheel,) = (repo / "wheels").glob(f"{prefix}-*.whl")
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def _lock(repo: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["lock", "--repo", str(repo), *args])
    return result.exit_code, result.stdout, result.stderr


def test_the_lock_pins_the_run_time_closure_with_the_repository_s_hashes(built: Path) -> None:
    code, out, err = _lock(built, "app")
    assert code == 0, err
    assert parse_pins(out) == [
        PinnedRelease("app", "1.0", (_sha(built, "app"),)),
        PinnedRelease("lib-b", "1.0", (_sha(built, "lib_b"),)),
    ]  # not tool-a (a build tool), not other (not needed)
    assert out.startswith("# rewheel lock of app\n")
    assert "pip install --require-hashes --no-deps" in out
    assert f"note: {signing_note(Repository(built))}" in err  # what no --public-key leaves out


def _clean_env() -> dict[str, str]:
    """This machine's environment without any pip/uv configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip reads /etc/pip.conf even with --isolated
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _install_cmd(installer: str, url: str, lock: Path, target: Path) -> list[str]:
    if installer == "uv":
        return [
            uv.find_uv_bin(),
            "pip",
            "sync",
            "--no-config",
            "--no-cache",
            "--python",
            str(target / "bin" / "python"),
            "--index-url",
            url,
            str(lock),
        ]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--isolated",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--require-hashes",
        "--no-deps",
        "--index-url",
        url,
        "--target",
        str(target),
        "-r",
        str(lock),
    ]


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_pip_and_uv_install_exactly_the_lock_from_the_served_repository(
    built: Path, tmp_path: Path, installer: str
) -> None:
    lock = tmp_path / "lock.txt"
    code, _, err = _lock(built, "app", "-o", str(lock))
    assert code == 0, err
    target = tmp_path / "target"
    if installer == "uv":
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    requested: list[str] = []
    with IndexServer(Repository(built), log=requested.append) as srv:
        proc = subprocess.run(
            _install_cmd(installer, srv.url, lock, target),
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = target if installer == "pip" else next(target.glob("lib/python*/site-packages"))
    assert sorted(p.name for p in site.glob("*.dist-info")) == [
        "app-1.0.dist-info",
        "lib_b-1.0.dist-info",
    ]
    assert any("GET /wheels/app-1.0-" in line for line in requested)


def test_a_lock_installs_with_rewheel_install_and_its_hashes_are_enforced(
    built: Path, tmp_path: Path
) -> None:
    lock = tmp_path / "lock.txt"
    assert _lock(built, "app", "-o", str(lock))[0] == 0
    venv = tmp_path / "venv"
    result = CliRunner().invoke(
        cli, ["install", "-r", str(lock), "--venv", str(venv), "--repo", str(built)]
    )
    assert result.exit_code == 0, result.output
    assert "installed 2 package(s)" in result.stderr and "lib-b==1.0" in result.stderr
    # The same lock with another hash for lib-b: refused, nothing made.
    tampered = tmp_path / "tampered.txt"
    tampered.write_text(lock.read_text().replace(_sha(built, "lib_b"), "0" * 64))
    other = tmp_path / "other-venv"
    result = CliRunner().invoke(
        cli, ["install", "-r", str(tampered), "--venv", str(other), "--repo", str(built)]
    )
    assert isinstance(result.exception, IntegrityError)
    assert "lib-b 1.0: no file of it has a hash the requirements allow" in str(result.exception)
    assert not other.exists()


def test_constraints_apply_to_the_lock(built: Path, tmp_path: Path) -> None:
    constraints = tmp_path / "c.txt"
    constraints.write_text("lib-b<1\n")
    result = CliRunner().invoke(cli, ["lock", "app", "-c", str(constraints), "--repo", str(built)])
    assert isinstance(result.exception, RewheelError)
    assert result.exception.step == "lock-file"
    assert "lib-b" in result.exception.message and "No solution found" in result.exception.message


def test_the_lock_refuses_a_broken_chain_and_writes_nothing(repo: Path, tmp_path: Path) -> None:
    (wheel,) = (repo / "wheels").glob("lib_b-*.whl")
    shutil.copy(make_wheel(SdistSpec("lib-b", "1.0"), tmp_path / "other"), wheel)
    (repo / "wheels" / f"{wheel.name}.metadata").unlink()
    Repository(repo).regenerate_index()
    out = tmp_path / "lock.txt"
    with pytest.raises(IntegrityError) as info:
        app.lock(["app"], repo_root=repo)
    assert info.value.step == "lock-file"
    assert str(info.value.message).startswith("refusing to lock, the chain of custody is broken")
    code, _, _ = _lock(repo, "app", "-o", str(out))
    assert code != 0 and not out.exists()


def test_a_folder_that_is_not_a_repository_is_not_made(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    for command in (["lock", "app"], ["install", "app", "--venv", str(tmp_path / "venv")]):
        result = CliRunner().invoke(cli, [*command, "--repo", str(missing)])
        assert isinstance(result.exception, RewheelError), result.output
        assert f"there is no repository at {missing}" in str(result.exception)
    assert not missing.exists()


def test_the_built_sdist_an_index_lists_beside_a_wheel_is_left_out_not_refused(
    built: Path,
) -> None:
    record = Repository(built).load_record("lib-b", "1.0")
    assert record is not None and record.sdist_sha256 is not None
    wheel = _sha(built, "lib_b")
    check = custody_check(Repository(built))
    # uv lists every file of a release, an sdist too, though --no-build never takes it.
    assert check([PinnedRelease("lib-b", "1.0", (wheel, record.sdist_sha256))]) == [
        PinnedRelease("lib-b", "1.0", (wheel,))
    ]
    with pytest.raises(IntegrityError, match="not a wheel of the repository"):
        check([PinnedRelease("lib-b", "1.0", (wheel, "0" * 64))])
