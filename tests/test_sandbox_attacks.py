"""A hostile sdist tries every escape the sandbox exists to stop; each must fail.

One bootstrap runs a package whose in-tree backend, while building, looks for rewheel's command
line and environment in /proc, reads the signing key, the user's secrets and another build's
folder by absolute path, writes into the repository, its own build environment and the system,
connects to an agent socket, an abstract socket and the index, leaves a ``setsid`` daemon behind,
and tries a nested user namespace. What it found is written into its wheel
(``_build_info.json``), so that the test can read it back; the build itself succeeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import build_info
from packaging.requirements import Requirement
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_sdist
from test_hostile_builds import running_with

from rewheel import app
from rewheel.repo.repository import Repository

INDEX_PASSWORD = "hunter2-index-password"
TOKEN = "rewheel-daemon-7f3a91"
CONTROL_TOKEN = "rewheel-daemon-control-2c44e0"  # the unsandboxed run's

ATTACK = r"""
import json, os, socket, subprocess, sys

P = json.loads(PARAMS)


def _readable(path):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
        return True
    except OSError:
        return False


def _writable(path):
    try:
        with open(path, "w") as f:
            f.write("owned")
        return True
    except OSError:
        return False


def _connects(family, address):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(address)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _procs():
    seen = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                seen[pid] = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            pass
    return seen


def _environ_hits(needle):
    hits = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if needle.encode() in f.read():
                        hits.append(pid)
            except OSError:
                pass
    return hits


def attack(hook):
    if hook != "build_wheel":
        return None
    daemon = subprocess.Popen(
        ["setsid", sys.executable, "-c",
         f"import time; time.sleep(30)  # {P['token']}"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    out = {
        "ppid": os.getppid(),
        "cmdlines": list(_procs().values()),
        "environ_secrets": sorted(k for k in P["secret_vars"] if k in os.environ),
        "environ_hits": _environ_hits(P["password"]),
        "read": {label: _readable(path) for label, path in P["read"].items()},
        "write": {label: _writable(path) for label, path in P["write"].items()},
        "sockets": {
            "agent": _connects(socket.AF_UNIX, P["agent"]),
            "abstract": _connects(socket.AF_UNIX, "\0" + P["abstract"]),
            "index": _connects(socket.AF_INET, ("127.0.0.1", P["index_port"])),
        },
        "daemon_started": daemon.pid > 0,
    }
    try:
        done = subprocess.run(["unshare", "--user", "--map-root-user", "true"], check=False,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out["nested_userns"] = done.returncode == 0
    except OSError:
        out["nested_userns"] = False
    return out
"""


@dataclass
class Attacked:
    found: dict[str, Any]
    repo: Path
    victims: dict[str, Path]
    listeners: list[socket.socket]


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    yield from _attack_run(tmp_path_factory.mktemp("attack"), sandbox=True)


def _attack_run(base: Path, *, sandbox: bool) -> Iterator[Attacked]:
    repo, work = base / "repo", base / "work"
    outside = base / "outside"
    (outside / "home" / ".ssh").mkdir(parents=True)
    victims = {
        "signing_key": outside / "keys" / "signing.pem",
        "home_secret": outside / "home" / ".ssh" / "id_ed25519",
        "other_build": work / "victim-1.0" / "src" / "setup.py",
        "outside_file": outside / "notes.txt",
    }
    for path in victims.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("secret\n")
    agent_path = outside / "agent.sock"
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.bind(str(agent_path))
    agent.listen(1)
    abstract_name = f"rewheel-test-abstract-{os.getpid()}-{base.name}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + abstract_name)
    abstract.listen(1)
    env_secrets = {
        "AWS_SECRET_ACCESS_KEY": "aws-s3cr3t",
        "GITHUB_TOKEN": "ghp_s3cr3t",
        "SSH_AUTH_SOCK": str(agent_path),
        "REWHEEL_TEST_INDEX_PASSWORD": INDEX_PASSWORD,
    }
    saved = {k: os.environ.get(k) for k in env_secrets}
    os.environ.update(env_secrets)
    with FakeIndex() as index:
        port = int(index.url.split(":")[2].split("/")[0])
        params = {
            "token": TOKEN if sandbox else CONTROL_TOKEN,
            "secret_vars": sorted(env_secrets),
            "password": INDEX_PASSWORD,
            "agent": str(agent_path),
            "abstract": abstract_name,
            "index_port": port,
            "read": {
                **{label: str(path) for label, path in victims.items()},
                "repository": str(repo),
                "rewheel_source": str(Path(app.__file__).parent),
                "shadow": "/etc/shadow",
                "pip_conf": "/etc/pip.conf",
                "run": "/run",
            },
            "write": {
                "repository": str(repo / "wheels" / "trojan.whl"),
                "records": str(repo / "records" / "evil.json"),
                "other_build": str(victims["other_build"]),
                "outside": str(outside / "planted.txt"),
                "system": "/usr/planted.txt",
                "root": "/planted.txt",
                "own_build_env": str(work / "evil-1.0" / "env" / "planted.txt"),
            },
        }
        code = ATTACK.replace("PARAMS", repr(json.dumps(params)))
        index.add(make_sdist(SdistSpec("evil", "1.0", attack=code), base / "files"))
        try:
            result = app.bootstrap(
                app.BootstrapOptions(
                    requirements=[Requirement("evil")],
                    repo=repo,
                    index_url=index.url,
                    jobs=1,
                    work_dir=work,
                    sandbox=sandbox,
                )
            )
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    assert result.ok, result.failures
    (ref,) = Repository(repo).find_wheels("evil", "1.0")
    found = build_info(repo / "wheels" / ref.filename)["attack"]
    try:
        yield Attacked(found, repo, victims, [agent, abstract])
    finally:
        agent.close()
        abstract.close()


def test_the_build_sees_no_process_of_rewheel(attacked: Attacked) -> None:
    # Its own PID namespace: bwrap is its parent's stand-in, the only other process there.
    found = attacked.found
    assert found["ppid"] in (0, 1)
    ours = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert ours not in found["cmdlines"]  # the process that runs rewheel (this test) is hidden
    assert not [c for c in found["cmdlines"] if str(attacked.repo) in c]
    assert found["environ_hits"] == []  # no /proc/<rewheel>/environ with the index password


def test_the_build_inherits_no_secret_variable(attacked: Attacked) -> None:
    assert attacked.found["environ_secrets"] == []


def test_nothing_outside_the_build_can_be_read(attacked: Attacked) -> None:
    read = attacked.found["read"]
    assert read == {label: False for label in read}, read


def test_nothing_outside_the_build_can_be_written(attacked: Attacked) -> None:
    write = attacked.found["write"]
    assert write == {label: False for label in write}, write
    assert attacked.victims["other_build"].read_text() == "secret\n"
    assert not (attacked.repo / "wheels" / "trojan.whl").exists()
    assert not list(attacked.repo.rglob("evil.json"))


def test_no_socket_reaches_out(attacked: Attacked) -> None:
    assert attacked.found["sockets"] == {"agent": False, "abstract": False, "index": False}


def test_no_daemon_outlives_the_build(attacked: Attacked) -> None:
    assert attacked.found["daemon_started"]
    deadline = time.monotonic() + 5
    while running_with(TOKEN) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running_with(TOKEN) == []


def test_no_nested_user_namespace(attacked: Attacked) -> None:
    assert attacked.found["nested_userns"] is False


def test_records_and_provenance_say_how_the_build_was_contained(attacked: Attacked) -> None:
    repo = Repository(attacked.repo)
    record = repo.load_record("evil", "1.0")
    assert record is not None
    assert record.sandbox is not None and record.sandbox["kind"] == "bubblewrap"
    assert record.sandbox["limits"]["wall_seconds"] == 3600
    (ref,) = repo.find_wheels("evil", "1.0")
    statement = json.loads(
        repo.wheel_path(ref).with_name(ref.filename + ".provenance.json").read_text()
    )
    internal = statement["predicate"]["buildDefinition"]["internalParameters"]
    assert internal["sandbox"]["kind"] == "bubblewrap"


def test_without_the_sandbox_the_same_build_gets_through(tmp_path: Path) -> None:
    """The control: with --no-sandbox (as before the sandbox existed) the escapes work, which
    shows that the probes above would see them. Only the environment allow-list and the
    network cut still hold."""
    run = _attack_run(tmp_path, sandbox=False)
    attacked = next(run)
    try:
        found = attacked.found
        assert found["read"]["signing_key"] and found["read"]["home_secret"]
        assert found["read"]["other_build"] and found["read"]["repository"]
        assert found["write"]["outside"] and found["write"]["own_build_env"]
        assert found["sockets"]["agent"]
        record = Repository(attacked.repo).load_record("evil", "1.0")
        assert record is not None and record.sandbox is not None
        assert record.sandbox["kind"] == "none"
        assert found["environ_secrets"] == []
        assert running_with(CONTROL_TOKEN)  # the setsid daemon outlived its build
    finally:
        for pid in running_with(CONTROL_TOKEN):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        run.close()


TRAPS = {
    # After the hook has answered, its answer becomes an endless file: rewheel would read it
    # whole into memory.
    "endless_answer": r"""
import atexit, os, sys

def attack(hook):
    if hook == "build_wheel":
        out = os.path.join(sys.argv[2], "output.json")
        atexit.register(lambda: (os.remove(out), os.symlink("/dev/zero", out)))
""",
    # The wheel it names becomes a link to a file of the machine's: rewheel would publish it.
    "linked_wheel": r"""
import atexit, glob, json, os, sys

def attack(hook):
    if hook == "build_wheel":
        with open(os.path.join(sys.argv[2], "input.json")) as f:
            out = json.load(f)["kwargs"]["wheel_directory"]

        def swap():
            for wheel in glob.glob(os.path.join(out, "*.whl")):
                os.remove(wheel)
                os.symlink("/etc/passwd", wheel)

        atexit.register(swap)
""",
}


@pytest.mark.parametrize("trap", sorted(TRAPS))
def test_what_a_hook_leaves_behind_is_checked_before_rewheel_reads_it(
    tmp_path: Path, trap: str
) -> None:
    with FakeIndex() as index:
        index.add(make_sdist(SdistSpec("trap", "1.0", attack=TRAPS[trap]), tmp_path / "files"))
        result = app.bootstrap(
            app.BootstrapOptions(
                requirements=[Requirement("trap")],
                repo=tmp_path / "repo",
                index_url=index.url,
                jobs=1,
                work_dir=tmp_path / "work",
            )
        )
    error = result.failures["trap==1.0"]
    assert "not a plain file" in str(error)
    assert not Repository(tmp_path / "repo").find_wheels("trap", "1.0")
