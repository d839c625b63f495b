"""The built-in HTTP server: serves a Repository's simple index and wheels to installers.

Pages are read from disk on every request (the builder publishes while the server runs) and only
what the repository holds is served: an unknown project is a 404, never a pass-through upstream.

For builds on other machines (``rewheel.dask.dask_steps``) the server also hands out the
repository's sdists (``GET /sdists/<file>``), for other repositories' ``--cache-url`` the
builds it offers (``GET /build-cache/<file>.json``, ``repo.build_cache``) and, only when started
with an upload token, takes
uploads into a staging folder (``PUT /uploads/<job>/<file>``, see ``_Handler._receive_upload``).
Nothing uploaded is served or published by the server itself: the coordinator decides what to
publish.

Clients are not trusted to be polite. One thread (the event loop) accepts every connection and
reads request headers without blocking; a connection is handed to one of at most
``max_connections`` worker threads only once its request headers are complete, and a kept-alive
connection goes back to the loop between requests. A client that sends nothing, or half a
request, costs a socket, never a thread: it is closed when its headers are not complete
``header_timeout`` seconds after it connected (or after its next request began), an idle
kept-alive one after ``IDLE_TIMEOUT``, and when ``max_waiting`` connections are open but not
being handled, the one waiting longest is closed to make room. A body (an upload, a file sent)
must keep moving at ``MIN_TRANSFER_RATE`` on average. Nothing is read through a symbolic link
(``open_below``), and every response carries a Content-Security-Policy.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import hashlib
import hmac
import io
import os
import re
import resource
import secrets
import selectors
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO, cast
from urllib.parse import quote, unquote, urlsplit

from packaging.utils import canonicalize_name

from ..core.errors import ConfigError, Step
from ..index.index_pages import (
    HTML_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    PROVENANCE_OBJECT_SUFFIX,
    render_root_html,
    render_root_json,
)
from ..repo.build_cache import CACHE_DIR
from ..repo.published_keys import KEYS_DIR
from ..repo.published_keys import SUFFIX as KEY_SUFFIX
from ..repo.repository import Repository
from ..ui.browse_pages import BROWSE_DIR, Site, content_security_policy, open_below, render_index

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

LogCallback = Callable[[str], None]
AccessLogCallback = Callable[[str], None]  # one line of the access log, without its newline

_CHUNK = 1 << 16
_POLL_INTERVAL = 0.05  # how soon stop() takes effect

# Connections (see the module's docstring).
DEFAULT_MAX_CONNECTIONS = 64  # requests handled at once: the number of worker threads at most
DEFAULT_MAX_WAITING = 1024  # connections open but not being handled (less if few descriptors)
DEFAULT_HEADER_TIMEOUT = 10.0  # seconds for a client to send a request's headers, whole
IDLE_TIMEOUT = 60.0  # a kept-alive connection with no next request is closed after this
IO_TIMEOUT = 30.0  # one read or write of a body that makes no progress at all
MIN_TRANSFER_RATE = 64 << 10  # bytes per second a body must average (after a grace period)
_MAX_HEADER_BYTES = 64 << 10  # request line and headers together
_HEADER_END = re.compile(rb"\n\r?\n")
_SWEEP_INTERVAL = 0.1  # how often the loop closes the connections past their time
_ACCEPT_BURST = 64
_ACCEPT_PAUSE = 0.1  # out of file descriptors, with nothing to close: wait that long
_STOP_JOIN = 5.0  # how long stop() waits for the workers, all together
_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)

# Sent with every response. The browsable pages run their own inline script and style, allowed
# by hash; nothing else runs or loads, whatever a page holds.
CONTENT_SECURITY_POLICY = content_security_policy()

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


# What is served from wheels/, by how the name ends: the wheel, its PEP 658 metadata, its
# provenance (the in-toto statement, its DSSE envelope, the PEP 740 provenance object).
_WHEELS_FILES = (
    (".whl", "application/octet-stream"),
    (".whl.metadata", "application/octet-stream"),
    (".whl.provenance.json", "application/json"),
    (".whl.provenance.dsse.json", "application/json"),
    (".whl" + PROVENANCE_OBJECT_SUFFIX, "application/json"),
)


def _wheels_content_type(name: str) -> str | None:
    return next((kind for suffix, kind in _WHEELS_FILES if name.endswith(suffix)), None)


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


Negotiate = Callable[[str | None], "tuple[str, str] | None"]


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


@dataclass(frozen=True)
class _Validators:
    """What a client revalidates a response with: an ETag, and a Last-Modified time (seconds
    since the epoch) when there is one that can be trusted."""

    etag: str
    last_modified: float | None = None

    @classmethod
    def of_file(cls, st: os.stat_result, now: float | None = None) -> _Validators:
        """A file's: its ETag changes whenever it is replaced (a new inode: every write in the
        repository is a rename), grows or is touched. Last-Modified counts whole seconds, so
        it is given only once the second the file was written in is over: a file written
        again within that second would otherwise look unchanged to If-Modified-Since."""
        etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        now = time.time() if now is None else now
        mtime = st.st_mtime
        return cls(etag, mtime if int(mtime) < int(now) else None)

    @classmethod
    def of_body(cls, body: bytes) -> _Validators:
        """A page made on the fly: its ETag is its content's hash."""
        return cls(f'"{hashlib.sha256(body).hexdigest()[:32]}"')


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _log_time(when: float) -> str:
    """``10/Oct/2026:13:55:36 +0200``: local time, English month, as web servers log it."""
    t = time.localtime(when)
    offset = (t.tm_gmtoff or 0) // 60
    sign, offset = ("-", -offset) if offset < 0 else ("+", offset)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{offset // 60:02d}{offset % 60:02d}"
    )


def _escape(text: str) -> str:
    """What a client sent, safe in one log line: printable ASCII as it is, but ``"``, ``\\``
    and anything else (control characters, terminal escapes, newlines) as ``\\xHH``."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\x{ord(c):02x}" for c in text)


class AccessLog:
    """The access log: one line per request, written whole under a lock (requests are answered
    by several threads), flushed at once. ``open("-")`` is stderr."""

    def __init__(self, stream: TextIO, *, owned: bool = False) -> None:
        self._stream = stream
        self._owned = owned
        self._lock = threading.Lock()

    @classmethod
    def open(cls, where: str) -> AccessLog:
        """Append to the file ``where`` (created owner-only: it holds clients' addresses), or
        write to stderr for ``-``."""
        if where == "-":
            return cls(sys.stderr)
        try:
            fd = os.open(where, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            stream = os.fdopen(fd, "a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot open the access log {where}: {exc.strerror or exc}",
                step=Step.SERVE,
                hint="give a file in a folder you can write, or - for stderr",
            ) from exc
        return cls(stream, owned=True)

    def __call__(self, line: str) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._owned:
            with self._lock, contextlib.suppress(OSError):
                self._stream.close()


@dataclass(eq=False)
class _Connection:
    """A client's connection: its socket, what was read of its next request, its time limit."""

    sock: socket.socket
    address: Any
    deadline: float  # time.monotonic() by which the request headers must be complete
    buffer: bytearray = field(default_factory=bytearray)
    idle: bool = False  # kept alive after a response, and nothing of a next request came yet


class _Reader(io.BufferedIOBase):
    """A connection's request stream: the bytes the event loop already read, then the socket.

    What a request leaves unread stays in ``buffer`` (the connection's own), so a client that
    sends its next request early loses nothing. ``read(n)`` returns what one ``recv`` gives
    (fewer than ``n`` bytes, empty only at the end): readers of a body loop until they have it.
    """

    def __init__(self, sock: socket.socket, buffer: bytearray) -> None:
        super().__init__()
        self._sock = sock
        self.buffer = buffer

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        chunk = self._sock.recv(_CHUNK)
        self.buffer += chunk
        return bool(chunk)

    def _take(self, n: int) -> bytes:
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def readline(self, size: int | None = -1, /) -> bytes:
        limit = -1 if size is None else size
        searched = 0
        while True:
            end = self.buffer.find(b"\n", searched)
            if end >= 0:
                n = end + 1
                break
            searched = len(self.buffer)
            if 0 <= limit <= len(self.buffer) or not self._fill():
                n = len(self.buffer)
                break
        return self._take(n if limit < 0 else min(n, limit))

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self.buffer))
        if size and not self.buffer:
            self._fill()
        return self._take(min(size, len(self.buffer)))

    def read1(self, size: int = -1, /) -> bytes:
        return self.read(size)


class _Writer(io.BufferedIOBase):
    """A connection's response stream: every write is sent whole (within the socket's timeout)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.sent = 0  # bytes written, headers included (for the access log)

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        self._sock.sendall(data)
        n = memoryview(data).nbytes
        self.sent += n
        return n


class _Handler(BaseHTTPRequestHandler):
    """One request on a ``_Connection`` whose request headers the event loop already read."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: installers fetch many pages from one host
    server_version = "rewheel"
    sys_version = ""

    def setup(self) -> None:
        # Instead of StreamRequestHandler's: the bytes already read come first.
        conn: _Connection = self.request
        self.connection = conn.sock
        self.rfile = _Reader(conn.sock, conn.buffer)
        self.wfile = _Writer(conn.sock)

    def handle(self) -> None:
        # One request: a kept-alive connection waits for its next one in the event loop, not here.
        self.close_connection = True
        self._status: int | None = None
        self._body_from: int | None = None
        try:
            self.handle_one_request()
        finally:
            access_log = self.server.access_log
            if access_log is not None and self._status is not None:
                access_log(self._access_line())

    def finish(self) -> None:
        pass  # nothing is buffered, and the server decides what becomes of the socket

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)
        # Every response, errors and redirects included.
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")

    def end_headers(self) -> None:
        super().end_headers()
        self._body_from = cast(_Writer, self.wfile).sent

    def _access_line(self) -> str:
        """The request in the combined log format of web servers (NCSA common format, then
        referrer and user agent). What the client sent is escaped; no header but those two is
        written (an upload's token never is)."""
        host = self.client_address[0] if isinstance(self.client_address, tuple) else "-"
        request = getattr(self, "requestline", "") or "-"
        sent = cast(_Writer, self.wfile).sent
        size = sent - self._body_from if self._body_from is not None else 0
        headers = getattr(self, "headers", None)
        referer = headers.get("Referer", "-") if headers is not None else "-"
        agent = headers.get("User-Agent", "-") if headers is not None else "-"
        return (
            f'{_escape(str(host))} - - [{_log_time(time.time())}] "{_escape(request)}" '
            f'{self._status} {size if size else "-"} "{_escape(referer)}" "{_escape(agent)}"'
        )

    # -- conditional requests (RFC 9110, 13.1) ----------------------------------------------------

    def _not_modified(self, validators: _Validators) -> bool:
        """Whether the client's copy is the current one: If-None-Match when sent (then
        If-Modified-Since is not looked at), else If-Modified-Since."""
        if self.command not in ("GET", "HEAD"):
            return False
        tags = self.headers.get_all("If-None-Match")
        if tags:
            given = {t.strip().removeprefix("W/") for t in ",".join(tags).split(",")}
            return "*" in given or validators.etag in given
        since = self.headers.get("If-Modified-Since")
        if since is None or validators.last_modified is None:
            return False
        try:
            when = email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError, IndexError):
            return False
        if when.tzinfo is None:
            return False
        return int(validators.last_modified) <= when.timestamp()

    def _send_validators(self, validators: _Validators) -> None:
        self.send_header("ETag", validators.etag)
        if validators.last_modified is not None:
            self.send_header(
                "Last-Modified", email.utils.formatdate(validators.last_modified, usegmt=True)
            )
        # Keep it, but ask before using it: a file can be replaced under the same name (a
        # rebuilt wheel), and asking costs a 304.
        self.send_header("Cache-Control", "no-cache")

    def _send_not_modified(self, validators: _Validators, *, vary: bool = False) -> None:
        self.send_response(HTTPStatus.NOT_MODIFIED)
        self._send_validators(validators)
        if vary:
            self.send_header("Vary", "Accept")
        self.end_headers()

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
            self._send_file(repo.logs_dir, segments[1], "text/plain; charset=utf-8", send_body)
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
            content_type = _wheels_content_type(segments[1])
            if content_type is None:
                raise _Refused(HTTPStatus.NOT_FOUND)
            self._send_file(repo.wheels_dir, segments[1], content_type, send_body)
        elif segments[0] == KEYS_DIR and len(segments) == 2:
            # The public keys that sign the provenance (repo.published_keys).
            if not segments[1].endswith(KEY_SUFFIX):
                raise _Refused(HTTPStatus.NOT_FOUND)
            self._send_file(repo.root / KEYS_DIR, segments[1], "application/x-pem-file", send_body)
        elif segments[0] == CACHE_DIR and len(segments) == 2:
            # The build cache other repositories ask with --cache-url (repo.build_cache).
            if not segments[1].endswith(".json"):
                raise _Refused(HTTPStatus.NOT_FOUND)
            self._send_file(repo.root / CACHE_DIR, segments[1], "application/json", send_body)
        elif segments[0] == "sdists" and len(segments) == 2:
            # Read-only, for build workers on other machines; sdists are public upstream files.
            if not segments[1].lower().endswith(_SDIST_SUFFIXES):
                raise _Refused(HTTPStatus.NOT_FOUND)
            self._send_file(repo.sdists_dir, segments[1], "application/octet-stream", send_body)
        else:
            raise _Refused(HTTPStatus.NOT_FOUND)

    def _send_page(self, page_dir: Path, send_body: bool, *, root: bool) -> None:
        chosen = self.server.negotiate(self.headers.get("Accept"))
        if chosen is None:
            self._send_status(HTTPStatus.NOT_ACCEPTABLE, send_body)
            return
        fmt, content_type = chosen
        try:
            with open_below(self.server.repo.root, page_dir / f"index.{fmt}") as f:
                body = f.read()
                validators = _Validators.of_file(os.fstat(f.fileno()))
        except (FileNotFoundError, NotADirectoryError):
            if not root:
                raise _Refused(HTTPStatus.NOT_FOUND) from None
            # A repository nothing was published to yet is an empty index, not an error.
            text = render_root_json([]) if fmt == "json" else render_root_html([])
            body = text.encode("utf-8")
            validators = _Validators.of_body(body)
        except OSError:
            raise _Refused(HTTPStatus.NOT_FOUND) from None  # a symbolic link, a special file
        if self._not_modified(validators):
            self._send_not_modified(validators, vary=True)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Vary", "Accept")
        self._send_validators(validators)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _send_file(self, directory: Path, name: str, content_type: str, send_body: bool) -> None:
        """A regular file directly in ``directory``, never through a symbolic link. Temporary
        files of a publish or download in progress start with "." and are never served."""
        if name.startswith("."):
            raise _Refused(HTTPStatus.NOT_FOUND)
        try:
            f = open_below(self.server.repo.root, directory / name)
        except OSError:
            raise _Refused(HTTPStatus.NOT_FOUND) from None
        with f:
            # The file opened, even if a publish replaces the name or a log grows: its size, and
            # the validators of that very version.
            st = os.fstat(f.fileno())
            size = st.st_size
            validators = _Validators.of_file(st)
            if self._not_modified(validators):
                self._send_not_modified(validators)
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(size))
            self._send_validators(validators)
            self.end_headers()
            if not send_body:
                return
            deadline = self._transfer_deadline(size)
            remaining = size
            while remaining > 0 and (chunk := f.read(min(_CHUNK, remaining))):
                self._io_budget(deadline)
                self.wfile.write(chunk)
                remaining -= len(chunk)
            if remaining:
                self.close_connection = True  # the file shrank: the promised length was not sent

    def _transfer_deadline(self, length: int) -> float:
        """When a body of ``length`` bytes must be through: ``header_timeout`` of grace, then
        ``MIN_TRANSFER_RATE``. A client that drips a body (or reads one a byte at a time) does
        not hold a worker for longer."""
        return time.monotonic() + self.server.header_timeout + length / MIN_TRANSFER_RATE

    def _io_budget(self, deadline: float) -> None:
        """Let the next read or write of a body wait no later than ``deadline``."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the body moved slower than the minimum transfer rate")
        self.connection.settimeout(min(IO_TIMEOUT, left))

    def _receive_upload(self) -> None:
        """``PUT /uploads/<job>/<file>``: store the body as ``<upload_dir>/<job>/<file>``.

        Refused (404) unless the server has an upload token; the request must carry it as
        ``Authorization: Bearer <token>`` (else 401), the body's sha256 in ``X-Rewheel-SHA256``
        and a ``Content-Length``. A body whose hash differs from the claim is dropped (422), one
        that arrives too slowly (``MIN_TRANSFER_RATE``) too. The file appears under its name only
        complete and checked; an upload of the same name again replaces it. 201 on success.
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

        folder = _open_job_folder(server.upload_dir, job)
        try:
            tmp = f".{filename}.{secrets.token_hex(8)}.tmp"
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=folder,
            )
            try:
                digest = hashlib.sha256()
                remaining = length
                deadline = self._transfer_deadline(length)
                with os.fdopen(fd, "wb") as out:
                    while remaining > 0:
                        self._io_budget(deadline)
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
                os.replace(tmp, filename, src_dir_fd=folder, dst_dir_fd=folder)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=folder)
        finally:
            os.close(folder)
        if server.log is not None:
            server.log(f"received {job}/{filename} ({length} bytes, sha256 {claimed})")
        self._send_status(HTTPStatus.CREATED, send_body=True)

    def _send_browse_page(self, repo: Repository, name: str, send_body: bool) -> None:
        if not name.endswith(".html"):
            raise _Refused(HTTPStatus.NOT_FOUND)
        try:
            self._send_file(repo.root / BROWSE_DIR, name, "text/html; charset=utf-8", send_body)
        except _Refused:
            if name != "index.html":
                raise
            # Pages not written yet (nothing bootstrapped, or an older repository).
            body = render_index(Site(projects=())).encode("utf-8")
            self._send_bytes(body, "text/html; charset=utf-8", send_body)

    def _send_bytes(self, body: bytes, content_type: str, send_body: bool) -> None:
        validators = _Validators.of_body(body)
        if self._not_modified(validators):
            self._send_not_modified(validators)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._send_validators(validators)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

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


def _open_job_folder(upload_dir: Path, job: str) -> int:
    """A descriptor of ``upload_dir/job``, made if need be; refused (409) if it is anything but
    a folder (a symbolic link planted there would send the upload elsewhere)."""
    upload_dir.mkdir(parents=True, exist_ok=True)
    base = os.open(upload_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(job, dir_fd=base)
        try:
            return os.open(
                job, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=base
            )
        except OSError:
            raise _Refused(HTTPStatus.CONFLICT) from None
    finally:
        os.close(base)


def _cannot_listen(host: str, port: int, exc: OSError) -> ConfigError:
    """Why the server cannot listen on ``host``:``port``, and what to do about it."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return ConfigError(
            f"cannot listen on {host!r}: no such host or address ({exc.strerror})",
            step=Step.SERVE,
            hint="give --host an address of this machine: 127.0.0.1 (this machine only), "
            "0.0.0.0 or :: (every interface), or one of its own addresses",
        )
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"cannot listen on {where}: the port is in use",
            step=Step.SERVE,
            hint="another program (another rewheel serve?) listens there: stop it, or choose "
            "another port with --port",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            f"cannot listen on {where}: {host} is not an address of this machine",
            step=Step.SERVE,
            hint="give --host an address of this machine: 127.0.0.1, 0.0.0.0 or ::",
        )
    if exc.errno == errno.EACCES:
        return ConfigError(
            f"cannot listen on {where}: permission denied",
            step=Step.SERVE,
            hint="ports below 1024 need privileges: choose --port 1024 or above, and put a "
            "reverse proxy in front if the index must be on port 80 or 443",
        )
    return ConfigError(f"cannot listen on {where}: {exc.strerror or exc}", step=Step.SERVE)


def _default_max_waiting(max_connections: int) -> int:
    """``DEFAULT_MAX_WAITING``, or fewer where this process may open few files."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_WAITING
    return max(16, min(DEFAULT_MAX_WAITING, soft // 2 - max_connections))


class _Server(HTTPServer):
    """The listening socket, the event loop that reads requests, and the workers that answer.

    The loop (``serve_forever``) owns the connections that wait (``_waiting``: for a first
    request, or idle between two); a connection whose request headers are complete goes to
    ``_ready``, a worker takes it (``_active``) and hands it back through ``_returned`` when it
    stays open. ``_lock`` guards everything but ``_waiting``, which only the loop touches.
    """

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
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_waiting: int = DEFAULT_MAX_WAITING,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        access_log: AccessLogCallback | None = None,
    ) -> None:
        self.address_family = family
        self.repo = repo
        self.log = log
        self.access_log = access_log
        self.upload_token = upload_token
        self.upload_dir = upload_dir
        self.max_upload = max_upload
        self.max_connections = max_connections
        self.max_waiting = max_waiting
        self.header_timeout = header_timeout
        self.negotiate: Negotiate = negotiate
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._ready: deque[_Connection] = deque()
        self._returned: deque[_Connection] = deque()
        self._active: set[_Connection] = set()
        self._workers: list[threading.Thread] = []
        self._idle_workers = 0
        self._closing = False
        self._waiting: dict[_Connection, None] = {}  # oldest first
        self._stop = threading.Event()
        self._stopped = threading.Event()
        # Written to by workers (a connection handed back) and by shutdown(): wakes the loop.
        # Made first: a failed bind calls server_close(), which closes them.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        super().__init__(address, _Handler)
        self.socket.setblocking(False)

    # -- the event loop -------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections and read their requests until ``shutdown()``."""
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                next_sweep = 0.0
                resume_accepting: float | None = None
                while not self._stop.is_set():
                    for key, _ in selector.select(poll_interval):
                        if key.fileobj is self._wake_r:
                            self._drain_wake()
                        elif key.fileobj is self.socket:
                            if not self._accept(selector):
                                # Out of descriptors with none to free: do not spin on accept.
                                selector.unregister(self.socket)
                                resume_accepting = time.monotonic() + _ACCEPT_PAUSE
                        else:
                            self._receive(selector, key.data)
                    self._take_back(selector)
                    now = time.monotonic()
                    if now >= next_sweep:
                        self._sweep(selector, now)
                        next_sweep = now + _SWEEP_INTERVAL
                    if resume_accepting is not None and now >= resume_accepting:
                        selector.register(self.socket, selectors.EVENT_READ)
                        resume_accepting = None
                for conn in list(self._waiting):
                    self._drop(selector, conn)
        finally:
            for conn in list(self._waiting):
                _close(conn)
            self._waiting.clear()
            self._stop.clear()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` (running in another thread) and wait until it has."""
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (the loop will wake anyway) or closed
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def _accept(self, selector: selectors.BaseSelector) -> bool:
        """Take the connections in the backlog; False when out of file descriptors."""
        for _ in range(_ACCEPT_BURST):
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return True
            except ConnectionAbortedError:
                continue
            except OSError:
                # EMFILE, ENFILE, ENOBUFS: free a descriptor (the connection waiting longest).
                if not self._waiting:
                    return False
                self._drop(selector, next(iter(self._waiting)))
                continue
            if self._waiting_count() >= self.max_waiting:
                if not self._waiting:
                    sock.close()  # every open connection waits for a worker: refuse
                    continue
                self._drop(selector, next(iter(self._waiting)))
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                # Headers and body go out in separate writes; with Nagle each keep-alive
                # response would wait for a delayed ACK (~40 ms).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock, address, time.monotonic() + self.header_timeout)
            self._wait_for_request(selector, conn)
        return True

    def _waiting_count(self) -> int:
        """Connections open and not being handled: waiting, ready, or being handed back."""
        with self._lock:
            return len(self._waiting) + len(self._ready) + len(self._returned)

    def _wait_for_request(self, selector: selectors.BaseSelector, conn: _Connection) -> None:
        if _HEADER_END.search(conn.buffer):
            self._dispatch(conn)  # a request that came early, with the one before
            return
        self._waiting[conn] = None
        selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _receive(self, selector: selectors.BaseSelector, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(selector, conn)
            return
        if conn.idle:
            conn.idle = False
            conn.deadline = time.monotonic() + self.header_timeout
        searched = max(0, len(conn.buffer) - 2)
        conn.buffer += data
        if _HEADER_END.search(conn.buffer, searched):
            del self._waiting[conn]
            selector.unregister(conn.sock)
            self._dispatch(conn)
        elif len(conn.buffer) > _MAX_HEADER_BYTES:
            self._drop(selector, conn, _HEADERS_TOO_LARGE)

    def _sweep(self, selector: selectors.BaseSelector, now: float) -> None:
        for conn in [c for c in self._waiting if c.deadline <= now]:
            self._drop(selector, conn, _REQUEST_TIMEOUT if conn.buffer.strip() else b"")

    def _drop(self, selector: selectors.BaseSelector, conn: _Connection, last: bytes = b"") -> None:
        """Close a waiting connection, after ``last`` if the socket takes it at once."""
        if conn in self._waiting:
            del self._waiting[conn]
            selector.unregister(conn.sock)
        if last:
            with contextlib.suppress(OSError):
                conn.sock.send(last)
        _close(conn)

    def _take_back(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            back = list(self._returned)
            self._returned.clear()
        for conn in back:
            self._wait_for_request(selector, conn)

    # -- the workers ----------------------------------------------------------------------------

    def _dispatch(self, conn: _Connection) -> None:
        with self._work:
            self._ready.append(conn)
            if len(self._ready) > self._idle_workers and len(self._workers) < self.max_connections:
                worker = threading.Thread(
                    target=self._work_loop,
                    name=f"rewheel-serve-{len(self._workers) + 1}",
                    daemon=True,
                )
                self._workers.append(worker)
                worker.start()
            self._work.notify()

    def _work_loop(self) -> None:
        done: _Connection | None = None  # the connection just answered, kept open
        while True:
            with self._work:
                if done is not None:
                    # Handed back and counted idle at once: the loop never sees one without the
                    # other, so a kept-alive client's next request starts no extra worker.
                    self._active.discard(done)
                    if self._closing or self._stop.is_set():
                        _close(done)
                    else:
                        done.idle = not done.buffer
                        wait = IDLE_TIMEOUT if done.idle else self.header_timeout
                        done.deadline = time.monotonic() + wait
                        self._returned.append(done)
                        self._wake()
                self._idle_workers += 1
                while not self._ready and not self._closing:
                    self._work.wait()
                self._idle_workers -= 1
                if self._closing:
                    return
                conn = self._ready.popleft()
                self._active.add(conn)
            done = conn if self._answer(conn) else None
            if done is None:
                with self._lock:
                    self._active.discard(conn)
                _close(conn, gracefully=True)

    def _answer(self, conn: _Connection) -> bool:
        """Handle the request whose headers ``conn`` holds; True if the connection stays open."""
        try:
            conn.sock.settimeout(IO_TIMEOUT)
            # The request is the connection, not its socket: _Handler.setup unwraps it.
            handler = _Handler(cast(Any, conn), conn.address, self)
            conn.sock.setblocking(False)
        except Exception:
            self.handle_error(conn.sock, conn.address)
            return False
        return not handler.close_connection

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a dropped client is not worth that.
        if self.log is not None:
            self.log(f"error serving {client_address}: {traceback.format_exc().strip()}")

    def server_close(self) -> None:
        """Close the listening socket and every connection; wait (a while) for the workers."""
        super().server_close()
        with self._work:
            self._closing = True
            leftover = [*self._ready, *self._returned]
            self._ready.clear()
            self._returned.clear()
            active = list(self._active)
            workers = list(self._workers)
            self._work.notify_all()
        for conn in leftover:
            _close(conn)
        for conn in active:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)  # its worker stops waiting on it
        until = time.monotonic() + _STOP_JOIN
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(max(0.0, until - time.monotonic()))
        self._wake_r.close()
        self._wake_w.close()


def _close(conn: _Connection, *, gracefully: bool = False) -> None:
    if gracefully:
        # As socketserver does: the end of the response is sent before the socket goes.
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        conn.sock.close()


class IndexServer:
    """Serves ``repo`` as a PEP 503/691 index at ``url``.

    With ``upload_token`` it also takes uploads into ``upload_dir`` (default
    ``repo.work_dir / "uploads"``); without one, uploads are refused as if the route did not exist.

    At most ``max_connections`` requests are handled at once (one thread each); at most
    ``max_waiting`` connections are kept open meanwhile (default: ``DEFAULT_MAX_WAITING``, fewer
    if the process may open few files), each closed if it does not send a request's headers
    within ``header_timeout`` seconds.
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
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_waiting: int | None = None,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        negotiate: Negotiate = negotiate,
        access_log: AccessLogCallback | None = None,
    ) -> None:
        if upload_token is not None and len(upload_token) < 16:
            raise ConfigError("an upload token must have at least 16 characters", step=Step.SERVE)
        if max_connections < 1:
            raise ConfigError("the server must handle at least 1 connection", step=Step.SERVE)
        if max_waiting is not None and max_waiting < 1:
            raise ConfigError("the server must keep at least 1 connection waiting", step=Step.SERVE)
        if not header_timeout > 0:
            raise ConfigError("the header timeout must be more than 0 seconds", step=Step.SERVE)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.upload_token = upload_token
        self.upload_dir = (upload_dir or repo.work_dir / "uploads") if upload_token else None
        # Bound here, so that ``url`` is known (port 0 picks a free port) before serving.
        try:
            self._httpd = _Server(
                (host, port),
                repo,
                log,
                family,
                upload_token=upload_token,
                upload_dir=self.upload_dir,
                max_upload=max_upload,
                max_connections=max_connections,
                max_waiting=max_waiting or _default_max_waiting(max_connections),
                header_timeout=header_timeout,
                access_log=access_log,
            )
        except OSError as exc:
            raise _cannot_listen(host, port, exc) from exc
        # Which page format answers a request's Accept header (tests pass one that records).
        self._httpd.negotiate = negotiate
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
