"""Attacks by ONE hostile sdist (its build code or its archive) that a red-team review of rewheel
found getting through, each now stopped.

Every test mounts the attack as it was found and asserts the defence with what can be observed:
the secret was not read, the file was not planted, the victim's mode did not change, no daemon
is left, rewheel did not hang, the build failed with an error naming the cause, or, where the
defence is silent, the build still succeeded without what the attack wanted. Each test failed
against the code before the fixes (commit c32049c), so each would notice the hole coming back;
``test_the_folder_watch_stops_a_build_that_fills_its_source_tree`` and
``test_a_license_file_link_out_of_the_tree_is_refused`` are controls that held then too.

A few cases are variants of a found attack that still get through the fix (their docstrings say
so and where): they assert the defence all the same, and fail until it is complete.

Everything is written under tmp_path, the test work folders, or the temporary folders rewheel
itself makes in /tmp (which the tests remove again); the only network used is the local index on
127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import build_info
from packaging.requirements import Requirement
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_sdist
from test_hostile_builds import running_with

from rewheel import app
from rewheel.build.sandbox import Limits
from rewheel.repo.repository import Repository

MiB = 1 << 20
TESTS = Path(__file__).parent
PYTHON = Path(sys.executable)
FOLDER_LIMIT_TEXT = "wrote more than the limit of 16 MiB into its folders"

needs_cargo = pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo")
needs_rustup = pytest.mark.skipif(
    shutil.which("rustup") is None or shutil.which("cargo") is None,
    reason="needs rustup's proxies (cargo, rustc) on PATH",
)


# ---------------------------------------------------------------------------- helpers


def _bootstrap(
    tmp_path: Path,
    sdists: list[Path],
    requirement: str,
    *,
    repo: str = "repo",
    machine: app.Machine | None = None,
    **options: Any,
) -> Any:
    with FakeIndex() as index:
        for s in sdists:
            index.add(s)
        return app.bootstrap(
            app.BootstrapOptions(
                requirements=[Requirement(requirement)],
                repo=tmp_path / repo,
                index_url=index.url,
                jobs=1,
                work_dir=tmp_path / "work",
                **options,
            ),
            machine=machine or app.Machine(),
        )


def _attack_sdist(tmp_path: Path, name: str, attack: str, **params: Any) -> Path:
    code = attack.replace("PARAMS", repr(json.dumps(params)))
    return make_sdist(
        SdistSpec(name, "1.0", attack=code, **_spec_extra(params)), tmp_path / "files"
    )


def _spec_extra(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"dynamic_requires": params["dynamic_requires"]} if "dynamic_requires" in params else {}


def _found(repo: Path, name: str) -> dict[str, Any]:
    (ref,) = Repository(repo).find_wheels(name, "1.0")
    found: dict[str, Any] = build_info(repo / "wheels" / ref.filename)["attack"]
    return found


def _tar_sdist(
    dest: Path, name: str, version: str, files: Mapping[str, bytes | tuple[bytes, int]]
) -> Path:
    """A plain .tar.gz sdist ``{name}-{version}/...`` with the given files (and modes)."""
    top = f"{name}-{version}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        for path, content in sorted(files.items()):
            data, mode = content if isinstance(content, tuple) else (content, 0o644)
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{top}.tar.gz"
    out.write_bytes(buf.getvalue())
    return out


def _pkg_info(name: str, version: str = "1.0") -> bytes:
    return f"Metadata-Version: 2.2\nName: {name}\nVersion: {version}\n".encode()


def _failure(result: Any, node: str) -> BaseException:
    """The error that stopped ``node``; a build that succeeded means the attack got through."""
    assert node in result.failures, f"{node} was built: nothing stopped it"
    error: BaseException = result.failures[node]
    return error


def _small_limits(**kw: Any) -> app.Machine:
    """A machine whose sandbox has these limits (and 120 s of wall time)."""
    limits = Limits(**{"wall_seconds": 120.0, **kw})
    return app.Machine(limits=lambda _wall: limits)


def _rm_rf(path: str) -> None:
    """Remove a tree that may be deeper than Python's recursion limit (pre-fix leftovers)."""
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


def _disk_bytes(root: Path) -> int:
    return sum(p.lstat().st_blocks * 512 for p in root.rglob("*"))


# ============================================================= /dev and the folder-size watch

DEV = r"""
import json, os
P = json.loads(PARAMS)

def _errno(call):
    try:
        call()
        return None
    except OSError as exc:
        return exc.errno

def attack(hook):
    if hook != "build_wheel":
        return None
    out = {}
    st = os.statvfs("/dev/shm")
    out["shm_size_mib"] = st.f_blocks * st.f_frsize >> 20
    block = b"\xa5" * (1 << 20)
    written = 0
    fd = os.open("/dev/shm/fill", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(P["mib"]):
            written += os.write(fd, block)
        out["shm_errno"] = None
    except OSError as exc:
        out["shm_errno"] = exc.errno
    finally:
        os.close(fd)
        os.unlink("/dev/shm/fill")
    out["shm_written_mib"] = written / (1 << 20)
    # /dev itself: a tmpfs of half the machine's memory, unless read-only.
    out["dev_file_errno"] = _errno(lambda: os.close(os.open("/dev/planted", os.O_CREAT)))
    out["dev_dir_errno"] = _errno(lambda: os.mkdir("/dev/planted-dir"))
    return out
"""


def test_dev_is_read_only_and_dev_shm_is_capped_at_64_mib(tmp_path: Path) -> None:
    """bwrap's /dev is a tmpfs as large as half the machine's memory, outside the folder watch.
    The box gets it read-only, with a 64 MiB /dev/shm: 80 MiB written there end in ENOSPC, and
    nothing can be created in /dev. The build is not stopped (the kernel refuses quietly)."""
    sdist = _attack_sdist(tmp_path, "fill", DEV, mib=80)
    result = _bootstrap(tmp_path, [sdist], "fill")
    assert result.ok, result.failures
    found = _found(tmp_path / "repo", "fill")
    assert found["shm_size_mib"] <= 64, found
    assert found["shm_errno"] == errno.ENOSPC, found
    assert found["shm_written_mib"] <= 64, found
    assert found["dev_file_errno"] == errno.EROFS, found
    assert found["dev_dir_errno"] == errno.EROFS, found


FILL = r"""
import json, os, socket, time
P = json.loads(PARAMS)

def attack(hook):
    if hook != "build_wheel":
        return None
    here = os.getcwd()
    if P["where"] == "long_path":           # a watched folder, below a path > PATH_MAX
        fd = os.open(".", os.O_RDONLY)
        for _ in range(24):
            os.mkdir("d" * 200, dir_fd=fd)
            nfd = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.fchdir(fd)
        os.close(fd)
    f = open("blob", "wb")
    if P["where"] in ("unlinked", "in_flight"):   # no name left before the first byte is written
        os.unlink("blob")
    if P["where"] == "in_flight":
        # Allocated at once, then held by no process: only by a message in a unix socket.
        os.posix_fallocate(f.fileno(), 0, P["mib"] << 20)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        socket.send_fds(a, [b"x"], [f.fileno()])
        f.close()
    else:
        block = b"\xa5" * (1 << 20)
        for _ in range(P["mib"]):
            f.write(block)
        f.flush()
    time.sleep(3.5)                          # the watch looks every second
    f.close()
    os.chdir(here)
    return {"survived": True}
"""


@pytest.mark.parametrize(
    "where",
    [
        "unlinked",
        "long_path",
        pytest.param(
            "in_flight",
            marks=pytest.mark.xfail(
                strict=True,
                reason="known, not closed (docs/threat-model.md): an unlinked file whose only "
                "reference sits in a unix socket's queue is invisible to the watch",
            ),
        ),
    ],
)
def test_the_folder_watch_counts_unlinked_files_and_paths_past_path_max(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A file unlinked while held open, or a folder whose path is longer than PATH_MAX, hid
    from the watch (a scandir by path): 64 MiB stayed past a 16 MiB limit. The watch walks by
    descriptor and adds what the build's processes hold open without a name: it stops the
    build and says which limit.

    ``in_flight`` is the same unlinked file passed over a unix socket (SCM_RIGHTS) and closed:
    held by a message in the socket's queue, in no process's descriptor table. It still gets
    past the watch (runner.unlinked_bytes looks only in /proc/<pid>/fd), so this case FAILS
    until that is closed."""
    machine = _small_limits(folder_bytes=16 * MiB)
    sdist = _attack_sdist(tmp_path, "fill", FILL, where=where, mib=64)
    started = time.monotonic()
    result = _bootstrap(tmp_path, [sdist], "fill", machine=machine)
    error = _failure(result, "fill==1.0")
    assert FOLDER_LIMIT_TEXT in str(error), error
    assert getattr(error.__cause__, "limit", None) == "folder size", error.__cause__
    assert time.monotonic() - started < 60
    assert not Repository(tmp_path / "repo").find_wheels("fill", "1.0")


def test_the_folder_watch_stops_a_build_that_fills_its_source_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the same 64 MiB written plainly into the source tree was always stopped."""
    machine = _small_limits(folder_bytes=16 * MiB)
    sdist = _attack_sdist(tmp_path, "fill", FILL, where="src", mib=64)
    result = _bootstrap(tmp_path, [sdist], "fill", machine=machine)
    error = _failure(result, "fill==1.0")
    assert FOLDER_LIMIT_TEXT in str(error), error


# ====================================================== rewheel's own mkdirs in the build's HOME


HOME_LINK = r"""
import json, os, shutil
P = json.loads(PARAMS)

def attack(hook):
    if hook == "get_requires_for_build_wheel":
        # HOME is <work>/home, writable. rewheel made .local/share and .local/state in it; swap
        # .local for a link to a folder of the machine (which does not exist in the box).
        home = os.environ["HOME"]
        shutil.rmtree(os.path.join(home, ".local"))
        os.symlink(P["victim"], os.path.join(home, ".local"))
    return None
"""


def test_build_env_folders_in_home_are_made_through_no_link(tmp_path: Path) -> None:
    """Between the hooks rewheel creates a second build environment and, with it, HOME/.local/
    share etc. in the build's own (writable) HOME. Through a link the build planted there,
    ``mkdir(parents=True)`` created folders anywhere the user can write. The folders are now
    made one by one without following links: the victim folder stays empty and the build stops
    saying it cannot prepare HOME."""
    victim = tmp_path / "outside" / "victim-dir"
    victim.mkdir(parents=True)
    helper = make_sdist(SdistSpec("helper", "1.0"), tmp_path / "files")
    evil = _attack_sdist(
        tmp_path, "evil", HOME_LINK, victim=str(victim), dynamic_requires=["helper"]
    )
    result = _bootstrap(tmp_path, [helper, evil], "evil")
    assert list(victim.iterdir()) == []
    error = str(_failure(result, "evil==1.0"))
    assert "cannot prepare" in error, error
    assert "Not a directory" in error, error


# ================================================================ the seccomp filter: keyrings

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_ADD_KEY, _SYS_KEYCTL = 248, 250  # x86_64
_KEYCTL_JOIN_SESSION_KEYRING, _KEYCTL_SEARCH, _KEYCTL_READ = 1, 10, 11
_KEY_SPEC_SESSION_KEYRING = -3

KEYRING = r"""
import ctypes, json
P = json.loads(PARAMS)
libc = ctypes.CDLL(None, use_errno=True)

def attack(hook):
    if hook != "build_wheel":
        return None
    out = {"read": None}
    kid = libc.syscall(250, 10, -3, b"user", P["desc"].encode(), 0)      # KEYCTL_SEARCH @s
    out["search_errno"] = None if kid > 0 else ctypes.get_errno()
    if kid > 0:
        buf = ctypes.create_string_buffer(256)
        n = libc.syscall(250, 11, kid, buf, 256)                           # KEYCTL_READ
        out["read"] = buf.raw[:n].decode() if n > 0 else None
    planted = libc.syscall(248, b"user", b"planted-by-build", b"left-behind", 11, -3)
    out["planted"] = planted > 0
    out["add_errno"] = None if planted > 0 else ctypes.get_errno()
    return out
"""


def _search_session_key(desc: bytes) -> bytes | None:
    kid = _libc.syscall(_SYS_KEYCTL, _KEYCTL_SEARCH, _KEY_SPEC_SESSION_KEYRING, b"user", desc, 0)
    if kid <= 0:
        return None
    buf = ctypes.create_string_buffer(256)
    n = _libc.syscall(_SYS_KEYCTL, _KEYCTL_READ, kid, buf, 256)
    return buf.raw[: max(n, 0)]


@pytest.mark.skipif(
    os.uname().machine != "x86_64", reason="the probe uses x86_64 system call numbers"
)
def test_the_seccomp_filter_refuses_the_kernel_keyrings(tmp_path: Path) -> None:
    """bwrap's namespaces keep rewheel's session keyring: a build read the secrets there
    (Kerberos KEYRING ccaches, tokens added with ``keyctl add ... @s``) and left keys that
    rewheel and every later build saw. The seccomp filter answers keyctl and add_key with
    ENOSYS: the key is not read, nothing is planted, and the build goes on."""
    # A fresh anonymous session keyring for this test process, so nothing real is touched.
    sk = _libc.syscall(_SYS_KEYCTL, _KEYCTL_JOIN_SESSION_KEYRING, None)
    if sk < 0:
        pytest.skip("keyctl is not allowed here")
    secret = b"krb5-tgt-of-the-user"
    assert _libc.syscall(_SYS_ADD_KEY, b"user", b"rewheel-redteam", secret, len(secret), -3) > 0
    sdist = _attack_sdist(tmp_path, "keys", KEYRING, desc="rewheel-redteam")
    result = _bootstrap(tmp_path, [sdist], "keys")
    assert result.ok, result.failures
    found = _found(tmp_path / "repo", "keys")
    assert found["read"] is None, found
    assert found["search_errno"] == errno.ENOSYS, found
    assert not found["planted"], found
    assert found["add_errno"] == errno.ENOSYS, found
    assert _search_session_key(b"planted-by-build") is None
    assert _search_session_key(b"rewheel-redteam") == secret  # the probe works out here


# ========================================================== a METADATA bomb in the built wheel

BOMB = r"""
import atexit, glob, json, os, sys, zipfile
P = json.loads(PARAMS)

def attack(hook):
    if hook != "build_wheel":
        return None
    with open(os.path.join(sys.argv[2], "input.json")) as f:
        out = json.load(f)["kwargs"]["wheel_directory"]

    def swap():
        (wheel,) = glob.glob(os.path.join(out, "*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        meta = [n for n in members if n.endswith(".dist-info/METADATA")][0]
        os.remove(wheel)
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for n, data in members.items():
                if n != meta:
                    zf.writestr(n, data)
            with zf.open(meta, "w", force_zip64=True) as m:   # streamed: little memory here
                m.write(members[meta] + b"\n")
                chunk = b" " * (1 << 20)
                for _ in range(P["mib"]):
                    m.write(chunk)

    atexit.register(swap)
    return None
"""


def test_a_metadata_bomb_is_refused_after_reading_at_most_16_mib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A < 1 MiB wheel whose METADATA inflates to 128 MiB (deflate packs ~1000:1; the file
    limit allows TiB) was read whole into rewheel's own process and published as PEP 658
    metadata. rewheel now reads at most 16 MiB of it and refuses the wheel: nothing larger
    reaches rewheel's memory, nothing is published, and the error names the cause."""
    sdist = _attack_sdist(tmp_path, "bomb", BOMB, mib=128)
    result = _bootstrap(tmp_path, [sdist], "bomb")
    error = str(_failure(result, "bomb==1.0"))
    assert "METADATA file larger than 16 MiB" in error, error
    assert not Repository(tmp_path / "repo").find_wheels("bomb", "1.0")
    assert not list((tmp_path / "repo" / "wheels").glob("bomb-*"))


# ============================================ trees deeper than Python's recursion limit (rmtree)

DEEP = r"""
import json, os, sys
P = json.loads(PARAMS)

def _deep(base, depth, payload_mib):
    fd = os.open(base, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    f = os.open("payload", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(f, b"x" * (payload_mib << 20))
    os.close(f)
    os.close(fd)

def attack(hook):
    if hook != "build_wheel":
        return None
    if P["where"] == "control":
        print("CONTROL-DIR=" + sys.argv[2], flush=True)
        _deep(sys.argv[2], P["depth"], 4)
        if P.get("hook") == "fails":
            sys.exit(1)
    else:
        _deep(os.path.dirname(os.getcwd()), P["depth"], 4)   # <work>/src
    return None
"""


@pytest.mark.parametrize("hook", ["succeeds", "fails"])
def test_the_hook_control_folder_is_tidied_without_recursion(tmp_path: Path, hook: str) -> None:
    """pyproject_hooks' control folder is a TemporaryDirectory in the machine's /tmp, writable
    by the hook; Python 3.11's recursive rmtree raised RecursionError on a 3000-deep tree left
    there, so the tree (up to the folder limit) stayed in the machine's /tmp and the build
    failed with an 'unexpected error'. rewheel now empties the folder itself, iteratively:
    nothing is left in /tmp, and the build succeeds (or fails for its own reason).

    ``fails``: the hook exits with status 1 after leaving the tree. Backend._run_hook tidies
    the folder only after the runner returns, so a failing (or killed) hook skips it and the
    RecursionError and the tree in /tmp come back: this case FAILS until that is closed."""
    sdist = _attack_sdist(tmp_path, "deep", DEEP, where="control", depth=3000, hook=hook)
    result = _bootstrap(tmp_path, [sdist], "deep")
    log = (tmp_path / "repo" / "logs" / "deep-1.0.log").read_text()
    control = log.split("CONTROL-DIR=")[1].split()[0]
    try:
        assert not os.path.lexists(control), f"{control} is left in the machine's /tmp"
        if hook == "succeeds":
            assert result.ok, result.failures
        else:
            error = str(_failure(result, "deep==1.0"))
            assert "exited with status 1" in error, error
            assert "RecursionError" not in error, error
    finally:
        _rm_rf(control)


def test_a_tree_deeper_than_the_recursion_limit_is_removed_after_the_build(
    tmp_path: Path,
) -> None:
    """The same tree in <work>/src: the build was published, then the cleanup's RecursionError
    (``ignore_errors`` covers only OSError) failed the node without a record, left the work
    folder behind, and failed every later run in prepare. The removal is iterative now: the
    build is published with its record, the work folder is gone, and the next run builds."""
    sdist = _attack_sdist(tmp_path, "deep", DEEP, where="src", depth=3000)
    try:
        first = _bootstrap(tmp_path, [sdist], "deep")
        assert first.ok, first.failures
        repo = Repository(tmp_path / "repo")
        assert repo.find_wheels("deep", "1.0")
        assert repo.load_record("deep", "1.0") is not None
        assert not (tmp_path / "work" / "deep-1.0").exists()
        second = _bootstrap(tmp_path, [sdist], "deep", repo="repo2")
        assert second.ok, second.failures
    finally:
        _rm_rf(str(tmp_path / "work"))


def _repack_with_deep_dir(sdist: Path, depth: int) -> Path:
    """The same sdist with one more member: a directory ``depth`` levels deep (archive only)."""
    raw = io.BytesIO()
    with (
        tarfile.open(sdist) as src,
        tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as out,
    ):
        top = None
        for member in src:
            top = top or member.name.split("/")[0]
            out.addfile(member, src.extractfile(member) if member.isreg() else None)
        info = tarfile.TarInfo(top + "/" + "/".join(["d"] * depth))
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        out.addfile(info)
    sdist.write_bytes(raw.getvalue())
    return sdist


def test_the_archive_depth_is_capped_at_64_folders(tmp_path: Path) -> None:
    """No build code needed: a 3000-deep folder in the archive alone was extracted, built and
    published, then broke the cleanup the same way. Extraction now refuses member paths deeper
    than 64 folders, before any build, naming the member; nothing is published."""
    sdist = _repack_with_deep_dir(make_sdist(SdistSpec("deeparc", "1.0"), tmp_path / "files"), 3000)
    try:
        result = _bootstrap(tmp_path, [sdist], "deeparc")
        error = _failure(result, "deeparc==1.0")
        assert type(error).__name__ == "UnsafeArchiveError", repr(error)
        assert "member path deeper than 64 folders" in str(error), error
        assert not Repository(tmp_path / "repo").find_wheels("deeparc", "1.0")
    finally:
        _rm_rf(str(tmp_path / "work"))


# =========================================================================== records, logs


NET = r"""
import json, socket
P = json.loads(PARAMS)

def attack(hook):
    if hook != "build_wheel":
        return None
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect(("127.0.0.1", P["port"]))
        return {"connected": True}
    except OSError:
        return {"connected": False}
    finally:
        s.close()
"""


def _net_run(tmp_path: Path, repo: str, *, isolate_network: bool) -> dict[str, Any]:
    """Build the probe with or without network isolation; what the records say about it."""
    with FakeIndex() as index:
        port = int(index.url.split(":")[2].split("/")[0])
        index.add(_attack_sdist(tmp_path, "net", NET, port=port))
        result = app.bootstrap(
            app.BootstrapOptions(
                requirements=[Requirement("net")],
                repo=tmp_path / repo,
                index_url=index.url,
                jobs=1,
                work_dir=tmp_path / "work",
                isolate_network=isolate_network,
            )
        )
    assert result.ok, result.failures
    repository = Repository(tmp_path / repo)
    record = repository.load_record("net", "1.0")
    assert record is not None
    (ref,) = repository.find_wheels("net", "1.0")
    statement = json.loads(repository.provenance_path(ref).read_text())
    sandbox = statement["predicate"]["buildDefinition"]["internalParameters"]["sandbox"]
    return {
        "connected": _found(tmp_path / repo, "net")["connected"],
        "record": record.sandbox["namespaces"] if record.sandbox else None,
        "provenance": sandbox["namespaces"],
    }


def test_records_list_a_network_namespace_only_when_the_build_had_one(tmp_path: Path) -> None:
    """With the network kept (``isolate_network=False``) the box has the host's network, yet
    every record and provenance statement listed "network" among its namespaces. Now they list
    it exactly when the build could not reach the local index."""
    kept = _net_run(tmp_path, "kept", isolate_network=False)
    assert kept["connected"] is True
    assert "network" not in kept["record"], kept
    assert "network" not in kept["provenance"], kept
    isolated = _net_run(tmp_path, "isolated", isolate_network=True)
    assert isolated["connected"] is False
    assert "network" in isolated["record"], isolated
    assert "network" in isolated["provenance"], isolated


WARN = r"""
import atexit, json, os, sys
P = json.loads(PARAMS)

def attack(hook):
    if hook != "build_wheel":
        return None
    out = os.path.join(sys.argv[2], "output.json")

    def add_warnings():
        with open(out) as f:
            data = json.load(f)
        forged = "\n=== exit status 0\n$ forged command\n" + "W" * (P["kib"] << 10)
        data["warnings"] = [{"filename": "x", "lineno": 1, "message": forged}]
        with open(out, "w") as f:
            json.dump(data, f)

    atexit.register(add_warnings)
    return None
"""


def test_backend_warnings_are_capped_and_escaped_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warnings a hook leaves in output.json (up to 16 MiB) went into the log whole and
    unescaped: past the output cap, with forged '=== exit status' and '$ command' lines. Now
    each warning is one escaped line and at most 64 KiB of them are kept."""
    machine = _small_limits(output_bytes=4096)
    sdist = _attack_sdist(tmp_path, "warn", WARN, kib=1024)
    result = _bootstrap(tmp_path, [sdist], "warn", machine=machine)
    assert result.ok, result.failures
    text = (tmp_path / "repo" / "logs" / "warn-1.0.log").read_text()
    assert len(text) < 64 * 1024 + 16 * 1024, len(text)  # 64 KiB of warnings, 4 KiB of output
    assert "\n$ forged command\n" not in text
    assert "\n=== exit status 0\n$ forged" not in text
    assert "=== more backend warnings dropped" in text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("=== backend warning:")]
    assert "\\n=== exit status 0\\n$ forged command\\n" in line


# ========================================== cargo and rustc: in the box, with a pinned toolchain

# rustup's `cargo`/`rustc` proxies pick their toolchain from rust-toolchain.toml in the current
# folder and up; `path` names a custom toolchain, which must be absolute: /proc/self/cwd is, and
# it is the proxy's own cwd, i.e. the sdist's tree, wherever the work folder is.
TOOLCHAIN = b'[toolchain]\npath = "/proc/self/cwd/tc"\n'
# The sdist's own `cargo`/`rustc`. What it finds goes to the log (its output) and to a file of
# the machine; outside the box it also plants a file in the repository.
EVIL_TOOL = """#!/bin/sh
args="$*"
report() {{
  echo "EVIL-TOOL-RAN tool=$0 $args"
  echo "uid=$(id -u)"
  echo "secret_env=$REWHEEL_REDTEAM_SECRET"
  echo "signing_key=$(cat {key} 2>&1)"
  echo "pid_ns=$(readlink /proc/self/ns/pid)"
}}
report
report > {evidence}
echo planted > {repo}/wheels/planted-by-sdist.txt
{extra}
exit 1
"""
MARKER = "EVIL-TOOL-RAN"
SECRET_ENV = "index-password-42"
KEY_TEXT = "-----BEGIN PRIVATE KEY----- s3cr3t"

CARGO_TOML_DEP = b"""[package]
name = "evil"
version = "1.0.0"
edition = "2021"

[dependencies]
itoa = "1"
"""
CARGO_LOCK_DEP = b"""version = 3

[[package]]
name = "evil"
version = "1.0.0"
dependencies = ["itoa"]

[[package]]
name = "itoa"
version = "1.0.11"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "49f1f14873335454500d59611f1cf4a4b0f786f9ac11f4312a78e4cf2566695b"
"""
# The real cargo, once pinned, would go to crates.io: the sdist's own configuration keeps it
# offline (cargo reads it from the tree), so that this test sends nothing off the machine.
CARGO_OFFLINE = b"[net]\noffline = true\n"
PYPROJECT_MATURIN = b"""[build-system]
requires = []
build-backend = "maturin"

[tool.maturin]
bindings = "pyo3"
"""


DAEMON_SECONDS = "41.7"


def _secrets(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "keys" / "signing.pem"
    key.parent.mkdir()
    key.write_text(KEY_TEXT + "\n")
    return key, tmp_path / "evidence.txt"


def _pid_ns() -> str:
    return os.readlink("/proc/self/ns/pid")


def _commands(log: str, needle: str) -> list[str]:
    """The command lines in a build log (``$ ...``) that contain ``needle``."""
    return [ln for ln in log.splitlines() if ln.startswith("$ ") and needle in ln]


def _kill_daemons(text: str) -> list[int]:
    daemons = running_with(text)
    for pid in daemons:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
    return daemons


@needs_rustup
def test_cargo_vendor_runs_in_the_box_with_a_pinned_toolchain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prepare() runs `cargo vendor` in the sdist's tree when crates are missing and crates.io
    is reachable. It ran outside the box with rewheel's whole environment, and rustup's proxy
    took the sdist's rust-toolchain.toml, so the sdist chose what `cargo` was: it read the
    signing key and the index password, planted a file in the repository and left a daemon.
    Now cargo vendor runs in the box, with the build's environment and RUSTUP_TOOLCHAIN pinned:
    the sdist's program never runs, the real cargo does (and fails, offline), nothing is read,
    planted or left running, and the error says cargo vendor failed."""
    monkeypatch.setenv("REWHEEL_REDTEAM_SECRET", SECRET_ENV)
    key, evidence = _secrets(tmp_path)
    repo = tmp_path / "repo"
    # A setsid daemon would leave rewheel's process group and outlive the run.
    daemon = f"setsid sleep {DAEMON_SECONDS} </dev/null >/dev/null 2>&1 &\nsleep 0.5"
    tool = EVIL_TOOL.format(key=key, evidence=evidence, repo=repo, extra=daemon).encode()
    sdist = _tar_sdist(
        tmp_path / "files",
        "evil",
        "1.0",
        {
            "PKG-INFO": _pkg_info("evil"),
            "pyproject.toml": PYPROJECT_MATURIN,
            "Cargo.toml": CARGO_TOML_DEP,
            "Cargo.lock": CARGO_LOCK_DEP,
            ".cargo/config.toml": CARGO_OFFLINE,
            "src/lib.rs": b"",
            "rust-toolchain.toml": TOOLCHAIN,
            "tc/bin/cargo": (tool, 0o755),
            "tc/bin/rustc": (tool, 0o755),
        },
    )
    try:
        result = _bootstrap(tmp_path, [sdist], "evil", machine=app.Machine(crates_io=lambda: True))
    finally:
        daemons = _kill_daemons(f"sleep {DAEMON_SECONDS}")
    assert daemons == []
    error = str(_failure(result, "evil==1.0"))
    assert "`cargo vendor` failed" in error, error
    assert not evidence.exists()
    assert not (repo / "wheels" / "planted-by-sdist.txt").exists()
    log = (repo / "logs" / "evil-1.0.log").read_text()
    assert MARKER not in log
    assert SECRET_ENV not in log
    (vendor,) = _commands(log, "cargo vendor --locked")
    assert "/bwrap " in vendor, vendor  # in the box
    assert "tc/bin/cargo" not in vendor


CARGO_TOML_CDYLIB = b"""[package]
name = "evil"
version = "1.0.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]
"""
CARGO_LOCK_SELF = b"""version = 3

[[package]]
name = "evil"
version = "1.0.0"
"""
LIB_RS = b'#[no_mangle]\npub extern "C" fn PyInit_evil() -> usize { 0 }\n'


def _recipe_settings(tmp_path: Path) -> Path:
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "evil.toml").write_text('[build]\nrecipe = "maturin-cargo"\n')
    return settings


@needs_rustup
def test_the_recipes_rustc_runs_in_the_box_with_a_pinned_toolchain(tmp_path: Path) -> None:
    """The maturin-cargo recipe ran `rustc -vV` outside the box, in the sdist's tree, so
    rustup ran the sdist's 'rustc' (rust-toolchain.toml) as the user. Now rustc -vV runs in the
    box with the toolchain pinned: the real rustc answers, the sdist's program never runs, and
    the package builds."""
    key, evidence = _secrets(tmp_path)
    repo = tmp_path / "repo"
    tool = EVIL_TOOL.format(key=key, evidence=evidence, repo=repo, extra="").encode()
    sdist = _tar_sdist(
        tmp_path / "files",
        "evil",
        "1.0",
        {
            "PKG-INFO": _pkg_info("evil"),
            "pyproject.toml": PYPROJECT_MATURIN,
            "Cargo.toml": CARGO_TOML_CDYLIB,
            "Cargo.lock": CARGO_LOCK_SELF,
            "src/lib.rs": LIB_RS,
            "rust-toolchain.toml": TOOLCHAIN,
            "tc/bin/cargo": (tool, 0o755),
            "tc/bin/rustc": (tool, 0o755),
        },
    )
    result = _bootstrap(tmp_path, [sdist], "evil", settings_dir=_recipe_settings(tmp_path))
    assert not evidence.exists()
    assert not (repo / "wheels" / "planted-by-sdist.txt").exists()
    log = (repo / "logs" / "evil-1.0.log").read_text()
    assert MARKER not in log
    assert result.ok, result.failures
    (rustc,) = _commands(log, "rustc -vV")
    assert "/bwrap " in rustc, rustc
    assert "\nhost: " in log  # the real rustc's answer


BUILD_RS = """fn main() {{
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let link = format!("{{}}/{link}", dir);
    let _ = std::fs::remove_file(&link);
    // In the box this target does not exist; outside, rewheel followed it.
    std::os::unix::fs::symlink("{target}", &link).unwrap();
}}
"""


@needs_cargo
@pytest.mark.parametrize(
    ("target", "layout"),
    [("signing_key", "stub"), ("/proc/self/environ", "stub"), ("signing_key", "mixed")],
)
def test_the_recipe_packs_only_plain_files_of_the_tree(
    tmp_path: Path, target: str, layout: str
) -> None:
    """The build script (in the box) leaves <tree>/evil.pyi, or a file of the Python package,
    as a link to a path of the machine. The recipe followed it outside the box and published
    the bytes (the signing key, rewheel's environment) in the wheel. It now takes only plain
    files whose real path is in the tree: the link is skipped, the wheel holds none of the
    secret, and the build succeeds."""
    key, _evidence = _secrets(tmp_path)
    link_target = str(key) if target == "signing_key" else target
    link, member = ("evil.pyi", "evil/__init__.pyi") if layout == "stub" else ("evil/x.txt",) * 2
    files: dict[str, bytes | tuple[bytes, int]] = {
        "PKG-INFO": _pkg_info("evil"),
        "pyproject.toml": PYPROJECT_MATURIN,
        "Cargo.toml": CARGO_TOML_CDYLIB.replace(
            b'edition = "2021"\n', b'edition = "2021"\nbuild = "build.rs"\n'
        ),
        "Cargo.lock": CARGO_LOCK_SELF,
        "src/lib.rs": LIB_RS,
        "build.rs": BUILD_RS.format(target=link_target, link=link).encode(),
    }
    if layout == "mixed":
        files["evil/__init__.py"] = b""  # a Python package next to the extension
    sdist = _tar_sdist(tmp_path / "files", "evil", "1.0", files)
    result = _bootstrap(tmp_path, [sdist], "evil", settings_dir=_recipe_settings(tmp_path))
    assert result.ok, result.failures
    (ref,) = Repository(tmp_path / "repo").find_wheels("evil", "1.0")
    with zipfile.ZipFile(tmp_path / "repo" / "wheels" / ref.filename) as zf:
        names = zf.namelist()
        contents = [zf.read(n) for n in names]
    assert member not in names, names
    assert not any(b"s3cr3t" in data for data in contents)
    assert not any(b"PYTEST_CURRENT_TEST=" in data for data in contents)  # rewheel's environ


# A module in the sdist's root shadowed the stdlib one in the recipe's interpreter probe:
# `python -c _PROBE` put the cwd (the sdist's tree) first on sys.path.
PROBE_FIFO_JSON = b"""import os, sys
os.mkfifo(sys.argv[1])   # the probe's answer file, in a TemporaryDirectory of the machine's /tmp
os._exit(0)
"""


def _fifo(pattern: str) -> str | None:
    for path in glob.glob(pattern):
        with contextlib.suppress(OSError):
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                return path
    return None


def _release_reader(fifo: str) -> bool:
    """Open ``fifo`` for writing if someone reads it: a blocked reader goes on (and sees EOF)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO unless someone reads
    except OSError:
        return False
    os.close(fd)
    return True


@needs_cargo
def test_the_interpreter_probe_is_isolated_and_never_opens_a_fifo(tmp_path: Path) -> None:
    """The recipe's interpreter probe ran ``python -c`` in the sdist's tree, so the tree's
    json.py replaced the stdlib's and made the answer file a FIFO; rewheel then blocked forever
    opening it. The probe now runs isolated (-I) away from the tree and its answer is read only
    as a plain file: no FIFO appears, rewheel finishes in bounded time, and the package builds.
    """
    sdist = _tar_sdist(
        tmp_path / "files",
        "evil",
        "1.0",
        {
            "PKG-INFO": _pkg_info("evil"),
            "pyproject.toml": PYPROJECT_MATURIN,
            "Cargo.toml": CARGO_TOML_CDYLIB,
            "Cargo.lock": CARGO_LOCK_SELF,
            "src/lib.rs": LIB_RS,
            "json.py": PROBE_FIFO_JSON,
        },
    )
    settings = _recipe_settings(tmp_path)
    box: dict[str, Any] = {}

    def run() -> None:
        box["result"] = _bootstrap(tmp_path, [sdist], "evil", settings_dir=settings)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    pattern = os.path.join(tempfile.gettempdir(), "rewheel-probe-*", "interpreter.json")
    deadline = time.monotonic() + 120
    fifo = None
    while thread.is_alive() and fifo is None and time.monotonic() < deadline:
        thread.join(0.2)
        fifo = _fifo(pattern)
    if fifo is not None:
        thread.join(5)  # a blocked open() would still be blocked
        hung = thread.is_alive()
        while thread.is_alive() and time.monotonic() < deadline:
            _release_reader(fifo)  # let it go on, so the test ends
            thread.join(0.2)
        pytest.fail(f"the probe's answer became a FIFO ({fifo}); rewheel hung on it: {hung}")
    assert not thread.is_alive(), "rewheel did not finish within 120 s"
    assert box["result"].ok, box["result"].failures


# ========================= attacks that need rewheel to run as an ordinary (non-root) user
#
# When the tests run as root, root ignores file modes. These tests then run the bootstrap in a
# child process of uid 0 WITHOUT CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER
# (setpriv): file modes bind it exactly as they bind an ordinary user.

DRIVER = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from packaging.requirements import Requirement
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_sdist
from rewheel import app
from rewheel.build.sandbox import Limits

P = json.loads(sys.argv[1])
machine = app.Machine()
if P.get("folder_bytes"):
    limits = Limits(wall_seconds=120.0, folder_bytes=P["folder_bytes"])
    machine = app.Machine(limits=lambda _w: limits)
base = Path(P["base"])
out = []
with FakeIndex() as index:
    index.add(make_sdist(SdistSpec(P["name"], "1.0", attack=P["attack"]), base / "files"))
    for repo in P["repos"]:
        result = app.bootstrap(app.BootstrapOptions(
            requirements=[Requirement(P["name"])], repo=base / repo, index_url=index.url,
            jobs=1, work_dir=base / "work"), machine=machine)
        out.append({"ok": result.ok, "failures": {k: str(v) for k, v in result.failures.items()}})
print("RESULT=" + json.dumps(out))
"""


def _as_plain_user(
    tmp_path: Path, name: str, attack: str, repos: list[str], **params: Any
) -> list[dict[str, Any]]:
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs setpriv, run as root (a plain user can run the driver directly)")
    caps = "-dac_override,-dac_read_search,-fowner"
    arg = json.dumps(
        {
            "name": name,
            "attack": attack.replace("PARAMS", repr(json.dumps(params))),
            "base": str(tmp_path),
            "repos": repos,
            "folder_bytes": params.get("folder_bytes"),
        }
    )
    done = subprocess.run(
        [
            setpriv,
            "--bounding-set",
            caps,
            "--inh-caps",
            caps,
            str(PYTHON),
            "-c",
            DRIVER,
            arg,
            str(TESTS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT=")]
    assert line, done.stdout[-3000:] + done.stderr[-3000:]
    result: list[dict[str, Any]] = json.loads(line[0][len("RESULT=") :])
    return result


CHMOD_THROUGH_TEMPDIR = r"""
import json, os, sys
P = json.loads(PARAMS)

def attack(hook):
    if hook != "build_wheel":
        return None
    sub = os.path.join(sys.argv[2], "sub")   # in pyproject_hooks' control folder
    os.mkdir(sub)
    os.symlink(P["victim"], os.path.join(sub, "link"))   # dangling in the box
    os.chmod(sub, 0o500)                     # rewheel cannot unlink the link ...
    if P["hook"] == "fails":
        sys.exit(1)
    return None
"""


@pytest.mark.parametrize("hook", ["succeeds", "fails"])
def test_the_control_folder_is_tidied_before_tempdirectory_can_chmod_through_a_link(
    tmp_path: Path, hook: str
) -> None:
    """CVE-2023-6597 (Python 3.11.7): TemporaryDirectory's cleanup, on a PermissionError,
    chmods the failing path to 0700 following links. pyproject_hooks removes its control folder
    (writable by the hook) that way in rewheel's process, so the build could chmod any file of
    the user. rewheel now empties the folder first without following anything: the victim
    keeps its mode and content, and the build succeeds (or fails for its own reason).

    ``fails``: the hook exits with status 1 after planting the link. Backend._run_hook tidies
    the folder only after the runner returns, so a failing (or killed) hook skips it and the
    victim becomes 0700 again: this case FAILS until that is closed."""
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("data\n")
    victim.chmod(0o644)
    (run,) = _as_plain_user(
        tmp_path, "chm", CHMOD_THROUGH_TEMPDIR, ["repo"], victim=str(victim), hook=hook
    )
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert victim.read_text() == "data\n"
    if hook == "succeeds":
        assert run["ok"], run
    else:
        assert "exited with status 1" in run["failures"]["chm==1.0"], run


HIDE = r"""
import json, os, time
P = json.loads(PARAMS)

def attack(hook):
    if hook != "build_wheel":
        return None
    hidden = os.path.join(os.path.dirname(os.getcwd()), "hidden")   # <work>/src/hidden
    os.mkdir(hidden)
    f = open(os.path.join(hidden, "blob"), "wb")
    os.chmod(hidden, 0)        # unreadable before the first byte is written
    for _ in range(P["mib"]):
        f.write(b"\x5a" * (1 << 20))
    f.flush()
    time.sleep(3.5)            # the watch looks every second
    f.close()
    return {"survived": True}
"""


def test_the_folder_watch_and_cleanup_open_unreadable_folders(tmp_path: Path) -> None:
    """A mode-000 folder in a writable folder: the watch skipped what it could not scandir
    (64 MiB passed a 16 MiB limit), the cleanup left it on the build root, and every later run
    of the package failed in prepare with a PermissionError. The watch and the removal now give
    such a folder owner permissions first: the build is stopped at the limit, and the next run
    removes the leftovers and is stopped the same way (no PermissionError)."""
    work = tmp_path / "work"
    try:
        first, second = _as_plain_user(
            tmp_path, "hide", HIDE, ["repo", "repo2"], mib=64, folder_bytes=16 * MiB
        )
        assert not first["ok"], first
        assert FOLDER_LIMIT_TEXT in first["failures"]["hide==1.0"], first
        assert not second["ok"], second
        assert FOLDER_LIMIT_TEXT in second["failures"]["hide==1.0"], second
        assert "PermissionError" not in second["failures"]["hide==1.0"], second
    finally:
        with contextlib.suppress(OSError):
            (work / "hide-1.0" / "src" / "hidden").chmod(0o700)
        _rm_rf(str(work))


# A build requirement's wheel that ships a script named `rustc` (<dist>.data/scripts/rustc):
# uv installs it into <env>/bin, which comes first on the build's PATH.
SCRIPT_IN_WHEEL = r"""
import atexit, base64, csv, glob, hashlib, io, json, os, sys, zipfile
P = json.loads(PARAMS)

def attack(hook):
    if hook != "build_wheel":
        return None
    with open(os.path.join(sys.argv[2], "input.json")) as f:
        out = json.load(f)["kwargs"]["wheel_directory"]

    def add_script():
        (wheel,) = glob.glob(os.path.join(out, "*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        record = [n for n in members if n.endswith(".dist-info/RECORD")][0]
        dist = record.split("/")[0][: -len(".dist-info")]
        members[f"{dist}.data/scripts/rustc"] = P["script"].encode()
        rows = io.StringIO()
        w = csv.writer(rows, lineterminator="\n")
        for n, data in members.items():
            if n != record:
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                w.writerow([n, "sha256=" + digest.decode(), len(data)])
        w.writerow([record, "", ""])
        members[record] = rows.getvalue().encode()
        os.remove(wheel)
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
            for n, data in members.items():
                info = zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (0o100755 if n.endswith("/rustc") else 0o100644) << 16
                zf.writestr(info, data)

    atexit.register(add_script)
    return None
"""


@needs_cargo
def test_a_build_requirements_rustc_script_runs_only_in_the_box(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without rustup tricks: the recipe's `rustc -vV` is looked up on the build's PATH, whose
    first entry is the build environment's bin/. A hostile build requirement ships a `rustc`
    script in its wheel; it ran outside the box, as the user. It still runs (it is first on
    PATH) but in the box now: its own PID namespace, no signing key, no secret variable, no
    way into the repository; the build fails because the script fails."""
    monkeypatch.setenv("REWHEEL_REDTEAM_SECRET", SECRET_ENV)
    key, evidence = _secrets(tmp_path)
    repo = tmp_path / "repo"
    script = EVIL_TOOL.format(key=key, evidence=evidence, repo=repo, extra="")
    helper = _attack_sdist(tmp_path, "rusthelper", SCRIPT_IN_WHEEL, script=script)
    victim = _tar_sdist(
        tmp_path / "files",
        "evil",
        "1.0",
        {
            "PKG-INFO": _pkg_info("evil"),
            "pyproject.toml": PYPROJECT_MATURIN.replace(
                b"requires = []", b'requires = ["rusthelper"]'
            ),
            "Cargo.toml": CARGO_TOML_CDYLIB,
            "Cargo.lock": CARGO_LOCK_SELF,
            "src/lib.rs": LIB_RS,
        },
    )
    result = _bootstrap(tmp_path, [helper, victim], "evil", settings_dir=_recipe_settings(tmp_path))
    assert not evidence.exists()
    assert not (repo / "wheels" / "planted-by-sdist.txt").exists()
    log = (repo / "logs" / "evil-1.0.log").read_text()
    (rustc,) = _commands(log, "rustc -vV")
    assert "/bwrap " in rustc, rustc
    (ran,) = [ln for ln in log.splitlines() if ln.startswith(MARKER)]  # it ran, and told us
    assert ran.endswith("/env/bin/rustc -vV"), ran
    assert "s3cr3t" not in log
    assert SECRET_ENV not in log
    (pid_ns,) = [ln for ln in log.splitlines() if ln.startswith("pid_ns=")]
    assert pid_ns != f"pid_ns={_pid_ns()}"
    assert "rustc exited with status 1" in str(_failure(result, "evil==1.0"))


# ============================================================ the build chooses rewheel's verdict

LIAR = r"""
import sys

def attack(hook):
    if hook == "build_wheel":
        print("[Errno 27] File too large", flush=True)
        sys.exit(1)
    return None
"""


def test_an_efbig_message_alone_does_not_make_rewheel_report_the_file_limit(
    tmp_path: Path,
) -> None:
    """The bytes '[Errno 27] File too large' in a failing build's output made rewheel report
    (and record as CommandFailed.limit) that the file size limit was hit. The message is now
    believed only when a file of that size is there: this build just exited with status 1."""
    sdist = _attack_sdist(tmp_path, "liar", LIAR)
    result = _bootstrap(tmp_path, [sdist], "liar")
    error = _failure(result, "liar==1.0")
    assert "exited with status 1" in str(error), error
    assert "larger than the limit" not in str(error), error
    assert getattr(error.__cause__, "limit", "missing") is None, error.__cause__


# ================================================================ the seccomp filter: AF_VSOCK

VSOCK = r"""
import json, socket

def attack(hook):
    if hook != "build_wheel":
        return None
    out = {}
    for kind in ("SOCK_STREAM", "SOCK_DGRAM", "SOCK_SEQPACKET"):
        try:
            socket.socket(socket.AF_VSOCK, getattr(socket, kind)).close()
            out[kind] = "created"
        except OSError as exc:
            out[kind] = exc.errno
    return out
"""


def test_the_seccomp_filter_refuses_vsock_sockets(tmp_path: Path) -> None:
    """--unshare-net does not cover AF_VSOCK: the box shared the machine's vsock port space and
    could listen where a VM's host connects, or reach the host's vsock services. The seccomp
    filter refuses socket(AF_VSOCK, ...) with EAFNOSUPPORT; the build goes on."""
    if not hasattr(socket, "AF_VSOCK"):
        pytest.skip("no AF_VSOCK")
    try:  # the probe proves something only where vsock works outside the box
        outside = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        outside.bind((socket.VMADDR_CID_ANY, socket.VMADDR_PORT_ANY))
        outside.close()
    except OSError:
        pytest.skip("AF_VSOCK not usable here")
    sdist = _attack_sdist(tmp_path, "vs", VSOCK)
    result = _bootstrap(tmp_path, [sdist], "vs")
    assert result.ok, result.failures
    found = _found(tmp_path / "repo", "vs")
    assert found == dict.fromkeys(found, errno.EAFNOSUPPORT), found
    assert len(found) == 3


# ================================================ what the recipe and the repository read back


@needs_cargo
def test_a_license_file_link_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    """The control: the License-File path is resolved and must stay in the tree, so a link
    planted by the build script to a file of the machine was, and is, refused."""
    key, _evidence = _secrets(tmp_path)
    sdist = _tar_sdist(
        tmp_path / "files",
        "evil",
        "1.0",
        {
            "PKG-INFO": _pkg_info("evil") + b"License-File: LICENSE\n",
            "pyproject.toml": PYPROJECT_MATURIN,
            "Cargo.toml": CARGO_TOML_CDYLIB.replace(
                b'edition = "2021"\n', b'edition = "2021"\nbuild = "build.rs"\n'
            ),
            "Cargo.lock": CARGO_LOCK_SELF,
            "src/lib.rs": LIB_RS,
            "build.rs": BUILD_RS.format(target=str(key), link="LICENSE").encode(),
        },
    )
    result = _bootstrap(tmp_path, [sdist], "evil", settings_dir=_recipe_settings(tmp_path))
    assert "finds no License-File" in str(_failure(result, "evil==1.0"))


SPARSE = r"""
import atexit, glob, json, os, sys, zipfile
P = json.loads(PARAMS)

def attack(hook):
    if hook != "build_wheel":
        return None
    with open(os.path.join(sys.argv[2], "input.json")) as f:
        out = json.load(f)["kwargs"]["wheel_directory"]
    hole = P["mib"] << 20                    # a hole: no blocks, so not counted by the watch

    def pad():
        (wheel,) = glob.glob(os.path.join(out, "*.whl"))
        if P["where"] == "before_the_zip":
            with open(wheel, "rb") as f:
                data = f.read()
            with open(wheel, "wb") as f:
                f.truncate(hole)
                f.seek(hole)
                f.write(data)                # the real zip after it (zip allows leading data)
            return
        with zipfile.ZipFile(wheel) as zf:
            members = [(info, zf.read(info)) for info in zf.infolist()]
        os.remove(wheel)
        with zipfile.ZipFile(wheel, "w") as zf:
            for i, (info, data) in enumerate(members):
                zf.writestr(info, data)
                if i == 0:
                    zf.start_dir += hole     # the next member starts past the hole

    atexit.register(pad)
    return None
"""


@pytest.mark.parametrize("where", ["before_the_zip", "between_members"])
def test_a_sparse_wheel_never_becomes_a_full_file_in_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A wheel that is a 256 MiB hole followed by the real zip cost the build nothing (the
    watch counts blocks) and passed every check (zip readers skip leading data); the repository
    got 256 MiB of real zeros. A wheel must now start with a zip member: it is refused with an
    error saying so, and the repository gets nothing of it.

    ``between_members`` puts the same hole after the first member (its central directory
    points past it): the wheel starts with a zip member, passes every check, and is copied
    into the repository as 256 MiB of real zeros, so this case FAILS until that is closed."""
    machine = _small_limits(folder_bytes=16 * MiB)
    sdist = _attack_sdist(tmp_path, "sparse", SPARSE, where=where, mib=256)
    result = _bootstrap(tmp_path, [sdist], "sparse", machine=machine)
    repo = tmp_path / "repo"
    assert _disk_bytes(repo) < 16 * MiB
    assert not Repository(repo).find_wheels("sparse", "1.0")
    assert not list((repo / "wheels").glob("sparse-*"))
    error = str(_failure(result, "sparse==1.0"))
    if where == "before_the_zip":
        assert "does not start with a zip member" in error, error
