"""``rewheel serve`` under load and against rude clients: many at once, slow ones, lookups of
projects it does not have, and readers racing a publisher."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.sdists import SdistSpec, make_wheel

from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    r = Repository(tmp_path / "repo")
    r.ensure_layout()
    for i in range(5):
        r.publish_wheel(make_wheel(SdistSpec(f"pkg-{i}", "1.0"), tmp_path / "built"))
    r.regenerate_index()
    return r


@pytest.fixture
def server(repo: Repository) -> Iterator[IndexServer]:
    with IndexServer(repo) as srv:
        yield srv


def _get(
    conn: http.client.HTTPConnection, path: str, accept: str | None = JSON
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn.request("GET", path, headers={"Accept": accept} if accept else {})
    resp = conn.getresponse()
    return resp.status, resp.headers, resp.read()


def _connect(srv: IndexServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)


def test_many_clients_at_once_on_kept_alive_connections(
    server: IndexServer, repo: Repository
) -> None:
    wheels = {ref.filename: ref.sha256 for ref in repo.wheels()}

    def client(n: int) -> list[str]:
        errors = []
        conn = _connect(server)
        try:
            for i in range(5):
                name = f"pkg-{(n + i) % 5}"
                status, headers, body = _get(conn, f"/simple/{name}/")
                if status != 200 or headers["Content-Type"] != JSON:
                    errors.append(f"{name}: {status} {headers['Content-Type']}")
                    continue
                (file,) = json.loads(body)["files"]
                status, headers, data = _get(conn, f"/wheels/{file['filename']}", None)
                if status != 200 or hashlib.sha256(data).hexdigest() != wheels[file["filename"]]:
                    errors.append(f"{file['filename']}: {status}")
        finally:
            conn.close()
        return errors

    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(client, range(64)))
    assert [e for errors in results for e in errors] == []


def test_slow_clients_do_not_hold_up_the_others(server: IndexServer) -> None:
    # Clients that open a connection and send half a request, then nothing.
    stuck = []
    for _ in range(40):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n")
        stuck.append(sock)
    try:
        started = time.monotonic()
        conn = _connect(server)
        try:
            assert _get(conn, "/simple/pkg-0/")[0] == 200
        finally:
            conn.close()
        assert time.monotonic() - started < 2.0
    finally:
        for sock in stuck:
            sock.close()


def test_a_missing_project_is_a_plain_404_in_every_spelling(server: IndexServer) -> None:
    conn = _connect(server)
    try:
        for name in ("requests", "Requests", "pkg_0_missing", "pip"):
            for accept in (None, JSON, HTML, "text/html"):
                status, headers, body = _get(conn, f"/simple/{name}/", accept)
                if status == 301:
                    # Only ever to the normalized name, on this server: never elsewhere.
                    location = headers["Location"]
                    assert location.startswith("/simple/") and "//" not in location
                    status, headers, body = _get(conn, location, accept)
                assert status == 404, (name, accept)
                assert "Location" not in headers
                assert headers["Content-Type"].startswith("text/plain")
                assert b"pypi" not in body.lower() and b"http" not in body.lower()
    finally:
        conn.close()


def test_content_types_and_caching_headers(server: IndexServer, repo: Repository) -> None:
    conn = _connect(server)
    try:
        for accept, expected in [
            (JSON, JSON),
            (HTML, HTML),
            ("text/html", "text/html; charset=utf-8"),
            (None, "text/html; charset=utf-8"),
        ]:
            for path in ("/simple/", "/simple/pkg-1/"):
                status, headers, _ = _get(conn, path, accept)
                assert (status, headers["Content-Type"]) == (200, expected), (path, accept)
                assert headers["Vary"] == "Accept"
        status, headers, _ = _get(conn, "/simple/pkg-1/", "application/json")
        assert status == 406
        (ref,) = repo.find_wheels("pkg-1", "1.0")
        for suffix in ("", ".metadata"):
            status, headers, body = _get(conn, f"/wheels/{ref.filename}{suffix}", None)
            assert (status, headers["Content-Type"]) == (200, "application/octet-stream")
            assert int(headers["Content-Length"]) == len(body)
    finally:
        conn.close()


def test_readers_never_see_a_half_published_repository(
    server: IndexServer, repo: Repository, tmp_path: Path
) -> None:
    """While wheels are published and the index rewritten, every page a reader gets is whole and
    every file it lists is there, with the hash the page gives."""
    built = [make_wheel(SdistSpec(f"new-{i}", "1.0"), tmp_path / "more") for i in range(8)]
    stop = threading.Event()
    problems: list[str] = []
    checked = [0]

    def reader() -> None:
        conn = _connect(server)
        try:
            while not stop.is_set():
                status, _, body = _get(conn, "/simple/")
                if status != 200:
                    problems.append(f"root: {status}")
                    continue
                for project in json.loads(body)["projects"]:
                    status, _, page = _get(conn, f"/simple/{project['name']}/")
                    if status != 200:
                        problems.append(f"{project['name']}: {status}")
                        continue
                    for file in json.loads(page)["files"]:
                        status, _, data = _get(conn, f"/wheels/{file['filename']}", None)
                        digest = hashlib.sha256(data).hexdigest()
                        if status != 200 or digest != file["hashes"]["sha256"]:
                            problems.append(f"{file['filename']}: {status}")
                        checked[0] += 1
        finally:
            conn.close()

    readers = [threading.Thread(target=reader) for _ in range(6)]
    for t in readers:
        t.start()
    try:
        for wheel in built:
            repo.publish_wheel(wheel)
            repo.regenerate_index()
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=30)
    assert problems == []
    assert checked[0] > len(built)
    assert len(json.loads((repo.simple_dir / "index.json").read_text())["projects"]) == 13


# -- connections that hold on ----------------------------------------------------------------


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (what it sent is skipped)."""
    until = time.monotonic() + within
    while (left := until - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(4096):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True  # reset
    return False


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rewheel-serve")]


def test_idle_and_half_sent_connections_hold_no_thread(repo: Repository) -> None:
    """300 connections that never send a whole request (nothing, half a request line, or an
    idle keep-alive after one request) cost no thread; a real client is still answered at once."""
    before = threading.active_count()
    with IndexServer(repo) as srv:
        held: list[socket.socket] = []
        kept: list[http.client.HTTPConnection] = []
        try:
            for i in range(200):
                sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                held.append(sock)
                if i % 2:
                    sock.sendall(b"GET /simple/ HT")
            for _ in range(100):
                conn = _connect(srv)
                kept.append(conn)
                assert _get(conn, "/simple/pkg-1/")[0] == 200  # then idle, kept alive
            started = time.monotonic()
            conn = _connect(srv)
            try:
                assert _get(conn, "/simple/pkg-0/")[0] == 200
            finally:
                conn.close()
            assert time.monotonic() - started < 2.0
            # The event loop and the few workers that the requests above (one at a time) needed;
            # a thread per connection would be 300.
            assert threading.active_count() - before <= 10
        finally:
            for sock in held:
                sock.close()
            for conn in kept:
                conn.close()
    assert _server_threads() == []  # stop() leaves no thread behind


def test_requests_are_handled_by_a_bounded_number_of_threads(repo: Repository) -> None:
    before = threading.active_count()
    with IndexServer(repo, max_connections=3) as srv:
        peak = [0]

        def client(n: int) -> bool:
            conn = _connect(srv)
            try:
                ok = all(_get(conn, f"/simple/pkg-{(n + i) % 5}/")[0] == 200 for i in range(5))
                peak[0] = max(peak[0], threading.active_count())
                return ok
            finally:
                conn.close()

        with ThreadPoolExecutor(max_workers=24) as pool:
            assert all(pool.map(client, range(48)))
        assert len(_server_threads()) <= 3
    # The clients' threads, the workers and the event loop (not one per connection: 24 more).
    assert peak[0] - before <= 24 + 3 + 1
    assert _server_threads() == []


def test_a_client_that_does_not_finish_its_headers_is_disconnected(repo: Repository) -> None:
    with IndexServer(repo, header_timeout=0.5) as srv:
        silent = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        half = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        half.sendall(b"GET /simple/ HTTP/1.1\r\nHost: x\r\n")
        drip = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        try:
            started = time.monotonic()
            # One byte of a never-ending header every 0.1 s: each byte does not buy more time.
            drip.sendall(b"GET /simple/ HTTP/1.1\r\nX-Slow: ")
            dripped_out = False
            while time.monotonic() - started < 3.0:
                try:
                    drip.sendall(b"a")
                except OSError:
                    dripped_out = True
                    break
                if _closed_by_server(drip, 0.1):
                    dripped_out = True
                    break
            assert dripped_out
            assert _closed_by_server(silent, 1.0)
            assert _closed_by_server(half, 1.0)
            assert time.monotonic() - started < 3.0
            # A prompt client is not affected.
            conn = _connect(srv)
            try:
                assert _get(conn, "/simple/pkg-0/")[0] == 200
            finally:
                conn.close()
        finally:
            for sock in (silent, half, drip):
                sock.close()


def test_too_many_waiting_connections_close_the_oldest(repo: Repository) -> None:
    with IndexServer(repo, max_waiting=10) as srv:
        socks = []
        try:
            for _ in range(15):
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
            conn = _connect(srv)
            try:
                assert _get(conn, "/simple/pkg-0/")[0] == 200
            finally:
                conn.close()
            # The five that waited longest made room (and the request above one more).
            assert all(_closed_by_server(sock, 1.0) for sock in socks[:5])
            assert not any(_closed_by_server(sock, 0.05) for sock in socks[-3:])
        finally:
            for sock in socks:
                sock.close()


def test_a_slow_upload_body_does_not_hold_a_worker(repo: Repository) -> None:
    from rewheel.serve.server import SHA256_HEADER

    token = "t" * 32
    before = threading.active_count()
    with IndexServer(repo, upload_token=token, header_timeout=0.5, max_connections=2) as srv:
        stalled = []
        try:
            for i in range(4):
                sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                sock.sendall(
                    f"PUT /uploads/j{i}/x-1.0-py3-none-any.whl HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {token}\r\n{SHA256_HEADER}: {'0' * 64}\r\n"
                    "Content-Length: 10000\r\n\r\n".encode()
                    + b"x" * 100
                )
                stalled.append(sock)
            started = time.monotonic()
            assert all(_closed_by_server(sock, 3.0) for sock in stalled)
            assert time.monotonic() - started < 3.0
            assert threading.active_count() - before <= 2 + 1
            conn = _connect(srv)
            try:
                assert _get(conn, "/simple/pkg-0/")[0] == 200
            finally:
                conn.close()
        finally:
            for sock in stalled:
                sock.close()
    uploads = repo.work_dir / "uploads"
    assert [p for p in uploads.rglob("*") if p.is_file()] == []


def test_pipelined_requests_are_all_answered(server: IndexServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        one = b"GET /simple/pkg-0/ HTTP/1.1\r\nHost: x\r\nAccept: " + JSON.encode() + b"\r\n\r\n"
        last = b"GET /simple/pkg-1/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        sock.sendall(one + one + last)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.count(b"HTTP/1.1 200 OK") == 3
    assert b'"name": "pkg-0"' in reply or b'"name":"pkg-0"' in reply


# -- symbolic links --------------------------------------------------------------------------

SECRET = b"TOP-SECRET-do-not-serve"


@pytest.fixture
def planted(repo: Repository, tmp_path: Path) -> Repository:
    """What a hostile build could leave in the repository: links to a secret outside it, as
    files, as folders, in nested folders."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(SECRET)
    for name in ("index.json", "index.html", "leak-1.0.tar.gz", "leak.log"):
        (outside / name).write_bytes(SECRET)
    wheels = repo.wheels_dir
    (wheels / "leak-1.0-py3-none-any.whl").symlink_to(secret)
    (wheels / "leak-1.0-py3-none-any.whl.provenance.json").symlink_to(secret)
    (ref,) = repo.find_wheels("pkg-0", "1.0")
    (wheels / f"{ref.filename}.metadata").unlink()
    (wheels / f"{ref.filename}.metadata").symlink_to(secret)
    (wheels / "nested").mkdir()
    (wheels / "nested" / "x.whl").symlink_to(secret)
    # Folders replaced by links to a folder outside.
    for folder in (repo.sdists_dir, repo.logs_dir):
        folder.rmdir()
        folder.symlink_to(outside, target_is_directory=True)
    (repo.simple_dir / "leak").symlink_to(outside, target_is_directory=True)
    # A link inside a real project folder, and the root page.
    (repo.simple_dir / "pkg-1" / "index.json").unlink()
    (repo.simple_dir / "pkg-1" / "index.json").symlink_to(secret)
    (repo.simple_dir / "index.html").unlink()
    (repo.simple_dir / "index.html").symlink_to(secret)
    browse = repo.root / "browse"
    browse.mkdir()
    (browse / "leak.html").symlink_to(secret)
    (browse / "index.html").symlink_to(secret)
    return repo


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/wheels/leak-1.0-py3-none-any.whl", None),
        ("/wheels/leak-1.0-py3-none-any.whl.provenance.json", None),
        ("/wheels/pkg_0-1.0-py3-none-any.whl.metadata", None),
        ("/wheels/nested/x.whl", None),
        ("/sdists/leak-1.0.tar.gz", None),
        ("/logs/leak.log", None),
        ("/simple/leak/", JSON),
        ("/simple/leak/", HTML),
        ("/simple/pkg-1/", JSON),
        ("/simple/", HTML),
        ("/browse/leak.html", None),
        ("/browse/", None),
    ],
)
def test_symbolic_links_are_never_followed(
    planted: Repository, path: str, accept: str | None
) -> None:
    with IndexServer(planted) as srv:
        conn = _connect(srv)
        try:
            for method in ("GET", "HEAD"):
                conn.request(method, path, headers={"Accept": accept} if accept else {})
                resp = conn.getresponse()
                body = resp.read()
                assert SECRET not in body
                assert resp.headers.get("Content-Length") != str(len(SECRET))
                if path == "/browse/":
                    assert resp.status == 200  # the built-in empty front page instead
                else:
                    assert resp.status == 404, (method, path)
        finally:
            conn.close()


def test_what_is_not_a_link_is_still_served(planted: Repository) -> None:
    with IndexServer(planted) as srv:
        conn = _connect(srv)
        try:
            for name in ("pkg-0", "pkg-2"):
                status, _, body = _get(conn, f"/simple/{name}/")
                assert status == 200 and SECRET not in body
                (file,) = json.loads(body)["files"]
                status, _, data = _get(conn, f"/wheels/{file['filename']}", None)
                assert status == 200
                assert hashlib.sha256(data).hexdigest() == file["hashes"]["sha256"]
            assert _get(conn, "/simple/pkg-1/", HTML)[0] == 200  # its index.html is a file
        finally:
            conn.close()
