"""A repository served as plain files by a static web server running as another user, as nginx
would serve it (docs/serving.md), installs with pip and uv, and gives pip its sdists; what is
private (the HTTP cache, build folders) stays out of that user's reach.

The server is Python's ``http.server`` run as ``nobody`` with ``setpriv``: that needs root, so the
test is skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import uv
from conftest import Upstream, run_bootstrap
from test_server import _clean_env

from rewheel.core.fsutil import remove_tree, sha256_file

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

pytestmark = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None,
    reason="runs the static server as another user: needs root and setpriv",
)


@pytest.fixture
def srv_folder() -> Iterator[Path]:
    """A folder any user may enter, as /srv is (pytest's own temporary folders are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="rewheel-static-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        remove_tree(base)


def _python() -> str:
    """An interpreter the other user can run: the system's, else this one's real file."""
    system = Path("/usr/bin/python3")
    return str(system) if system.exists() else os.path.realpath(sys.executable)


class StaticServer:
    """``python3 -m http.server`` over ``root``, as nobody; its request log in ``log``."""

    def __init__(self, root: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [
                    *NOBODY,
                    _python(),
                    "-u",
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    str(root),
                    "0",
                ],
                stdout=sink,
                stderr=sink,
                stdin=subprocess.DEVNULL,
                cwd="/",
            )
        deadline = time.monotonic() + 30
        while not (found := re.search(r"port (\d+)", log.read_text())):
            assert self.proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the static server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{found.group(1)}"

    def get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as resp:
                resp.read()
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def requests(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _install(installer: str, index: str, target: Path, package: str) -> None:
    if installer == "uv":
        cmd = [uv.find_uv_bin(), "pip", "install", "--no-config", "--no-cache"]
        cmd += ["--python", sys.executable]
    else:
        cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir"]
        cmd += ["--disable-pip-version-check", "--no-input", "--only-binary", ":all:"]
    cmd += ["--index-url", index, "--target", str(target), package]
    proc = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{installer}:\n{proc.stdout}{proc.stderr}"


def test_a_static_server_running_as_another_user_serves_the_repository(
    upstream: Upstream, srv_folder: Path
) -> None:
    upstream.sdist("st-tool", "1.0")
    upstream.sdist("st-lib", "1.0", build_requires=["st-tool"])
    upstream.sdist("st-app", "1.0", build_requires=["st-tool"], install_requires=["st-lib"])
    repo = srv_folder / "repo"
    old = os.umask(0o022)  # the usual one; test_file_modes covers others
    try:
        result = run_bootstrap(upstream, repo, ["st-app"])
    finally:
        os.umask(old)
    assert result.ok, result.failures
    # Each project's page lists the sdist its wheel was built from, the last one built too.
    for name in ("st-tool", "st-lib", "st-app"):
        page = json.loads((repo / "simple" / name / "index.json").read_text())
        dist = name.replace("-", "_")
        assert sorted(f["filename"] for f in page["files"]) == [
            f"{dist}-1.0-py3-none-any.whl",
            f"{dist}-1.0.tar.gz",
        ]

    # Everything but the private folders is readable by others; those are not even listable.
    for path in repo.rglob("*"):
        top = path.relative_to(repo).parts[0]
        if top in ("work", "cache") or path.name == ".lock":
            continue
        need = 0o005 if path.is_dir() else 0o004
        assert stat.S_IMODE(path.lstat().st_mode) & need == need, path
    assert stat.S_IMODE((repo / "cache").stat().st_mode) == 0o700
    cached = [p for p in (repo / "cache" / "http").rglob("*") if p.is_file()]
    assert cached and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in cached)

    server = StaticServer(repo, srv_folder / "static.log")
    try:
        index = server.url + "/simple/"
        for installer in ("pip", "uv"):
            target = srv_folder / f"target-{installer}"
            _install(installer, index, target, "st-app")
            assert (target / "st_app" / "__init__.py").is_file(), installer
            assert (target / "st_lib" / "__init__.py").is_file(), installer
        log = server.requests()
        assert re.search(r'"GET /wheels/st_app-1\.0-py3-none-any\.whl HTTP/1\.1" 200', log)
        # PEP 658: pip read the wheel's metadata file before the wheel.
        assert re.search(
            r'"GET /wheels/st_app-1\.0-py3-none-any\.whl\.metadata HTTP/1\.1" 200', log
        )
        assert '" 404 ' not in log, log

        # The sdist that was built, listed with its hash and readable: pip finds it.
        downloads = srv_folder / "downloads"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--isolated",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--index-url",
                index,
                "--dest",
                str(downloads),
                "st-tool",
            ],
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (sdist,) = downloads.iterdir()
        assert sdist.name == "st_tool-1.0.tar.gz"
        assert sha256_file(sdist) == sha256_file(repo / "sdists" / sdist.name)

        # What must stay private is not served to the other user.
        assert server.get("/browse/") == 200
        assert server.get("/cache/") == 404
        assert server.get("/work/") == 404
        some_cached = cached[0].relative_to(repo).as_posix()
        assert server.get("/" + some_cached) == 404
    finally:
        server.stop()
