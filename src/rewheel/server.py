"""The built-in HTTP server: serves a Repository's simple index and wheels to installers.

Pages are read from disk on every request (the builder publishes while the server runs) and only
what the repository holds is served: an unknown project is a 404, never a pass-through upstream.

For builds on other machines (``rewheel.dask_steps``) the server also hands out the repository's
sdists (``GET /sdists/<file>``) and, only when started with an upload token, takes uploads into a
staging folder (``PUT /uploads/<job>/<file>``, see ``_Handler._receive_upload``). Nothing uploaded
is served or published by the server itself: the coordinator decides what to publish.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import socket
import stat
import tempfile
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

from .browse_pages import BROWSE_DIR, Site, render_index
from .errors import ConfigError
from .index_pages import HTML_CONTENT_TYPE, JSON_CONTENT_TYPE, render_root_html, render_root_json
from .repository import Repository

LogCallback = Callable[[str], None]

_CHUNK = 1 << 16
_POLL_INTERVAL = 0.05  # how soon stop() takes effect

# Uploads: the header carrying the sha256 the uploader claims for the body, and what may be sent.
SHA256_HEADER = "X-Rewheel-SHA256"
UPLOAD_SUFFIXES = (".whl", ".log")
DEFAULT_MAX_UPLOAD = 4 << 30
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The archive formats an sdist in the repository can have (those extract.py reads).
_SDIST_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")

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

    def do_PUT(self) -> None:
        self._handle(send_body=True, upload=True)

    def _handle(self, *, send_body: bool, upload: bool = False) -> None:
        try:
            if upload:
                self._receive_upload()
            else:
                self._route(send_body)
        except _Refused as exc:
            if upload:
                # The body may be unread: the connection cannot carry another request.
                self.close_connection = True
            self._send_status(exc.status, send_body)
        except UnicodeDecodeError:
            self._send_status(HTTPStatus.BAD_REQUEST, send_body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, send_body: bool) -> None:
        segments = _path_segments(self.path)
        repo = self.server.repo
        if segments in ([""], ["browse"]):
            # People land on the browsable pages; installers are given /simple/ explicitly.
            self._redirect("/browse/", send_body)
        elif segments == ["simple"]:
            self._redirect("/simple/", send_body)
        elif segments[0] == "browse" and len(segments) == 2:
            self._send_browse_page(repo, segments[1] or "index.html", send_body)
        elif segments[0] == "logs" and len(segments) == 2 and segments[1].endswith(".log"):
            self._send_static(repo.logs_dir, segments[1], "text/plain; charset=utf-8", send_body)
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
            if not segments[1].endswith(
                (".whl", ".whl.metadata", ".whl.provenance.json", ".whl.provenance.dsse.json")
            ):
                raise _Refused(HTTPStatus.NOT_FOUND)
            self._send_file(repo.wheels_dir, segments[1], send_body)
        elif segments[0] == "sdists" and len(segments) == 2:
            # Read-only, for build workers on other machines; sdists are public upstream files.
            if not segments[1].lower().endswith(_SDIST_SUFFIXES):
                raise _Refused(HTTPStatus.NOT_FOUND)
            self._send_file(repo.sdists_dir, segments[1], send_body)
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

    def _send_file(self, directory: Path, filename: str, send_body: bool) -> None:
        # Temporary files of a publish or download in progress start with "." and are never served.
        if filename.startswith("."):
            raise _Refused(HTTPStatus.NOT_FOUND)
        try:
            f: BinaryIO = (directory / filename).open("rb")
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

    def _receive_upload(self) -> None:
        """``PUT /uploads/<job>/<file>``: store the body as ``<upload_dir>/<job>/<file>``.

        Refused (404) unless the server has an upload token; the request must carry it as
        ``Authorization: Bearer <token>`` (else 401), the body's sha256 in ``X-Rewheel-SHA256``
        and a ``Content-Length``. A body whose hash differs from the claim is dropped (422). The
        file appears under its name only complete and checked; an upload of the same name again
        replaces it. 201 on success.
        """
        server = self.server
        segments = _path_segments(self.path)
        if server.upload_token is None or server.upload_dir is None:
            raise _Refused(HTTPStatus.NOT_FOUND)
        if len(segments) != 3 or segments[0] != "uploads":
            raise _Refused(HTTPStatus.NOT_FOUND)
        job, filename = segments[1], segments[2]
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), server.upload_token.encode()
        ):
            raise _Refused(HTTPStatus.UNAUTHORIZED)
        if (
            not _JOB_ID.match(job)
            or filename.startswith(".")
            or not filename.endswith(UPLOAD_SUFFIXES)
        ):
            raise _Refused(HTTPStatus.BAD_REQUEST)
        claimed = (self.headers.get(SHA256_HEADER) or "").strip().lower()
        if not _SHA256_HEX.match(claimed):
            raise _Refused(HTTPStatus.BAD_REQUEST)
        if self.headers.get("Transfer-Encoding") is not None:
            raise _Refused(HTTPStatus.LENGTH_REQUIRED)  # chunked bodies are not taken
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            raise _Refused(HTTPStatus.LENGTH_REQUIRED)
        length = int(length_text)
        if length > server.max_upload:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)

        folder = server.upload_dir / job
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            remaining = length
            with os.fdopen(fd, "wb") as out:
                while remaining > 0:
                    chunk = self.rfile.read(min(_CHUNK, remaining))
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    remaining -= len(chunk)
            if remaining:
                self.close_connection = True  # the client went away mid-body
                return
            if digest.hexdigest() != claimed:
                raise _Refused(HTTPStatus.UNPROCESSABLE_ENTITY)
            os.replace(tmp, folder / filename)
        finally:
            tmp.unlink(missing_ok=True)
        if server.log is not None:
            server.log(f"received {job}/{filename} ({length} bytes, sha256 {claimed})")
        self._send_status(HTTPStatus.CREATED, send_body=True)

    def _send_browse_page(self, repo: Repository, name: str, send_body: bool) -> None:
        if not name.endswith(".html"):
            raise _Refused(HTTPStatus.NOT_FOUND)
        try:
            self._send_static(repo.root / BROWSE_DIR, name, "text/html; charset=utf-8", send_body)
        except _Refused:
            if name != "index.html":
                raise
            # Pages not written yet (nothing bootstrapped, or an older repository).
            body = render_index(Site(projects=())).encode("utf-8")
            self._send_bytes(body, "text/html; charset=utf-8", send_body)

    def _send_static(self, directory: Path, name: str, content_type: str, send_body: bool) -> None:
        """A regular file directly in ``directory``: no hidden files, no symbolic links."""
        if name.startswith("."):
            raise _Refused(HTTPStatus.NOT_FOUND)
        try:
            fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            raise _Refused(HTTPStatus.NOT_FOUND) from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise _Refused(HTTPStatus.NOT_FOUND)
            # A log may grow while it is sent: send the size it had when opened.
            self._send_headers(st.st_size, content_type)
            remaining = st.st_size
            while send_body and remaining > 0 and (chunk := f.read(min(_CHUNK, remaining))):
                self.wfile.write(chunk)
                remaining -= len(chunk)
            if remaining and send_body:
                self.close_connection = True  # the file shrank: the promised length was not sent

    def _send_bytes(self, body: bytes, content_type: str, send_body: bool) -> None:
        self._send_headers(len(body), content_type)
        if send_body:
            self.wfile.write(body)

    def _send_headers(self, length: int, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()

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
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="rewheel uploads"')
        if self.close_connection:
            self.send_header("Connection", "close")
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
        upload_token: str | None = None,
        upload_dir: Path | None = None,
        max_upload: int = DEFAULT_MAX_UPLOAD,
    ) -> None:
        self.address_family = family
        self.repo = repo
        self.log = log
        self.upload_token = upload_token
        self.upload_dir = upload_dir
        self.max_upload = max_upload
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a dropped client is not worth that.
        if self.log is not None:
            self.log(f"error serving {client_address}: {traceback.format_exc().strip()}")


class IndexServer:
    """Serves ``repo`` as a PEP 503/691 index at ``url``.

    With ``upload_token`` it also takes uploads into ``upload_dir`` (default
    ``repo.work_dir / "uploads"``); without one, uploads are refused as if the route did not exist.
    """

    def __init__(
        self,
        repo: Repository,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log: LogCallback | None = None,
        upload_token: str | None = None,
        upload_dir: Path | None = None,
        max_upload: int = DEFAULT_MAX_UPLOAD,
    ) -> None:
        if upload_token is not None and len(upload_token) < 16:
            raise ConfigError("an upload token must have at least 16 characters", step="serve")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.upload_token = upload_token
        self.upload_dir = (upload_dir or repo.work_dir / "uploads") if upload_token else None
        # Bound here, so that ``url`` is known (port 0 picks a free port) before serving.
        self._httpd = _Server(
            (host, port),
            repo,
            log,
            family,
            upload_token=upload_token,
            upload_dir=self.upload_dir,
            max_upload=max_upload,
        )
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
