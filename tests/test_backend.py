from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from fakes import FakeRunner
from pyproject_hooks import HookMissing, UnsupportedOperation

from rewheel.build.backend import Backend
from rewheel.build.buildenv import BuildEnvironment, EnvBuilder
from rewheel.build.pyproject import BuildSystem, read_build_system
from rewheel.build.runner import SubprocessRunner
from rewheel.core.errors import BuildError
from rewheel.core.types import Runner
from rewheel.repo.wheelfile import read_metadata_bytes, wheel_name_version

# A stdlib-only in-tree backend. FAIL / SLEEP / WARN in its config_settings make it misbehave.
MYBACKEND = """
import base64, hashlib, os, time, warnings, zipfile

NAME, VERSION = "tinypkg", "0.1"


def get_requires_for_build_wheel(config_settings=None):
    settings = config_settings or {}
    if "WARN" in settings:
        warnings.warn("careful now")
    if "SLEEP" in settings:
        time.sleep(float(settings["SLEEP"]))
    return ["example-dep>=1.0", "other; python_version>'3'", os.environ.get("MARK", "no-mark")]


def _hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    if config_settings and "FAIL" in config_settings:
        raise RuntimeError("kaboom from the backend")
    dist_info = f"{NAME}-{VERSION}.dist-info"
    files = {
        f"{NAME}.py": b"ANSWER = 42\\n",
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode()
        ),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\\nGenerator: mybackend\\n"
            b"Root-Is-Purelib: true\\nTag: py3-none-any\\n"
        ),
    }
    record = "".join(f"{p},{_hash(d)},{len(d)}\\n" for p, d in files.items())
    record += f"{dist_info}/RECORD,,\\n"
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for p, d in files.items():
            zf.writestr(p, d)
        zf.writestr(f"{dist_info}/RECORD", record)
    return name
"""

PYPROJECT = """
[build-system]
requires = []
build-backend = "mybackend"
backend-path = ["."]
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> BuildEnvironment:
    """A bare venv (no pip, no setuptools): the backend must run on the stdlib alone."""
    base = tmp_path_factory.mktemp("env")
    builder = EnvBuilder(index_url="http://127.0.0.1:9/unused/", runner=SubprocessRunner())
    built = builder.create(base / "venv", [], log=base / "env.log", home=base / "home")
    return BuildEnvironment(
        built.path, built.python, {**built.environ, "MARK": "marked"}, built.installed
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    tree = tmp_path / "tinypkg-0.1"
    tree.mkdir()
    (tree / "pyproject.toml").write_text(PYPROJECT)
    (tree / "mybackend.py").write_text(MYBACKEND)
    return tree


def recording_runner() -> FakeRunner:
    """Records each call and runs it for real (without network isolation)."""
    real = SubprocessRunner()
    return FakeRunner(
        lambda call: real(call.cmd, cwd=call.cwd, env=call.env, log=call.log, timeout=call.timeout)
    )


def make_backend(
    source: Path, env: BuildEnvironment, runner: Runner, log: Path, **kwargs: object
) -> Backend:
    return Backend(
        source,
        read_build_system(source),
        env,
        runner,
        log=log,
        package="tinypkg",
        version="0.1",
        **kwargs,  # type: ignore[arg-type]
    )


def test_get_requires_returns_what_the_backend_declares(
    source: Path, env: BuildEnvironment, tmp_path: Path
) -> None:
    runner = recording_runner()
    backend = make_backend(source, env, runner, tmp_path / "b.log", timeout=60)
    requires = backend.get_requires_for_build_wheel()
    assert requires == ["example-dep>=1.0", "other; python_version>'3'", "marked"]
    (call,) = runner.calls
    assert call.cmd[0] == str(env.python)
    assert call.cwd == source
    assert call.timeout == 60
    assert call.isolate_network is True
    assert call.confine is not None and source in call.confine.writable
    assert call.env["_PYPROJECT_HOOKS_BUILD_BACKEND"] == "mybackend"
    assert call.env["VIRTUAL_ENV"] == str(env.path)


def test_build_wheel_yields_a_wheel(source: Path, env: BuildEnvironment, tmp_path: Path) -> None:
    backend = make_backend(source, env, SubprocessRunner(), tmp_path / "b.log")
    wheel = backend.build_wheel(tmp_path / "out" / "dist")
    assert wheel.parent == tmp_path / "out" / "dist"
    assert wheel_name_version(wheel.name) == ("tinypkg", "0.1")
    assert b"Name: tinypkg" in read_metadata_bytes(wheel)


def test_failing_backend_raises_build_error_naming_package_step_and_log(
    source: Path, env: BuildEnvironment, tmp_path: Path
) -> None:
    log = tmp_path / "b.log"
    backend = make_backend(source, env, SubprocessRunner(), log)
    with pytest.raises(BuildError) as info:
        backend.build_wheel(tmp_path / "out", {"FAIL": "1"})
    err = info.value
    assert (err.package, err.version, err.step, err.log_path) == (
        "tinypkg",
        "0.1",
        "build-wheel",
        log,
    )
    assert "tinypkg==0.1 [build-wheel]" in str(err)
    assert "kaboom from the backend" in log.read_text()
    assert list((tmp_path / "out").iterdir()) == []


def test_timeout_is_a_build_error(source: Path, env: BuildEnvironment, tmp_path: Path) -> None:
    backend = make_backend(source, env, SubprocessRunner(), tmp_path / "b.log", timeout=0.5)
    with pytest.raises(BuildError, match="timed out") as info:
        backend.get_requires_for_build_wheel({"SLEEP": "30"})
    assert info.value.step == "get-requires"


def test_backend_warnings_go_to_the_log(
    source: Path, env: BuildEnvironment, tmp_path: Path
) -> None:
    # pytest turns warnings into errors here, so a re-emitted warning would fail this test.
    log = tmp_path / "b.log"
    backend = make_backend(source, env, SubprocessRunner(), log)
    assert len(backend.get_requires_for_build_wheel({"WARN": "1"})) == 3
    assert "backend warning" in log.read_text()
    assert "careful now" in log.read_text()


@pytest.mark.parametrize(
    ("build_system", "message", "in_log"),
    [
        (BuildSystem((), "no_such_backend", (".",)), "unavailable", "Cannot find module"),
        (BuildSystem((), "mybackend:missing_object", (".",)), "failed", "missing_object"),
        (BuildSystem((), "json", ()), "failed", "has no attribute 'build_wheel'"),
    ],
)
def test_unusable_backends(
    source: Path,
    env: BuildEnvironment,
    tmp_path: Path,
    build_system: BuildSystem,
    message: str,
    in_log: str,
) -> None:
    log = tmp_path / "b.log"
    backend = Backend(
        source, build_system, env, SubprocessRunner(), log=log, package="tinypkg", version="0.1"
    )
    with pytest.raises(BuildError, match=message) as info:
        backend.build_wheel(tmp_path / "out")
    assert info.value.step == "build-wheel"
    assert info.value.log_path == log
    assert in_log in log.read_text()


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (HookMissing("build_wheel"), "has no hook build_wheel"),
        (UnsupportedOperation("tb"), "does not support"),
        (OSError("disk on fire"), "disk on fire"),
    ],
)
def test_hook_caller_exceptions_are_translated(
    source: Path, env: BuildEnvironment, tmp_path: Path, exc: Exception, message: str
) -> None:
    backend = make_backend(source, env, SubprocessRunner(), tmp_path / "b.log")

    def raising(*args: object, **kwargs: object) -> str:
        raise exc

    backend._caller.build_wheel = raising  # type: ignore[method-assign]
    with pytest.raises(BuildError, match=message) as info:
        backend.build_wheel(tmp_path / "out")
    assert (info.value.package, info.value.step) == ("tinypkg", "build-wheel")
    assert info.value.__cause__ is exc


def test_bad_hook_results(source: Path, env: BuildEnvironment, tmp_path: Path) -> None:
    (source / "mybackend.py").write_text(
        "def get_requires_for_build_wheel(config_settings=None):\n    return 'not a list'\n"
        "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
        "    return 'ghost-1.0-py3-none-any.whl'\n"
    )
    backend = make_backend(source, env, SubprocessRunner(), tmp_path / "b.log")
    with pytest.raises(BuildError, match="not a list") as info:
        backend.get_requires_for_build_wheel()
    assert info.value.step == "get-requires"
    with pytest.raises(BuildError, match="did not write") as info:
        backend.build_wheel(tmp_path / "out")
    assert info.value.step == "build-wheel"


def test_hook_sees_the_env_python_not_ours(
    source: Path, env: BuildEnvironment, tmp_path: Path
) -> None:
    (source / "mybackend.py").write_text(
        "import sys\n"
        "def get_requires_for_build_wheel(config_settings=None):\n"
        "    return [f'x; python_version>{sys.prefix!r}']\n"
    )
    backend = make_backend(source, env, SubprocessRunner(), tmp_path / "b.log")
    (req,) = backend.get_requires_for_build_wheel()
    assert str(env.path) in req
    assert os.path.realpath(sys.prefix) not in req
