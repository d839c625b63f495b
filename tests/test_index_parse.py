from __future__ import annotations

import json

import pytest
from packaging.utils import NormalizedName, canonicalize_name
from support.damage import damaged

from rewheel.core.errors import UpstreamError
from rewheel.core.types import IndexFile
from rewheel.index.index_parse import (
    parse_html_page,
    parse_json_page,
    parse_page,
    parse_root_page,
)

NAME: NormalizedName = canonicalize_name("foo-bar")
PAGE = "https://index.example/simple/foo-bar/"
JSON_V1 = "application/vnd.pypi.simple.v1+json"
SHA_A = "a" * 64
SHA_B = "B" * 64


def _json(files: list[dict[str, object]], api: str = "1.1") -> bytes:
    return json.dumps({"meta": {"api-version": api}, "name": NAME, "files": files}).encode()


def test_json_full_entry_and_relative_url() -> None:
    data = _json(
        [
            {
                "filename": "foo_bar-1.0.tar.gz",
                "url": "../../files/foo_bar-1.0.tar.gz",
                "hashes": {"sha256": SHA_B, "md5": "x"},
                "requires-python": ">=3.8",
                "yanked": "broken build",
                "core-metadata": {"sha256": SHA_A},
                "size": 123,
            },
            {"filename": "foo_bar-0.9.zip", "url": "https://cdn.example/f/foo_bar-0.9.zip"},
        ]
    )
    page = parse_json_page(data, PAGE, NAME)
    assert page.name == NAME
    assert page.files == (
        IndexFile(
            filename="foo_bar-1.0.tar.gz",
            url="https://index.example/files/foo_bar-1.0.tar.gz",
            sha256="b" * 64,  # normalized to lower case
            requires_python=">=3.8",
            yanked=True,
            yanked_reason="broken build",
            has_metadata=True,
            metadata_sha256=SHA_A,
            size=123,
        ),
        IndexFile(
            filename="foo_bar-0.9.zip", url="https://cdn.example/f/foo_bar-0.9.zip", sha256=None
        ),
    )


@pytest.mark.parametrize(
    ("value", "yanked", "reason"),
    [(True, True, None), (False, False, None), ("why", True, "why"), ("", False, None)],
)
def test_json_yanked_forms(value: object, yanked: bool, reason: str | None) -> None:
    page = parse_json_page(
        _json([{"filename": "f-1.tar.gz", "url": "f", "yanked": value}]), PAGE, NAME
    )
    assert (page.files[0].yanked, page.files[0].yanked_reason) == (yanked, reason)


@pytest.mark.parametrize(
    ("entry", "has", "sha"),
    [
        ({"core-metadata": True}, True, None),
        ({"core-metadata": False}, False, None),
        ({"core-metadata": {"sha256": SHA_A}}, True, SHA_A),
        ({"core-metadata": {"md5": "x"}}, True, None),
        ({"dist-info-metadata": {"sha256": SHA_A}}, True, SHA_A),  # pre-PEP 714 key
        ({"dist-info-metadata": True, "core-metadata": False}, False, None),  # new key wins
        ({}, False, None),
    ],
)
def test_json_core_metadata(entry: dict[str, object], has: bool, sha: str | None) -> None:
    page = parse_json_page(_json([{"filename": "f-1.tar.gz", "url": "f", **entry}]), PAGE, NAME)
    assert (page.files[0].has_metadata, page.files[0].metadata_sha256) == (has, sha)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        json.dumps({"files": []}).encode(),  # no meta
        _json([], api="2.0"),
        json.dumps({"meta": {"api-version": "1.0"}}).encode(),  # no files
        _json([{"filename": "f-1.tar.gz"}]),  # no url
        _json([{"filename": "f-1.tar.gz", "url": "f", "hashes": {"sha256": "nothex"}}]),
        _json([{"filename": "f-1.tar.gz", "url": "f", "yanked": 1}]),
        _json([{"filename": "f-1.tar.gz", "url": "f", "size": -1}]),
        _json([{"filename": "f-1.tar.gz", "url": "f", "core-metadata": "yes"}]),
        _json([{"filename": "../evil.tar.gz", "url": "f"}]),
    ],
)
def test_json_malformed_raises_upstream_error(data: bytes) -> None:
    with pytest.raises(UpstreamError) as info:
        parse_json_page(data, PAGE, NAME)
    assert info.value.package == NAME
    assert info.value.step == "index"


HTML = b"""<!DOCTYPE html>
<html><head><meta name="pypi:repository-version" content="1.0"></head><body>
<a href="../../files/foo_bar-1.0.tar.gz#sha256=%s" data-requires-python="&gt;=3.8,&lt;4"
   data-core-metadata="sha256=%s">foo_bar-1.0.tar.gz</a>
<a href="/files/foo_bar-0.9.tar.gz" data-yanked>foo_bar-0.9.tar.gz</a>
<a href="https://cdn.example/foo%%20bar-0.8.zip#md5=abc" data-yanked="bad &amp; old"
   data-dist-info-metadata="true">x</a>
<a name="no-href">ignored</a>
</body></html>
""" % (SHA_A.encode(), SHA_A.encode())


def test_html_page() -> None:
    files = parse_html_page(HTML, PAGE, NAME).files
    assert files == (
        IndexFile(
            filename="foo_bar-1.0.tar.gz",
            url="https://index.example/files/foo_bar-1.0.tar.gz",
            sha256=SHA_A,
            requires_python=">=3.8,<4",
            has_metadata=True,
            metadata_sha256=SHA_A,
        ),
        IndexFile(
            filename="foo_bar-0.9.tar.gz",
            url="https://index.example/files/foo_bar-0.9.tar.gz",
            sha256=None,
            yanked=True,
        ),
        IndexFile(
            filename="foo bar-0.8.zip",  # from the URL, unquoted
            url="https://cdn.example/foo%20bar-0.8.zip",  # fragment stripped
            sha256=None,
            yanked=True,
            yanked_reason="bad & old",
            has_metadata=True,
        ),
    )


def test_html_base_href() -> None:
    data = b'<html><head><base href="https://mirror.example/pkgs/"></head>' + (
        b'<a href="f-1.tar.gz">f-1.tar.gz</a></html>'
    )
    assert (
        parse_html_page(data, PAGE, NAME).files[0].url == "https://mirror.example/pkgs/f-1.tar.gz"
    )
    relative = b'<base href="../other/"><a href="f-1.tar.gz">f</a>'
    url = parse_html_page(relative, PAGE, NAME).files[0].url
    assert url == "https://index.example/simple/other/f-1.tar.gz"


def test_html_core_metadata_false_and_absent() -> None:
    data = b'<a href="a-1.tar.gz" data-core-metadata="false">a</a><a href="b-1.tar.gz">b</a>'
    assert [f.has_metadata for f in parse_html_page(data, PAGE, NAME).files] == [False, False]


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe<a href='x'>",  # not UTF-8
        b'<meta name="pypi:repository-version" content="2.0"><a href="f-1.tar.gz">f</a>',
        b'<a href="f-1.tar.gz#sha256=123">f</a>',
        b'<a href="f-1.tar.gz" data-core-metadata="sha256=zz">f</a>',
        b'<a href="dir/">dir</a>',  # no file name
        b'<a href="..%2Fevil.tar.gz">f</a>',
    ],
)
def test_html_malformed_raises_upstream_error(data: bytes) -> None:
    with pytest.raises(UpstreamError) as info:
        parse_html_page(data, PAGE, NAME)
    assert (info.value.package, info.value.step) == (NAME, "index")


@pytest.mark.parametrize(
    ("content_type", "said"),
    [(None, "no Content-Type"), ("application/vnd.pypi.simple.v1+json", "Content-Type 'app")],
)
def test_an_unreadable_page_says_what_came(content_type: str | None, said: str) -> None:
    """A body of random bytes (what a misdirected connection brought in a flaky test) is named
    by its size, its Content-Type and its first bytes, not only by the parser's complaint."""
    data = b"\xa7*\xaa \xb4J\xa5\x1a" * 100
    with pytest.raises(UpstreamError) as info:
        parse_page(data, content_type, PAGE, NAME)
    assert f"received 800 bytes with {said}" in str(info.value)
    assert "starting b'\\xa7*\\xaa \\xb4J" in str(info.value)
    assert (info.value.package, info.value.step) == (NAME, "index")


def test_empty_pages() -> None:
    assert parse_html_page(b"<html><body></body></html>", PAGE, NAME).files == ()
    assert parse_json_page(_json([]), PAGE, NAME).files == ()


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/vnd.pypi.simple.v1+json", _json([{"filename": "f-1.tar.gz", "url": "f"}])),
        ("application/vnd.pypi.simple.v1+html", b'<a href="f-1.tar.gz">f</a>'),
        ("text/html; charset=utf-8", b'<a href="f-1.tar.gz">f</a>'),
        (None, b'<a href="f-1.tar.gz">f</a>'),
    ],
)
def test_parse_page_dispatches_on_content_type(content_type: str | None, data: bytes) -> None:
    page = parse_page(data, content_type, PAGE, NAME)
    assert [f.filename for f in page.files] == ["f-1.tar.gz"]


def test_parse_page_refuses_unknown_content_type() -> None:
    with pytest.raises(UpstreamError, match="Content-Type"):
        parse_page(b"{}", "application/json", PAGE, NAME)


@pytest.mark.parametrize("value", [1, ["x"], {"url": "x"}, True])
def test_json_provenance_that_is_not_a_string_is_refused(value: object) -> None:
    data = _json([{"filename": "foo_bar-1.0.tar.gz", "url": "f", "provenance": value}])
    with pytest.raises(UpstreamError, match="invalid provenance"):
        parse_json_page(data, PAGE, NAME)


def test_json_provenance_null_means_none() -> None:
    data = _json([{"filename": "foo_bar-1.0.tar.gz", "url": "f", "provenance": None}])
    (file,) = parse_json_page(data, PAGE, NAME).files
    assert file.provenance is None


def test_root_pages_give_normalized_project_names() -> None:
    json_root = json.dumps(
        {"meta": {"api-version": "1.3"}, "projects": [{"name": "Foo_Bar"}, {"name": "a"}]}
    ).encode()
    html_root = b'<a href="foo-bar/">Foo_Bar</a><a href="/simple/a/">a</a>'
    root = "https://index.example/simple/"
    assert parse_root_page(json_root, "application/vnd.pypi.simple.v1+json", root) == [
        "a",
        "foo-bar",
    ]
    assert parse_root_page(html_root, "text/html", root) == ["a", "foo-bar"]
    with pytest.raises(UpstreamError):
        parse_root_page(b'{"meta": {"api-version": "2.0"}, "projects": []}', JSON_V1, root)
    with pytest.raises(UpstreamError):
        parse_root_page(b"{}", "application/octet-stream", root)


def test_json_nested_too_deep_is_an_unusable_page_not_a_crash() -> None:
    with pytest.raises(UpstreamError, match="invalid JSON"):
        parse_json_page(b"[" * 100_000, PAGE, NAME)
    with pytest.raises(UpstreamError, match="invalid JSON"):
        parse_root_page(b"[" * 100_000, JSON_V1, PAGE)


def test_damaged_pages_raise_only_upstream_errors() -> None:
    """Pages cut short, with bytes flipped or inserted, or garbage: parsed, or refused with an
    UpstreamError naming the page, whatever the bytes."""
    name = canonicalize_name("demo")
    url = "https://example.org/simple/demo/"
    sha = "a" * 64
    pages = {
        "application/vnd.pypi.simple.v1+json": json.dumps(
            {
                "meta": {"api-version": "1.1"},
                "name": "demo",
                "files": [
                    {
                        "filename": "demo-1.0.tar.gz",
                        "url": "../../files/demo-1.0.tar.gz",
                        "hashes": {"sha256": sha},
                        "core-metadata": {"sha256": sha},
                        "requires-python": ">=3.8",
                        "yanked": "broken",
                        "size": 10,
                        "provenance": "demo-1.0.tar.gz.provenance",
                    }
                ],
            }
        ).encode(),
        "text/html": (
            '<html><head><meta name="pypi:repository-version" content="1.1">'
            '<base href="../files/"></head><body>'
            f'<a href="demo-1.0.tar.gz#sha256={sha}" data-requires-python="&gt;=3.8" '
            f'data-core-metadata="sha256={sha}" data-yanked="">demo-1.0.tar.gz</a>'
            "</body></html>"
        ).encode(),
    }
    escaped = []
    for content_type, page in pages.items():
        for i, data in enumerate(damaged(page, seed=7, count=300)):
            for root in (False, True):
                try:
                    if root:
                        parse_root_page(data, content_type, url)
                    else:
                        parse_page(data, content_type, url, name)
                except UpstreamError:
                    pass
                except Exception as exc:  # what the test looks for
                    escaped.append(f"{content_type} variant {i}: {type(exc).__name__}: {exc}")
    assert escaped == []
