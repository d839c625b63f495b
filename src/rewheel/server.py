"""The built-in HTTP server: serves a Repository's simple index and wheels to installers.

Pages are read from disk on every request (the builder publishes while the server runs) and only
what the repository holds is served: an unknown project is a 404, never a pass-through upstream.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import canonicalize_name

from .index_pages import HTML_CONTENT_TYPE, JSON_CONTENT_TYPE, render_root_html, render_root_json
from .repository import Repository

LogCallback = Callable[[str], None]

_CHUNK = 1 << 16
_POLL_INTERVAL = 0.05  # how soon stop() takes effect

# What a simple page can be served as, in the order preferred when a client ranks several equally
# and said nothing else. The "latest" aliases of PEP 691 are answered with the v1 content type.
_OFFERS: tuple[tuple[str, str, str], ...] = (
    # (media type the client may ask for, format, Content-Type of the answer)
    ("text/html", "html", "text/html; charset=utf-8"),
    (HTML_CONTENT_TYPE, "html", HTML_CONTENT_TYPE),
    ("application/vnd.pypi.simple.latest+html", "html", HTML_CONTENT_TYPE),
    (JSON_CONTENT_TYPE, "json", JSON_CONTENT_TYPE),
    ("application/vnd.pypi.simple.latest+json", "json", JSON_CONTENT_TYPE),
)


@dataclass(frozen=True)
class _MediaRange:
    type: str
    subtype: str
    q: float
    position: int

    def specificity(self, media_type: str) -> int:
        """How closely this matches ``media_type``: 2 exact, 1 ``type/*``, 0 ``*/*``, -1 not."""
        mtype, _, msub = media_type.partition("/")
        if self.type == "*" and self.subtype == "*":
            return 0
        if self.type != mtype:
            return -1
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == msub else -1


def _parse_accept(header: str) -> list[_MediaRange]:
    ranges = []
    for position, item in enumerate(header.split(",")):
        media, *params = (part.strip() for part in item.split(";"))
        mtype, sep, msub = media.lower().partition("/")
        if not sep or not mtype or not msub:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        ranges.append(_MediaRange(mtype, msub, max(0.0, min(q, 1.0)), position))
    return ranges


def negotiate(accept: str | None) -> tuple[str, str] | None:
    """PEP 691 content negotiation: (format, Content-Type) for an Accept header, None for a 406.

    Each offer takes the q-value of the most specific range that matches it; the highest q wins,
    then the more specific match, then the range listed first, then HTML (the default).
    """
    if accept is None or not accept.strip():
        return "html", "text/html; charset=utf-8"
    ranges = _parse_accept(accept)
    best: tuple[tuple[float, int, int, int], str, str] | None = None
    for preference, (media_type, fmt, content_type) in enumerate(_OFFERS):
        matches = [(r.specificity(media_type), r) for r in ranges]
        # An alias is served only to a client that names it: a wildcard stands for the real type.
        lowest = 2 if ".latest+" in media_type else 0
        matches = [(s, r) for s, r in matches if s >= lowest]
        if not matches:
            continue
        specificity, chosen = max(matches, key=lambda m: (m[0], -m[1].position))
        if chosen.q <= 0:
            continue
        rank = (chosen.q, specificity, -chosen.position, -preference)
        if best is None or rank > best[0]:
            best = (rank, fmt, content_type)
    return None if best is None else (best[1], best[2])


class _Refused(Exception):
    """A request path that is not served, answered with ``status``."""

    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status.phrase)
        self.status = status


def _path_segments(raw_path: str) -> list[str]:
    """The decoded segments of a request path; refuses traversal, encoded or not."""
    path = urlsplit(raw_path).path
    if not path.startswith("/"):
        raise _Refused(HTTPStatus.BAD_REQUEST)
    segments = []
    for raw in path.split("/")[1:]:
        seg = unquote(raw, errors="strict")
        if seg in (".", "..") or any(c in seg for c in "/\\\x00"):
            raise _Refused(HTTPStatus.BAD_REQUEST)
        segments.append(seg)
    return segments


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: installers fetch many pages from one host
    server_version = "rewheel"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection does not hold its thread for ever
    # Headers and body go out in separate writes; with Nagle each keep-alive response would wait
    # for a delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._handle(send_body=True)

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def _handle(self, *, send_body: bool) -> None:
        try:
            self._route(send_body)
        except _Refused as exc:
            self._send_status(exc.status, send_body)
        except UnicodeDecodeError:
            self._send_status(HTTPStatus.BAD_REQUEST, send_body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, send_body: bool) -> None:
        segments = _path_segments(self.path)
        repo = self.server.repo
        if segments in ([""], ["simple"]):
            self._redirect("/simple/", send_body)
        elif segments[0] == "simple" and segments[1:] == [""]:
            self._send_page(repo.simple_dir, send_body, root=True)
        elif segments[0] == "simple" and len(segments) in (2, 3) and segments[1]:
            if len(segments) == 3 and segments[2]:
                raise _Refused(HTTPStatus.NOT_FOUND)
            normalized = canonicalize_name(segments[1])
            if normalized != segments[1] or len(segments) == 2:
                self._redirect(f"/simple/{quote(normalized, safe='')}/", send_body)
                return
            self._send_page(repo.simple_dir / normalized, send_body, root=False)
        elif segments[0] == "wheels" and len(segments) == 2:
            self._send_wheel_file(repo.wheels_dir, segments[1], send_body)
        else:
            raise _Refused(HTTPStatus.NOT_FOUND)

    def _send_page(self, page_dir: Path, send_body: bool, *, root: bool) -> None:
        chosen = negotiate(self.headers.get("Accept"))
        if chosen is None:
            self._send_status(HTTPStatus.NOT_ACCEPTABLE, send_body)
            return
        fmt, content_type = chosen
        try:
            body = (page_dir / f"index.{fmt}").read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            if not root:
                raise _Refused(HTTPStatus.NOT_FOUND) from None
            # A repository nothing was published to yet is an empty index, not an error.
            text = render_root_json([]) if fmt == "json" else render_root_html([])
            body = text.encode("utf-8")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Vary", "Accept")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _send_wheel_file(self, wheels_dir: Path, filename: str, send_body: bool) -> None:
        # Temporary files of a publish in progress start with "." and are never served.
        if filename.startswith(".") or not filename.endswith((".whl", ".whl.metadata")):
            raise _Refused(HTTPStatus.NOT_FOUND)
        try:
            f: BinaryIO = (wheels_dir / filename).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise _Refused(HTTPStatus.NOT_FOUND) from None
        with f:
            # The size of the file we opened, even if a publish replaces the name meanwhile.
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise _Refused(HTTPStatus.NOT_FOUND)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(st.st_size))
            self.end_headers()
            if send_body:
                remaining = st.st_size
                while remaining > 0 and (chunk := f.read(min(_CHUNK, remaining))):
                    self.wfile.write(chunk)
                    remaining -= len(chunk)

    def _redirect(self, location: str, send_body: bool) -> None:
        body = f"Moved to {location}\n".encode()
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _send_status(self, status: HTTPStatus, send_body: bool) -> None:
        body = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log = self.server.log
        if log is not None:
            log(f"{self.address_string()} {format % args}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # installers open many connections at once; the default is 5

    def __init__(
        self,
        address: tuple[str, int],
        repo: Repository,
        log: LogCallback | None,
        family: socket.AddressFamily,
    ) -> None:
        self.address_family = family
        self.repo = repo
        self.log = log
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a dropped client is not worth that.
        if self.log is not None:
            self.log(f"error serving {client_address}: {traceback.format_exc().strip()}")


class IndexServer:
    """Serves ``repo`` as a PEP 503/691 index at ``url``."""

    def __init__(
        self,
        repo: Repository,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log: LogCallback | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Bound here, so that ``url`` is known (port 0 picks a free port) before serving.
        self._httpd = _Server((host, port), repo, log, family)
        self._host = host
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/simple"

    def start(self) -> None:
        """Serve in a background (daemon) thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="rewheel-index-server",
            daemon=True,
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted or stopped from another thread."""
        try:
            self._httpd.serve_forever(poll_interval=_POLL_INTERVAL)
        finally:
            self._close()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                self._httpd.server_close()

    def __enter__(self) -> IndexServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
