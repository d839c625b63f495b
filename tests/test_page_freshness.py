"""Index pages used without a request while the index's max-age lasts, and what that may not allow:
an index pinning a page for a year, an entry edited to stay fresh, a clock set back."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Upstream
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.fake_index import FakeIndex

from rewheel import app
from rewheel.core.report import BootstrapResult
from rewheel.index.http import MAX_FRESH_SECONDS, HttpClient, PageCache, fresh_seconds
from rewheel.index.upstream import ACCEPT, HttpUpstream

FOO = canonicalize_name("foo")
PAGE = "/simple/foo/"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client() -> Iterator[HttpClient]:
    with HttpClient() as c:
        yield c


@pytest.fixture
def index(tmp_path: Path) -> Iterator[FakeIndex]:
    (tmp_path / "foo-1.0.tar.gz").write_bytes(b"one")
    with FakeIndex() as idx:
        idx.add(tmp_path / "foo-1.0.tar.gz")
        yield idx


def _gets(index: FakeIndex) -> int:
    return index.requests.count(("GET", PAGE))


def _versions(upstream: HttpUpstream) -> list[str]:
    return sorted(f.filename for f in upstream.get_project(FOO).files)


@pytest.mark.parametrize(
    ("cache_control", "age", "expected"),
    [
        ("max-age=600, public", None, 600),
        ("public,max-age=300", None, 300),
        ('max-age="300"', None, 300),
        ("max-age=600", "590", 10),
        ("max-age=600", "9999", 0),
        ("max-age=31536000", None, MAX_FRESH_SECONDS),  # capped
        ("max-age=99999999999999999999999", None, MAX_FRESH_SECONDS),
        ("no-cache, max-age=600", None, 0),
        ("max-age=600, no-store", None, 0),
        ("public", None, 0),
        (None, None, 0),
        ("max-age=-5", None, 0),
        ("max-age=1e9", None, 0),
        ("max-age=\u0663\u0660\u0660", None, 0),  # Arabic-Indic digits are not a number here
        ("max-age=600", "soon", 0),
    ],
)
def test_fresh_seconds(cache_control: str | None, age: str | None, expected: int) -> None:
    headers = {}
    if cache_control is not None:
        headers["Cache-Control"] = cache_control
    if age is not None:
        headers["Age"] = age
    assert fresh_seconds(headers) == expected


SERVED = "Tue, 01 Dec 2026 12:00:00 GMT"
SERVED_AT = 1_796_126_400.0  # the same instant, in seconds


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # A tenth of the time since the page was modified, at most MAX_FRESH_SECONDS.
        ({"Last-Modified": "Tue, 01 Dec 2026 11:10:00 GMT"}, 300),
        ({"Last-Modified": "Tue, 01 Dec 2026 11:10:00 GMT", "Age": "100"}, 200),
        ({"Last-Modified": "Tue, 01 Dec 2026 11:59:00 GMT"}, 6),
        ({"Last-Modified": "Thu, 01 Jan 1970 00:00:00 GMT"}, MAX_FRESH_SECONDS),
        ({"Last-Modified": "Tue, 01 Dec 2026 11:10:00 GMT", "Cache-Control": "public"}, 300),
        # Modified after it was served, or no date at all: never fresh.
        ({"Last-Modified": "Wed, 02 Dec 2026 12:00:00 GMT"}, 0),
        ({"Last-Modified": "yesterday"}, 0),
        ({"Last-Modified": "Tue, 01 Dec 2026 11:10:00 GMT", "Age": "soon"}, 0),
        # An explicit lifetime, or a word against caching, wins over the heuristic.
        ({"Last-Modified": "Thu, 01 Jan 1970 00:00:00 GMT", "Cache-Control": "max-age=0"}, 0),
        ({"Last-Modified": "Thu, 01 Jan 1970 00:00:00 GMT", "Cache-Control": "max-age=60"}, 60),
        ({"Last-Modified": "Thu, 01 Jan 1970 00:00:00 GMT", "Cache-Control": "no-cache"}, 0),
        ({"Last-Modified": "Thu, 01 Jan 1970 00:00:00 GMT", "Expires": SERVED}, 0),
    ],
)
def test_heuristic_freshness_from_last_modified(headers: dict[str, str], expected: int) -> None:
    assert fresh_seconds({"Date": SERVED, **headers}) == expected
    # Without a Date, the time it is stored at stands for it.
    assert fresh_seconds(headers, now=SERVED_AT) == expected


def test_a_page_with_only_a_last_modified_is_fresh_for_a_tenth_of_its_age(
    index: FakeIndex, client: HttpClient, tmp_path: Path
) -> None:
    """A static file server's page: Last-Modified and an ETag, no Cache-Control."""
    clock = Clock()
    # The index's Date header is the real time: the page was modified 1000 s before it.
    index.last_modified = email.utils.formatdate(time.time() - 1000, usegmt=True)
    cache = PageCache(tmp_path / "cache", clock=clock)
    url = index.url + "/foo/"
    assert not client.get(url, {"Accept": ACCEPT}, cache=cache).from_cache
    clock.now += 95  # within about 100 s (a tenth of 1000 s): nothing asked
    assert client.get(url, {"Accept": ACCEPT}, cache=cache).from_cache
    assert _gets(index) == 1
    clock.now += 10  # past it: asked again (a 304, which starts its freshness anew)
    assert client.get(url, {"Accept": ACCEPT}, cache=cache).from_cache
    assert _gets(index) == 2
    refreshing = PageCache(tmp_path / "cache", clock=clock, honour_freshness=False)
    assert client.get(url, {"Accept": ACCEPT}, cache=refreshing).from_cache  # --refresh asks
    assert _gets(index) == 3


def test_a_fresh_page_is_used_without_a_request_then_revalidated(
    index: FakeIndex, client: HttpClient, tmp_path: Path
) -> None:
    index.cache_control = "max-age=60"
    clock = Clock()
    cache = PageCache(tmp_path / "cache", clock=clock)
    url = index.url + "/foo/"
    first = client.get(url, {"Accept": ACCEPT}, cache=cache)
    assert first.status == 200 and not first.from_cache
    clock.now += 59
    again = client.get(url, {"Accept": ACCEPT}, cache=cache)
    assert again.from_cache and again.body == first.body and again.url == first.url
    assert _gets(index) == 1
    clock.now += 2  # 61 s old: asked again, a 304
    assert client.get(url, {"Accept": ACCEPT}, cache=cache).from_cache
    assert _gets(index) == 2
    clock.now += 30  # the 304 started its freshness anew
    assert client.get(url, {"Accept": ACCEPT}, cache=cache).from_cache
    assert _gets(index) == 2


def test_refresh_sees_a_release_of_the_freshness_window(
    index: FakeIndex, client: HttpClient, tmp_path: Path
) -> None:
    index.cache_control = "max-age=600"
    assert _versions(HttpUpstream(index.url, client, cache_dir=tmp_path / "c")) == [
        "foo-1.0.tar.gz"
    ]
    (tmp_path / "foo-2.0.tar.gz").write_bytes(b"two")
    index.add(tmp_path / "foo-2.0.tar.gz")
    # Within the window the next run still sees the page as it was, without asking...
    assert _versions(HttpUpstream(index.url, client, cache_dir=tmp_path / "c")) == [
        "foo-1.0.tar.gz"
    ]
    assert _gets(index) == 1
    # ...and --refresh asks, and sees the release.
    refreshed = HttpUpstream(index.url, client, cache_dir=tmp_path / "c", refresh=True)
    assert _versions(refreshed) == ["foo-1.0.tar.gz", "foo-2.0.tar.gz"]
    assert _gets(index) == 2


@pytest.mark.parametrize("cache_control", [None, "no-cache", "no-store", "max-age=0", "private"])
def test_without_a_max_age_every_run_asks(
    index: FakeIndex, client: HttpClient, tmp_path: Path, cache_control: str | None
) -> None:
    index.cache_control = cache_control
    cache = PageCache(tmp_path / "cache", clock=Clock())
    for _ in range(3):
        client.get(index.url + "/foo/", {"Accept": ACCEPT}, cache=cache)
    assert _gets(index) == 3


def test_an_index_cannot_pin_a_page_beyond_the_cap(
    index: FakeIndex, client: HttpClient, tmp_path: Path
) -> None:
    index.cache_control = "max-age=31536000, immutable"
    clock = Clock()
    cache = PageCache(tmp_path / "cache", clock=clock)
    url = index.url + "/foo/"
    client.get(url, {"Accept": ACCEPT}, cache=cache)
    clock.now += MAX_FRESH_SECONDS - 1
    client.get(url, {"Accept": ACCEPT}, cache=cache)
    assert _gets(index) == 1
    clock.now += 2
    client.get(url, {"Accept": ACCEPT}, cache=cache)
    assert _gets(index) == 2


def _edit_header(cache_dir: Path, **fields: str) -> None:
    (entry,) = [p for p in cache_dir.rglob("*") if p.is_file()]
    line, _, body = entry.read_bytes().partition(b"\n")
    header = json.loads(line)
    header.update(fields)
    entry.write_bytes(json.dumps(header).encode() + b"\n" + body)


@pytest.mark.parametrize(
    "fields",
    [
        {"max_age": "1e12"},  # a lifetime edited in: the cap holds when read too
        {"max_age": "inf"},
        {"time": "1e15"},  # fetched "in the future": a clock set back, or an edit
        {"time": "nan"},
        {"time": "yesterday"},
    ],
)
def test_an_edited_entry_does_not_stay_fresh(
    index: FakeIndex, client: HttpClient, tmp_path: Path, fields: dict[str, str]
) -> None:
    index.cache_control = "max-age=60"
    clock = Clock()
    cache = PageCache(tmp_path / "cache", clock=clock)
    url = index.url + "/foo/"
    client.get(url, {"Accept": ACCEPT}, cache=cache)
    _edit_header(tmp_path / "cache", **fields)
    clock.now += MAX_FRESH_SECONDS + 1
    client.get(url, {"Accept": ACCEPT}, cache=cache)
    assert _gets(index) == 2


def test_a_fresh_entry_with_another_body_is_not_served(
    index: FakeIndex, client: HttpClient, tmp_path: Path
) -> None:
    index.cache_control = "max-age=600"
    cache = PageCache(tmp_path / "cache", clock=Clock())
    url = index.url + "/foo/"
    client.get(url, {"Accept": ACCEPT}, cache=cache)
    (entry,) = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    entry.write_bytes(entry.read_bytes().replace(b"foo-1.0", b"foo-6.6"))
    response = client.get(url, {"Accept": ACCEPT}, cache=cache)
    assert not response.from_cache and b"foo-6.6" not in response.body
    assert _gets(index) == 2


def test_a_no_op_run_asks_nothing_within_max_age_and_refresh_asks(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.index.cache_control = "max-age=600"
    upstream.sdist("app", "1.0")
    repo = tmp_path / "repo"

    def run(*, refresh: bool = False) -> BootstrapResult:
        options = app.BootstrapOptions(
            requirements=[Requirement("app")],
            repo=repo,
            index_url=upstream.url,
            work_dir=tmp_path / "work",
            refresh=refresh,
        )
        return app.bootstrap(options, machine=app.Machine())

    assert run().built == 1
    pages = [p for _, p in upstream.index.requests if p.startswith("/simple/")]
    assert (again := run()).reused == 1 and again.built == 0
    assert [p for _, p in upstream.index.requests if p.startswith("/simple/")] == pages
    assert run(refresh=True).reused == 1
    assert [p for _, p in upstream.index.requests if p.startswith("/simple/")] == [
        *pages,
        "/simple/app/",
    ]
