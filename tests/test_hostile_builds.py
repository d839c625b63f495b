"""Builds that misbehave: read the user's credentials, hang, or try the network."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import Upstream, build_info
from fakes import FakeRunner, RunnerCall
from packaging.requirements import Requirement
from support.sdists import SdistSpec, make_wheel

from rewheel import app
from rewheel.build.backend import Backend, mentions_network_failure
from rewheel.build.buildenv import BuildEnvironment
from rewheel.build.pyproject import BuildSystem
from rewheel.build.runner import UnshareProbe
from rewheel.cli import main
from rewheel.core.bootstrap import BootstrapResult
from rewheel.core.errors import BuildError, CommandFailed, UnsafeArchiveError
from rewheel.repo.repository import Repository

NO_NETWORK = "the build tried to reach the network; builds run without network"


def _bootstrap(up: Upstream, repo: Path, reqs: list[str], **options: object) -> BootstrapResult:
    return app.bootstrap(
        app.BootstrapOptions(
            requirements=[Requirement(r) for r in reqs],
            repo=repo,
            index_url=up.url,
            jobs=1,
            work_dir=repo.parent / "work",
            **options,  # type: ignore[arg-type]
        )
    )


def running_with(text: str) -> list[int]:
    """The live processes of this machine whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or not _alive(int(proc.name)):
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and int(proc.name) != os.getpid():
            found.append(int(proc.name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_cli_says_when_network_isolation_is_unavailable(
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upstream.sdist("demo", "1.0")
    # As on a machine where unshare fails: the run's runner probes the one found first on PATH.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "unshare").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "unshare").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    args = [
        "bootstrap",
        "--no-sandbox",  # with the sandbox, bwrap cuts the network itself
        "--repo",
        str(tmp_path / "repo"),
        "--index-url",
        upstream.url,
        "-j",
        "1",
        "demo",
    ]
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 0, err
    assert "note: network isolation is not available on this machine" in err
    assert err.count("network isolation is not available") == 1  # once per run


def test_a_build_cannot_read_the_users_credentials(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    secrets = [".netrc", ".pypirc", ".config/pip/pip.conf", ".config/uv/uv.toml"]
    for rel in secrets:
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text("password = hunter2\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    probes = [f"~/{rel}" for rel in secrets] + ["pyproject.toml"]  # the last one: a control
    upstream.sdist("demo", "1.0", probe_files=probes)
    repo = tmp_path / "repo"
    result = _bootstrap(upstream, repo, ["demo"])
    assert result.ok, result.failures
    (ref,) = Repository(repo).find_wheels("demo", "1.0")
    probed = build_info(repo / "wheels" / ref.filename)["probed"]
    assert probed == {**{p: False for p in probes[:-1]}, "pyproject.toml": True}


def test_builds_at_once_each_see_only_their_own_folder_at_the_fixed_path(
    upstream: Upstream, tmp_path: Path
) -> None:
    """Every box shows its package's work folder at /build: two builds running at the same time
    each get their own there, and neither can reach the other's, nor the build root."""
    work = tmp_path / "work"
    probes = {}
    for me, other in (("left", "right"), ("right", "left")):
        probes[me] = {
            f"/build/src/{me}-1.0/{me}/__init__.py": True,  # its own: the control
            f"/build/src/{other}-1.0/{other}/__init__.py": False,
            f"{work}/{other}-1.0/src/{other}-1.0/{other}/__init__.py": False,
            f"{work}/{me}-1.0/src/{me}-1.0/{me}/__init__.py": False,
        }
        upstream.sdist(me, "1.0", probe_files=list(probes[me]), build_seconds=1.0)
    repo = tmp_path / "repo"
    result = app.bootstrap(
        app.BootstrapOptions(
            requirements=[Requirement("left"), Requirement("right")],
            repo=repo,
            index_url=upstream.url,
            jobs=2,
            work_dir=work,
        )
    )
    assert result.ok, result.failures
    for name in ("left", "right"):
        (ref,) = Repository(repo).find_wheels(name, "1.0")
        assert build_info(repo / "wheels" / ref.filename)["probed"] == probes[name]


def test_a_hanging_build_is_killed_with_its_process_group(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("slow", "1.0", build_seconds=123.25)
    repo = tmp_path / "repo"
    result = _bootstrap(upstream, repo, ["slow"], build_timeout=1.0)
    error = result.failures["slow==1.0"]
    assert isinstance(error, BuildError)
    assert error.step == "build-wheel"
    assert "timed out" in str(error)
    assert error.log_path is not None and "process group killed" in error.log_path.read_text()
    # The backend and the child it started are both gone. (Their pids are the sandbox's own,
    # so they are looked for by what they run.)
    (pid_file,) = (tmp_path / "work").rglob(".tinybackend-pids")
    assert len(pid_file.read_text().split()) == 2
    assert not running_with("time.sleep(123.25)")
    assert not Repository(repo).find_wheels("slow", "1.0")


@pytest.mark.skipif(not UnshareProbe().available(), reason="no network isolation on this machine")
def test_a_build_that_tries_the_network_is_told_why_it_failed(
    upstream: Upstream, tmp_path: Path
) -> None:
    probe = upstream.url.replace("/simple", "/build-probe")
    upstream.sdist("greedy", "1.0", build_fetch_url=probe)
    result = _bootstrap(upstream, tmp_path / "repo", ["greedy"])
    error = result.failures["greedy==1.0"]
    assert isinstance(error, BuildError)
    assert NO_NETWORK in str(error)
    assert not [p for _m, p in upstream.index.requests if "build-probe" in p]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("urllib.error.URLError: <urlopen error [Errno 101] Network is unreachable>", True),
        ("socket.gaierror: [Errno -3] Temporary failure in name resolution", True),
        ("socket.gaierror: [Errno -2] Name or service not known", True),
        ("curl: (6) Could not resolve host: example.com", True),
        ("Failed to establish a new connection: [Errno 111] Connection refused", True),
        ("error: command 'gcc' failed: No such file or directory", False),
        ("FileNotFoundError: [Errno 2] No such file or directory: 'x'", False),
    ],
)
def test_mentions_network_failure(output: str, expected: bool) -> None:
    assert mentions_network_failure(output) is expected


def _failing_runner(output: str) -> FakeRunner:
    """Fails every hook call, having written ``output`` to the log."""

    def fail(call: RunnerCall) -> None:
        with call.log.open("a") as f:
            f.write(output)
        raise CommandFailed("python exited with status 1", cmd=call.cmd, returncode=1)

    return FakeRunner(fail)


UNREACHABLE = "OSError: [Errno 101] Network is unreachable\n"


@pytest.mark.parametrize(
    ("isolated", "unshare", "output", "told"),
    [
        (True, ["unshare", "--net"], UNREACHABLE, True),
        # It had network: the failure is not ours to explain.
        (False, ["unshare", "--net"], UNREACHABLE, False),
        (True, [], UNREACHABLE, False),  # isolation was asked for, but unshare does not work
        # The earlier step's output does not count.
        (True, ["unshare", "--net"], "ValueError: bad\n", False),
    ],
)
def test_the_network_sentence_only_when_the_network_was_cut(
    tmp_path: Path, isolated: bool, unshare: list[str], output: str, told: bool
) -> None:
    log = tmp_path / "build.log"
    log.write_text("earlier step: " + UNREACHABLE)
    env = BuildEnvironment(tmp_path, Path(sys.executable), dict(os.environ), ())
    backend = Backend(
        tmp_path,
        BuildSystem(requires=(), backend="anything"),
        env,
        _failing_runner(output),
        log=log,
        package="demo",
        version="1.0",
        isolate_network=isolated,
        unshare=UnshareProbe(lambda: unshare),
    )
    with pytest.raises(BuildError) as info:
        backend.build_wheel(tmp_path / "dist")
    assert (NO_NETWORK in str(info.value)) is told
    assert "failed (python exited with status 1)" in str(info.value)
    # The cause line says what to do, on the same terms.
    hint = info.value.hint
    assert (hint is not None and hint.startswith("the build tried to download")) is told


NOT_A_WHEEL = """
import sys


def attack(hook):
    if hook == "build_wheel":
        backend = sys.modules["tinybackend"]
        real = backend.wheel_bytes

        def damaged(spec, files):
            filename, data = real(spec, files)
            return filename, data[: len(data) // 2]  # the name of a wheel, half of its zip

        backend.wheel_bytes = damaged
    return None
"""


def test_a_build_that_writes_no_readable_wheel_fails_with_its_error(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("halfwheel", "1.0", attack=NOT_A_WHEEL)
    upstream.sdist("fine", "1.0")
    repo = tmp_path / "repo"
    result = _bootstrap(upstream, repo, ["halfwheel", "fine"], keep_going=True)
    error = result.failures["halfwheel==1.0"]
    assert isinstance(error, BuildError), repr(error)
    assert (error.package, error.version, error.step) == ("halfwheel", "1.0", "build-wheel")
    assert "built halfwheel-1.0-py3-none-any.whl, which is not a readable wheel" in error.message
    assert error.log_path is not None and error.hint
    assert not Repository(repo).find_wheels("halfwheel", "1.0")
    assert Repository(repo).find_wheels("fine", "1.0")


def test_an_sdist_that_is_no_archive_fails_its_extraction_with_package_and_version(
    upstream: Upstream, tmp_path: Path
) -> None:
    # Its own wheel's metadata (PEP 658) lets the resolution go on without the sdist: the
    # damaged file is first read when it is extracted for the build.
    wheel = make_wheel(SdistSpec("cut", "1.0"), tmp_path / "wheels")
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read("cut-1.0.dist-info/METADATA")
    upstream.index.add(wheel, metadata=metadata)
    sdist = upstream.sdist("cut", "1.0")
    sdist.write_bytes(sdist.read_bytes()[:300])
    upstream.index.add(sdist)
    upstream.sdist("fine", "1.0")
    repo = tmp_path / "repo"
    result = _bootstrap(upstream, repo, ["cut", "fine"], keep_going=True)
    error = result.failures["cut==1.0"]
    assert isinstance(error, UnsafeArchiveError), repr(error)
    assert (error.package, error.version, error.step) == ("cut", "1.0", "extract")
    assert "cut-1.0.tar.gz is not a readable sdist archive" in error.message
    assert error.hint is not None and "not one" in error.hint
    assert Repository(repo).find_wheels("fine", "1.0")
