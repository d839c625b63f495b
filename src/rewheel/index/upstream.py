"""The upstream index over HTTP: project pages, PEP 658 metadata and sdist downloads.

Everything is fetched at most once per run, even when many worker threads ask at the same time.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from pathlib import Path
from typing import Generic, TypeVar

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from ..core.errors import IntegrityError, RewheelError, Step, UpstreamError
from ..core.fsutil import sha256_file
from ..core.types import IndexFile, ProjectPage
from .credentials import origin, split_credentials
from .http import HttpClient, PageCache, Response
from .index_parse import parse_page

ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)

# What an index answers for a project it does not have (PEP 503 says nothing; PyPI sends 404).
_NO_SUCH_PROJECT = (404, 410)

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")
_E = TypeVar("_E", bound=RewheelError)


def _blamed(exc: _E, package: str | None, step: str) -> _E:
    """``exc`` again, naming the package it happened to; its class and data are kept."""
    again = copy.copy(exc)
    again.package, again.step = package, step
    return again


class OncePerKey(Generic[_K, _V]):
    """Computes a value at most once per key; concurrent callers for a key wait for the first.

    A failure is handed to the callers waiting at that moment but not remembered, so a later call
    tries again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[_K, Future[_V]] = {}

    def get(self, key: _K, compute: Callable[[], _V]) -> _V:
        with self._lock:
            future = self._futures.get(key)
            owner = future is None
            if future is None:
                future = self._futures[key] = Future()
        if not owner:
            return future.result()
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._futures[key]
            future.set_exception(exc)
            raise
        future.set_result(value)
        return value


class _KeyedLocks:
    """One lock per key, created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[Path, threading.Lock] = {}

    def __call__(self, key: Path) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())


def _project_of(filename: str) -> str | None:
    """The project a distribution file belongs to, for error messages."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[0]
        return parse_sdist_filename(filename)[0]
    except (InvalidSdistFilename, InvalidWheelFilename):
        return None


class HttpUpstream:
    """``Upstream`` over a PEP 503/691 simple index such as ``https://pypi.org/simple``.

    ``strict`` refuses files the index lists without a sha256. ``cache_dir`` keeps project pages
    between runs: used as they are while the index's max-age lasts (at most
    ``http.MAX_FRESH_SECONDS``), then revalidated with conditional requests; ``refresh``
    revalidates every one. ``request_counts`` counts the requests
    made, by kind ("project", "metadata", "download"), retries not included. The client's
    ``Limits`` bound pages, PEP 658 metadata and downloads (a download also by the size the index
    lists for it, when it does).
    """

    def __init__(
        self,
        index_url: str,
        client: HttpClient,
        *,
        cache_dir: Path | None = None,
        strict: bool = False,
        refresh: bool = False,
    ) -> None:
        # The user's credentials, if the URL carries any, go only to the index's own host.
        self.index_url, self._credentials = split_credentials(index_url.rstrip("/"))
        self._origin = origin(self.index_url)
        self.strict = strict
        self._client = client
        self._cache = (
            PageCache(cache_dir, honour_freshness=not refresh) if cache_dir is not None else None
        )
        self._pages: OncePerKey[str, ProjectPage] = OncePerKey()
        self._raw: OncePerKey[str, Response] = OncePerKey()
        self._metadata: OncePerKey[str, bytes | None] = OncePerKey()
        self._file_locks = _KeyedLocks()
        # Digests of files this run downloaded without an index hash, so that they are not fetched
        # again (they cannot be checked against the index, but can against what we got).
        self._fetched: dict[Path, str] = {}
        self._count_lock = threading.Lock()
        self.request_counts: Counter[str] = Counter()
        self.page_digests: dict[str, str] = {}
        self.page_sizes: dict[str, int] = {}  # bytes of each page in ``page_digests``

    def _count(self, kind: str) -> None:
        with self._count_lock:
            self.request_counts[kind] += 1

    def _auth(self, url: str) -> dict[str, str]:
        return self._credentials if origin(url) == self._origin else {}

    def project_url(self, name: str) -> str:
        return f"{self.index_url}/{canonicalize_name(name)}/"

    def get_project(self, name: NormalizedName) -> ProjectPage:
        name = canonicalize_name(name)
        return self._pages.get(name, lambda: self._fetch_project(name))

    def _fetch_project(self, name: NormalizedName) -> ProjectPage:
        # Not through the memo of raw pages: a resolution keeps only the parsed page.
        response = self._fetch_raw(name)
        url = self.project_url(name)
        if response.status in _NO_SUCH_PROJECT:
            # Said in the page, not raised: a resolution that meets it explains it with the chain
            # of requirements that asked for the project.
            return ProjectPage(name=name, files=(), missing=f"HTTP {response.status} at {url}")
        content_type = response.headers.get("Content-Type")
        return parse_page(response.body, content_type, response.url or url, name)

    def _raw_page(self, name: NormalizedName) -> Response:
        """The project's page as the index sent it, for ``page_digest``."""
        return self._raw.get(name, lambda: self._fetch_raw(name))

    def _fetch_raw(self, name: NormalizedName) -> Response:
        """The project's page (status 200), or the index's answer that it has no such project."""
        url = self.project_url(name)
        self._count("project")
        try:
            response = self._client.get(
                url, {"Accept": ACCEPT, **self._auth(url)}, cache=self._cache, step=Step.INDEX
            )
        except UpstreamError as exc:
            raise _blamed(exc, name, "index") from exc
        if response.status in _NO_SUCH_PROJECT:
            return response
        if response.status != 200:
            raise UpstreamError(f"GET {url}: HTTP {response.status}", package=name, step=Step.INDEX)
        with self._count_lock:
            self.page_digests[name] = hashlib.sha256(response.body).hexdigest()
            self.page_sizes[name] = len(response.body)
        return response

    def page_digest(self, name: NormalizedName) -> str:
        """The sha256 of the project's page as fetched this run ("absent" for an unknown one):
        a run whose every page is unchanged resolves exactly as before. Nothing is parsed."""
        name = canonicalize_name(name)
        if self._raw_page(name).status in _NO_SUCH_PROJECT:
            return "absent"
        return self.page_digests[name]

    def get_metadata(self, file: IndexFile) -> bytes | None:
        if not file.has_metadata:
            return None
        return self._metadata.get(file.url, lambda: self._fetch_metadata(file))

    def _fetch_metadata(self, file: IndexFile) -> bytes | None:
        url = file.url + ".metadata"
        package = _project_of(file.filename)
        self._count("metadata")
        try:
            response = self._client.get(
                url,
                self._auth(url),
                cache=self._cache,
                step=Step.METADATA,
                limit="metadata_bytes",
            )
        except UpstreamError as exc:
            raise _blamed(exc, package, "metadata") from exc
        if response.status == 404:
            return None  # listed but not served: the caller falls back to the file itself
        if response.status != 200:
            raise UpstreamError(
                f"GET {url}: HTTP {response.status}", package=package, step=Step.METADATA
            )
        if file.metadata_sha256 is not None:
            digest = hashlib.sha256(response.body).hexdigest()
            if digest != file.metadata_sha256.lower():
                raise IntegrityError(
                    f"{url}: sha256 {digest} does not match the index's {file.metadata_sha256}",
                    package=package,
                    step=Step.METADATA,
                )
        return response.body

    def download(self, file: IndexFile, dest_dir: Path) -> Path:
        package = _project_of(file.filename)
        if file.filename in ("", ".", "..") or any(c in file.filename for c in "/\\\x00"):
            raise UpstreamError(
                f"unsafe file name {file.filename!r}", package=package, step=Step.DOWNLOAD
            )
        if file.sha256 is None and self.strict:
            raise IntegrityError(
                f"the index lists {file.filename} without a sha256 (strict mode)",
                package=package,
                step=Step.DOWNLOAD,
            )
        target = dest_dir / file.filename
        with self._file_locks(target):
            if target.is_file():
                have = sha256_file(target)
                wanted = file.sha256.lower() if file.sha256 else self._fetched.get(target)
                if have == wanted:
                    return target
                target.unlink()  # damaged, stale, or not vouched for: fetch it again
            dest_dir.mkdir(parents=True, exist_ok=True)
            self._count("download")
            try:
                digest = self._client.download_to(
                    file.url, target, file.sha256, size=file.size, headers=self._auth(file.url)
                )
            except (UpstreamError, IntegrityError) as exc:
                raise _blamed(exc, package, "download") from exc
            if file.sha256 is None:
                self._fetched[target] = digest
            return target
