"""Faults: a flaky upstream, lying or damaged downloads, a damaged cache, a full disk.

Whatever goes wrong, nothing unverified is published and nothing half-written is left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Upstream, run_bootstrap
from support.sdists import SdistSpec, make_sdist, make_wheel

from rewheel import app
from rewheel.build.extract import extract_sdist
from rewheel.cli import main
from rewheel.core.errors import IntegrityError, RepositoryError, RewheelError, UpstreamError
from rewheel.core.types import IndexFile
from rewheel.index.http import HttpClient, RetryPolicy
from rewheel.repo.repository import Repository

FAST = RetryPolicy(backoff_base=0.01, backoff_max=0.05, connect_timeout=2.0, read_timeout=0.5)


# Runs that retry at once and give up on a silent server after half a second.
FAST_MACHINE = app.Machine(http_client=lambda: HttpClient(policy=FAST))


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.name.endswith((".tmp", ".part"))]


# -- a flaky upstream during a whole run -----------------------------------------------------------


def test_upstream_faults_during_a_run_are_retried_and_the_run_finishes(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("f-tool", "1.0")
    upstream.sdist("f-lib", "1.0", build_requires=["f-tool"])
    upstream.sdist("f-app", "1.0", build_requires=["f-tool"], install_requires=["f-lib"])
    index = upstream.index
    faults = {
        "/simple/f-lib/": lambda p: index.fail(p, 503, times=2),
        "/simple/f-app/": lambda p: index.fail(p, 429, retry_after="0"),
        "f_tool-1.0.tar.gz": lambda p: index.fail(p, 500),
        "f_lib-1.0.tar.gz": lambda p: index.truncate(p),  # a lying Content-Length, then a reset
        "f_app-1.0.tar.gz": lambda p: index.stall(p, 3.0),  # silent past the read timeout
    }
    for path, inject in faults.items():
        inject(path)
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["f-app"], machine=FAST_MACHINE)
    assert result.ok, result.failures
    assert result.built == 3
    for path in faults:
        assert sum(1 for _m, p in index.requests if p.endswith(path)) >= 2, path
    published = Repository(repo)
    for ref in published.wheels():
        assert hashlib.sha256(published.wheel_path(ref).read_bytes()).hexdigest() == ref.sha256
    assert not _temp_files(repo)


def test_a_download_with_the_wrong_sha256_is_never_published(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("good", "1.0")
    upstream.index.add(make_sdist(SdistSpec("bad", "1.0"), upstream.files), wrong_hash=True)
    repo = tmp_path / "repo"
    failure: RewheelError | None = None
    try:
        result = run_bootstrap(upstream, repo, ["good", "bad"], machine=FAST_MACHINE)
        failure = result.failures.get("bad==1.0")
    except IntegrityError as exc:  # found while resolving (from the sdist's metadata)
        failure = exc
    assert isinstance(failure, IntegrityError), failure
    assert failure.package == "bad"
    assert "sha256" in str(failure)
    assert not Repository(repo).find_wheels("bad", "1.0")
    assert not list((repo / "sdists").glob("bad*"))  # the unverified file was deleted
    assert not _temp_files(repo)
    # Fetched twice (one retry after a mismatch), then given up.
    assert sum(1 for _m, p in upstream.index.requests if p.endswith("bad-1.0.tar.gz")) == 2


def test_a_damaged_sdist_in_the_cache_is_fetched_again(upstream: Upstream, tmp_path: Path) -> None:
    sdist = upstream.sdist("cached", "1.0")
    repo = tmp_path / "repo"
    assert run_bootstrap(upstream, repo, ["cached"]).ok
    published = Repository(repo)
    (first,) = published.find_wheels("cached", "1.0")
    # Damage the cached sdist, and drop the wheel so that it must be built again.
    cached_sdist = repo / "sdists" / sdist.name
    cached_sdist.write_bytes(cached_sdist.read_bytes()[:100])
    published.wheel_path(first).unlink()
    downloads = sum(1 for _m, p in upstream.index.requests if p.endswith(sdist.name))
    result = run_bootstrap(upstream, repo, ["cached"])
    assert result.ok and result.built == 1, result.failures
    assert sum(1 for _m, p in upstream.index.requests if p.endswith(sdist.name)) == downloads + 1
    assert cached_sdist.read_bytes() == sdist.read_bytes()
    (again,) = Repository(repo).find_wheels("cached", "1.0")
    assert again.sha256 == first.sha256  # the same sdist in the same build folder: same wheel


def test_strict_hashes_refuses_an_unhashed_sdist_through_the_cli(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.index.add(make_sdist(SdistSpec("nohash", "1.0"), upstream.files), omit_hash=True)
    repo = tmp_path / "repo"
    args = ["bootstrap", "--strict-hashes", "--repo", str(repo), "--index-url", upstream.url]
    with pytest.raises(SystemExit) as info:
        main([*args, "-j", "1", "nohash"])
    err = capsys.readouterr().err
    assert info.value.code in (1, 2), err  # a failed package, or refused while resolving
    assert "without a sha256 (strict mode)" in err
    assert "nohash" in err
    assert not list(repo.glob("wheels/*.whl"))
    assert not [p for _m, p in upstream.index.requests if p.endswith("nohash-1.0.tar.gz")]


# -- lying servers, at the HTTP level -------------------------------------------------------------

BODY = os.urandom(200_000)
BODY_SHA = hashlib.sha256(BODY).hexdigest()


class RawServer:
    """A one-file HTTP server on 127.0.0.1 that misbehaves on purpose, one way per connection.

    Behaviours: "good", "short" (full Content-Length, half the body, then close), "long" (a
    Content-Length smaller than the body), "reset" (a TCP reset before any answer), "none"
    (no Content-Length, half the body, close). After the scripted ones, every connection is good.
    """

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.seen: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/f.bin"
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self._stopping.is_set():
                conn.close()
                return
            with conn, contextlib.suppress(OSError):
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(10)  # a client that stops halfway cannot keep close() waiting
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        how = self.script.pop(0) if self.script else "good"
        self.seen.append(how)
        if how == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        length = {"good": len(BODY), "short": len(BODY), "long": len(BODY) - 1000}.get(how)
        body = BODY[: len(BODY) // 2] if how in ("short", "none") else BODY
        head = "HTTP/1.1 200 OK\r\nConnection: close\r\n"
        if length is not None:
            head += f"Content-Length: {length}\r\n"
        with contextlib.suppress(OSError):
            conn.sendall(head.encode() + b"\r\n" + body)

    def close(self) -> None:
        """Stop the thread, then close the listening socket.

        Never the other way round: a descriptor closed under a thread blocked in accept() leaves
        that accept() waiting, and the kernel starts it again with the same number after a signal
        (starting a subprocess was enough), by then another listening socket's (a later test's
        FakeIndex): the thread took its connection and answered it with BODY. shutdown() wakes
        the accept() instead.
        """
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(30)
        if self.thread.is_alive():
            raise RuntimeError("RawServer's thread did not stop; its socket is left open")
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[list[RawServer]]:
    servers: list[RawServer] = []
    yield servers
    for server in servers:
        server.close()


@pytest.mark.parametrize(
    "script", [["short"], ["reset"], ["reset", "short", "reset"], ["long"], ["none"]]
)
def test_lying_and_broken_answers_are_retried_or_refused(
    raw: list[RawServer], tmp_path: Path, script: list[str]
) -> None:
    server = RawServer(script)
    raw.append(server)
    dest = tmp_path / "f.bin"
    with HttpClient(policy=FAST) as client:
        assert client.download_to(server.url, dest, BODY_SHA) == BODY_SHA
    assert dest.read_bytes() == BODY
    assert server.seen == [*script, "good"]
    assert not _temp_files(tmp_path)


def test_a_body_that_never_matches_fails_and_leaves_nothing(
    raw: list[RawServer], tmp_path: Path
) -> None:
    server = RawServer(["long"] * 10)
    raw.append(server)
    dest = tmp_path / "f.bin"
    with HttpClient(policy=FAST) as client, pytest.raises(IntegrityError, match="sha256"):
        client.download_to(server.url, dest, BODY_SHA)
    assert not dest.exists()
    assert not _temp_files(tmp_path)


def test_a_server_that_always_resets_is_given_up_on(raw: list[RawServer], tmp_path: Path) -> None:
    server = RawServer(["reset"] * 10)
    raw.append(server)
    with HttpClient(policy=FAST) as client, pytest.raises(UpstreamError, match="5 attempts"):
        client.download_to(server.url, tmp_path / "f.bin", BODY_SHA)
    assert len(server.seen) == FAST.attempts
    assert list(tmp_path.iterdir()) == []


def _blocked_in_accept(thread: threading.Thread) -> None:
    """Wait (a while) until ``thread`` sleeps in the kernel's accept(); silently gives up where
    /proc does not say."""
    wchan = Path(f"/proc/self/task/{thread.native_id}/wchan")
    for _ in range(200):
        with contextlib.suppress(OSError):
            if wchan.read_text() == "inet_csk_accept":
                return
        time.sleep(0.01)


def test_a_closed_raw_server_takes_no_connection_meant_for_a_later_server(
    raw: list[RawServer], tmp_path: Path
) -> None:
    """close() closed the listening socket under the thread blocked in accept(). The kernel
    restarts such an accept() after a signal (one with SA_RESTART here; starting a subprocess was
    enough in the test runs) with the same descriptor number, by then another listening socket's:
    the old thread took a connection of a later test's FakeIndex and answered it with BODY, a
    project page of random bytes (the flaky failures of test_prune, test_settings and
    test_sandbox_escapes, and hangs in FakeIndex.stop when it took a connection that
    serve_forever had already selected)."""
    server = RawServer([])
    raw.append(server)
    with HttpClient(policy=FAST) as client:
        assert client.download_to(server.url, tmp_path / "f.bin", BODY_SHA) == BODY_SHA
    _blocked_in_accept(server.thread)
    number = server.sock.fileno()
    server.close()
    with socket.create_server(("127.0.0.1", 0)) as later:  # blocking, as FakeIndex's
        extra: int | None = None
        if later.fileno() != number:  # the usual case: it took the lowest free number, that one
            with contextlib.suppress(OSError):
                os.fstat(number)
                pytest.skip("the closed descriptor number was taken by something else meanwhile")
            extra = os.dup2(later.fileno(), number)  # the later listening socket, at that number
        try:
            if server.thread.is_alive():
                # What a signal does to a blocked accept(): the kernel starts it again.
                previous = signal.signal(signal.SIGUSR1, lambda _signum, _frame: None)
                signal.siginterrupt(signal.SIGUSR1, False)
                try:
                    signal.pthread_kill(server.thread.ident or 0, signal.SIGUSR1)
                    time.sleep(0.2)
                finally:
                    signal.signal(signal.SIGUSR1, previous)
            with socket.create_connection(later.getsockname()[:2], timeout=10) as client_sock:
                client_sock.sendall(b"GET /simple/app/ HTTP/1.1\r\nHost: x\r\n\r\n")
                select.select([later], [], [], 5)
                later.setblocking(False)
                try:
                    conn, _ = later.accept()
                except BlockingIOError:
                    pytest.fail(f"the closed server took the connection: {client_sock.recv(80)!r}")
                conn.close()
        finally:
            if extra is not None:
                os.close(extra)
    assert server.seen == ["good"]


# -- a full disk -----------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB file system (tmpfs); skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _big_wheel(tmp_path: Path, name: str, size: int) -> Path:
    """A valid wheel with ``size`` incompressible bytes in it."""
    wheel = make_wheel(SdistSpec(name, "1.0"), tmp_path / f"built-{name}")
    with zipfile.ZipFile(wheel, "a") as zf:
        zf.writestr(f"{name.replace('-', '_')}/blob.bin", os.urandom(size))
    return wheel


def _fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, bytes(4096))
    finally:
        os.close(fd)
    return filler


def _pages(repo: Repository) -> dict[str, bytes]:
    return {
        str(p.relative_to(repo.simple_dir)): p.read_bytes()
        for p in sorted(repo.simple_dir.rglob("*"))
        if p.is_file()
    }


def test_a_full_disk_publishes_nothing_half_written(small_fs: Path, tmp_path: Path) -> None:
    repo = Repository(small_fs / "repo")
    repo.ensure_layout()
    repo.publish_wheel(make_wheel(SdistSpec("small", "1.0"), tmp_path / "built"))
    repo.regenerate_index()
    listing = sorted(p.name for p in repo.wheels_dir.iterdir())
    pages = _pages(repo)
    with pytest.raises(RepositoryError) as info:
        repo.publish_wheel(_big_wheel(tmp_path, "big", 2 << 20))
    message = str(info.value)
    assert "No space left" in message and str(repo.wheels_dir) in message
    assert info.value.package == "big" and info.value.step == "publish"
    assert sorted(p.name for p in repo.wheels_dir.iterdir()) == listing
    assert not _temp_files(small_fs)
    repo.regenerate_index()
    assert _pages(repo) == pages


def test_a_full_disk_during_an_index_update_keeps_whole_pages(
    small_fs: Path, tmp_path: Path
) -> None:
    repo = Repository(small_fs / "repo")
    repo.ensure_layout()
    repo.publish_wheel(make_wheel(SdistSpec("first", "1.0"), tmp_path / "built"))
    repo.regenerate_index()
    repo.publish_wheel(make_wheel(SdistSpec("second", "1.0"), tmp_path / "built"))
    filler = _fill(small_fs)
    with pytest.raises(RepositoryError, match="No space left") as info:
        repo.regenerate_index()
    assert info.value.step == "index"
    # Every page is whole (old or new), and the root lists only projects whose page exists.
    root = json.loads((repo.simple_dir / "index.json").read_text())
    for project in root["projects"]:
        page = json.loads((repo.simple_dir / project["name"] / "index.json").read_text())
        assert page["files"]
    assert {p["name"] for p in root["projects"]} == {"first"}
    assert not _temp_files(small_fs)
    filler.unlink()
    repo.regenerate_index()
    root = json.loads((repo.simple_dir / "index.json").read_text())
    assert {p["name"] for p in root["projects"]} == {"first", "second"}


def test_a_full_disk_while_downloading_or_extracting(
    small_fs: Path, tmp_path: Path, upstream: Upstream
) -> None:
    big = _big_wheel(tmp_path, "big", 2 << 20)
    upstream.index.add(big)
    file = IndexFile(
        filename=big.name,
        url=upstream.url.replace("/simple", f"/files/{big.name}"),
        sha256=hashlib.sha256(big.read_bytes()).hexdigest(),
    )
    with HttpClient(policy=FAST) as client, pytest.raises(RewheelError) as info:
        client.download_to(file.url, small_fs / "sdists" / big.name, file.sha256)
    assert "No space left" in str(info.value) and info.value.step == "download"
    assert not (small_fs / "sdists" / big.name).exists()
    assert not _temp_files(small_fs)
    # Not retried: a full disk is not the server's fault.
    assert sum(1 for _m, p in upstream.index.requests if p.endswith(big.name)) == 1

    archive = tmp_path / "big-1.0.zip"
    big.rename(archive)  # a zip is a zip: extract it as an sdist
    with pytest.raises(RewheelError, match="No space left") as info:
        extract_sdist(archive, small_fs / "work", package="big")
    assert info.value.step == "extract"
    assert list((small_fs / "work").iterdir()) == []
