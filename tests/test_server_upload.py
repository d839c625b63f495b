"""The index server's routes for build workers: sdists out, uploads in (with a token only)."""

from __future__ import annotations

import hashlib
import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from rewheel.core.errors import ConfigError
from rewheel.repo.repository import Repository
from rewheel.serve.server import SHA256_HEADER, IndexServer

TOKEN = "t" * 32


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    return repo


@pytest.fixture
def server(repo: Repository) -> Iterator[IndexServer]:
    with IndexServer(repo, upload_token=TOKEN, max_upload=1000) as srv:
        yield srv


def _request(
    server: IndexServer,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body if method == "PUT" else None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _put(
    server: IndexServer,
    path: str,
    body: bytes,
    *,
    token: str = TOKEN,
    sha256: str | None = None,
) -> int:
    headers = {
        "Authorization": f"Bearer {token}",
        SHA256_HEADER: sha256 if sha256 is not None else hashlib.sha256(body).hexdigest(),
    }
    status, _, _ = _request(server, "PUT", path, body, headers)
    return status


def test_sdists_are_served_read_only(server: IndexServer, repo: Repository) -> None:
    repo.sdists_dir.mkdir(parents=True, exist_ok=True)
    (repo.sdists_dir / "foo-1.0.tar.gz").write_bytes(b"sdist bytes")
    (repo.sdists_dir / ".foo-1.0.tar.gz.part").write_bytes(b"partial")
    (repo.sdists_dir / "notes.txt").write_bytes(b"not an sdist")
    status, headers, body = _request(server, "GET", "/sdists/foo-1.0.tar.gz")
    assert (status, body, headers["content-length"]) == (200, b"sdist bytes", "11")
    for path in (
        "/sdists/.foo-1.0.tar.gz.part",
        "/sdists/notes.txt",
        "/sdists/bar-1.0.tar.gz",
        "/sdists/",
    ):
        assert _request(server, "GET", path)[0] == 404, path
    assert _request(server, "GET", "/sdists/..%2Frecords%2Fx.tar.gz")[0] == 400
    # Read-only: an upload there is not a route.
    assert _put(server, "/sdists/foo-1.0.tar.gz", b"x") == 404


def test_upload_lands_in_its_job_folder(server: IndexServer) -> None:
    data = b"wheel bytes"
    assert _put(server, "/uploads/job1/foo-1.0-py3-none-any.whl", data) == 201
    assert server.upload_dir is not None
    folder = server.upload_dir / "job1"
    assert (folder / "foo-1.0-py3-none-any.whl").read_bytes() == data
    # Again under the same name: replaced (a worker retrying its upload).
    assert _put(server, "/uploads/job1/foo-1.0-py3-none-any.whl", b"other") == 201
    assert (folder / "foo-1.0-py3-none-any.whl").read_bytes() == b"other"
    assert _put(server, "/uploads/job1/foo-1.0.log", b"log text") == 201
    assert sorted(p.name for p in folder.iterdir()) == ["foo-1.0-py3-none-any.whl", "foo-1.0.log"]
    # Uploads are not served: only the coordinator publishes.
    assert _request(server, "GET", "/uploads/job1/foo-1.0.log")[0] == 404


def test_upload_needs_the_token(server: IndexServer) -> None:
    assert _put(server, "/uploads/j/foo.whl", b"x", token="wrong" * 8) == 401
    status, headers, _ = _request(server, "PUT", "/uploads/j/foo.whl", b"x")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert server.upload_dir is not None and not (server.upload_dir / "j").exists()


def test_a_body_that_is_not_what_was_claimed_is_dropped(server: IndexServer) -> None:
    assert _put(server, "/uploads/j/foo.whl", b"x", sha256="0" * 64) == 422
    assert server.upload_dir is not None
    assert list((server.upload_dir / "j").iterdir()) == []  # no file, no temporary file


@pytest.mark.parametrize(
    ("path", "sha256"),
    [
        ("/uploads/j/foo.txt", None),  # only wheels and logs
        ("/uploads/j/.foo.whl", None),
        ("/uploads/j%20k/foo.whl", None),  # job ids are plain
        ("/uploads/j/foo.whl", "not-a-hash"),
    ],
)
def test_bad_uploads_are_refused(server: IndexServer, path: str, sha256: str | None) -> None:
    assert _put(server, path, b"x", sha256=sha256) == 400


@pytest.mark.parametrize("path", ["/uploads/foo.whl", "/uploads/j/k/foo.whl", "/simple/j/x.whl"])
def test_other_put_paths_are_not_found(server: IndexServer, path: str) -> None:
    assert _put(server, path, b"x") == 404


def test_size_limits(server: IndexServer) -> None:
    assert _put(server, "/uploads/j/big.whl", b"x" * 1001) == 413
    assert _put(server, "/uploads/j/ok.whl", b"x" * 1000) == 201
    # No Content-Length: refused, and the connection is closed.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"PUT /uploads/j/x.whl HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"{SHA256_HEADER}: {'0' * 64}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode()
        )
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 411") and b"Connection: close" in reply


def test_keep_alive_after_an_upload(server: IndexServer, repo: Repository) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        body = b"abc"
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            SHA256_HEADER: hashlib.sha256(body).hexdigest(),
        }
        conn.request("PUT", "/uploads/j/a.whl", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 201
        conn.request("GET", "/simple/")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_uploads_are_off_without_a_token(repo: Repository) -> None:
    with IndexServer(repo) as srv:
        assert srv.upload_dir is None
        assert _put(srv, "/uploads/j/foo.whl", b"x") == 404
    assert not (repo.work_dir / "uploads").exists()
    with pytest.raises(ConfigError):
        IndexServer(repo, upload_token="short")
