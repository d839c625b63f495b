"""HTTP for talking to an index: retries, verified streamed downloads, an on-disk page cache.

One ``HttpClient`` per run, passed to whoever needs it (it holds the connection pools, which are
thread safe). Transient failures (5xx, 429, connection errors, timeouts, truncated bodies) are
retried with bounded exponential backoff; anything else is returned or raised at once.
"""

from __future__ import annotations

import email.utils
import errno
import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import urljoin

import urllib3
from urllib3.exceptions import (
    HTTPError,
    LocationValueError,
    MaxRetryError,
    ResponseError,
    SSLError,
)

from . import __version__
from .errors import ConfigError, IntegrityError, RewheelError, UpstreamError
from .fsutil import atomic_write_bytes

_T = TypeVar("_T")
_CHUNK = 1 << 16
USER_AGENT = f"rewheel/{__version__}"


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
    from_cache: bool = False  # the body came from the page cache after a 304


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
    return RewheelError(f"cannot save {dest.name}: {why}", step="download")


class PageCache:
    """Index pages kept between runs, with their validators, for conditional requests.

    One file per (URL, Accept): a JSON header line, then the body. The header records the body's
    hash so a damaged entry is ignored rather than served.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

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

    def store(self, url: str, accept: str, response: Response) -> None:
        header = {"url": url, "final_url": response.url, "sha256": ""}
        for name in ("ETag", "Last-Modified", "Content-Type"):
            value = _header(response.headers, name)
            if value is not None:
                header[name] = value
        if "ETag" not in header and "Last-Modified" not in header:
            return  # nothing to revalidate with: keeping it would not save a request
        header["sha256"] = hashlib.sha256(response.body).hexdigest()
        atomic_write_bytes(
            self._path(url, accept), json.dumps(header).encode() + b"\n" + response.body
        )


def _ca_certs() -> str | None:
    # urllib3 without ca_certs uses the system store; SSL_CERT_FILE points elsewhere on purpose.
    path = os.environ.get("SSL_CERT_FILE")
    if not path:
        return None
    if not Path(path).is_file():
        raise ConfigError(f"SSL_CERT_FILE={path} is not a file")
    return path


class HttpClient:
    """GETs with retries, and verified downloads. Thread safe; ``close()`` it at the end."""

    def __init__(
        self,
        *,
        policy: RetryPolicy | None = None,
        max_connections: int = 10,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._pool = urllib3.PoolManager(
            num_pools=20,
            maxsize=max_connections,
            cert_reqs="CERT_REQUIRED",
            ca_certs=_ca_certs(),
        )
        self._timeout = urllib3.Timeout(
            connect=self.policy.connect_timeout, read=self.policy.read_timeout
        )
        # urllib3 only follows redirects; every other retry is done here, where it can be counted,
        # backed off and told apart from a truncated body.
        self._retries = urllib3.Retry(
            total=None, connect=0, read=0, status=0, other=0, redirect=10, raise_on_status=False
        )

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _retrying(self, url: str, step: str, attempt_once: Callable[[], _T | _Again]) -> _T:
        last = "no attempt made"
        attempts = max(1, self.policy.attempts)
        for attempt in range(attempts):
            try:
                outcome = attempt_once()
            except MaxRetryError as exc:
                # Too many redirects or a certificate failure will not get better by trying again.
                if isinstance(exc.reason, ResponseError | SSLError):
                    raise UpstreamError(f"GET {url}: {exc.reason}", step=step) from exc
                outcome = _Again(str(exc.reason))
            except (SSLError, LocationValueError) as exc:
                raise UpstreamError(f"GET {url}: {exc}", step=step) from exc
            except HTTPError as exc:  # connection reset, timeout, truncated body, ...
                outcome = _Again(f"{type(exc).__name__}: {exc}")
            if not isinstance(outcome, _Again):
                return outcome
            last = outcome.reason
            if attempt + 1 < attempts:
                self._sleep(backoff_delay(self.policy, attempt, outcome.retry_after))
        raise UpstreamError(f"GET {url} failed after {attempts} attempts: {last}", step=step)

    def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        cache: PageCache | None = None,
        step: str = "index",
    ) -> Response:
        """GET ``url`` into memory. Returns any non-transient answer (200, 304, 404, ...).

        With ``cache``, a stored page is revalidated (If-None-Match / If-Modified-Since) and a 304
        returns the stored body as a 200 with ``from_cache`` set. Raises ``UpstreamError`` when the
        server stays unreachable or keeps failing.
        """
        # Headers given to a request replace the pool's defaults, so the User-Agent goes here.
        send = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate", **(headers or {})}
        accept = _header(send, "Accept") or ""
        cached = cache.load(url, accept) if cache is not None else None
        if cached is not None:
            stored, _ = cached
            if "ETag" in stored:
                send["If-None-Match"] = stored["ETag"]
            if "Last-Modified" in stored:
                send["If-Modified-Since"] = stored["Last-Modified"]

        def once() -> Response | _Again:
            resp = self._pool.request(
                "GET", url, headers=send, retries=self._retries, timeout=self._timeout
            )
            if _is_retryable_status(resp.status):
                return _Again(
                    f"HTTP {resp.status}", parse_retry_after(resp.headers.get("Retry-After"))
                )
            return Response(resp.status, resp.headers, resp.data, _final_url(url, resp))

        response = self._retrying(url, step, once)
        if response.status == 304 and cached is not None:
            stored, body = cached
            headers_out = urllib3.HTTPHeaderDict(
                {k: v for k, v in stored.items() if k in ("ETag", "Last-Modified", "Content-Type")}
            )
            return Response(200, headers_out, body, stored.get("final_url") or url, from_cache=True)
        if response.status == 200 and cache is not None:
            cache.store(url, accept, response)
        return response

    def download_to(self, url: str, dest: Path, expected_sha256: str | None = None) -> str:
        """Stream ``url`` to ``dest`` (temporary file, hash check, fsync, rename); its sha256.

        A hash mismatch deletes the partial file and downloads once more before raising
        ``IntegrityError``; ``dest`` is never left holding unverified content.
        """
        expected = expected_sha256.lower() if expected_sha256 else None
        for _ in range(1 + max(0, self.policy.hash_retries)):
            tmp, digest = self._retrying(url, "download", lambda: self._fetch_to_temp(url, dest))
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
        raise IntegrityError(
            f"{url}: sha256 {digest} does not match the index's {expected}", step="download"
        )

    def _fetch_to_temp(self, url: str, dest: Path) -> tuple[Path, str] | _Again:
        resp = self._pool.request(
            "GET",
            url,
            # Raw bytes: the hash is of the file as stored, whatever Content-Encoding says.
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            retries=self._retries,
            timeout=self._timeout,
            preload_content=False,
            decode_content=False,
        )
        tmp: Path | None = None
        try:
            if _is_retryable_status(resp.status):
                resp.drain_conn()
                return _Again(
                    f"HTTP {resp.status}", parse_retry_after(resp.headers.get("Retry-After"))
                )
            if resp.status != 200:
                resp.drain_conn()
                raise UpstreamError(f"GET {url}: HTTP {resp.status}", step="download")
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            tmp = Path(name)
            digest = hashlib.sha256()
            received = 0
            with os.fdopen(fd, "wb") as f:
                for chunk in resp.stream(_CHUNK, decode_content=False):
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and received != int(length):
                # urllib3 normally raises on this itself; this covers the cases it lets through.
                tmp.unlink(missing_ok=True)
                return _Again(f"truncated body: {received} of {length} bytes")
            return tmp, digest.hexdigest()
        except OSError as exc:
            # urllib3 turns socket errors into its own; an OSError here is the local disk's.
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise _local_failure(dest, exc) from exc
        except BaseException:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        finally:
            resp.release_conn()
