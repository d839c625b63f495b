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

from rewheel.repository import Repository
from rewheel.server import IndexServer

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
