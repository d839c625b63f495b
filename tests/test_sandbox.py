"""The sandbox: what the box looks like (pure), that rewheel refuses to build without one, and
every limit a build can run into, each failing with an error that names it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from rewheel import app
from rewheel.build.runner import SubprocessRunner
from rewheel.build.sandbox import (
    BOX_WORK,
    ENV_ALLOWED,
    Limits,
    SandboxPolicy,
    allowed_environ,
    bwrap_argv,
    make_policy,
    system_view,
)
from rewheel.core.errors import CommandFailed, ConfigError
from rewheel.core.types import Confinement, Relocation

PYTHON = str(Path(sys.base_prefix) / "bin" / "python3")  # visible in the box; our venv is not
MiB = 1 << 20


def _mounts(argv: list[str]) -> list[tuple[str, str]]:
    """(option, destination) of every mount on a bwrap command line."""
    out = []
    for i, word in enumerate(argv):
        if word in ("--ro-bind", "--ro-bind-try", "--bind", "--tmpfs", "--proc", "--dev"):
            dest = argv[i + 2] if word.endswith(("bind", "try")) else argv[i + 1]
            out.append((word, dest))
    return out


def test_the_box_shows_the_system_read_only_and_only_the_named_paths_writable() -> None:
    policy = SandboxPolicy(bwrap="/usr/bin/bwrap", system_paths=(Path("/opt/py"),))
    argv = bwrap_argv(
        policy,
        ["python", "hook.py"],
        cwd=Path("/b/w/src"),
        readable=[Path("/b/w")],
        writable=[Path("/b/w/src"), Path("/b/w/dist")],
    )
    mounts = _mounts(argv)
    writable = [dest for opt, dest in mounts if opt == "--bind"]
    assert writable == ["/b/w/src", "/b/w/dist"]
    # The work folder read-only first, its writable folders on top of it.
    assert mounts.index(("--ro-bind", "/b/w")) < mounts.index(("--bind", "/b/w/src"))
    shown = {dest for _opt, dest in mounts}
    assert {"/usr", "/opt/py", "/etc/ld.so.cache", "/etc/alternatives"} <= shown
    for hidden in ("/etc", "/etc/pip.conf", "/etc/xdg", "/etc/shadow", "/run", "/root", "/home"):
        assert hidden not in shown
    for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent", "--disable-userns"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    remounted = [argv[i + 1] for i, w in enumerate(argv) if w == "--remount-ro"]
    assert remounted == ["/dev", "/"]  # read-only but for the sized /dev/shm and /tmp
    assert ("--tmpfs", "/dev/shm") in mounts
    assert argv[-3:] == ["--", "python", "hook.py"]
    assert "--unshare-net" not in bwrap_argv(
        policy, ["x"], cwd=Path("/"), readable=(), writable=(), network=True
    )


def test_the_work_folder_is_shown_at_its_fixed_path_and_nowhere_else() -> None:
    moved = Relocation(host=Path("/b/w/pkg-1.0"), box=BOX_WORK)
    policy = SandboxPolicy(bwrap="/usr/bin/bwrap", system_paths=(Path("/opt/py"),))
    argv = bwrap_argv(
        policy,
        ["python", "hook.py"],
        cwd=Path("/build/src"),
        readable=[Path("/b/w/pkg-1.0"), Path("/hooks/_in_process.py")],
        writable=[Path("/b/w/pkg-1.0/src"), Path("/ctl")],
        relocated=moved,
    )
    mounts = _mounts(argv)
    assert ("--ro-bind", "/build") in mounts and ("--bind", "/build/src") in mounts
    assert ("--ro-bind", "/hooks/_in_process.py") in mounts and ("--bind", "/ctl") in mounts
    assert not [dest for _opt, dest in mounts if dest.startswith("/b/w")]
    # The sources stay the machine's folders.
    i = argv.index("--ro-bind")
    assert argv[i + 1 : i + 3] == ["/b/w/pkg-1.0", "/build"]
    assert argv[argv.index("--chdir") + 1] == "/build/src"


def test_paths_under_the_work_folder_are_rewritten_in_every_form() -> None:
    moved = Relocation(
        host=Path("/r/pkg-1.0"), box=Path("/build"), aliases=(Path("/real/pkg-1.0"),)
    )
    assert moved.text("/r/pkg-1.0") == "/build"
    assert moved.text("/r/pkg-1.0/env/bin:/usr/bin") == "/build/env/bin:/usr/bin"
    assert moved.text("-I/real/pkg-1.0/src -ffile-prefix-map=/r/pkg-1.0=/x") == (
        "-I/build/src -ffile-prefix-map=/build=/x"
    )
    # Another package's folder, whose name only starts with this one's, is left alone.
    assert moved.text("/r/pkg-1.0.1/src") == "/r/pkg-1.0.1/src"
    assert moved.text("/r/pkg-1.0-x") == "/r/pkg-1.0-x"
    assert moved.path(Path("/r/pkg-1.0/dist")) == Path("/build/dist")
    assert moved.path(Path("/elsewhere")) == Path("/elsewhere")
    confine = Confinement(relocated=moved).adding(writable=[Path("/ctl")])
    assert confine.relocated == moved and confine.in_box(Path("/r/pkg-1.0")) == Path("/build")
    assert Confinement().in_box(Path("/r/pkg-1.0")) == Path("/r/pkg-1.0")


def test_a_relocated_work_folder_needs_the_sandbox(tmp_path: Path) -> None:
    confine = Confinement(relocated=Relocation(host=tmp_path, box=BOX_WORK))
    with pytest.raises(ValueError, match="needs the sandbox"):
        SubprocessRunner()(["true"], cwd=tmp_path, env={}, log=tmp_path / "log", confine=confine)
    assert make_policy(enabled=False).work_in_box is None


def test_a_build_sees_its_work_folder_at_the_fixed_path(bwrap: str, tmp_path: Path) -> None:
    work = tmp_path / "root" / "pkg-1.0"
    (work / "src").mkdir(parents=True)
    runner = SubprocessRunner(sandbox=make_policy(enabled=True, bwrap=bwrap))
    confine = Confinement(
        readable=(work,),
        writable=(work / "src",),
        relocated=Relocation(host=work, box=BOX_WORK),
    )
    code = (
        "import os, sys; open('seen', 'w').write(repr((os.getcwd(), sys.argv[1], "
        "os.environ['WHERE'], os.path.exists(sys.argv[2]))))"
    )
    runner(
        [PYTHON, "-c", code, str(work / "src"), str(tmp_path)],
        cwd=work / "src",
        env={"WHERE": f"{work}/env/bin:/usr/bin"},
        log=tmp_path / "log",
        confine=confine,
    )
    seen = (work / "src" / "seen").read_text()
    assert seen == repr(("/build/src", "/build/src", "/build/env/bin:/usr/bin", False))


def test_the_system_view_never_shows_what_is_hidden(tmp_path: Path) -> None:
    venv, tools, repo = tmp_path / "venv", tmp_path / "tools", tmp_path / "repo"
    for d in (venv / "bin", tools, repo / "bin"):
        d.mkdir(parents=True)
    path = ":".join([str(venv / "bin"), str(tools), str(repo / "bin"), "/usr/bin", "relative"])
    view = system_view(
        {"PATH": path}, python_prefix=Path("/py"), hidden=[venv, repo, tmp_path / "tools" / "k"]
    )
    # tools holds a hidden folder below it: showing it would show the key too.
    assert view == (Path("/py"),)
    assert system_view({"PATH": str(tools)}, python_prefix=Path("/py"), hidden=[venv]) == (
        Path("/py"),
        tools,
    )


def test_only_allow_listed_variables_pass() -> None:
    base = {"PATH": "/bin", "CFLAGS": "-O2", "GITHUB_TOKEN": "x", "SSH_AUTH_SOCK": "/s"}
    assert allowed_environ(base) == {"PATH": "/bin", "CFLAGS": "-O2"}
    assert not [k for k in ENV_ALLOWED if "TOKEN" in k or "SECRET" in k or "AUTH" in k]


def test_without_bwrap_rewheel_refuses_to_build_and_says_how_to_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as info:
        make_policy(enabled=True, bwrap=str(tmp_path / "no-bwrap"))
    assert "cannot sandbox builds" in str(info.value)
    assert info.value.hint is not None
    assert "apt-get install bubblewrap" in info.value.hint and "--no-sandbox" in info.value.hint

    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    repo = tmp_path / "repo"
    options = app.BootstrapOptions(
        requirements=[Requirement("anything")], repo=repo, index_url="http://127.0.0.1:9/simple"
    )
    with pytest.raises(ConfigError, match="bubblewrap"):
        app.bootstrap(options)
    assert not repo.exists()  # refused before anything was made
    # Saying so is the way out: no probe, and the records will say "none".
    assert make_policy(enabled=False).as_record()["kind"] == "none"


@pytest.fixture(scope="module")
def bwrap() -> str:
    found = make_policy(enabled=True).bwrap
    assert found is not None
    return found


def _run(bwrap: str | None, tmp_path: Path, code: str, limits: Limits, **kwargs: object) -> str:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    log = tmp_path / "log"
    policy = make_policy(enabled=bwrap is not None, limits=limits, bwrap=bwrap)
    runner = SubprocessRunner(sandbox=policy, poll_seconds=0.05)
    runner(
        [PYTHON, "-c", code],
        cwd=work,
        env={"PATH": "/usr/bin:/bin"},
        log=log,
        confine=Confinement(writable=(work,)),
        **kwargs,  # type: ignore[arg-type]
    )
    return log.read_text()


@pytest.mark.parametrize("sandboxed", [True, False])
def test_a_default_wall_time_applies_without_any_timeout_given(
    bwrap: str, tmp_path: Path, sandboxed: bool
) -> None:
    with pytest.raises(CommandFailed) as info:
        _run(
            bwrap if sandboxed else None,
            tmp_path,
            "import time; time.sleep(60)",
            Limits(wall_seconds=0.5),
        )
    assert info.value.limit == "wall time" and info.value.timed_out
    assert "timed out after 0.5s" in str(info.value)


def test_a_file_larger_than_the_limit_stops_the_build(bwrap: str, tmp_path: Path) -> None:
    code = "open('big', 'wb').write(b'x' * (3 << 20))"
    with pytest.raises(CommandFailed) as info:
        _run(bwrap, tmp_path, code, Limits(file_bytes=1 * MiB))
    assert info.value.limit == "file size"
    assert "larger than the limit of 1 MiB" in str(info.value)


def test_a_build_that_fills_its_folders_is_stopped(bwrap: str, tmp_path: Path) -> None:
    code = (
        "import time\n"
        "for i in range(400):\n"
        "    open(f'f{i}', 'wb').write(b'x' * (1 << 20)); time.sleep(0.01)\n"
    )
    with pytest.raises(CommandFailed) as info:
        _run(bwrap, tmp_path, code, Limits(folder_bytes=8 * MiB))
    assert info.value.limit == "folder size"
    assert "more than the limit of 8 MiB" in str(info.value)
    assert len(list((tmp_path / "work").iterdir())) < 400


def test_memory_beyond_the_limit_cannot_be_had(bwrap: str, tmp_path: Path) -> None:
    code = "b = bytearray(1 << 30)"
    with pytest.raises(CommandFailed):
        _run(bwrap, tmp_path, code, Limits(memory_bytes=256 * MiB))
    assert "MemoryError" in (tmp_path / "log").read_text()


def test_output_past_the_cap_is_dropped_and_the_log_says_so(bwrap: str, tmp_path: Path) -> None:
    log = _run(bwrap, tmp_path, "print('y' * 200_000)", Limits(output_bytes=4096))
    assert max(len(run) for run in re.findall("y+", log)) == 4096
    assert "more bytes of output dropped" in log


def test_the_build_gets_a_pipe_not_the_log_and_cannot_write_outside(
    bwrap: str, tmp_path: Path
) -> None:
    code = (
        "import os\n"
        "print('fd1', os.readlink('/proc/self/fd/1'))\n"
        "for p in ('/x', '/usr/x', '/etc/x'):\n"
        "    try:\n"
        "        open(p, 'w')\n"
        "        print('W' + 'ROTE', p)\n"
        "    except OSError:\n"
        "        print('RE' + 'FUSED', p)\n"
        "open('/tmp/small', 'w').write('ok')\n"
    )
    log = _run(bwrap, tmp_path, code, Limits())
    assert "fd1 pipe:" in log
    assert "WROTE" not in log and log.count("REFUSED") == 3
