"""A hostile upstream index tries to exhaust memory or the disk, or to hang the run (issue 11, 5).

Each attack is served by ``HostileIndex``, a server on 127.0.0.1 whose every path is a behaviour
the test chooses: compression bombs as pages, PEP 658 metadata and PKG-INFO, files longer than
the index lists, bodies and headers dripped one byte at a time. Every one must end in a clear error
naming the URL and the limit, quickly, holding little memory, and leaving no file behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import struct
import tarfile
import threading
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import pytest
from packaging.tags import Tag
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from rewheel.build.metadata import MAX_METADATA_BYTES, MetadataSource, read_pkg_info
from rewheel.core.errors import UnsafeArchiveError, UpstreamError
from rewheel.index.http import HttpClient, LimitExceeded, Limits, RetryPolicy
from rewheel.index.upstream import HttpUpstream

MiB = 1 << 20
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
FAST = RetryPolicy(attempts=4, backoff_base=0.001, backoff_max=0.005, retry_after_max=0.05)
BOMB = canonicalize_name("bomb")
# Small limits, so that each attack is over in a moment; a drip lasts at most DRIP_FOR seconds,
# so that the code before the fix ends too (and fails the test) instead of hanging it.
SMALL = Limits(
    page_bytes=1 * MiB,
    metadata_bytes=64 * 1024,
    download_bytes=256 * 1024,
    page_seconds=1.0,
    download_seconds=1.0,
)
DRIP_FOR = 4.0
DRIP_EVERY = 0.05

Handler = Callable[[BaseHTTPRequestHandler], None]


class HostileIndex:
    """An index on 127.0.0.1 serving, at each path, whatever its handler writes on the socket.

    Handlers write raw HTTP; ``stop()`` sets ``stopping``, which every drip waits on, so no server
    thread outlives the test by more than one drip.
    """

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        index = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with index._lock:
                    index.requests.append(self.path)
                    handler = index.routes.get(self.path)
                if handler is None:
                    send(self, 404, b"not here\n")
                    return
                try:
                    handler(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up: as it should

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"{self.base}/simple"

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests.count(path)

    def project(self, name: str, files: list[dict[str, object]]) -> None:
        """A well-formed PEP 691 page for ``name`` listing ``files`` (their URLs under /files/)."""
        doc = {"meta": {"api-version": "1.1"}, "name": name, "files": files, "versions": []}
        body = json.dumps(doc).encode()
        self.routes[f"/simple/{name}/"] = lambda h: send(h, 200, body, content_type=JSON_TYPE)

    def __enter__(self) -> HostileIndex:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def send(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    *,
    content_type: str = "application/octet-stream",
    headers: dict[str, str] | None = None,
    length: bool = True,
) -> None:
    """An answer; without ``length`` the body runs until the connection closes."""
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    if length:
        h.send_header("Content-Length", str(len(body)))
    else:
        h.send_header("Connection", "close")
        h.close_connection = True
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.end_headers()
    h.wfile.write(body)


def drip(h: BaseHTTPRequestHandler, stopping: threading.Event, data: bytes) -> bool:
    """Write ``data`` one byte every DRIP_EVERY seconds, for DRIP_FOR seconds at most; the rest at
    once. False if the server is stopping."""
    ends = time.monotonic() + DRIP_FOR
    for i in range(len(data)):
        if time.monotonic() >= ends:
            h.wfile.write(data[i:])
            return True
        h.wfile.write(data[i : i + 1])
        h.wfile.flush()
        if stopping.wait(DRIP_EVERY):
            return False
    return True


def compressed_zeros(n: int, wbits: int) -> bytes:
    """``n`` zero bytes compressed (gzip: wbits 31, deflate: 15), made without holding ``n``."""
    comp = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(MiB)
    parts = [comp.compress(block) for _ in range(n // MiB)]
    return b"".join([*parts, comp.flush()])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def index() -> Iterator[HostileIndex]:
    with HostileIndex() as idx:
        yield idx


@pytest.fixture
def client() -> Iterator[HttpClient]:
    with HttpClient(policy=FAST, limits=SMALL) as c:
        yield c


class PeakMemory:
    """The peak of Python allocations (every thread's) while the block runs, in bytes."""

    peak = 0

    def __enter__(self) -> PeakMemory:
        tracemalloc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


# -- (1) compression bombs as pages and as PEP 658 metadata -------------------------------------


@pytest.mark.parametrize(("encoding", "wbits"), [("gzip", 31), ("deflate", 15)])
def test_compression_bomb_page_is_refused_in_bounded_memory(
    index: HostileIndex, client: HttpClient, encoding: str, wbits: int
) -> None:
    bomb = compressed_zeros(64 * MiB, wbits)  # 64 KiB on the wire
    path = "/simple/bomb/"
    index.routes[path] = lambda h: send(
        h, 200, bomb, content_type=JSON_TYPE, headers={"Content-Encoding": encoding}
    )
    with PeakMemory() as mem, pytest.raises(LimitExceeded) as info:
        HttpUpstream(index.url, client).get_project(BOMB)
    err = info.value
    assert isinstance(err, UpstreamError)
    assert (err.package, err.step, err.limit_name, err.limit) == (
        "bomb",
        "index",
        "page_bytes",
        SMALL.page_bytes,
    )
    assert err.url == index.base + path
    assert err.url in str(err) and "1 MiB" in str(err) and "page_bytes" in str(err)
    assert mem.peak < 8 * MiB, f"held {mem.peak / MiB:.1f} MiB for a 1 MiB limit"
    assert index.count(path) == 1  # refused, not retried


def test_a_gzip_page_under_the_limit_is_still_read(index: HostileIndex, client: HttpClient) -> None:
    page = {
        "meta": {"api-version": "1.1"},
        "name": "bomb",
        "files": [{"filename": "bomb-1.0.tar.gz", "url": "/files/bomb-1.0.tar.gz", "hashes": {}}],
    }
    body = zlib.compress(json.dumps(page).encode(), 9, wbits=31)
    index.routes["/simple/bomb/"] = lambda h: send(
        h, 200, body, content_type=JSON_TYPE, headers={"Content-Encoding": "gzip"}
    )
    (file,) = HttpUpstream(index.url, client).get_project(BOMB).files
    assert file.filename == "bomb-1.0.tar.gz"


def test_pep658_metadata_bomb_is_refused(index: HostileIndex) -> None:
    bomb = compressed_zeros(16 * MiB, 31)
    index.project(
        "bomb",
        [
            {
                "filename": "bomb-1.0-py3-none-any.whl",
                "url": "/files/bomb-1.0-py3-none-any.whl",
                "hashes": {},
                "core-metadata": True,
            }
        ],
    )
    path = "/files/bomb-1.0-py3-none-any.whl.metadata"
    index.routes[path] = lambda h: send(h, 200, bomb, headers={"Content-Encoding": "gzip"})
    # The default limit for metadata: 1 MiB.
    with HttpClient(policy=FAST) as client, PeakMemory() as mem:
        upstream = HttpUpstream(index.url, client)
        (wheel,) = upstream.get_project(BOMB).files
        with pytest.raises(LimitExceeded) as info:
            upstream.get_metadata(wheel)
    err = info.value
    assert (err.package, err.step, err.limit_name, err.limit) == (
        "bomb",
        "metadata",
        "metadata_bytes",
        Limits().metadata_bytes,
    )
    assert err.url == index.base + path and "1 MiB" in str(err)
    assert mem.peak < 8 * MiB
    assert index.count(path) == 1


# -- (2) an sdist whose PKG-INFO is a compression bomb -------------------------------------------


def bomb_sdist(tmp_path: Path, fmt: str, size: int) -> Path:
    """An sdist of a few KiB whose PKG-INFO is ``size`` bytes once decompressed."""
    text = b"Metadata-Version: 2.2\nName: bomb\nVersion: 1.0\n\n" + b"x" * size
    path = tmp_path / f"bomb-1.0.{fmt}"
    if fmt == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            zf.writestr("bomb-1.0/PKG-INFO", text)
    else:
        with tarfile.open(path, "w:gz", compresslevel=9) as tf:
            info = tarfile.TarInfo("bomb-1.0/PKG-INFO")
            info.size = len(text)
            tf.addfile(info, io.BytesIO(text))
    return path


def _refused_while_resolving(
    index: HostileIndex, tmp_path: Path, filename: str, content: bytes
) -> UnsafeArchiveError:
    """What the resolver's metadata source raises for bomb 1.0 when the index lists ``content``
    (with its true hash and size) as its only sdist, ``filename``."""
    index.project(
        "bomb",
        [
            {
                "filename": filename,
                "url": f"/files/{filename}",
                "hashes": {"sha256": sha(content)},
                "size": len(content),
            }
        ],
    )
    index.routes[f"/files/{filename}"] = lambda h: send(h, 200, content)

    def nothing_built(name: NormalizedName, version: Version) -> bytes | None:
        return None

    with HttpClient(policy=FAST) as client:
        upstream = HttpUpstream(index.url, client)
        (file,) = upstream.get_project(BOMB).files
        source = MetadataSource(
            upstream, tmp_path / "sdists", built=nothing_built, tags=[Tag("py3", "none", "any")]
        )
        with pytest.raises(UnsafeArchiveError) as info:
            source.requires_dist(BOMB, Version("1.0"), file)
    return info.value


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_pkg_info_bomb_is_refused_during_resolution(
    index: HostileIndex, tmp_path: Path, fmt: str
) -> None:
    sdist = bomb_sdist(tmp_path, fmt, 32 * MiB)
    content = sdist.read_bytes()
    assert len(content) < 256 * 1024
    with PeakMemory() as mem:
        err = _refused_while_resolving(index, tmp_path, sdist.name, content)
    assert (err.package, err.version, err.step) == ("bomb", "1.0", "metadata")
    assert sdist.name in str(err) and str(MAX_METADATA_BYTES) in str(err)
    assert mem.peak < 8 * MiB, f"held {mem.peak / MiB:.1f} MiB for a 1 MiB limit"


def test_pkg_info_at_the_limit_is_read(tmp_path: Path) -> None:
    path = bomb_sdist(tmp_path, "tar.gz", 0)
    exact = len(read_pkg_info(path) or b"")
    assert read_pkg_info(path, limit=exact) is not None
    with pytest.raises(UnsafeArchiveError):
        read_pkg_info(path, limit=exact - 1)


def _not_sdists(tmp_path: Path, fmt: str) -> dict[str, bytes]:
    """Files an index could serve under an sdist's name that are no readable archive of it."""
    whole = bomb_sdist(tmp_path, fmt, 100).read_bytes()
    flipped = bytearray(whole)
    for i in range(len(flipped) // 3, len(flipped), 7):
        flipped[i] ^= 0x5A
    found = {
        "empty": b"",
        "html": b"<html><body>Login required</body></html>\n",
        "truncated": whole[: len(whole) // 2],
        "damaged": bytes(flipped),
    }
    if fmt == "zip":
        # The end record places the central directory 4096 bytes later than it is: zipfile then
        # seeks to a member's header 4096 bytes before the file starts (EINVAL).
        end = whole.rindex(b"PK\x05\x06")
        (offset,) = struct.unpack_from("<I", whole, end + 16)
        later = struct.pack("<I", offset + 4096)
        found["bad-offset"] = whole[: end + 16] + later + whole[end + 20 :]
    return found


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [(f, k) for f in ("tar.gz", "zip") for k in ("empty", "html", "truncated", "damaged")]
    + [("zip", "bad-offset")],
)
def test_an_sdist_that_is_not_an_archive_is_a_clear_error_during_resolution(
    index: HostileIndex, tmp_path: Path, fmt: str, kind: str
) -> None:
    filename = f"bomb-1.0.{fmt}"
    err = _refused_while_resolving(index, tmp_path, filename, _not_sdists(tmp_path, fmt)[kind])
    assert (err.package, err.version, err.step) == ("bomb", "1.0", "metadata")
    assert f"{filename} is not a readable sdist archive" in err.message
    assert err.hint is not None and filename in err.hint and "not one" in err.hint


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_read_pkg_info_refuses_what_is_no_archive_with_its_own_error(
    tmp_path: Path, fmt: str
) -> None:
    for kind, content in _not_sdists(tmp_path, fmt).items():
        path = tmp_path / kind / f"bomb-1.0.{fmt}"
        path.parent.mkdir()
        path.write_bytes(content)
        with pytest.raises(UnsafeArchiveError, match="not a readable sdist archive"):
            read_pkg_info(path)


# -- (3) downloads longer than the index says, or than the cap -----------------------------------


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "until-close"])
def test_download_longer_than_its_listed_size_is_refused(
    index: HostileIndex, client: HttpClient, tmp_path: Path, announced: bool
) -> None:
    listed = b"a small sdist" * 100
    sent = listed + bytes(200 * 1024)  # the listed bytes, then more: under the default cap
    index.project(
        "bomb",
        [{"filename": "bomb-1.0.tar.gz", "url": "/files/bomb-1.0.tar.gz", "size": len(listed)}],
    )
    index.routes["/files/bomb-1.0.tar.gz"] = lambda h: send(h, 200, sent, length=announced)
    upstream = HttpUpstream(index.url, client)
    (file,) = upstream.get_project(BOMB).files
    assert file.sha256 is None and file.size == len(listed)
    dest = tmp_path / "dl"
    with pytest.raises(LimitExceeded) as info:
        upstream.download(file, dest)
    err = info.value
    assert (err.package, err.step, err.limit_name, err.limit) == (
        "bomb",
        "download",
        "listed_size",
        len(listed),
    )
    assert err.url == file.url and f"the {len(listed)} bytes the index lists" in str(err)
    assert list(dest.iterdir()) == []  # no partial file left
    assert index.count("/files/bomb-1.0.tar.gz") == 1


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "until-close"])
def test_download_without_size_or_hash_over_the_cap_is_refused(
    index: HostileIndex, client: HttpClient, tmp_path: Path, announced: bool
) -> None:
    body = bytes(2 * MiB)  # the cap is 256 KiB here
    index.project("bomb", [{"filename": "bomb-1.0.tar.gz", "url": "/files/bomb-1.0.tar.gz"}])
    index.routes["/files/bomb-1.0.tar.gz"] = lambda h: send(h, 200, body, length=announced)
    upstream = HttpUpstream(index.url, client)
    (file,) = upstream.get_project(BOMB).files
    assert file.sha256 is None and file.size is None
    dest = tmp_path / "dl"
    with pytest.raises(LimitExceeded) as info:
        upstream.download(file, dest)
    err = info.value
    assert (err.package, err.step, err.limit_name, err.limit) == (
        "bomb",
        "download",
        "download_bytes",
        SMALL.download_bytes,
    )
    assert "256 KiB" in str(err) and "download_bytes" in str(err)
    assert list(dest.iterdir()) == []


def test_a_listed_size_over_the_cap_is_not_fetched(
    index: HostileIndex, client: HttpClient, tmp_path: Path
) -> None:
    # The size comes from the same index: it cannot raise the cap.
    index.project(
        "bomb",
        [{"filename": "bomb-1.0.tar.gz", "url": "/files/bomb-1.0.tar.gz", "size": 1 << 40}],
    )
    upstream = HttpUpstream(index.url, client)
    (file,) = upstream.get_project(BOMB).files
    with pytest.raises(LimitExceeded, match="download_bytes") as info:
        upstream.download(file, tmp_path)
    assert info.value.package == "bomb"
    assert index.count("/files/bomb-1.0.tar.gz") == 0


def test_a_download_within_its_listed_size_and_the_cap_succeeds(
    index: HostileIndex, client: HttpClient, tmp_path: Path
) -> None:
    body = bytes(SMALL.download_bytes)  # exactly the cap
    index.project(
        "bomb",
        [{"filename": "bomb-1.0.tar.gz", "url": "/files/bomb-1.0.tar.gz", "size": len(body)}],
    )
    index.routes["/files/bomb-1.0.tar.gz"] = lambda h: send(h, 200, body, length=False)
    upstream = HttpUpstream(index.url, client)
    (file,) = upstream.get_project(BOMB).files
    assert upstream.download(file, tmp_path).read_bytes() == body


# -- (4) a server that drips ---------------------------------------------------------------------


def _deadline_hit(err: LimitExceeded, url: str, limit_name: str) -> None:
    assert err.url == url and err.limit_name == limit_name and err.limit == 1.0
    assert "deadline of 1 s" in str(err) and url in str(err)


def test_a_dripped_page_body_hits_the_deadline(index: HostileIndex, client: HttpClient) -> None:
    body = json.dumps({"meta": {"api-version": "1.1"}, "name": "bomb", "files": []}).encode()
    body += b" " * 200

    def dripping(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", JSON_TYPE)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        drip(h, index.stopping, body)

    index.routes["/simple/bomb/"] = dripping
    start = time.monotonic()
    with pytest.raises(LimitExceeded) as info:
        HttpUpstream(index.url, client).get_project(BOMB)
    assert time.monotonic() - start < 2.5
    _deadline_hit(info.value, index.url + "/bomb/", "page_seconds")
    assert (info.value.package, info.value.step) == ("bomb", "index")
    assert index.count("/simple/bomb/") == 1  # the deadline is not started again by a retry


def test_dripped_headers_hit_the_deadline(index: HostileIndex, client: HttpClient) -> None:
    body = json.dumps({"meta": {"api-version": "1.1"}, "name": "bomb", "files": []}).encode()

    def dripping(h: BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        head = f"Content-Type: {JSON_TYPE}\r\nX-Slow: {'a' * 100}\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        if drip(h, index.stopping, head.encode()):
            h.wfile.write(body)

    index.routes["/simple/bomb/"] = dripping
    start = time.monotonic()
    with pytest.raises(LimitExceeded) as info:
        HttpUpstream(index.url, client).get_project(BOMB)
    assert time.monotonic() - start < 2.5
    _deadline_hit(info.value, index.url + "/bomb/", "page_seconds")
    assert index.count("/simple/bomb/") == 1


def test_a_dripped_download_hits_the_deadline(
    index: HostileIndex, client: HttpClient, tmp_path: Path
) -> None:
    body = b"s" * 200
    index.project(
        "bomb",
        [{"filename": "bomb-1.0.tar.gz", "url": "/files/bomb-1.0.tar.gz", "size": len(body)}],
    )

    def dripping(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        drip(h, index.stopping, body)

    index.routes["/files/bomb-1.0.tar.gz"] = dripping
    upstream = HttpUpstream(index.url, client)
    (file,) = upstream.get_project(BOMB).files
    dest = tmp_path / "dl"
    start = time.monotonic()
    with pytest.raises(LimitExceeded) as info:
        upstream.download(file, dest)
    assert time.monotonic() - start < 2.5
    _deadline_hit(info.value, file.url, "download_seconds")
    assert (info.value.package, info.value.step) == ("bomb", "download")
    assert list(dest.iterdir()) == []
    assert index.count("/files/bomb-1.0.tar.gz") == 1


def test_the_deadline_bounds_every_retry_together(index: HostileIndex) -> None:
    def slow_failure(h: BaseHTTPRequestHandler) -> None:
        if not index.stopping.wait(0.3):
            send(h, 503, b"busy\n")

    index.routes["/simple/bomb/"] = slow_failure
    # Each try ends well within the timeouts; together they would take 3 s.
    policy = dataclasses.replace(FAST, attempts=10)
    start = time.monotonic()
    with HttpClient(policy=policy, limits=SMALL) as client, pytest.raises(LimitExceeded) as info:
        HttpUpstream(index.url, client).get_project(BOMB)
    assert time.monotonic() - start < 2.0
    _deadline_hit(info.value, index.url + "/bomb/", "page_seconds")
    assert "last failure: HTTP 503" in str(info.value)
    assert index.count("/simple/bomb/") <= 5
