"""Credentials in an index URL (``https://user:token@host/simple``) never reach what rewheel
writes or prints: records, provenance, run files, logs, pages, the summary and its JSON.
Whatever is written there is readable by others (a served repository, a shared machine)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Upstream
from packaging.utils import canonicalize_name

from rewheel.cli import main
from rewheel.index.credentials import split_credentials, without_credentials
from rewheel.index.http import HttpClient
from rewheel.index.index_parse import JSON_V1
from rewheel.index.upstream import HttpUpstream
from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer

SECRET = "s3cr3t-T0KEN-do-not-leak"


def _with_credentials(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://builder:{SECRET}@{rest}"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out + err


def _files_holding(root: Path, needle: bytes) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if needle in data or needle in name.encode():
                found.append(str(path.relative_to(root)))
        found += [str((Path(folder) / d).relative_to(root)) for d in dirs if needle.decode() in d]
    return found


def test_index_credentials_are_written_and_printed_nowhere(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("good", "1.0", build_requires=["tool-a"])
    upstream.sdist("bad", "1.0", fail_build=True)
    repo, work = tmp_path / "repo", tmp_path / "work"
    index = _with_credentials(upstream.url)
    common = ["--repo", str(repo), "--index-url", index, "--work-dir", str(work), "-j", "2"]
    code, first = _run(["bootstrap", "good", "bad", "--keep-going", *common], capsys)
    assert code == 1, first  # bad fails on purpose: its error and log are checked too
    code, again = _run(["bootstrap", "good", "--json", *common], capsys)
    assert code == 0, again
    code, verified = _run(
        ["verify", "--repo", str(repo), "--check-upstream", "--index-url", index], capsys
    )
    assert (repo / "wheels").is_dir() and any((repo / "wheels").glob("good-1.0-*.whl"))
    with IndexServer(Repository(repo)) as server:  # it takes no password: any is fine
        code, served = _run(["verify", "--index", _with_credentials(server.url) + "/"], capsys)
        assert "chain of custody holds for 2 wheel(s)" in served, served
        with pytest.raises(SystemExit):
            main(["verify", "--json", "--index", _with_credentials(server.url) + "/"])
        out, err = capsys.readouterr()
        assert json.loads(out)["index"] == server.url + "/"
        served_json = out + err
    for output in (first, again, verified, served, served_json):
        assert SECRET not in output and "builder:" not in output
    assert _files_holding(tmp_path, SECRET.encode()) == []
    assert _files_holding(tmp_path, b"builder:") == []


class _Recorder:
    """A server on 127.0.0.1 that answers from ``routes`` and records each request's
    ``Authorization`` header by path."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.auth: dict[str, str | None] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                recorder.auth[self.path] = self.headers.get("Authorization")
                content_type, body = recorder.routes.get(self.path, ("text/plain", b""))
                self.send_response(200 if self.path in recorder.routes else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_credentials_go_to_the_index_host_only_and_links_lose_theirs(tmp_path: Path) -> None:
    index, other = _Recorder(), _Recorder()
    try:
        sdist, wheel = b"sdist bytes", b"wheel bytes"
        files = [
            {
                "filename": "demo-1.0.tar.gz",
                "url": "/files/demo-1.0.tar.gz",
                "hashes": {"sha256": hashlib.sha256(sdist).hexdigest()},
            },
            {
                # Another host, with credentials of its own in the link.
                "filename": "demo-1.0-py3-none-any.whl",
                "url": f"http://them:theirs@{other.url[7:]}/demo-1.0-py3-none-any.whl",
                "hashes": {"sha256": hashlib.sha256(wheel).hexdigest()},
            },
        ]
        page = {"meta": {"api-version": "1.1"}, "name": "demo", "files": files}
        index.routes["/simple/demo/"] = (JSON_V1, json.dumps(page).encode())
        index.routes["/files/demo-1.0.tar.gz"] = ("application/octet-stream", sdist)
        other.routes["/demo-1.0-py3-none-any.whl"] = ("application/octet-stream", wheel)
        expected = "Basic " + base64.b64encode(f"builder:{SECRET}".encode()).decode()
        with HttpClient() as client:
            upstream = HttpUpstream(
                _with_credentials(index.url) + "/simple/", client, cache_dir=tmp_path / "cache"
            )
            assert upstream.index_url == index.url + "/simple"
            page_files = upstream.get_project(canonicalize_name("demo")).files
            assert [f.url for f in page_files] == [
                f"{index.url}/files/demo-1.0.tar.gz",
                f"{other.url}/demo-1.0-py3-none-any.whl",
            ]
            for file in page_files:
                upstream.download(file, tmp_path / "got")
        assert index.auth == {"/simple/demo/": expected, "/files/demo-1.0.tar.gz": expected}
        assert other.auth == {"/demo-1.0-py3-none-any.whl": None}
        assert _files_holding(tmp_path, SECRET.encode()) == []
    finally:
        index.close()
        other.close()


@pytest.mark.parametrize(
    ("url", "public", "userinfo"),
    [
        ("https://pypi.org/simple", "https://pypi.org/simple", None),
        ("https://u:p%40ss@host:8443/simple/", "https://host:8443/simple/", "u:p@ss"),
        ("https://__token__@host/simple", "https://host/simple", "__token__:"),
        ("http://a:b@[::1]:3141/root/", "http://[::1]:3141/root/", "a:b"),
        ("https://a:b@c@host/x?y=1#z", "https://host/x?y=1#z", "a:b@c"),
    ],
)
def test_split_credentials(url: str, public: str, userinfo: str | None) -> None:
    got, headers = split_credentials(url)
    assert got == public and without_credentials(url) == public
    if userinfo is None:
        assert headers == {}
    else:
        assert headers == {"Authorization": "Basic " + base64.b64encode(userinfo.encode()).decode()}


def test_a_refused_index_url_is_shown_without_its_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = _run(
        ["verify", "--index", f"ftp://builder:{SECRET}@example.org/simple/"], capsys
    )
    assert code != 0 and "ftp://example.org/simple/" in output
    assert SECRET not in output
