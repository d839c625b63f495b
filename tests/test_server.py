from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest
import uv
from fakes import make_record
from support.sdists import SdistSpec, make_sdist
from support.sdists import make_wheel as support_make_wheel

from rewheel.core.errors import ConfigError
from rewheel.core.fsutil import sha256_file
from rewheel.core.types import WheelRef
from rewheel.repo.repository import Repository
from rewheel.serve import server as server_module
from rewheel.serve.server import IndexServer, Negotiate, negotiate

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"


def make_wheel(dest_dir: Path, name: str, version: str, module: str) -> Path:
    """A minimal pure-Python wheel with one module, written by hand."""
    dist = f"{name}-{version}"
    files = {
        f"{module}.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.8\n"
        ).encode(),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\n"
    files[f"{dist}.dist-info/RECORD"] = (record + f"{dist}.dist-info/RECORD,,\n").encode()
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    r = Repository(tmp_path / "repo")
    r.ensure_layout()
    return r


@pytest.fixture
def published(repo: Repository, tmp_path: Path) -> WheelRef:
    ref = repo.publish_wheel(make_wheel(tmp_path / "build", "Tiny_Pkg", "1.0", "tiny_mod"))
    repo.regenerate_index()
    return ref


@pytest.fixture
def log_lines() -> list[str]:
    return []


@pytest.fixture
def server(repo: Repository, log_lines: list[str]) -> Iterator[IndexServer]:
    with IndexServer(repo, log=log_lines.append) as srv:
        yield srv


Response = tuple[int, http.client.HTTPMessage, bytes]


def request(
    srv: IndexServer, path: str, *, method: str = "GET", accept: str | None = None
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        # skip_accept_encoding: http.client adds no Accept header of its own either.
        conn.putrequest(method, path, skip_accept_encoding=True)
        if accept is not None:
            conn.putheader("Accept", accept)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


# -- negotiation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, ("html", "text/html; charset=utf-8")),
        ("", ("html", "text/html; charset=utf-8")),
        ("*/*", ("html", "text/html; charset=utf-8")),
        ("text/html", ("html", "text/html; charset=utf-8")),
        (PIP_ACCEPT, ("json", JSON)),
        (UV_ACCEPT, ("json", JSON)),
        (HTML, ("html", HTML)),
        (f"{JSON};q=0.5, {HTML};q=0.9", ("html", HTML)),
        (f"{JSON}, {HTML}", ("json", JSON)),  # equal q: the one listed first
        (f"{HTML}, {JSON}", ("html", HTML)),
        ("application/vnd.pypi.simple.latest+json", ("json", JSON)),
        ("application/*", ("html", HTML)),
        (f"*/*;q=0.1, {JSON}", ("json", JSON)),
        (f"{JSON};q=0, */*", ("html", "text/html; charset=utf-8")),
        (f"*/*, {JSON};q=0, {HTML};q=0, text/html;q=0", None),
        ("text/plain", None),
        ("application/json", None),
        ("garbage", None),
    ],
)
def test_negotiate(accept: str | None, expected: tuple[str, str] | None) -> None:
    assert negotiate(accept) == expected


# -- pages --------------------------------------------------------------------------------------


def test_project_page_by_negotiation(server: IndexServer, published: WheelRef) -> None:
    status, headers, body = request(server, "/simple/tiny-pkg/", accept=PIP_ACCEPT)
    assert status == 200
    assert headers["Content-Type"] == JSON
    assert headers["Vary"] == "Accept"
    assert int(headers["Content-Length"]) == len(body)
    data = json.loads(body)
    assert [(f["filename"], f["hashes"]["sha256"]) for f in data["files"]] == [
        (published.filename, published.sha256)
    ]

    status, headers, body = request(server, "/simple/tiny-pkg/", accept=HTML)
    assert (status, headers["Content-Type"]) == (200, HTML)
    assert f">{published.filename}</a>".encode() in body

    status, headers, body = request(server, "/simple/tiny-pkg/")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert f"#sha256={published.sha256}".encode() in body

    status, _, _ = request(server, "/simple/tiny-pkg/", accept="text/plain")
    assert status == 406


def test_root_page(server: IndexServer, published: WheelRef) -> None:
    status, headers, body = request(server, "/simple/", accept=JSON)
    assert (status, headers["Content-Type"]) == (200, JSON)
    assert json.loads(body)["projects"] == [{"name": "tiny-pkg"}]
    status, _, body = request(server, "/simple/")
    assert status == 200 and b'href="tiny-pkg/"' in body


def test_root_page_of_an_empty_repository(server: IndexServer) -> None:
    status, _, body = request(server, "/simple/", accept=JSON)
    assert status == 200 and json.loads(body)["projects"] == []


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/", "/browse/"),
        ("/browse", "/browse/"),
        ("/simple", "/simple/"),
        ("/simple/tiny-pkg", "/simple/tiny-pkg/"),
        ("/simple/Tiny_Pkg/", "/simple/tiny-pkg/"),
        ("/simple/Tiny.PKG", "/simple/tiny-pkg/"),
        ("/simple/tiny--pkg/?x=1", "/simple/tiny-pkg/"),
        ("/simple/A%3Cb%3E/", "/simple/a%3Cb%3E/"),
    ],
)
def test_redirects(server: IndexServer, published: WheelRef, path: str, location: str) -> None:
    status, headers, _ = request(server, path)
    assert (status, headers["Location"]) == (301, location)


@pytest.mark.parametrize(
    "path",
    [
        "/simple/unknown/",
        "/simple/tiny-pkg/index.html",
        "/simple/tiny-pkg/extra/",
        "/wheels/",
        "/wheels/missing-1.0-py3-none-any.whl",
        "/wheels/not-a-wheel.txt",
        "/records/",
        "/build-order.json",
        "/favicon.ico",
    ],
)
def test_not_found(server: IndexServer, published: WheelRef, path: str) -> None:
    status, _, _ = request(server, path, accept=JSON)
    assert status == 404


def test_unknown_project_is_404_in_every_format(server: IndexServer) -> None:
    for accept in (None, JSON, HTML):
        status, _, _ = request(server, "/simple/requests/", accept=accept)
        assert status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/wheels/../build-order.json",
        "/wheels/%2e%2e/build-order.json",
        "/wheels/%2E%2E%2Fbuild-order.json",
        "/wheels/..%2fbuild-order.json",
        "/wheels/..%5cbuild-order.json",
        "/simple/..%2F..%2Fwheels/",
        "/simple/%2e%2e/",
        "/wheels/%00.whl",
        "/wheels/%ff.whl",
    ],
)
def test_path_traversal_is_refused(server: IndexServer, repo: Repository, path: str) -> None:
    repo.write_json("build-order.json", {"secret": True})
    status, _, body = request(server, path)
    assert status == 400
    assert b"secret" not in body


def test_wheel_and_metadata_downloads(
    server: IndexServer, repo: Repository, published: WheelRef
) -> None:
    wheel_bytes = repo.wheel_path(published).read_bytes()
    status, headers, body = request(server, f"/wheels/{published.filename}")
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert int(headers["Content-Length"]) == len(wheel_bytes)
    assert body == wheel_bytes

    status, headers, body = request(server, f"/wheels/{published.filename}.metadata")
    assert status == 200
    assert body == (repo.wheels_dir / f"{published.filename}.metadata").read_bytes()
    assert body.startswith(b"Metadata-Version:")


def test_temporary_files_are_not_served(server: IndexServer, repo: Repository) -> None:
    (repo.wheels_dir / ".tiny_pkg-1.0-py3-none-any.whl.abc.tmp").write_bytes(b"partial")
    (repo.wheels_dir / ".hidden-1.0-py3-none-any.whl").write_bytes(b"partial")
    assert request(server, "/wheels/.tiny_pkg-1.0-py3-none-any.whl.abc.tmp")[0] == 404
    assert request(server, "/wheels/.hidden-1.0-py3-none-any.whl")[0] == 404


def test_head(server: IndexServer, repo: Repository, published: WheelRef) -> None:
    status, headers, body = request(server, f"/wheels/{published.filename}", method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) == repo.wheel_path(published).stat().st_size

    status, headers, body = request(server, "/simple/tiny-pkg/", method="HEAD", accept=JSON)
    assert (status, headers["Content-Type"], body) == (200, JSON, b"")
    page = (repo.simple_dir / "tiny-pkg" / "index.json").read_bytes()
    assert int(headers["Content-Length"]) == len(page)

    status, headers, body = request(server, "/simple/Tiny_Pkg/", method="HEAD")
    assert (status, headers["Location"], body) == (301, "/simple/tiny-pkg/", b"")
    assert request(server, "/simple/nothing/", method="HEAD")[:1] == (404,)


def test_pages_are_read_fresh(server: IndexServer, repo: Repository, tmp_path: Path) -> None:
    assert request(server, "/simple/later/")[0] == 404
    repo.publish_wheel(make_wheel(tmp_path / "later", "later", "2.0", "later"))
    repo.regenerate_index()
    status, _, body = request(server, "/simple/later/", accept=JSON)
    assert status == 200 and json.loads(body)["versions"] == ["2.0"]


def test_concurrent_requests(server: IndexServer, repo: Repository, published: WheelRef) -> None:
    wheel_bytes = repo.wheel_path(published).read_bytes()
    results: list[tuple[str, int, bytes]] = []
    lock = threading.Lock()
    paths = ["/simple/", "/simple/tiny-pkg/", f"/wheels/{published.filename}"] * 10

    def fetch(path: str) -> None:
        status, _, body = request(server, path, accept=JSON)
        with lock:
            results.append((path, status, body))

    threads = [threading.Thread(target=fetch, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert len(results) == len(paths)
    assert all(status == 200 for _, status, _ in results)
    assert all(body == wheel_bytes for path, _, body in results if path.startswith("/wheels/"))


def test_keep_alive_connection_serves_several_requests(
    server: IndexServer, published: WheelRef
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for path in ("/simple/", "/simple/tiny-pkg/", "/simple/nope/", "/simple/tiny-pkg/"):
            conn.request("GET", path, headers={"Accept": JSON})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == (404 if "nope" in path else 200)
    finally:
        conn.close()


def test_logging_goes_to_the_callback_only(
    repo: Repository, published: WheelRef, capfd: pytest.CaptureFixture[str]
) -> None:
    lines: list[str] = []
    with IndexServer(repo, log=lines.append) as srv:
        request(srv, "/simple/tiny-pkg/")
        request(srv, "/simple/absent/")
    with IndexServer(repo) as srv:  # no callback: silent
        request(srv, "/simple/absent/")
        request(srv, "/wheels/..%2fx")
    assert any('"GET /simple/tiny-pkg/ HTTP/1.1" 200' in line for line in lines)
    assert any("404" in line for line in lines)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_url_and_stop(repo: Repository) -> None:
    srv = IndexServer(repo)
    assert srv.url == f"http://127.0.0.1:{srv.port}/simple"
    srv.start()
    assert request(srv, "/simple/")[0] == 200
    srv.stop()
    with pytest.raises(ConnectionRefusedError):
        request(srv, "/simple/")
    srv.stop()  # idempotent


def test_serve_forever_in_the_foreground(repo: Repository) -> None:
    srv = IndexServer(repo)
    thread = threading.Thread(target=srv.serve_forever)
    thread.start()
    try:
        assert request(srv, "/simple/")[0] == 200
    finally:
        srv._httpd.shutdown()  # what a signal handler of `rewheel serve` would do
        thread.join(timeout=10)
    assert not thread.is_alive()


# -- real installers ----------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    """This machine's environment without any pip/uv configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    # pip reads /etc/pip.conf and /etc/xdg/pip/pip.conf even with --isolated; this stops it.
    env["PIP_CONFIG_FILE"] = os.devnull
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _record_formats(*, force_html: bool) -> tuple[list[str], Negotiate]:
    """A negotiation that records the format the server picks for each page; with force_html,
    it answers HTML only."""
    chosen: list[str] = []

    def recording(accept: str | None) -> tuple[str, str] | None:
        result = negotiate(accept)
        if result is not None and force_html:
            result = ("html", HTML)
        chosen.append("none" if result is None else result[0])
        return result

    return chosen, recording


def _install_cmd(installer: str, url: str, target: Path) -> list[str]:
    if installer == "uv":
        return [
            uv.find_uv_bin(),
            "pip",
            "install",
            "--no-config",
            "--no-cache",
            "--python",
            sys.executable,
            "--index-url",
            url,
            "--target",
            str(target),
            "Tiny.Pkg",
        ]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--isolated",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--index-url",
        url,
        "--target",
        str(target),
        "Tiny.Pkg",
    ]


@pytest.mark.parametrize("installer", ["uv", "pip"])
@pytest.mark.parametrize("page_format", ["json", "html"])
def test_real_install(
    repo: Repository,
    published: WheelRef,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    installer: str,
    page_format: str,
) -> None:
    chosen, recording = _record_formats(force_html=page_format == "html")
    requested: list[str] = []
    target = tmp_path / "target"
    with IndexServer(repo, log=requested.append, negotiate=recording) as srv:
        proc = subprocess.run(
            _install_cmd(installer, srv.url, target),
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / "tiny_mod.py").read_text() == "VERSION = '1.0'\n"
    assert (target / "Tiny_Pkg-1.0.dist-info" / "METADATA").exists()
    # It came from this server, and the page was in the format under test.
    assert any(f"GET /wheels/{published.filename} " in line for line in requested)
    assert chosen and set(chosen) == {page_format}


def test_every_response_carries_a_content_security_policy_and_nosniff(
    server: IndexServer, published: WheelRef, repo: Repository
) -> None:
    (repo.logs_dir / "tiny_pkg-1.0.log").write_text("log\n")
    responses = [
        request(server, path, method=method, accept=accept)
        for path, method, accept in [
            ("/", "GET", None),  # 301
            ("/browse/", "GET", None),
            ("/simple/", "GET", PIP_ACCEPT),
            ("/simple/tiny-pkg/", "GET", HTML),
            ("/simple/tiny-pkg/", "GET", "application/json"),  # 406
            ("/simple/missing/", "GET", None),  # 404
            (f"/wheels/{published.filename}", "GET", None),
            (f"/wheels/{published.filename}", "HEAD", None),
            ("/logs/tiny_pkg-1.0.log", "GET", None),
            ("/logs/..%2fx.log", "GET", None),  # 400
            ("/simple/", "DELETE", None),  # 501, answered by http.server itself
        ]
    ]
    statuses = sorted({status for status, _, _ in responses})
    assert statuses == [200, 301, 400, 404, 406, 501]
    for status, headers, _ in responses:
        assert headers["X-Content-Type-Options"] == "nosniff", status
        policy = headers["Content-Security-Policy"]
        assert policy == server_module.CONTENT_SECURITY_POLICY, status
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy


# -- conditional requests -----------------------------------------------------------------------


def request_with(srv: IndexServer, path: str, headers: dict[str, str]) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(headers.pop("method", "GET"), path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def _age(path: Path, seconds: float = 86400) -> None:
    """Make a file look written ``seconds`` ago."""
    old = time.time() - seconds
    os.utime(path, (old, old))


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/simple/", JSON),
        ("/simple/", HTML),
        ("/simple/tiny-pkg/", PIP_ACCEPT),
        ("/simple/tiny-pkg/", None),
        ("/wheels/{wheel}", None),
        ("/wheels/{wheel}.metadata", None),
        ("/logs/tiny_pkg-1.0.log", None),
        ("/sdists/tiny_pkg-1.0.tar.gz", None),
        ("/browse/", None),  # made on the fly: no pages written yet
    ],
)
def test_an_unchanged_response_is_revalidated_with_its_etag(
    server: IndexServer, repo: Repository, published: WheelRef, path: str, accept: str | None
) -> None:
    (repo.logs_dir / "tiny_pkg-1.0.log").write_text("log\n")
    (repo.sdists_dir / "tiny_pkg-1.0.tar.gz").write_bytes(b"sdist")
    path = path.format(wheel=published.filename)
    base = {"Accept": accept} if accept else {}
    status, headers, body = request_with(server, path, dict(base))
    assert status == 200 and body
    etag = headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert headers["Cache-Control"] == "no-cache"

    for method in ("GET", "HEAD"):
        status, headers304, body = request_with(
            server, path, {**base, "If-None-Match": etag, "method": method}
        )
        assert (status, body) == (304, b""), method
        assert headers304["ETag"] == etag
        assert headers304["X-Content-Type-Options"] == "nosniff"
    # A weak form of the tag, or the tag among others, matches too; another one does not.
    assert request_with(server, path, {**base, "If-None-Match": f'"x", W/{etag}'})[0] == 304
    assert request_with(server, path, {**base, "If-None-Match": '"other"'})[0] == 200


def test_a_page_in_each_format_has_its_own_etag_and_a_new_page_a_new_one(
    server: IndexServer, repo: Repository, published: WheelRef, tmp_path: Path
) -> None:
    json_tag = request(server, "/simple/tiny-pkg/", accept=JSON)[1]["ETag"]
    html_tag = request(server, "/simple/tiny-pkg/", accept=HTML)[1]["ETag"]
    assert json_tag != html_tag
    # An HTML page's tag does not revalidate the JSON page.
    assert (
        request_with(server, "/simple/tiny-pkg/", {"Accept": JSON, "If-None-Match": html_tag})[0]
        == 200
    )
    repo.publish_wheel(make_wheel(tmp_path / "v2", "Tiny_Pkg", "2.0", "tiny_mod"))
    repo.regenerate_index()
    status, headers, body = request_with(
        server, "/simple/tiny-pkg/", {"Accept": JSON, "If-None-Match": json_tag}
    )
    assert status == 200 and headers["ETag"] != json_tag
    assert json.loads(body)["versions"] == ["1.0", "2.0"]
    # A page regenerated with the same content keeps its tag.
    repo.regenerate_index()
    assert request(server, "/simple/tiny-pkg/", accept=JSON)[1]["ETag"] == headers["ETag"]


def test_last_modified_and_if_modified_since(
    server: IndexServer, repo: Repository, published: WheelRef
) -> None:
    wheel = f"/wheels/{published.filename}"
    _age(repo.wheel_path(published))
    headers = request(server, wheel)[1]
    last_modified = headers["Last-Modified"]
    assert last_modified.endswith(" GMT")
    assert request_with(server, wheel, {"If-Modified-Since": last_modified})[0] == 304
    later = email.utils.formatdate(time.time(), usegmt=True)
    assert request_with(server, wheel, {"If-Modified-Since": later})[0] == 304
    earlier = email.utils.formatdate(time.time() - 3 * 86400, usegmt=True)
    assert request_with(server, wheel, {"If-Modified-Since": earlier})[0] == 200
    assert request_with(server, wheel, {"If-Modified-Since": "yesterday"})[0] == 200
    # If-None-Match wins: a tag that does not match means the copy is old, whatever the date.
    assert (
        request_with(server, wheel, {"If-None-Match": '"old"', "If-Modified-Since": later})[0]
        == 200
    )
    page = repo.simple_dir / "tiny-pkg" / "index.json"
    _age(page)
    headers = request(server, "/simple/tiny-pkg/", accept=JSON)[1]
    assert (
        request_with(
            server,
            "/simple/tiny-pkg/",
            {"Accept": JSON, "If-Modified-Since": headers["Last-Modified"]},
        )[0]
        == 304
    )


def test_no_last_modified_for_a_file_written_this_second(
    server: IndexServer, repo: Repository, published: WheelRef
) -> None:
    # Written again within the same second, it would look unchanged to If-Modified-Since.
    path = repo.wheel_path(published)
    now = time.time()
    os.utime(path, (now, now))
    headers = request(server, f"/wheels/{published.filename}")[1]
    if int(time.time()) == int(now):  # still that second (nearly always)
        assert "Last-Modified" not in headers
    assert "ETag" in headers


def test_a_replaced_file_is_not_revalidated(
    server: IndexServer, repo: Repository, published: WheelRef, tmp_path: Path
) -> None:
    etag = request(server, f"/wheels/{published.filename}")[1]["ETag"]
    # Rebuilt under the same name: another file.
    repo.publish_wheel(make_wheel(tmp_path / "again", "Tiny_Pkg", "1.0", "other_mod"))
    status, headers, body = request_with(
        server, f"/wheels/{published.filename}", {"If-None-Match": etag}
    )
    assert status == 200 and headers["ETag"] != etag
    assert body == repo.wheel_path(published).read_bytes()


# -- the access log ------------------------------------------------------------------------------

_LINE = re.compile(
    r"^(?P<host>\S+) - - \[(?P<time>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)"$'
)


def test_the_access_log_has_one_line_per_request(repo: Repository, published: WheelRef) -> None:
    lines: list[str] = []
    with IndexServer(repo, access_log=lines.append) as srv:
        _, headers, body = request(srv, f"/wheels/{published.filename}")
        request_with(srv, f"/wheels/{published.filename}", {"If-None-Match": headers["ETag"]})
        request_with(srv, "/simple/nope/", {"User-Agent": "pip/25.0", "Referer": "http://x/"})
        request(srv, "/simple/tiny-pkg/", method="HEAD")
        request(srv, "/simple/", method="DELETE")  # answered by http.server itself
    assert len(lines) == 5, lines
    parsed = [m.groupdict() for line in lines if (m := _LINE.match(line))]
    assert len(parsed) == 5, lines
    assert [(p["request"].split()[0], p["status"]) for p in parsed] == [
        ("GET", "200"),
        ("GET", "304"),
        ("GET", "404"),
        ("HEAD", "200"),
        ("DELETE", "501"),
    ]
    assert parsed[0]["host"] == "127.0.0.1"
    assert parsed[0]["request"] == f"GET /wheels/{published.filename} HTTP/1.1"
    assert parsed[0]["size"] == str(len(body))
    assert parsed[1]["size"] == "-" and parsed[3]["size"] == "-"
    assert (parsed[2]["agent"], parsed[2]["referer"]) == ("pip/25.0", "http://x/")


def test_the_access_log_escapes_what_the_client_sent(repo: Repository) -> None:
    lines: list[str] = []
    with (
        IndexServer(repo, access_log=lines.append) as srv,
        socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock,
    ):
        sock.sendall(
            b'GET /\x1b[2J"x\\y HTTP/1.1\r\nHost: h\r\nUser-Agent: a"b\x07\r\n'
            b"Connection: close\r\n\r\n"
        )
        while sock.recv(65536):
            pass
    (line,) = lines
    assert _LINE.match(line), line
    assert "\x1b" not in line and "\x07" not in line
    assert '"GET /\\x1b[2J\\x22x\\x5cy HTTP/1.1"' in line
    assert line.endswith('"a\\x22b\\x07"')


def test_the_access_log_never_holds_the_upload_token(repo: Repository, tmp_path: Path) -> None:
    token = "secret-token-" + "z" * 20
    lines: list[str] = []
    body = b"wheel bytes"
    with IndexServer(repo, upload_token=token, access_log=lines.append) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request(
            "PUT",
            "/uploads/job1/x-1.0-py3-none-any.whl",
            body=body,
            headers={
                "Authorization": f"Bearer {token}",
                server_module.SHA256_HEADER: hashlib.sha256(body).hexdigest(),
            },
        )
        assert conn.getresponse().status == 201
        conn.close()
    assert any('"PUT /uploads/job1/x-1.0-py3-none-any.whl HTTP/1.1" 201' in line for line in lines)
    assert not any(token in line for line in lines)


def test_an_access_log_file_is_appended_to_and_private(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = server_module.AccessLog.open(str(path))
    log("one")
    log("two")
    log.close()
    again = server_module.AccessLog.open(str(path))
    again("three")
    again.close()
    assert path.read_text() == "one\ntwo\nthree\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match=r"cannot open the access log .*missing"):
        server_module.AccessLog.open(str(tmp_path / "missing" / "access.log"))


# -- sdists ------------------------------------------------------------------------------------


def test_the_sdist_a_wheel_was_built_from_is_listed_and_served(
    server: IndexServer, repo: Repository, tmp_path: Path
) -> None:
    sdist = make_sdist(SdistSpec("tiny-pkg", "1.0"), tmp_path / "up")
    shutil.copy(sdist, repo.sdists_dir / sdist.name)
    ref = repo.publish_wheel(support_make_wheel(SdistSpec("tiny-pkg", "1.0"), tmp_path / "w"))
    repo.save_record(
        make_record(
            "tiny-pkg",
            "1.0",
            wheel=ref.filename,
            sdist_sha256=sha256_file(sdist),
            sdist_url=f"https://files.example/{sdist.name}",
        )
    )
    repo.regenerate_index()
    page = json.loads(request(server, "/simple/tiny-pkg/", accept=JSON)[2])
    files = {f["filename"]: f for f in page["files"]}
    assert set(files) == {ref.filename, sdist.name}
    assert files[sdist.name]["hashes"] == {"sha256": sha256_file(sdist)}
    status, _, body = request(server, urljoin("/simple/tiny-pkg/", files[sdist.name]["url"]))
    assert (status, body) == (200, sdist.read_bytes())

    # What pip finds when told to take no wheel: the sdist, with its hash checked.
    dest = tmp_path / "downloads"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--isolated",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--index-url",
            server.url + "/",
            "--dest",
            str(dest),
            "tiny-pkg",
        ],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [p.name for p in dest.iterdir()] == [sdist.name]
    assert (dest / sdist.name).read_bytes() == sdist.read_bytes()


# -- listening ---------------------------------------------------------------------------------


def test_a_port_in_use_is_a_clear_error(repo: Repository) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"127.0.0.1:{port}: the port is in use") as info:
            IndexServer(repo, "127.0.0.1", port)
    assert info.value.hint is not None and "--port" in info.value.hint


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("no-such-host.invalid", "no such host or address"),
        ("999.1.1.1", "no such host or address"),
        ("192.0.2.1", "192.0.2.1 is not an address of this machine"),
    ],
)
def test_a_bad_host_is_a_clear_error(repo: Repository, host: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        IndexServer(repo, host, 0)
    assert info.value.hint is not None and "--host" in info.value.hint
