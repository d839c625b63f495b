"""HTTP for talking to an index: retries, verified streamed downloads, an on-disk page cache.

One ``HttpClient`` per run, passed to whoever needs it (it holds the connection pools, which are
thread safe). Transient failures (5xx, 429, connection errors, timeouts, truncated bodies) are
retried with bounded exponential backoff; anything else is returned or raised at once.

The index is not trusted to be reasonable: every body is read in bounded chunks against a size
limit (a page's once its Content-Encoding is undone; a download's against the size the index lists
for it, or a default cap), and every request, its retries included, has a deadline after which its
connection is cut. Going past a limit raises ``LimitExceeded`` and is not retried (``Limits``).

Uploads (``upload``: a PUT of a file, as a Dask worker sends its wheel to the coordinator) are
retried by urllib3's own ``Retry``, which replays the file. GETs keep a loop of their own: a
truncated body only shows while it is streamed, after urllib3 has returned the response, and
their backoff must stop at the request's deadline, which urllib3's sleeps know nothing of.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import email.utils
import errno
import hashlib
import heapq
import itertools
import json
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar
from urllib.parse import urljoin

import urllib3
import urllib3.connection
from urllib3.exceptions import (
    HTTPError,
    LocationValueError,
    MaxRetryError,
    ResponseError,
    SSLError,
)

from .. import __version__
from ..core.errors import (
    ConfigError,
    DigestMismatch,
    RewheelError,
    Step,
    UpstreamError,
)
from ..core.fsutil import atomic_write_bytes, public_file_mode

_T = TypeVar("_T")
_CHUNK = 1 << 16
# Pages and metadata are read in larger pieces: a no-op re-run reads some 27 MB of pages, and
# fewer reads spent less CPU on copying them (a body stays within one piece of its limit).
_PAGE_CHUNK = 1 << 18
_MiB = 1 << 20
USER_AGENT = f"rewheel/{__version__}"


@dataclass(frozen=True)
class Limits:
    """What one request to the index may cost: bytes kept and seconds waited.

    A broken or hostile index meets one of these and the request fails with ``LimitExceeded``
    instead of filling the memory or the disk, or keeping the run waiting forever. The defaults are
    far above what a real index needs; tests shrink them.
    """

    page_bytes: int = 64 * _MiB  # a page's body once its Content-Encoding is undone (gzip bombs)
    # A PEP 658 metadata file, decoded: real ones are a few KiB (as metadata.MAX_METADATA_BYTES).
    metadata_bytes: int = 1 * _MiB
    # Any download; a size the index lists can only lower it (the listing is the index's word).
    download_bytes: int = 1024 * _MiB
    # Deadlines cover every try of a request and the backoff between them: urllib3's read timeout
    # starts again with each byte, so a server sending one byte at a time would never meet it.
    page_seconds: float = 300.0
    download_seconds: float = 300.0
    # ... plus one second per this many bytes received, so that big files on slow links get through
    # while a trickle does not.
    min_rate: float = 64 * 1024


class LimitExceeded(UpstreamError):
    """The index sent more than a limit allows, or took longer than its deadline. Not retried.

    ``url`` is what was asked; ``limit_name`` the field of ``Limits`` (or the index's listed size)
    that was reached and ``limit`` its value, in bytes or seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        limit_name: str = "",
        limit: float = 0,
        package: str | None = None,
        version: str | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(message, package=package, version=version, step=step)
        self.url = url
        self.limit_name = limit_name
        self.limit = limit


def format_bytes(n: float) -> str:
    """``n`` bytes for a person: "64 MiB", "1.5 KiB", "200 bytes"."""
    for unit, size in (("GiB", 1 << 30), ("MiB", _MiB), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{int(n)} bytes"


class _Watchdog:
    """One thread, started on first use, that calls each function given to ``call_at`` at its time.

    It wakes the deadlines of one client's requests. A thread of its own per request (a
    ``threading.Timer``) cost a no-op re-run, which checks some sixty index pages, tens of
    milliseconds of thread starts. A function whose request has ended by then returns at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Call ``fn`` in the watchdog's thread at ``when`` (``time.monotonic``), or just after."""
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), fn))
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(
                    target=self._run, name="rewheel-http-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is fn:
                # Woken only when it must wake sooner: requests made one after another have ever
                # later deadlines, and waking it for each cost a switch of threads per request.
                self._cond.notify()

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while True:
                    if self._thread is not me:  # stopped
                        return
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        fn = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(delay)
            fn()

    def stop(self) -> None:
        """Forget every pending call and end the thread; a later ``call_at`` starts a new one."""
        with self._cond:
            self._heap.clear()
            self._thread = None
            self._cond.notify_all()


class _Deadline:
    """The time one request may take, all its tries included; at the end its connection is cut.

    Checked between chunks, and enforced by the client's watchdog, which shuts the watched socket
    down at the end, waking a read blocked anywhere (TLS handshake, status line, headers, body).
    ``per_byte`` seconds are added for every byte received. The socket watched is a duplicate of
    the connection's descriptor, so cutting it late can never hit a descriptor number since
    reused elsewhere.
    """

    def __init__(
        self, seconds: float, per_byte: float, limit_name: str, watchdog: _Watchdog
    ) -> None:
        self.seconds = seconds
        self.limit_name = limit_name
        self._per_byte = per_byte
        self._watchdog = watchdog
        self._lock = threading.Lock()
        self._end = time.monotonic() + seconds
        self._received = 0
        self._sock: socket.socket | None = None
        self._armed = False
        self._closed = False
        self.cut = False

    def remaining(self) -> float:
        with self._lock:
            return self._end - time.monotonic()

    def expired(self) -> bool:
        return self.cut or self.remaining() <= 0

    def received(self, n: int) -> None:
        with self._lock:
            self._received += n
            self._end += n * self._per_byte

    def watch(self, sock: socket.socket) -> None:
        """Cut ``sock``'s connection at the deadline (instead of the one watched so far)."""
        try:
            dup = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return  # out of descriptors, or already closed: the checks between chunks remain
        with self._lock:
            if self._closed:
                dup.close()
                return
            old, self._sock = self._sock, dup
            if not self._armed:
                self._armed = True
                self._watchdog.call_at(self._end, self._fire)
        if old is not None:
            old.close()

    def _fire(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._end > time.monotonic():  # bytes received since moved the end
                self._watchdog.call_at(self._end, self._fire)
                return
            self.cut = True
            if self._sock is not None:
                with contextlib.suppress(OSError):  # already gone
                    self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def exceeded(self, url: str, step: str, last: str | None = None) -> LimitExceeded:
        allowed = f"{self.seconds:g} s"
        if self._per_byte and self._received:
            allowed += f" (and {self._received * self._per_byte:.3g} s more for the bytes received)"
        why = f" (last failure: {last})" if last else ""
        return LimitExceeded(
            f"GET {url}: no complete answer within the deadline of {allowed}{why}; the index is "
            f"stalled, or sends too slowly to be waited for (limit {self.limit_name})",
            url=url,
            limit_name=self.limit_name,
            limit=self.seconds,
            step=step,
        )

    def check(self, url: str, step: str) -> None:
        if self.expired():
            raise self.exceeded(url, step)


# The deadline of the request this thread is making, for the connections below to watch.
_ACTIVE: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "rewheel_http_deadline", default=None
)


def _watch(sock: socket.socket | None) -> None:
    deadline = _ACTIVE.get()
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def getresponse(self) -> urllib3.HTTPResponse:  # type: ignore[override]
        _watch(self.sock)  # a kept-alive connection: no new socket was made
        return super().getresponse()


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)  # before the TLS handshake, which a server can stall too
        return sock

    def getresponse(self) -> urllib3.HTTPResponse:  # type: ignore[override]
        _watch(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Defaults suit a public index; tests shrink the delays to nothing."""

    attempts: int = 5  # tries per request, the first one included
    backoff_base: float = 0.5  # seconds before the first retry, doubled for each further one
    backoff_max: float = 10.0
    retry_after_max: float = 60.0  # a longer Retry-After is cut to this
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    hash_retries: int = 1  # extra downloads after a hash mismatch before giving up


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    url: str = ""  # the final URL, after redirects: relative links resolve against it
    from_cache: bool = False  # the body came from the page cache: after a 304, or still fresh


def _is_retryable_status(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(policy: RetryPolicy, attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 0)."""
    if retry_after is not None:
        return min(retry_after, policy.retry_after_max)
    delay = min(policy.backoff_max, policy.backoff_base * (2.0**attempt))
    # Jitter so that many workers hitting one failure do not retry in lockstep.
    return delay * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class _Again:
    """A transient failure of one try: retry after the backoff (or the server's Retry-After)."""

    reason: str
    retry_after: float | None = None


def _header(headers: Mapping[str, str], key: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == key.lower():
            return v
    return None


def _final_url(url: str, resp: urllib3.BaseHTTPResponse) -> str:
    """The absolute URL that answered, after redirects (urllib3's ``resp.url`` is only a path)."""
    final = url
    for step in resp.retries.history if resp.retries is not None else ():
        if step.redirect_location and step.url:
            final = urljoin(urljoin(final, step.url), step.redirect_location)
    return final


def _local_failure(dest: Path, exc: OSError) -> RewheelError:
    """A download that could not be written here: not the index's fault, not worth a retry."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = f"No space left on the file system of {dest.parent} (disk or quota full)"
    else:
        why = str(exc)
    return RewheelError(f"cannot save {dest.name}: {why}", step=Step.DOWNLOAD)


# The longest a page is used without asking the index again, whatever its Cache-Control says:
# an index cannot pin a stale page, hiding a fixed release, for a year.
MAX_FRESH_SECONDS = 600
# RFC 9111 section 4.2.2: a response with a Last-Modified and no explicit lifetime may be taken
# as fresh for a fraction of the time since it was last modified; 10 % is the RFC's example.
HEURISTIC_FRACTION = 0.1


def fresh_seconds(headers: Mapping[str, str], now: float | None = None) -> int:
    """How long a response may be used without asking again, at most ``MAX_FRESH_SECONDS``: its
    ``Cache-Control: max-age`` less its ``Age``; without a max-age or an ``Expires``, a tenth
    of the time from its ``Last-Modified`` to its ``Date`` (``now`` when it has none) less its
    ``Age`` (RFC 9111's heuristic freshness: uv takes ten minutes for such index pages). 0 (ask
    every time) for ``no-cache``, ``no-store``, an ``Expires`` (not honoured), and whatever is
    not a plain number or a date."""
    directives = {}
    for part in (_header(headers, "Cache-Control") or "").split(","):
        name, _, value = part.strip().partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    if "no-cache" in directives or "no-store" in directives:
        return 0
    age = (_header(headers, "Age") or "0").strip()
    if not (age.isascii() and age.isdigit()):
        return 0
    if "max-age" in directives or _header(headers, "Expires") is not None:
        max_age = directives.get("max-age", "")
        if not (max_age.isascii() and max_age.isdigit()):
            return 0
        lifetime = int(max_age[:9])
    else:
        modified = _http_date(_header(headers, "Last-Modified"))
        served = _http_date(_header(headers, "Date"))
        if modified is None:
            return 0
        if served is None:
            served = time.time() if now is None else now
        lifetime = int(max(0.0, served - modified) * HEURISTIC_FRACTION)
    return max(0, min(lifetime - int(age[:9]), MAX_FRESH_SECONDS))


def _http_date(value: str | None) -> float | None:
    """An HTTP date as seconds since the epoch, or None if absent or not a date."""
    if value is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return when.timestamp()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


class PageCache:
    """Index pages kept between runs, with their validators, for conditional requests.

    One file per (URL, Accept): a JSON header line, then the body. The header records the body's
    hash so a damaged entry is ignored rather than served, and when the page was fetched and for
    how long the index said it stays fresh (``fresh_seconds``): a fresh page is used without a
    request unless ``honour_freshness`` is off (``--refresh``, and every proof).
    """

    def __init__(
        self,
        root: Path,
        *,
        honour_freshness: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.honour_freshness = honour_freshness
        self._clock = clock

    def _path(self, url: str, accept: str) -> Path:
        key = hashlib.sha256(f"{url}\n{accept}".encode()).hexdigest()
        return self.root / key[:2] / key

    def load(self, url: str, accept: str) -> tuple[dict[str, str], bytes] | None:
        """The stored (header, body) for this request, or None if absent or damaged."""
        try:
            raw = self._path(url, accept).read_bytes()
            line, _, body = raw.partition(b"\n")
            header = json.loads(line)
        except (OSError, ValueError):
            return None
        if not isinstance(header, dict) or header.get("url") != url:
            return None
        if header.get("sha256") != hashlib.sha256(body).hexdigest():
            return None
        return {str(k): str(v) for k, v in header.items()}, body

    def is_fresh(self, stored: Mapping[str, str]) -> bool:
        """Whether a loaded entry may be used without asking the index. The cap is applied here
        too, and an entry fetched "in the future" (a clock set back, an edited entry) is not."""
        if not self.honour_freshness:
            return False
        try:
            fetched, lifetime = float(stored["time"]), float(stored["max_age"])
        except (KeyError, ValueError):
            return False
        age = self._clock() - fetched
        return 0 <= age < min(lifetime, MAX_FRESH_SECONDS)

    def store(self, url: str, accept: str, response: Response) -> None:
        header = {"url": url, "final_url": response.url, "sha256": ""}
        for name in ("ETag", "Last-Modified", "Content-Type"):
            value = _header(response.headers, name)
            if value is not None:
                header[name] = value
        lifetime = fresh_seconds(response.headers, now=self._clock())
        if "ETag" not in header and "Last-Modified" not in header and lifetime == 0:
            return  # nothing to revalidate with and never fresh: keeping it would save nothing
        header["sha256"] = hashlib.sha256(response.body).hexdigest()
        header["time"] = repr(self._clock())
        header["max_age"] = str(lifetime)
        # Private: pages of an index that needs a login are not for whoever serves the folder.
        atomic_write_bytes(
            self._path(url, accept),
            json.dumps(header).encode() + b"\n" + response.body,
            private=True,
            durable=False,  # a cache: an entry lost or damaged by a crash is fetched again
        )


def _from_cache(cached: tuple[dict[str, str], bytes], url: str) -> Response:
    stored, body = cached
    headers = urllib3.HTTPHeaderDict(
        {k: v for k, v in stored.items() if k in ("ETag", "Last-Modified", "Content-Type")}
    )
    return Response(200, headers, body, stored.get("final_url") or url, from_cache=True)


def _ca_certs() -> str | None:
    # urllib3 without ca_certs uses the system store; SSL_CERT_FILE points elsewhere on purpose.
    path = os.environ.get("SSL_CERT_FILE")
    if not path:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"SSL_CERT_FILE={path} is not a file")
    return path


class HttpClient:
    """GETs with retries, verified downloads, uploads, reachability probes.

    Thread safe; ``close()`` it at the end.
    """

    def __init__(
        self,
        *,
        policy: RetryPolicy | None = None,
        limits: Limits | None = None,
        max_connections: int = 10,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.limits = limits or Limits()
        self._sleep = sleep
        self._pool = urllib3.PoolManager(
            num_pools=20,
            maxsize=max_connections,
            cert_reqs="CERT_REQUIRED",
            ca_certs=_ca_certs(),
        )
        # Connections whose socket the deadline of the request using them can cut.
        self._pool.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
        self._timeout = urllib3.Timeout(
            connect=self.policy.connect_timeout, read=self.policy.read_timeout
        )
        # urllib3 only follows redirects; every other retry is done here, where it can be counted,
        # backed off and told apart from a truncated body.
        self._retries = urllib3.Retry(
            total=None, connect=0, read=0, status=0, other=0, redirect=10, raise_on_status=False
        )
        self._watchdog = _Watchdog()

    def close(self) -> None:
        self._pool.clear()
        self._watchdog.stop()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _retrying(
        self,
        url: str,
        step: str,
        attempt_once: Callable[[], _T | _Again],
        deadline: _Deadline | None = None,
    ) -> _T:
        last = "no attempt made"
        failed: str | None = None  # the last failure that was not the deadline's cut
        attempts = max(1, self.policy.attempts)
        for attempt in range(attempts):
            try:
                outcome = self._once(url, step, attempt_once)
            except LimitExceeded:
                raise
            except Exception as exc:
                # A connection cut at the deadline fails in whatever way the read it woke did.
                if deadline is not None and deadline.expired():
                    raise deadline.exceeded(url, step, failed) from exc
                raise
            if not isinstance(outcome, _Again):
                return outcome
            if deadline is not None and deadline.expired():
                raise deadline.exceeded(url, step, failed if deadline.cut else outcome.reason)
            last = failed = outcome.reason
            if attempt + 1 < attempts:
                delay = backoff_delay(self.policy, attempt, outcome.retry_after)
                if deadline is not None and delay >= deadline.remaining():
                    raise deadline.exceeded(url, step, last)
                self._sleep(delay)
        raise UpstreamError(f"GET {url} failed after {attempts} attempts: {last}", step=step)

    @staticmethod
    def _once(url: str, step: str, attempt_once: Callable[[], _T | _Again]) -> _T | _Again:
        try:
            return attempt_once()
        except MaxRetryError as exc:
            # Too many redirects or a certificate failure will not get better by trying again.
            if isinstance(exc.reason, ResponseError | SSLError):
                raise UpstreamError(f"GET {url}: {exc.reason}", step=step) from exc
            return _Again(str(exc.reason))
        except (SSLError, LocationValueError) as exc:
            raise UpstreamError(f"GET {url}: {exc}", step=step) from exc
        except HTTPError as exc:  # connection reset, timeout, truncated body, ...
            return _Again(f"{type(exc).__name__}: {exc}")

    def _deadline(self, seconds: float, limit_name: str) -> _Deadline:
        per_byte = 1.0 / self.limits.min_rate if self.limits.min_rate > 0 else 0.0
        return _Deadline(seconds, per_byte, limit_name, self._watchdog)

    def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        cache: PageCache | None = None,
        step: str = Step.INDEX,
        limit: Literal["page_bytes", "metadata_bytes"] = "page_bytes",
    ) -> Response:
        """GET ``url`` into memory. Returns any non-transient answer (200, 304, 404, ...).

        With ``cache``, a stored page is revalidated (If-None-Match / If-Modified-Since) and a 304
        returns the stored body as a 200 with ``from_cache`` set. Raises ``UpstreamError`` when the
        server stays unreachable or keeps failing, and ``LimitExceeded`` for a body larger than
        the ``limit`` field of ``Limits`` once decoded, or an answer that takes longer than
        ``Limits.page_seconds``.
        """
        cap = self.limits.metadata_bytes if limit == "metadata_bytes" else self.limits.page_bytes
        # Headers given to a request replace the pool's defaults, so the User-Agent goes here.
        send = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate", **(headers or {})}
        accept = _header(send, "Accept") or ""
        cached = cache.load(url, accept) if cache is not None else None
        if cached is not None and len(cached[1]) > cap:
            cached = None  # kept under a larger limit: not served under this one
        if cached is not None and cache is not None and cache.is_fresh(cached[0]):
            return _from_cache(cached, url)  # within the index's max-age: nothing asked
        if cached is not None:
            stored, _ = cached
            if "ETag" in stored:
                send["If-None-Match"] = stored["ETag"]
            if "Last-Modified" in stored:
                send["If-Modified-Since"] = stored["Last-Modified"]
        deadline = self._deadline(self.limits.page_seconds, "page_seconds")

        def once() -> Response | _Again:
            resp = self._pool.request(
                "GET",
                url,
                headers=send,
                retries=self._retries,
                timeout=self._timeout,
                preload_content=False,
            )
            try:
                if _is_retryable_status(resp.status):
                    resp.close()  # the body is of no use: not read, the connection dropped
                    return _Again(
                        f"HTTP {resp.status}", parse_retry_after(resp.headers.get("Retry-After"))
                    )
                body = _read_capped(resp, url, step, cap, limit, deadline)
                return Response(resp.status, resp.headers, body, _final_url(url, resp))
            except BaseException:
                resp.close()  # not handed back to the pool with a body half read
                raise
            finally:
                resp.release_conn()

        token = _ACTIVE.set(deadline)
        try:
            response = self._retrying(url, step, once, deadline)
        finally:
            _ACTIVE.reset(token)
            deadline.close()
        if response.status == 304 and cached is not None:
            answer = _from_cache(cached, url)
            if cache is not None:  # the 304's Cache-Control starts the page's freshness anew
                renewed = urllib3.HTTPHeaderDict(answer.headers)
                for name in ("Cache-Control", "Age"):
                    value = _header(response.headers, name)
                    if value is not None:
                        renewed[name] = value
                cache.store(url, accept, Response(200, renewed, answer.body, answer.url))
            return answer
        if response.status == 200 and cache is not None:
            cache.store(url, accept, response)
        return response

    def download_to(
        self,
        url: str,
        dest: Path,
        expected_sha256: str | None = None,
        *,
        size: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Stream ``url`` to ``dest`` (temporary file, hash check, fsync, rename); its sha256.

        A hash mismatch deletes the partial file and downloads once more before raising
        ``DigestMismatch``; ``dest`` is never left holding unverified content. A body longer than
        ``size`` (the index's listed size, if it gives one) or than ``Limits.download_bytes``, or
        a download slower than its deadline, raises ``LimitExceeded`` and leaves nothing.
        """
        cap = self.limits.download_bytes
        if size is not None and size > cap:
            raise LimitExceeded(
                f"GET {url}: the index lists {dest.name} at {format_bytes(size)}, over the limit "
                f"of {format_bytes(cap)} for a download; not fetched (limit download_bytes)",
                url=url,
                limit_name="download_bytes",
                limit=cap,
                step=Step.DOWNLOAD,
            )
        expected = expected_sha256.lower() if expected_sha256 else None
        deadline = self._deadline(self.limits.download_seconds, "download_seconds")
        token = _ACTIVE.set(deadline)
        try:
            for _ in range(1 + max(0, self.policy.hash_retries)):
                tmp, digest = self._retrying(
                    url,
                    "download",
                    lambda: self._fetch_to_temp(url, dest, size, deadline, headers or {}),
                    deadline,
                )
                if expected is None or digest == expected:
                    try:
                        os.replace(tmp, dest)
                    except OSError as exc:
                        tmp.unlink(missing_ok=True)
                        raise _local_failure(dest, exc) from exc
                    except BaseException:
                        tmp.unlink(missing_ok=True)
                        raise
                    return digest
                tmp.unlink(missing_ok=True)
        finally:
            _ACTIVE.reset(token)
            deadline.close()
        raise DigestMismatch(
            f"{url}: sha256 {digest} does not match the index's {expected}",
            filename=dest.name,
            found=digest,
            expected=expected or "",
        )

    def _fetch_to_temp(
        self,
        url: str,
        dest: Path,
        size: int | None,
        deadline: _Deadline,
        headers: Mapping[str, str],
    ) -> tuple[Path, str] | _Again:
        if size is not None:
            cap, cap_name = size, "listed_size"
            why = f"the {size} bytes the index lists for it"
        else:
            cap, cap_name = self.limits.download_bytes, "download_bytes"
            why = f"the limit of {format_bytes(cap)} for a file the index lists no size for"

        def too_big(received: str) -> LimitExceeded:
            return LimitExceeded(
                f"GET {url}: {dest.name} is {received} {why}; refused (limit {cap_name})",
                url=url,
                limit_name=cap_name,
                limit=cap,
                step=Step.DOWNLOAD,
            )

        resp = self._pool.request(
            "GET",
            url,
            # Raw bytes: the hash is of the file as stored, whatever Content-Encoding says.
            headers={**headers, "User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            retries=self._retries,
            timeout=self._timeout,
            preload_content=False,
            decode_content=False,
        )
        tmp: Path | None = None
        try:
            if _is_retryable_status(resp.status):
                resp.close()  # the body is of no use: not read, the connection dropped
                return _Again(
                    f"HTTP {resp.status}", parse_retry_after(resp.headers.get("Retry-After"))
                )
            if resp.status != 200:
                resp.close()
                raise UpstreamError(f"GET {url}: HTTP {resp.status}", step=Step.DOWNLOAD)
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > cap:
                raise too_big(f"announced at {length} bytes, more than")
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            tmp = Path(name)
            digest = hashlib.sha256()
            received = 0
            with os.fdopen(fd, "wb") as f:
                # A downloaded sdist is served from the repository: readable as the umask
                # allows, not mkstemp's 0600.
                os.fchmod(f.fileno(), public_file_mode())
                for chunk in resp.stream(_CHUNK, decode_content=False):
                    received += len(chunk)
                    if received > cap:
                        raise too_big("longer than")
                    deadline.received(len(chunk))
                    deadline.check(url, "download")
                    f.write(chunk)
                    digest.update(chunk)
                f.flush()
                os.fsync(f.fileno())
            deadline.check(url, "download")  # a cut connection can look like an empty body
            if length is not None and length.isdigit() and received != int(length):
                # urllib3 normally raises on this itself; this covers the cases it lets through.
                tmp.unlink(missing_ok=True)
                return _Again(f"truncated body: {received} of {length} bytes")
            return tmp, digest.hexdigest()
        except OSError as exc:
            # urllib3 turns socket errors into its own; an OSError here is the local disk's.
            resp.close()
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise _local_failure(dest, exc) from exc
        except BaseException:
            resp.close()  # not handed back to the pool with a body half read
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        finally:
            resp.release_conn()

    def upload(
        self,
        url: str,
        path: Path,
        headers: Mapping[str, str] | None = None,
        *,
        policy: RetryPolicy | None = None,
        retry_statuses: Collection[int] = (),
        step: str = Step.UPLOAD,
    ) -> int:
        """PUT the file at ``path`` to ``url``; the status of the answer that ended the tries.

        Connection failures, 5xx answers and those in ``retry_statuses`` are tried again, up to
        ``policy.attempts`` tries in all (``policy``: the client's by default), with urllib3's
        exponential backoff from ``policy.backoff_base``; any other answer (a redirect included,
        not followed) is returned at once for the caller to judge. ``headers`` are sent with
        ``Content-Length`` set to the file's size. Raises ``UpstreamError`` when no try got an
        answer, and ``OSError`` when ``path`` cannot be read.
        """
        policy = policy or self.policy
        attempts = max(1, policy.attempts)
        retries = urllib3.Retry(
            total=attempts - 1,
            redirect=False,
            allowed_methods=frozenset({"PUT"}),
            status_forcelist=frozenset(range(500, 600)) | frozenset(retry_statuses),
            backoff_factor=policy.backoff_base,
            backoff_max=policy.backoff_max,
            raise_on_status=False,  # the last answer is returned, not raised
            # urllib3 would wait as long as any Retry-After says: the backoff alone decides.
            respect_retry_after_header=False,
        )
        send = urllib3.HTTPHeaderDict(
            {"User-Agent": USER_AGENT, "Content-Type": "application/octet-stream"}
        )
        send.update(headers or {})
        with path.open("rb") as body:
            send["Content-Length"] = str(os.fstat(body.fileno()).st_size)
            try:
                # urllib3 seeks the file back to its start before each further try.
                resp = self._pool.request(
                    "PUT",
                    url,
                    body=body,
                    headers=send,
                    retries=retries,
                    redirect=False,
                    timeout=urllib3.Timeout(
                        connect=policy.connect_timeout, read=policy.read_timeout
                    ),
                    preload_content=False,
                )
            except MaxRetryError as exc:
                why = f"{type(exc.reason).__name__}: {exc.reason}"
                raise UpstreamError(
                    f"PUT {url} failed after {attempts} attempts: {why}", step=step
                ) from exc
            except HTTPError as exc:
                raise UpstreamError(f"PUT {url}: {type(exc).__name__}: {exc}", step=step) from exc
        resp.close()  # the status is the answer: the body is not read, the connection dropped
        resp.release_conn()
        return resp.status

    def reachable(self, url: str, timeout: float) -> bool:
        """Whether ``url`` answers a HEAD with a status below 500 within about ``timeout`` seconds.

        One try, no redirect followed; any failure to get an answer is False. Returns after
        ``timeout`` and half a second at most, the name lookup included.
        """
        answer: list[bool] = []

        def ask() -> None:
            try:
                resp = self._pool.request(
                    "HEAD",
                    url,
                    headers={"User-Agent": USER_AGENT},
                    retries=False,
                    redirect=False,
                    timeout=timeout,
                    preload_content=False,
                )
            except HTTPError:
                return
            resp.release_conn()
            answer.append(resp.status < 500)

        # In a thread: urllib3's timeouts do not cover the name lookup, which can hang far longer.
        thread = threading.Thread(target=ask, name="rewheel-reachable", daemon=True)
        thread.start()
        thread.join(timeout + 0.5)
        return bool(answer and answer[0])


def _read_capped(
    resp: urllib3.BaseHTTPResponse,
    url: str,
    step: str,
    cap: int,
    cap_name: str,
    deadline: _Deadline,
) -> bytes:
    """The body of ``resp``, decoded, read in bounded chunks; ``LimitExceeded`` past ``cap`` bytes.

    urllib3 decodes at most the amount asked for per read, so a gzip bomb never expands further
    than one chunk past the limit.
    """
    chunks: list[bytes] = []
    received = 0
    for chunk in resp.stream(_PAGE_CHUNK, decode_content=True):
        received += len(chunk)
        if received > cap:
            raise LimitExceeded(
                f"GET {url}: the body is larger than the limit of {format_bytes(cap)} once "
                f"decoded; refused, as no index page needs that much (limit {cap_name})",
                url=url,
                limit_name=cap_name,
                limit=cap,
                step=step,
            )
        deadline.received(len(chunk))
        deadline.check(url, step)
        chunks.append(chunk)
    # A connection cut in the headers can look like a complete answer with no body.
    deadline.check(url, step)
    return b"".join(chunks)
