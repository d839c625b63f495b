"""Ctrl-C: ``rewheel bootstrap`` stops with exit code 130 (1 means "some packages failed"), says
so, and keeps what it built: a re-run reuses it.

The run is a subprocess in its own process group; SIGINT goes to the whole group, as a terminal
sends it, while a slow synthetic sdist is being built.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_sdist

RUN = [sys.executable, "-m", "rewheel", "bootstrap"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "REWHEEL_"))}


def _wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while not ready():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.01)


def _log_has(path: Path, text: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return text in path.read_text()
        except (OSError, UnicodeDecodeError):
            return False

    return ready


def test_ctrl_c_exits_130_and_keeps_what_was_built(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    repo, out = tmp_path / "repo", tmp_path / "run.log"
    with FakeIndex() as index:
        index.add(make_sdist(SdistSpec("int-tool", "1.0"), files))
        index.add(
            make_sdist(
                SdistSpec("int-app", "1.0", build_requires=["int-tool"], build_seconds=6),
                files,
            )
        )
        cmd = [*RUN, "--repo", str(repo), "--index-url", index.url, "-j", "2", "int-app"]
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                cmd,
                env=_env(),
                stdout=sink,
                stderr=sink,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            # int-tool is built; int-app's backend is in the middle of its build.
            app_log = repo / "logs/int-app-1.0.log"
            _wait_until("the slow build", _log_has(app_log, "build_wheel"), proc)
            time.sleep(1.0)
            sent = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            # At once: the backend runs in its own session, out of the terminal's reach, so the
            # run kills the hooks under way itself instead of waiting for them to end.
            code = proc.wait(timeout=60)
            stopped_after = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        text = out.read_text()
        assert code == 130, text
        assert "rewheel: interrupted" in text and "Traceback" not in text, text
        assert "Aborted!" not in text
        assert stopped_after < 4.0, stopped_after  # int-app's build had 4 s or more to go
        # The interrupted build published nothing.
        assert not list((repo / "wheels").glob("int_app-*"))
        # What was built before Ctrl-C is kept: wheel, record, index page.
        (tool_wheel,) = (repo / "wheels").glob("int_tool-1.0-*.whl")
        record = json.loads((repo / "records/int-tool-1.0.json").read_text())
        assert record["wheel"] == tool_wheel.name
        assert "int_tool-1.0" in (repo / "simple/int-tool/index.html").read_text()
        assert not list(repo.rglob(".*.tmp"))

        # A re-run reuses it: nothing of int-tool is downloaded or built again.
        before = len(index.requests)
        again = subprocess.run(
            [*RUN, "--repo", str(repo), "--index-url", index.url, "int-tool"],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr
        assert "0 built, 1 reused, 0 failed" in again.stderr
        assert not [p for _m, p in list(index.requests)[before:] if p.endswith(".tar.gz")]


def test_ctrl_c_pressed_twice_stops_the_same_way_without_a_traceback(tmp_path: Path) -> None:
    """An impatient second Ctrl-C (or `timeout`, which signals the child and then its whole
    group) lands while the run is stopping: it must not end in a traceback."""
    files = tmp_path / "files"
    files.mkdir()
    repo, out = tmp_path / "repo", tmp_path / "run.log"
    with FakeIndex() as index:
        index.add(make_sdist(SdistSpec("int-slow", "1.0", build_seconds=6), files))
        cmd = [*RUN, "--repo", str(repo), "--index-url", index.url, "int-slow"]
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                cmd,
                env=_env(),
                stdout=sink,
                stderr=sink,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            _wait_until(
                "the slow build", _log_has(repo / "logs/int-slow-1.0.log", "build_wheel"), proc
            )
            os.killpg(proc.pid, signal.SIGINT)
            for _ in range(20):  # again, while it stops
                time.sleep(0.02)
                if proc.poll() is not None:
                    break
                os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        text = out.read_text()
        assert code == 130, text
        assert "rewheel: interrupted" in text, text
        assert "Traceback" not in text and "never retrieved" not in text, text
