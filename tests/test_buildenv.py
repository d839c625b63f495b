from __future__ import annotations

import base64
import hashlib
import http.server
import os
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from rewheel.build.buildenv import EnvBuilder, requirements_text, scrubbed_environ
from rewheel.build.runner import SubprocessRunner
from rewheel.core.errors import BuildError
from rewheel.core.types import WheelRef


def test_scrubbed_environ_drops_installer_and_python_settings(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TMPDIR": "/var/tmp",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "GITHUB_TOKEN": "ghp_x",
        "SSH_AUTH_SOCK": "/run/user/0/agent.sock",
        "REWHEEL_INDEX_PASSWORD": "hunter2",
        "MY_FAVOURITE": "anything not on the allow-list",
        "CFLAGS": "-O2",
        "SOURCE_DATE_EPOCH": "1700000000",
        "HOME": "/root",
        "PIP_INDEX_URL": "https://example.invalid/simple",
        "PIP_EXTRA_INDEX_URL": "https://example.invalid/extra",
        "PIP_FIND_LINKS": "/opt/wheels",
        "PIP_CONSTRAINT": "/etc/c.txt",
        "UV_INDEX_URL": "https://example.invalid/uv",
        "UV_EXTRA_INDEX_URL": "https://example.invalid/uv-extra",
        "UV_FIND_LINKS": "/opt/wheels",
        "PYTHONPATH": "/evil",
        "PYTHONHOME": "/evil",
        "PYTHONSTARTUP": "/evil.py",
        "PYTHONUSERBASE": "/evil",
        "PYTHONDONTWRITEBYTECODE": "1",
        "VIRTUAL_ENV": "/some/venv",
        "CONDA_PREFIX": "/conda",
        "XDG_CONFIG_HOME": "/root/.config",
        "XDG_CONFIG_DIRS": "/etc/xdg",
    }
    home = tmp_path / "home"
    env = scrubbed_environ(base, home=home)
    assert not [
        k for k in env if k.startswith("PIP_") and k not in ("PIP_CONFIG_FILE", "PIP_NO_INDEX")
    ]
    assert not [k for k in env if k.startswith("UV_") and k != "UV_NO_CONFIG"]
    for gone in (
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONUSERBASE",
        "PYTHONDONTWRITEBYTECODE",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
    ):
        assert gone not in env
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert env["PIP_NO_INDEX"] == "1"
    assert env["PYTHONNOUSERSITE"] == "1"
    assert env["HOME"] == str(home)
    for key in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_DIRS"):
        assert Path(env[key]).is_relative_to(home), key
    for kept in ("PATH", "LANG", "TMPDIR", "CFLAGS", "SOURCE_DATE_EPOCH"):
        assert env[kept] == base[kept]
    # An allow-list, not a deny-list: secrets and anything unknown stay outside.
    for secret in (
        "AWS_SECRET_ACCESS_KEY",
        "GITHUB_TOKEN",
        "SSH_AUTH_SOCK",
        "REWHEEL_INDEX_PASSWORD",
        "MY_FAVOURITE",
    ):
        assert secret not in env
    assert base["PIP_INDEX_URL"]  # the input is not changed
    assert "SOURCE_DATE_EPOCH" not in scrubbed_environ({"PATH": "/bin"}, home=home)


def test_requirements_text_pins_name_version_and_hash() -> None:
    ref = WheelRef(canonicalize_name("Foo_Bar"), "1.0", "foo_bar-1.0-py3-none-any.whl", "ab" * 32)
    assert requirements_text([ref]) == f"foo-bar==1.0 --hash=sha256:{'ab' * 32}\n"


def _env_python_says(python: Path, code: str) -> str:
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, env={}
    )
    return done.stdout.strip()


@pytest.fixture
def hostile_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The machine's installer settings, pointed at places that must not be used."""
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/nothing")
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://127.0.0.1:9/nothing")
    monkeypatch.setenv("UV_EXTRA_INDEX_URL", "http://127.0.0.1:9/nothing")
    monkeypatch.setenv("UV_FIND_LINKS", str(tmp_path / "nowhere"))
    monkeypatch.setenv("UV_SYSTEM_PYTHON", "1")
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/nothing")


def test_empty_environment_has_no_pip_and_no_setuptools(
    tmp_path: Path, hostile_environ: None
) -> None:
    log = tmp_path / "env.log"
    builder = EnvBuilder(index_url="http://127.0.0.1:9/unused/", runner=SubprocessRunner())
    env = builder.create(tmp_path / "venv", [], log=log, home=tmp_path / "home")
    assert env.path == tmp_path / "venv"
    assert env.python == tmp_path / "venv" / "bin" / "python"
    assert env.installed == ()
    found = _env_python_says(
        env.python,
        "import importlib.util as u; "
        "print([m for m in ('pip', 'setuptools', 'wheel') if u.find_spec(m)])",
    )
    assert found == "[]"
    assert env.environ["VIRTUAL_ENV"] == str(env.path)
    assert env.environ["PATH"].split(os.pathsep)[0] == str(env.path / "bin")
    assert env.environ["PIP_NO_INDEX"] == "1"
    assert "UV_INDEX_URL" not in env.environ
    assert (tmp_path / "home" / "empty-xdg-config-dirs").is_dir()
    assert "uv" in log.read_text()


def test_existing_destination_is_refused(tmp_path: Path) -> None:
    (tmp_path / "venv").mkdir()
    builder = EnvBuilder(index_url="http://127.0.0.1:9/", runner=SubprocessRunner())
    with pytest.raises(BuildError, match="already exists") as info:
        builder.create(
            tmp_path / "venv",
            [],
            log=tmp_path / "l",
            home=tmp_path / "h",
            package="demo",
            version="1.0",
        )
    assert (info.value.step, info.value.package, info.value.version) == ("build-env", "demo", "1.0")


# --- a tiny wheel and a static PEP 503 index served over loopback ---------------------------


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_wheel(directory: Path, name: str, version: str) -> Path:
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": f"VERSION = {version!r}\n".encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in files.items())
    record += f"{dist_info}/RECORD,,\n"
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for p, d in files.items():
            zf.writestr(p, d)
        zf.writestr(f"{dist_info}/RECORD", record)
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_index(tmp_path: Path) -> Iterator[tuple[str, WheelRef]]:
    root = tmp_path / "index"
    (root / "files").mkdir(parents=True)
    wheel = make_wheel(root / "files", "tinywheel", "1.0")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = root / "simple" / "tinywheel"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        f'<a href="../../files/{wheel.name}#sha256={sha}">{wheel.name}</a>\n'
    )

    def handler(*args: object) -> _QuietHandler:
        return _QuietHandler(*args, directory=str(root))  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
        yield url, WheelRef(canonicalize_name("tinywheel"), "1.0", wheel.name, sha)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_installs_exactly_the_given_wheel_from_the_local_index(
    tmp_path: Path, local_index: tuple[str, WheelRef], hostile_environ: None
) -> None:
    url, ref = local_index
    builder = EnvBuilder(index_url=url, runner=SubprocessRunner(), cache_dir=tmp_path / "cache")
    env = builder.create(tmp_path / "venv", [ref], log=tmp_path / "env.log", home=tmp_path / "h")
    assert env.installed == (ref,)
    assert _env_python_says(env.python, "import tinywheel; print(tinywheel.VERSION)") == "1.0"
    found = _env_python_says(
        env.python, "import importlib.util as u; print(u.find_spec('pip') is None)"
    )
    assert found == "True"
    assert (tmp_path / "cache").is_dir()


def test_wrong_hash_is_a_build_env_error(tmp_path: Path, local_index: tuple[str, WheelRef]) -> None:
    url, ref = local_index
    bad = WheelRef(ref.name, ref.version, ref.filename, "0" * 64)
    builder = EnvBuilder(index_url=url, runner=SubprocessRunner(), cache_dir=tmp_path / "cache")
    log = tmp_path / "env.log"
    with pytest.raises(BuildError) as info:
        builder.create(tmp_path / "venv", [bad], log=log, home=tmp_path / "h", package="demo")
    assert info.value.step == "build-env"
    assert info.value.package == "demo"
    assert info.value.log_path == log
    assert "hash" in log.read_text().lower()


def test_temporary_names_follow_the_seed_in_a_build_environment(tmp_path: Path) -> None:
    import subprocess

    builder = EnvBuilder(index_url="http://127.0.0.1:9/unused/", runner=SubprocessRunner())
    env = builder.create(tmp_path / "venv", [], log=tmp_path / "env.log", home=tmp_path / "home")
    code = "import tempfile; print(tempfile.mkdtemp())"

    def name(seed: str | None, where: str) -> str:
        tmp = tmp_path / where
        tmp.mkdir(exist_ok=True)
        environ = {**env.environ, "TMPDIR": str(tmp)}
        if seed is not None:
            environ["REWHEEL_TEMP_SEED"] = seed
        out = subprocess.run(
            [str(env.python), "-c", code], env=environ, capture_output=True, text=True, check=True
        )
        return Path(out.stdout.strip()).name

    # Same seed, fresh folders: the same name each time; another seed, or none, another name.
    assert name("pkg-1.0-1", "a") == name("pkg-1.0-1", "b")
    assert name("pkg-1.0-1", "c") != name("pkg-2.0-1", "d")
    assert name(None, "e") != name(None, "f")
