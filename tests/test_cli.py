"""The command line's own behaviour: exit codes, -V, shell completion, variables named as the user
set them, and `rewheel serve` refusing what it cannot serve (Ctrl-C: test_interrupt.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rewheel import __version__, app
from rewheel.cli import Runs, main
from rewheel.core.bootstrap import BootstrapResult


def _run(
    argv: list[str], capsys: pytest.CaptureFixture[str], runs: Runs | None = None
) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv, runs=runs)
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


@pytest.fixture(autouse=True)
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


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([flag], capsys)[:2] == (0, f"rewheel {__version__}\n")


def test_help_exits_0_and_a_usage_error_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--help"], capsys)
    assert code == 0 and out.startswith("Usage: rewheel")
    code, _, err = _run(["bootstrap", "--no-such-option"], capsys)
    assert code == 2 and "--no-such-option" in err and "Usage: rewheel bootstrap" in err
    code, _, err = _run(["no-such-command"], capsys)
    assert code == 2 and "No such command" in err


def test_a_bad_value_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REWHEEL_JOBS", "abc")
    code, _, err = _run(["bootstrap", "pkg"], capsys)
    assert code == 2
    assert err.startswith("rewheel: error: REWHEEL_JOBS: 'abc' is not a valid integer"), err
    assert "--jobs" not in err
    # The same value on the command line is the option's.
    monkeypatch.delenv("REWHEEL_JOBS")
    code, _, err = _run(["bootstrap", "pkg", "--jobs", "abc"], capsys)
    assert code == 2 and "'--jobs'" in err and "REWHEEL_JOBS" not in err


def test_every_option_reads_the_variable_named_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # --constraint's parameter is constraint_files: click alone would read REWHEEL_CONSTRAINT_FILES.
    (tmp_path / "c.txt").write_text("dep<2\n")
    (tmp_path / "settings").mkdir()
    monkeypatch.setenv("REWHEEL_CONSTRAINT", "c.txt")
    monkeypatch.setenv("REWHEEL_SETTINGS", "settings")
    seen, runs = _recording()
    code, _, err = _run(["bootstrap", "pkg"], capsys, runs)
    assert code == 0, err
    assert [str(c) for c in seen[0].constraints] == ["dep<2"]
    assert seen[0].settings_dir == Path("settings")


def test_shell_completion(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("_REWHEEL_COMPLETE", "bash_source")
    code, out, _ = _run([], capsys)
    assert code == 0 and "_rewheel_completion" in out
    monkeypatch.setenv("_REWHEEL_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "rewheel boo")
    monkeypatch.setenv("COMP_CWORD", "1")
    code, out, _ = _run([], capsys)
    assert code == 0 and "plain,bootstrap" in out


# -- rewheel serve -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "not a repository"])
def test_serve_refuses_what_is_not_a_repository_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    target = tmp_path / "rewheel-rpeo"
    if kind == "not a repository":
        target.mkdir()
        (target / "notes.txt").write_text("x")
    code, _, err = _run(["serve", "--repo", str(target), "--port", "0"], capsys)
    assert code == 2
    expected = "there is no repository at" if kind == "missing" else "is not a rewheel repository"
    assert expected in err and "rewheel bootstrap" in err, err
    if kind == "missing":
        assert not target.exists()
    else:
        assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]


def _repository(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "wheels").mkdir(parents=True)
    return repo


def test_serve_on_a_port_in_use_is_an_error_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _repository(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = _run(["serve", "--repo", str(repo), "--port", str(port)], capsys)
    assert code == 2
    assert err.startswith(f"rewheel: error: [serve]: cannot listen on 127.0.0.1:{port}"), err
    assert "--port" in err
    # Nothing was written before the server could listen.
    assert sorted(p.name for p in repo.iterdir()) == ["wheels"]


def test_serve_with_a_bad_host_through_the_real_entry_point(tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWHEEL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "rewheel", "serve", "--repo", str(repo), "--host", "nope.invalid"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "cannot listen on 'nope.invalid'" in proc.stderr and "--host" in proc.stderr


def test_serve_an_unwritable_access_log_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _repository(tmp_path)
    log = tmp_path / "no-such-folder" / "access.log"
    code, _, err = _run(
        ["serve", "--repo", str(repo), "--port", "0", "--access-log", str(log)], capsys
    )
    assert code == 2 and "cannot open the access log" in err


def test_ctrl_c_stops_serve_with_130(tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWHEEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rewheel", "serve", "--repo", str(repo), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("serving ")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "rewheel: interrupted" in err and "Traceback" not in err


def test_refresh_reaches_the_run_from_the_option_and_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen, runs = _recording()
    assert _run(["bootstrap", "pkg"], capsys, runs)[0] == 0
    assert _run(["bootstrap", "pkg", "--refresh"], capsys, runs)[0] == 0
    monkeypatch.setenv("REWHEEL_REFRESH", "1")
    assert _run(["bootstrap", "pkg"], capsys, runs)[0] == 0
    assert [options.refresh for options in seen] == [False, True, True]
