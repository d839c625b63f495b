"""A fake upstream index (PEP 503 HTML, PEP 691 JSON) served over real HTTP, faults on demand.

Usage::

    with FakeIndex() as index:                 # serves on 127.0.0.1, an ephemeral port
        index.add(tmp_path / "foo-1.0.tar.gz", requires_python=">=3.8")
        index.add(wheel, metadata=b"Metadata-Version: 2.1\\n...")
        upstream = HttpUpstream(index.url, client)   # index.url == "http://127.0.0.1:PORT/simple"
        index.fail("/simple/foo/", status=503, times=2)   # the next 2 matching requests fail
        ...
        assert index.requests.count(("GET", "/files/foo-1.0.tar.gz")) == 1

API:

- ``FakeIndex(*, json=True, html=True)``: which page formats are served. Formats are negotiated
  with the Accept header as PEP 691 says; a request accepting none of the served formats gets 406.
- ``add(path, *, yanked=False, requires_python=None, metadata=None, omit_hash=False,
  wrong_hash=False)``: list the file ``path`` (an sdist ``.tar.gz``/``.zip`` or a wheel) under its
  normalized project name. Its content is read at once. ``yanked`` is True or a reason;
  ``metadata`` is served at ``/files/<filename>.metadata`` and announced with its sha256 (PEP 658/
  714); ``omit_hash`` lists the file without a sha256; ``wrong_hash`` lists a sha256 that does not
  match. Adding a file name again replaces it.
- ``url``: ``http://127.0.0.1:PORT/simple`` (no trailing slash). ``start()`` returns it; ``stop()``.
- ``requests``: ``(method, path)`` of every request received, in order (path as sent, with query).
- ``fail(path_substring, status=503, times=1, *, retry_after=None)``: the next ``times`` requests
  whose path contains ``path_substring`` are answered with ``status`` (and a ``Retry-After``
  header if given).
- ``truncate(path_substring, times=1)``: send the full Content-Length but only half the body, then
  close the connection.
- ``stall(path_substring, seconds, times=1)``: wait ``seconds`` before answering.
- ``cache_control``: when set, the ``Cache-Control`` header of every project page (200 and 304).
- ``last_modified``: when set, the ``Last-Modified`` header of every project page (200 and 304).

Routes: ``/simple/`` (the project list), ``/simple/<normalized>/`` (a project page; other
spellings of the name, or no trailing slash, redirect with 301 to it; unknown projects 404),
``/files/<filename>`` and ``/files/<filename>.metadata``. Every 200 carries an ``ETag``; a
request whose ``If-None-Match`` matches it gets 304. Page links are relative
(``../../files/<filename>``), so clients must resolve them against the page URL.
"""

from __future__ import annotations

import hashlib
import html
import json as jsonlib
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"


@dataclass
class _Entry:
    filename: str
    content: bytes
    listed_sha256: str | None
    yanked: bool | str
    requires_python: str | None
    metadata: bytes | None


@dataclass
class _Fault:
    substring: str
    remaining: int
    status: int = 0
    seconds: float = 0.0
    retry_after: str | None = None


def _project_name(filename: str) -> str:
    if filename.endswith(".whl"):
        return canonicalize_name(parse_wheel_filename(filename)[0])
    return canonicalize_name(parse_sdist_filename(filename)[0])


def _negotiate(accept: str | None, offered: list[str]) -> str | None:
    """The offered media type the Accept header likes best (ties: the server's order)."""
    if not accept:
        return offered[0]
    prefs: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower().replace(".latest+", ".v1+")
        prefs[media] = max(quality, prefs.get(media, 0.0))
    best: tuple[float, str] | None = None
    for media in offered:
        major = media.split("/", 1)[0] + "/*"
        quality = prefs.get(media, prefs.get(major, prefs.get("*/*", 0.0)))
        if quality > 0 and (best is None or quality > best[0]):
            best = (quality, media)
    return best[1] if best else None


class FakeIndex:
    """A simple index on 127.0.0.1 for tests; see the module docstring for the whole API."""

    def __init__(self, *, json: bool = True, html: bool = True) -> None:
        if not (json or html):
            raise ValueError("FakeIndex must serve at least one format")
        self._offered = ([JSON_TYPE] if json else []) + ([HTML_TYPE, "text/html"] if html else [])
        self._lock = threading.Lock()
        self._projects: dict[str, dict[str, _Entry]] = {}
        self._files: dict[str, _Entry] = {}
        self._fails: list[_Fault] = []
        self._truncates: list[_Fault] = []
        self._stalls: list[_Fault] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[tuple[str, str]] = []
        self.cache_control: str | None = None
        self.last_modified: str | None = None

    # --- content --------------------------------------------------------------------------

    def add(
        self,
        path: Path,
        *,
        yanked: bool | str = False,
        requires_python: str | None = None,
        metadata: bytes | None = None,
        omit_hash: bool = False,
        wrong_hash: bool = False,
    ) -> None:
        content = Path(path).read_bytes()
        sha = hashlib.sha256(content).hexdigest()
        if wrong_hash:
            sha = hashlib.sha256(content + b"not this").hexdigest()
        entry = _Entry(
            filename=Path(path).name,
            content=content,
            listed_sha256=None if omit_hash else sha,
            yanked=yanked,
            requires_python=requires_python,
            metadata=metadata,
        )
        with self._lock:
            self._projects.setdefault(_project_name(entry.filename), {})[entry.filename] = entry
            self._files[entry.filename] = entry

    # --- faults ---------------------------------------------------------------------------

    def fail(
        self,
        path_substring: str,
        status: int = 503,
        times: int = 1,
        *,
        retry_after: str | None = None,
    ) -> None:
        with self._lock:
            self._fails.append(
                _Fault(path_substring, times, status=status, retry_after=retry_after)
            )

    def truncate(self, path_substring: str, times: int = 1) -> None:
        with self._lock:
            self._truncates.append(_Fault(path_substring, times))

    def stall(self, path_substring: str, seconds: float, times: int = 1) -> None:
        with self._lock:
            self._stalls.append(_Fault(path_substring, times, seconds=seconds))

    def _take(self, faults: list[_Fault], path: str) -> _Fault | None:
        with self._lock:
            for fault in faults:
                if fault.remaining > 0 and fault.substring in path:
                    fault.remaining -= 1
                    return fault
        return None

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeIndex is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/simple"

    def start(self) -> str:
        if self._server is None:
            self._stopping.clear()
            server = _Server(("127.0.0.1", 0), _make_handler(self))
            server.daemon_threads = True
            server.block_on_close = False  # stop() must not wait for a stalled handler
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
            self._thread.start()
        return self.url

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled handlers
        if self._server is not None:
            # shutdown() waits for serve_forever to see it: forever, if its thread died (e.g.
            # it could not start a handler thread on a machine out of threads).
            if self._thread is not None and self._thread.is_alive():
                self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FakeIndex:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- pages ----------------------------------------------------------------------------

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def _entry_json(self, entry: _Entry) -> dict[str, object]:
        data: dict[str, object] = {
            "filename": entry.filename,
            "url": f"../../files/{quote(entry.filename)}",
            "hashes": {"sha256": entry.listed_sha256} if entry.listed_sha256 else {},
            "size": len(entry.content),
        }
        if entry.requires_python is not None:
            data["requires-python"] = entry.requires_python
        if entry.yanked:
            data["yanked"] = entry.yanked
        if entry.metadata is not None:
            data["core-metadata"] = {"sha256": hashlib.sha256(entry.metadata).hexdigest()}
        return data

    def _entry_html(self, entry: _Entry) -> str:
        href = f"../../files/{quote(entry.filename)}"
        if entry.listed_sha256:
            href += f"#sha256={entry.listed_sha256}"
        attrs = f'href="{html.escape(href)}"'
        if entry.requires_python is not None:
            attrs += f' data-requires-python="{html.escape(entry.requires_python)}"'
        if entry.yanked is True:
            attrs += " data-yanked"
        elif entry.yanked:
            attrs += f' data-yanked="{html.escape(str(entry.yanked))}"'
        if entry.metadata is not None:
            digest = hashlib.sha256(entry.metadata).hexdigest()
            attrs += f' data-core-metadata="sha256={digest}"'
        return f"    <a {attrs}>{html.escape(entry.filename)}</a><br/>\n"

    def render_project(self, name: str, media: str) -> bytes:
        with self._lock:
            entries = sorted(self._projects.get(name, {}).values(), key=lambda e: e.filename)
        if media == JSON_TYPE:
            doc = {
                "meta": {"api-version": "1.1"},
                "name": name,
                "files": [self._entry_json(e) for e in entries],
                "versions": [],
            }
            return jsonlib.dumps(doc).encode()
        links = "".join(self._entry_html(e) for e in entries)
        return (
            "<!DOCTYPE html>\n<html><head>"
            '<meta name="pypi:repository-version" content="1.1">'
            f"<title>Links for {html.escape(name)}</title></head>\n"
            f"<body><h1>Links for {html.escape(name)}</h1>\n{links}</body></html>\n"
        ).encode()

    def render_root(self, media: str) -> bytes:
        with self._lock:
            names = sorted(self._projects)
        if media == JSON_TYPE:
            doc = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
            return jsonlib.dumps(doc).encode()
        links = "".join(f'<a href="{quote(n)}/">{html.escape(n)}</a>\n' for n in names)
        return f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n".encode()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up early (timeout and truncation tests) is not news; a bug here is.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _make_handler(index: FakeIndex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real indexes do

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

        def do_GET(self) -> None:
            path = self.path
            index._record("GET", path)
            stall = index._take(index._stalls, path)
            if stall is not None:
                index._stopping.wait(stall.seconds)
            failure = index._take(index._fails, path)
            if failure is not None:
                headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                self._send(failure.status, b"injected failure\n", "text/plain", headers)
                return
            self._route(urlsplit(path).path)

        def _route(self, path: str) -> None:
            if path in ("/simple", "/simple/"):
                if path == "/simple":
                    self._redirect("/simple/")
                    return
                media = self._media()
                if media is not None:
                    self._send(200, index.render_root(media), media)
                return
            if path.startswith("/simple/"):
                raw = unquote(path[len("/simple/") :])
                name = canonicalize_name(raw.rstrip("/"))
                if f"/simple/{name}/" != unquote(path):
                    self._redirect(f"/simple/{quote(name)}/")
                    return
                with index._lock:
                    known = name in index._projects
                if not known:
                    self._send(404, b"no such project\n", "text/plain")
                    return
                media = self._media()
                if media is not None:
                    headers = {}
                    if index.cache_control is not None:
                        headers["Cache-Control"] = index.cache_control
                    if index.last_modified is not None:
                        headers["Last-Modified"] = index.last_modified
                    self._send(200, index.render_project(name, media), media, headers)
                return
            if path.startswith("/files/"):
                filename = unquote(path[len("/files/") :])
                with index._lock:
                    entry = index._files.get(filename)
                    meta = None
                    if entry is None and filename.endswith(".metadata"):
                        owner = index._files.get(filename[: -len(".metadata")])
                        meta = owner.metadata if owner is not None else None
                if entry is not None:
                    self._send(200, entry.content, "application/octet-stream")
                elif meta is not None:
                    self._send(200, meta, "application/octet-stream")
                else:
                    self._send(404, b"no such file\n", "text/plain")
                return
            self._send(404, b"not found\n", "text/plain")

        def _media(self) -> str | None:
            media = _negotiate(self.headers.get("Accept"), index._offered)
            if media is None:
                self._send(406, b"none of the accepted formats is served\n", "text/plain")
            return media

        def _redirect(self, location: str) -> None:
            self._send(301, b"", "text/plain", {"Location": location})

        def _send(
            self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            headers = dict(headers or {})
            if status == 200:
                headers["ETag"] = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
                if self.headers.get("If-None-Match") == headers["ETag"]:
                    self.send_response(304)
                    self.send_header("ETag", headers["ETag"])
                    for key in ("Cache-Control", "Last-Modified"):
                        if key in headers:
                            self.send_header(key, headers[key])
                    self.end_headers()
                    return
            truncated = status == 200 and index._take(index._truncates, self.path) is not None
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            if truncated:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if truncated else body)
            if truncated:
                self.close_connection = True

    return Handler
