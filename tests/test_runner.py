from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rewheel.build.runner import SubprocessRunner, UnshareProbe
from rewheel.core.errors import CommandFailed

PY = sys.executable


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie nobody reaped (no init in a container) counts as dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_for_file(path: Path, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} never written")


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_output_goes_to_log_with_a_header(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "build.log"
    run = SubprocessRunner()
    code = (
        "import os, sys; print('out', os.getcwd(), os.environ['MARK']); "
        "print('err', file=sys.stderr); print('stdin', repr(sys.stdin.read()))"
    )
    run(py(code), cwd=tmp_path, env={**os.environ, "MARK": "m1"}, log=log)
    run(py("print('second')"), cwd=tmp_path, env=dict(os.environ), log=log)
    text = log.read_text()
    assert f"out {tmp_path} m1" in text
    assert "err" in text
    assert "stdin ''" in text  # stdin is /dev/null, never the terminal
    assert "second" in text  # appended, not overwritten
    assert text.count(f"$ {PY} -c") == 2
    assert text.index("out ") < text.index("second")


def test_nonzero_exit_raises_with_returncode_and_log(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    with pytest.raises(CommandFailed) as info:
        SubprocessRunner()(
            py("import sys; print('boom'); sys.exit(3)"), cwd=tmp_path, env=os.environ, log=log
        )
    assert info.value.returncode == 3
    assert info.value.log_path == log
    assert not info.value.timed_out
    assert "boom" in log.read_text()


def test_missing_program(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed) as info:
        SubprocessRunner()(
            [str(tmp_path / "nope")], cwd=tmp_path, env=os.environ, log=tmp_path / "x.log"
        )
    assert info.value.returncode is None


GRANDCHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(sys.argv[1], "w").write(str(child.pid))
{tail}
"""


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    code = GRANDCHILD.format(tail="time.sleep(60)")
    start = time.monotonic()
    with pytest.raises(CommandFailed) as info:
        SubprocessRunner()(
            [*py(code), str(pidfile)],
            cwd=tmp_path,
            env=os.environ,
            log=tmp_path / "t.log",
            timeout=1.5,
        )
    assert time.monotonic() - start < 10
    assert info.value.timed_out
    assert info.value.returncode is None
    grandchild = int(wait_for_file(pidfile))
    assert wait_dead(grandchild), "the sleeping grandchild survived the timeout"
    assert "timed out" in (tmp_path / "t.log").read_text()


def test_background_leftovers_are_killed_after_exit(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    code = GRANDCHILD.format(tail="")
    SubprocessRunner()(
        [*py(code), str(pidfile)], cwd=tmp_path, env=os.environ, log=tmp_path / "t.log"
    )
    assert wait_dead(int(wait_for_file(pidfile)))


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


CONNECT = "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 3).close()"


def test_isolated_command_cannot_reach_a_local_port(tmp_path: Path, listener: int) -> None:
    if not UnshareProbe().available():
        pytest.skip("unshare --net --map-root-user does not work here")
    run = SubprocessRunner()
    log = tmp_path / "n.log"
    cmd = [*py(CONNECT), str(listener)]
    run(cmd, cwd=tmp_path, env=os.environ, log=log)  # reachable without isolation
    with pytest.raises(CommandFailed):
        run(cmd, cwd=tmp_path, env=os.environ, log=log, isolate_network=True)
    assert "unshare --net" in log.read_text()


def test_unavailable_isolation_is_reported_once_and_the_command_still_runs(
    tmp_path: Path,
) -> None:
    notices: list[str] = []
    run = SubprocessRunner(on_notice=notices.append, unshare=UnshareProbe(lambda: []))
    for _ in range(3):
        run(
            py("print('ran')"),
            cwd=tmp_path,
            env=os.environ,
            log=tmp_path / "l.log",
            isolate_network=True,
        )
    assert len(notices) == 1
    assert "network isolation is not available" in notices[0]
    assert (tmp_path / "l.log").read_text().splitlines().count("ran") == 3


def test_the_probe_runs_once_across_threads() -> None:
    calls: list[int] = []

    def fake_probe() -> list[str]:
        calls.append(1)
        time.sleep(0.05)
        return ["/bin/fake-unshare"]

    probe = UnshareProbe(fake_probe)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(probe.available())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 8
    assert len(calls) == 1
    assert probe.prefix() == ["/bin/fake-unshare"]


def test_the_runner_puts_its_probes_prefix_only_before_isolated_commands(tmp_path: Path) -> None:
    env_program = shutil.which("env")
    assert env_program is not None
    # env runs the command it is given: a prefix that isolates nothing, but shows where it goes.
    run = SubprocessRunner(unshare=UnshareProbe(lambda: [env_program]))
    for isolate in (False, True):
        run(
            py("print('ran')"),
            cwd=tmp_path,
            env=os.environ,
            log=tmp_path / f"{isolate}.log",
            isolate_network=isolate,
        )
    assert f"$ {env_program} {PY} -c" not in (tmp_path / "False.log").read_text()
    assert f"$ {env_program} {PY} -c" in (tmp_path / "True.log").read_text()
