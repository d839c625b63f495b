from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from support.fake_index import FakeIndex

from rewheel.core.errors import ConfigError, IntegrityError, UpstreamError
from rewheel.core.types import IndexFile
from rewheel.index.http import HttpClient, PageCache, RetryPolicy, backoff_delay, parse_retry_after
from rewheel.index.upstream import ACCEPT, HttpUpstream

FOO = canonicalize_name("foo-bar")
FAST = RetryPolicy(attempts=4, backoff_base=0.001, backoff_max=0.005, retry_after_max=0.05)


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def client(sleep: RecordingSleep) -> Iterator[HttpClient]:
    with HttpClient(policy=FAST, sleep=sleep) as c:
        yield c


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    made = {}
    for filename, content in [
        ("foo_bar-1.0.tar.gz", b"sdist one" * 1000),
        ("foo_bar-2.0.tar.gz", b"sdist two" * 1000),
        ("foo_bar-2.0-py3-none-any.whl", b"a wheel"),
    ]:
        (src / filename).write_bytes(content)
        made[filename] = src / filename
    return made


@pytest.fixture
def index(files: dict[str, Path]) -> Iterator[FakeIndex]:
    with FakeIndex() as idx:
        idx.add(files["foo_bar-1.0.tar.gz"], yanked="bad", requires_python=">=3.8,<4")
        idx.add(files["foo_bar-2.0.tar.gz"], metadata=b"Metadata-Version: 2.2\nName: foo-bar\n")
        idx.add(files["foo_bar-2.0-py3-none-any.whl"])
        yield idx


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _gets(index: FakeIndex, path: str) -> int:
    return index.requests.count(("GET", path))


def test_get_project_json(index: FakeIndex, client: HttpClient, files: dict[str, Path]) -> None:
    upstream = HttpUpstream(index.url + "/", client)  # trailing slash is fine
    page = upstream.get_project(FOO)
    by_name = {f.filename: f for f in page.files}
    assert sorted(by_name) == sorted(files)
    old = by_name["foo_bar-1.0.tar.gz"]
    base = index.url.removesuffix("/simple")
    assert old.url == f"{base}/files/foo_bar-1.0.tar.gz"
    assert old.sha256 == _sha(files["foo_bar-1.0.tar.gz"])
    assert (old.yanked, old.yanked_reason, old.requires_python) == (True, "bad", ">=3.8,<4")
    assert old.size == 9000
    new = by_name["foo_bar-2.0.tar.gz"]
    assert new.has_metadata and new.metadata_sha256 is not None
    assert not new.yanked


@pytest.mark.parametrize(("json", "html"), [(False, True), (True, False)])
def test_get_project_single_format_index(
    json: bool, html: bool, client: HttpClient, files: dict[str, Path]
) -> None:
    with FakeIndex() as both, FakeIndex(json=json, html=html) as single:
        for idx in (both, single):
            idx.add(files["foo_bar-1.0.tar.gz"], yanked=True, requires_python=">=3.8")
            idx.add(files["foo_bar-2.0.tar.gz"], metadata=b"Name: foo-bar\n")
        reference = HttpUpstream(both.url, client).get_project(FOO)
        page = HttpUpstream(single.url, client).get_project(FOO)

    def comparable(f: IndexFile) -> IndexFile:
        # HTML has no size, and the two servers differ in port.
        return dataclasses.replace(f, size=None, url=f.url.rsplit("/", 1)[1])

    assert [comparable(f) for f in page.files] == [comparable(f) for f in reference.files]
    assert page.files[0].yanked and page.files[0].requires_python == ">=3.8"


def test_unknown_project_has_no_files(index: FakeIndex, client: HttpClient) -> None:
    page = HttpUpstream(index.url, client).get_project(canonicalize_name("nope"))
    assert page.files == ()
    # How the index said so, with the address asked: what a resolution error shows the user.
    assert page.missing == f"HTTP 404 at {index.url}/nope/"
    assert _gets(index, "/simple/nope/") == 1  # 404 is not retried
    assert HttpUpstream(index.url, client).get_project(FOO).missing is None


def test_a_project_gone_is_missing_too(index: FakeIndex, client: HttpClient) -> None:
    index.fail("/simple/foo-bar/", status=410, times=2)  # page, then digest
    upstream = HttpUpstream(index.url, client)
    page = upstream.get_project(FOO)
    assert page.files == () and page.missing == f"HTTP 410 at {index.url}/foo-bar/"
    assert upstream.page_digest(FOO) == "absent"


def test_get_project_memoized_across_threads(index: FakeIndex, client: HttpClient) -> None:
    upstream = HttpUpstream(index.url, client)
    index.stall("/simple/foo-bar/", 0.2)  # keeps the first request open while the others arrive
    barrier = threading.Barrier(8)
    pages = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        page = upstream.get_project(FOO)
        with lock:
            pages.append(page)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(pages) == 8 and all(p is pages[0] for p in pages)
    assert _gets(index, "/simple/foo-bar/") == 1
    assert upstream.request_counts["project"] == 1
    upstream.get_project(FOO)
    assert _gets(index, "/simple/foo-bar/") == 1


def test_failure_is_not_memoized(index: FakeIndex, client: HttpClient) -> None:
    upstream = HttpUpstream(index.url, client)
    index.fail("/simple/foo-bar/", status=503, times=FAST.attempts)
    with pytest.raises(UpstreamError) as info:
        upstream.get_project(FOO)
    assert (info.value.package, info.value.step) == (FOO, "index")
    assert "HTTP 503" in str(info.value)
    assert _gets(index, "/simple/foo-bar/") == FAST.attempts
    assert upstream.get_project(FOO).files  # the next call tries again, and succeeds


def test_retries_on_503(index: FakeIndex, client: HttpClient, sleep: RecordingSleep) -> None:
    index.fail("/simple/foo-bar/", status=503, times=2)
    assert HttpUpstream(index.url, client).get_project(FOO).files
    assert _gets(index, "/simple/foo-bar/") == 3
    assert len(sleep.delays) == 2
    assert all(0 < d <= FAST.backoff_max for d in sleep.delays)


def test_429_honors_retry_after_up_to_cap(
    index: FakeIndex, client: HttpClient, sleep: RecordingSleep
) -> None:
    index.fail("/simple/foo-bar/", status=429, retry_after="0")
    index.fail("/simple/foo-bar/", status=429, retry_after="3600")
    assert HttpUpstream(index.url, client).get_project(FOO).files
    assert sleep.delays == [0.0, FAST.retry_after_max]


def test_other_client_errors_are_not_retried(index: FakeIndex, client: HttpClient) -> None:
    index.fail("/simple/foo-bar/", status=403)
    with pytest.raises(UpstreamError, match="HTTP 403"):
        HttpUpstream(index.url, client).get_project(FOO)
    assert _gets(index, "/simple/foo-bar/") == 1


def test_truncated_page_is_retried(index: FakeIndex, client: HttpClient) -> None:
    index.truncate("/simple/foo-bar/")
    assert len(HttpUpstream(index.url, client).get_project(FOO).files) == 3
    assert _gets(index, "/simple/foo-bar/") == 2


def test_download_and_truncation_retry(
    index: FakeIndex, client: HttpClient, files: dict[str, Path], tmp_path: Path
) -> None:
    upstream = HttpUpstream(index.url, client)
    file = next(f for f in upstream.get_project(FOO).files if f.filename == "foo_bar-2.0.tar.gz")
    index.truncate("/files/foo_bar-2.0.tar.gz")
    index.fail("/files/foo_bar-2.0.tar.gz", status=502)
    dest = tmp_path / "dl"
    path = upstream.download(file, dest)
    assert path == dest / file.filename
    assert path.read_bytes() == files[file.filename].read_bytes()
    assert _gets(index, "/files/foo_bar-2.0.tar.gz") == 3
    assert sorted(p.name for p in dest.iterdir()) == [file.filename]  # no temp files left


def test_download_stall_times_out_and_retries(
    index: FakeIndex, files: dict[str, Path], tmp_path: Path
) -> None:
    policy = dataclasses.replace(FAST, read_timeout=0.2)
    with HttpClient(policy=policy) as client:
        upstream = HttpUpstream(index.url, client)
        file = next(f for f in upstream.get_project(FOO).files if f.filename.endswith(".whl"))
        index.stall("/files/", 2.0)
        path = upstream.download(file, tmp_path)
    assert path.read_bytes() == b"a wheel"
    assert _gets(index, f"/files/{file.filename}") == 2


def test_missing_file_is_not_retried(index: FakeIndex, client: HttpClient, tmp_path: Path) -> None:
    base = index.url.removesuffix("/simple")
    file = IndexFile("gone-1.0.tar.gz", f"{base}/files/gone-1.0.tar.gz", sha256="0" * 64)
    with pytest.raises(UpstreamError, match="HTTP 404") as info:
        HttpUpstream(index.url, client).download(file, tmp_path / "dl")
    assert (info.value.package, info.value.step) == ("gone", "download")
    assert _gets(index, "/files/gone-1.0.tar.gz") == 1
    assert list((tmp_path / "dl").iterdir()) == []


def test_hash_mismatch_retries_once_then_fails_leaving_nothing(
    client: HttpClient, files: dict[str, Path], tmp_path: Path
) -> None:
    with FakeIndex() as index:
        index.add(files["foo_bar-1.0.tar.gz"], wrong_hash=True)
        upstream = HttpUpstream(index.url, client)
        (file,) = upstream.get_project(FOO).files
        dest = tmp_path / "dl"
        with pytest.raises(IntegrityError) as info:
            upstream.download(file, dest)
        assert (info.value.package, info.value.step) == ("foo-bar", "download")
        assert _gets(index, "/files/foo_bar-1.0.tar.gz") == 2
    assert list(dest.iterdir()) == []


def test_good_local_file_is_reused_without_request(
    index: FakeIndex, client: HttpClient, tmp_path: Path
) -> None:
    file = next(
        f
        for f in HttpUpstream(index.url, client).get_project(FOO).files
        if f.filename == "foo_bar-1.0.tar.gz"
    )
    first = HttpUpstream(index.url, client).download(file, tmp_path)
    second_run = HttpUpstream(index.url, client)
    assert second_run.download(file, tmp_path) == first
    assert second_run.request_counts["download"] == 0
    assert _gets(index, "/files/foo_bar-1.0.tar.gz") == 1


def test_corrupted_local_file_is_replaced(
    index: FakeIndex, client: HttpClient, files: dict[str, Path], tmp_path: Path
) -> None:
    upstream = HttpUpstream(index.url, client)
    file = next(f for f in upstream.get_project(FOO).files if f.filename == "foo_bar-1.0.tar.gz")
    (tmp_path / file.filename).write_bytes(b"corrupted")
    path = upstream.download(file, tmp_path)
    assert path.read_bytes() == files[file.filename].read_bytes()
    assert _gets(index, "/files/foo_bar-1.0.tar.gz") == 1


def test_concurrent_downloads_of_one_file_fetch_it_once(
    index: FakeIndex, client: HttpClient, tmp_path: Path
) -> None:
    upstream = HttpUpstream(index.url, client)
    file = next(f for f in upstream.get_project(FOO).files if f.filename == "foo_bar-1.0.tar.gz")
    index.stall("/files/", 0.1)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        upstream.download(file, tmp_path)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _gets(index, "/files/foo_bar-1.0.tar.gz") == 1
    assert _sha(tmp_path / file.filename) == file.sha256


def test_strict_mode_refuses_unhashed_files(
    client: HttpClient, files: dict[str, Path], tmp_path: Path
) -> None:
    with FakeIndex() as index:
        index.add(files["foo_bar-1.0.tar.gz"], omit_hash=True)
        strict = HttpUpstream(index.url, client, strict=True)
        (file,) = strict.get_project(FOO).files
        assert file.sha256 is None
        with pytest.raises(IntegrityError, match="strict"):
            strict.download(file, tmp_path)
        assert _gets(index, "/files/foo_bar-1.0.tar.gz") == 0

        lenient = HttpUpstream(index.url, client)
        path = lenient.download(file, tmp_path)
        assert path.read_bytes() == files[file.filename].read_bytes()
        lenient.download(file, tmp_path)  # this run fetched it: reused
        assert _gets(index, "/files/foo_bar-1.0.tar.gz") == 1
        HttpUpstream(index.url, client).download(file, tmp_path)  # a new run cannot vouch for it
        assert _gets(index, "/files/foo_bar-1.0.tar.gz") == 2


def test_get_metadata(index: FakeIndex, client: HttpClient) -> None:
    upstream = HttpUpstream(index.url, client)
    by_name = {f.filename: f for f in upstream.get_project(FOO).files}
    assert upstream.get_metadata(by_name["foo_bar-1.0.tar.gz"]) is None  # none announced
    meta_file = by_name["foo_bar-2.0.tar.gz"]
    assert upstream.get_metadata(meta_file) == b"Metadata-Version: 2.2\nName: foo-bar\n"
    assert upstream.get_metadata(meta_file) is upstream.get_metadata(meta_file)
    assert _gets(index, "/files/foo_bar-2.0.tar.gz.metadata") == 1
    assert not any(path.endswith("1.0.tar.gz.metadata") for _, path in index.requests)


def test_get_metadata_hash_mismatch(index: FakeIndex, client: HttpClient) -> None:
    upstream = HttpUpstream(index.url, client)
    good = next(f for f in upstream.get_project(FOO).files if f.has_metadata)
    bad = dataclasses.replace(good, metadata_sha256="0" * 64)
    with pytest.raises(IntegrityError) as info:
        upstream.get_metadata(bad)
    assert (info.value.package, info.value.step) == ("foo-bar", "metadata")


def test_page_cache_revalidates_with_304(
    index: FakeIndex, client: HttpClient, files: dict[str, Path], tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    first = HttpUpstream(index.url, client, cache_dir=cache_dir).get_project(FOO)
    url = f"{index.url}/foo-bar/"
    cached = client.get(url, {"Accept": ACCEPT}, cache=PageCache(cache_dir))
    assert cached.status == 200 and cached.from_cache
    assert cached.url == url
    second = HttpUpstream(index.url, client, cache_dir=cache_dir).get_project(FOO)
    assert second == first
    assert _gets(index, "/simple/foo-bar/") == 3

    # The page changes: its ETag does too, so the next run gets the new page.
    extra = files["foo_bar-1.0.tar.gz"].with_name("foo_bar-3.0.tar.gz")
    extra.write_bytes(b"three")
    index.add(extra)
    third = HttpUpstream(index.url, client, cache_dir=cache_dir).get_project(FOO)
    assert len(third.files) == len(first.files) + 1
    assert not client.get(url, {"Accept": "text/html"}, cache=PageCache(cache_dir)).from_cache


def test_damaged_cache_entry_is_ignored(
    index: FakeIndex, client: HttpClient, tmp_path: Path
) -> None:
    cache = PageCache(tmp_path / "cache")
    url = f"{index.url}/foo-bar/"
    client.get(url, {"Accept": ACCEPT}, cache=cache)
    (entry,) = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    entry.write_bytes(entry.read_bytes() + b"garbage")
    response = client.get(url, {"Accept": ACCEPT}, cache=cache)
    assert response.status == 200 and not response.from_cache


def test_redirect_to_normalized_name(index: FakeIndex, client: HttpClient) -> None:
    response = client.get(f"{index.url}/Foo_Bar", {"Accept": ACCEPT})
    assert response.status == 200
    assert response.url == f"{index.url}/foo-bar/"
    assert response.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"


def test_not_acceptable_format(client: HttpClient, files: dict[str, Path]) -> None:
    with FakeIndex(html=False) as index:
        index.add(files["foo_bar-1.0.tar.gz"])
        assert client.get(f"{index.url}/foo-bar/", {"Accept": "text/html"}).status == 406


def test_connection_refused_is_retried_then_raised(sleep: RecordingSleep) -> None:
    with FakeIndex() as index:
        url = index.url
    with HttpClient(policy=FAST, sleep=sleep) as client, pytest.raises(UpstreamError) as info:
        HttpUpstream(url, client).get_project(FOO)
    assert info.value.package == FOO
    assert len(sleep.delays) == FAST.attempts - 1


def test_tls_failure_is_not_retried(
    index: FakeIndex, client: HttpClient, sleep: RecordingSleep
) -> None:
    # The fake speaks plain HTTP, so a TLS handshake with it fails.
    url = index.url.replace("http://", "https://") + "/foo-bar/"
    with pytest.raises(UpstreamError):
        client.get(url)
    assert sleep.delays == []


def test_bad_ssl_cert_file_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="SSL_CERT_FILE"):
        HttpClient()


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("soon") is None
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert parse_retry_after(date, now=1445412480.0) == 10.0
    assert parse_retry_after(date, now=1445412500.0) == 0.0


def test_backoff_is_bounded() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=4.0, retry_after_max=30.0)
    assert all(0.5 <= backoff_delay(policy, 0, None) <= 1.0 for _ in range(20))
    assert all(backoff_delay(policy, 10, None) <= 4.0 for _ in range(20))
    assert backoff_delay(policy, 0, 100.0) == 30.0
