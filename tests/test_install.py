"""install_into_venv: a venv filled from one local index, whatever pip/uv settings are around.

The helpers here (tiny wheels written by hand, a PEP 503 index served from a directory) are used
by tests/test_verify.py too.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from rewheel.core.errors import ConfigError, IntegrityError, RewheelError
from rewheel.core.fsutil import sha256_file
from rewheel.core.types import WheelRef
from rewheel.repo.wheelfile import wheel_name_version
from rewheel.trust.install import (
    MAX_REASON_CHARS,
    MAX_REASON_LINES,
    PinnedRelease,
    allowed_by_hashes,
    install_into_venv,
    installer_reason,
    lock_text,
    parse_pins,
    resolve,
)


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    dest: Path,
    name: str,
    version: str,
    files: Mapping[str, bytes],
    *,
    entry_points: str | None = None,
    requires: Iterable[str] = (),
) -> Path:
    """Write a pure-Python wheel holding ``files`` (archive path -> content), RECORD and all."""
    dist_info = f"{name}-{version}.dist-info"
    members = dict(files)
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    members[f"{dist_info}/METADATA"] = metadata.encode()
    members[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    if entry_points is not None:
        members[f"{dist_info}/entry_points.txt"] = entry_points.encode()
    record = "".join(f"{p},{record_hash(c)},{len(c)}\n" for p, c in members.items())
    record += f"{dist_info}/RECORD,,\n"
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, content in members.items():
            zf.writestr(member, content)
        zf.writestr(f"{dist_info}/RECORD", record)
    return path


def wheel_ref(path: Path) -> WheelRef:
    name, version = wheel_name_version(path.name)
    return WheelRef(name, version, path.name, sha256_file(path))


def write_index(root: Path, wheels: Iterable[Path]) -> Path:
    """A static PEP 503 index of ``wheels`` under ``root``: root/simple/<name>/index.html."""
    by_project: dict[str, list[Path]] = {}
    for wheel in wheels:
        by_project.setdefault(canonicalize_name(wheel.name.split("-")[0]), []).append(wheel)
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    for project, paths in by_project.items():
        links = []
        for path in paths:
            (files / path.name).write_bytes(path.read_bytes())
            href = f"../../files/{path.name}#sha256={sha256_file(path)}"
            links.append(f'<a href="{html.escape(href)}">{html.escape(path.name)}</a><br>')
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    return root


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on localhost; yields the URL of its simple/ index."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=directory))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def installed(venv: Path) -> dict[str, str]:
    """name -> version of what is installed in ``venv``, from its dist-info directory names."""
    out = {}
    for dist_info in venv.glob("lib/python*/site-packages/*.dist-info"):
        name, _, version = dist_info.name[: -len(".dist-info")].partition("-")
        out[name] = version
    return out


ALPHA_INIT = b"def main():\n    print('alpha says hi')\n"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An index with alpha 1.0 (console script, needs beta) and beta 1.0."""
    wheels = tmp_path_factory.mktemp("wheels")
    alpha = make_wheel(
        wheels,
        "alpha",
        "1.0",
        {"alpha/__init__.py": ALPHA_INIT},
        entry_points="[console_scripts]\nalpha-cli = alpha:main\n",
        requires=["beta"],
    )
    beta = make_wheel(wheels, "beta", "1.0", {"beta.py": b"X = 1\n"})
    with serve(write_index(tmp_path_factory.mktemp("index"), [alpha, beta])) as url:
        yield url


@pytest.fixture(scope="module")
def other_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Another index (and find-links dir) that holds higher versions: alpha 9.0, beta 9.0."""
    wheels = tmp_path_factory.mktemp("other-wheels")
    alpha = make_wheel(wheels, "alpha", "9.0", {"alpha/__init__.py": b""}, requires=["beta"])
    beta = make_wheel(wheels, "beta", "9.0", {"beta.py": b""})
    with serve(write_index(tmp_path_factory.mktemp("other-index"), [alpha, beta])) as url:
        yield url, wheels


def test_installs_from_the_index_without_seed_packages(index: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    log = tmp_path / "install.log"
    install_into_venv(["alpha"], venv, index_url=index, check=None, log=log)
    assert installed(venv) == {"alpha": "1.0", "beta": "1.0"}  # no pip, no setuptools
    out = subprocess.run([venv / "bin" / "alpha-cli"], capture_output=True, text=True, check=True)
    assert out.stdout == "alpha says hi\n"
    assert "uv" in log.read_text() and "alpha" in log.read_text()


def test_inherited_pip_and_uv_settings_are_ignored(
    index: str,
    other_index: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other_url, other_wheels = other_index
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL"):
        monkeypatch.setenv(var, other_url)
    monkeypatch.setenv("UV_INDEX", other_url)
    monkeypatch.setenv("UV_DEFAULT_INDEX", other_url)
    monkeypatch.setenv("UV_FIND_LINKS", str(other_wheels))
    monkeypatch.setenv("PIP_FIND_LINKS", str(other_wheels))
    # A user uv.toml that adds the other index, where a user-level uv would find it.
    config = tmp_path / "config"
    (config / "uv").mkdir(parents=True)
    (config / "uv" / "uv.toml").write_text(f'extra-index-url = ["{other_url}"]\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    # ... and a project uv.toml in the directory the install is started from.
    (tmp_path / "uv.toml").write_text(f'extra-index-url = ["{other_url}"]\n')
    monkeypatch.chdir(tmp_path)

    venv = tmp_path / "venv"
    install_into_venv(["alpha"], venv, index_url=index, check=None)
    assert installed(venv) == {"alpha": "1.0", "beta": "1.0"}


def test_constraints_are_applied(index: str, tmp_path: Path) -> None:
    with pytest.raises(RewheelError) as info:
        install_into_venv(
            ["alpha"], tmp_path / "venv", index_url=index, check=None, constraints=["beta<1.0"]
        )
    assert info.value.step == "install"
    assert "beta" in info.value.message


def test_constraints_that_bypass_the_index_are_refused(index: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="direct URL"):
        install_into_venv(
            ["alpha"],
            tmp_path / "venv",
            index_url=index,
            check=None,
            constraints=["beta @ https://example.invalid/beta-9.0-py3-none-any.whl"],
        )
    assert not (tmp_path / "venv").exists()


def test_allowed_hashes_keep_each_project_to_those_files(index: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    with pytest.raises(IntegrityError, match="no file of it has a hash the requirements allow"):
        install_into_venv(["alpha"], venv, index_url=index, check=None, hashes={"beta": {"0" * 64}})
    assert not venv.exists()
    pins = resolve(["alpha"], index_url=index)
    beta = next(p for p in pins if p.name == "beta")
    installed_pins = install_into_venv(
        ["alpha"], venv, index_url=index, check=None, hashes={"beta": set(beta.sha256)}
    )
    assert {(p.name, p.version) for p in installed_pins} == {("alpha", "1.0"), ("beta", "1.0")}


def test_allowed_by_hashes() -> None:
    pins = [
        PinnedRelease("Alpha", "1.0", ("a" * 64, "b" * 64)),
        PinnedRelease("beta", "2", ("c" * 64,)),
    ]
    kept = allowed_by_hashes(pins, {"alpha": {"B" * 64}})
    assert kept == [PinnedRelease("Alpha", "1.0", ("b" * 64,)), pins[1]]
    with pytest.raises(IntegrityError) as info:
        allowed_by_hashes(pins, {"beta": {"d" * 64}})
    assert info.value.package == "beta" and info.value.step == "install"


def test_lock_text_is_read_back_as_the_same_pins() -> None:
    pins = [
        PinnedRelease("Zeta_Pkg", "2.0", ("c" * 64,)),
        PinnedRelease("alpha", "1.0", ("a" * 64, "b" * 64)),
    ]
    text = lock_text(pins, header=["made by a test", "with \x1b[31mred\x1b[0m"])
    assert text.splitlines()[:2] == ["# made by a test", "# with \\x1b[31mred\\x1b[0m"]
    assert parse_pins(text) == [
        PinnedRelease("alpha", "1.0", ("a" * 64, "b" * 64)),
        PinnedRelease("zeta-pkg", "2.0", ("c" * 64,)),
    ]


@pytest.mark.parametrize(
    "requirement", ["alpha @ https://example.invalid/alpha-9.0-py3-none-any.whl", "-e .", ""]
)
def test_requirements_that_bypass_the_index_are_refused(
    requirement: str, index: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError):
        install_into_venv([requirement], tmp_path / "venv", index_url=index, check=None)
    assert not (tmp_path / "venv").exists()


def test_failure_names_the_step_and_log_and_leaves_no_venv(index: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    log = tmp_path / "logs" / "install.log"
    with pytest.raises(RewheelError) as info:
        install_into_venv(["alpha", "gamma"], venv, index_url=index, check=None, log=log)
    assert info.value.step == "install"
    assert info.value.log_path == log
    assert "gamma" in log.read_text()
    assert not venv.exists()


def test_the_error_gives_uv_s_own_reason(index: str, tmp_path: Path) -> None:
    log = tmp_path / "install.log"
    with pytest.raises(RewheelError) as info:
        install_into_venv(
            ["alpha", "gamma"], tmp_path / "venv", index_url=index, check=None, log=log
        )
    message = info.value.message
    # uv's reason, not only "exited with 1" and the log's name.
    assert message.startswith("resolving alpha, gamma against the repository: uv pip compile")
    assert "No solution found" in message and "gamma" in message
    assert "\x1b" not in message
    assert info.value.hint is not None and "rewheel bootstrap" in info.value.hint
    assert "No solution found" in log.read_text()


def test_installer_reason_takes_the_last_diagnostic_without_escapes() -> None:
    output = (
        "Resolved 3 packages\n"
        "\x1b[1m\x1b[31merror\x1b[0m: first\n"
        "\x1b]0;a new window title\x07"
        "  \u00d7 No solution found when resolving dependencies:\n"
        "  \u2570\u2500\u25b6 Because gamma was not found, \x1b[2Jit is unsatisfiable.\x08\n"
    )
    assert installer_reason(output) == (
        "  \u00d7 No solution found when resolving dependencies:\n"
        "  \u2570\u2500\u25b6 Because gamma was not found, it is unsatisfiable.\\x08"
    )


def test_installer_reason_is_bounded() -> None:
    lines = "".join(f"line {i}\n" for i in range(1000))
    reason = installer_reason("error: it went wrong\n" + lines)
    assert reason.startswith("error: it went wrong\nline 0\n")
    assert len(reason.splitlines()) == MAX_REASON_LINES and reason.endswith("...")
    long = installer_reason("error: " + "x" * 100_000)
    assert len(long) == MAX_REASON_CHARS and long.endswith("...")
    # Without a line saying where the reason starts: the last lines.
    assert installer_reason(lines).splitlines()[-1] == "line 999"


def test_installs_into_an_existing_venv_of_the_same_python(index: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / "keep").write_text("mine\n")
    install_into_venv(["beta"], venv, index_url=index, check=None)
    install_into_venv(["alpha"], venv, index_url=index, check=None)
    assert installed(venv) == {"alpha": "1.0", "beta": "1.0"}
    assert (venv / "keep").read_text() == "mine\n"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda venv: (venv / "keep").write_text(""), "not a virtual environment"),
        (
            lambda venv: _edit_cfg(venv, "version", "3.9.1"),
            "made from Python 3.9.1",
        ),
        (
            lambda venv: _edit_cfg(venv, "include-system-site-packages", "true"),
            "sees the system's site-packages",
        ),
    ],
)
def test_refuses_a_folder_that_is_not_a_venv_of_the_same_python(
    index: str, tmp_path: Path, make: Callable[[Path], object], reason: str
) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    make(venv)
    before = sorted(p.relative_to(venv) for p in venv.rglob("*"))
    with pytest.raises(ConfigError, match=reason) as info:
        install_into_venv(["beta"], venv, index_url=index, check=None)
    assert info.value.step == "install" and "new folder" in (info.value.hint or "")
    assert sorted(p.relative_to(venv) for p in venv.rglob("*")) == before


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no second Python here")
def test_refuses_a_venv_of_another_python(index: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    if Path(os.path.realpath(venv / "bin" / "python")) == Path(os.path.realpath(sys.executable)):
        pytest.skip("/usr/bin/python3 is the Python the tests run on")
    with pytest.raises(ConfigError, match="is not a virtual environment made from"):
        install_into_venv(["beta"], venv, index_url=index, check=None)
    assert installed(venv) == {}


def _edit_cfg(venv: Path, key: str, value: str) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    cfg = venv / "pyvenv.cfg"
    lines = [line for line in cfg.read_text().splitlines() if line.partition("=")[0].strip() != key]
    cfg.write_text("\n".join([*lines, f"{key} = {value}"]) + "\n")
