from __future__ import annotations

import html
import json
import random
from html.parser import HTMLParser

import pytest
from packaging.utils import canonicalize_name

from rewheel.index.index_pages import (
    API_VERSION,
    PageFile,
    RootIndex,
    project_url,
    project_versions,
    provenance_url,
    render_project_html,
    render_project_json,
    render_root_html,
    render_root_json,
    wheel_url,
)
from rewheel.index.index_parse import parse_html_page, parse_json_page

HOSTILE = "ev<il>\"'&amp;"


class _Anchors(HTMLParser):
    """Collects every element; anchors as (attrs, text) with entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.tags: list[str] = []
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.anchors.append((dict(attrs), ""))
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "a":
            attrs, text = self.anchors[-1]
            self.anchors[-1] = (attrs, text + data)
        elif self._in == "title":
            self.title += data


def _parse(text: str) -> _Anchors:
    parser = _Anchors()
    parser.feed(text)
    parser.close()
    return parser


def _file(filename: str, **kw: object) -> PageFile:
    args: dict[str, object] = {
        "filename": filename,
        "url": wheel_url(filename),
        "sha256": "ab" * 32,
        "size": 123,
    }
    args.update(kw)
    return PageFile(**args)  # type: ignore[arg-type]


def test_root_html_lists_projects_with_escaped_names_and_links() -> None:
    page = render_root_html(["Zeta", "alpha", HOSTILE])
    parsed = _parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta name="pypi:repository-version" content="1.3">' in page
    assert [text for _, text in parsed.anchors] == ["alpha", HOSTILE, "Zeta"]
    assert parsed.anchors[0][0]["href"] == "alpha/"
    # The hostile name is inert: no element came from it, its link is percent-encoded.
    assert parsed.tags.count("il") == 0
    hostile_href = parsed.anchors[1][0]["href"]
    assert hostile_href == project_url(HOSTILE)
    assert hostile_href is not None and not set("<>\"'&") & set(hostile_href)


def test_root_json() -> None:
    data = json.loads(render_root_json(["b", "a", "a"]))
    assert data == {"meta": {"api-version": "1.3"}, "projects": [{"name": "a"}, {"name": "b"}]}


def test_project_html_attributes() -> None:
    files = [
        _file(
            "demo-1.0-py3-none-any.whl",
            requires_python=">=3.8,<4",
            metadata_sha256="cd" * 32,
        ),
        _file("demo-0.9-py3-none-any.whl"),
    ]
    parsed = _parse(render_project_html("demo", files))
    assert [text for _, text in parsed.anchors] == [
        "demo-0.9-py3-none-any.whl",
        "demo-1.0-py3-none-any.whl",
    ]
    old, new = (attrs for attrs, _ in parsed.anchors)
    assert old == {"href": "../../wheels/demo-0.9-py3-none-any.whl#sha256=" + "ab" * 32}
    assert new["data-requires-python"] == ">=3.8,<4"
    assert new["data-dist-info-metadata"] == "sha256=" + "cd" * 32
    assert new["data-core-metadata"] == "sha256=" + "cd" * 32
    assert parsed.title == "Links for demo"


def test_project_html_escapes_hostile_filename_and_requires_python() -> None:
    filename = "x<script>alert('&')</script>\"-1.0-py3-none-any.whl"
    page = render_project_html(HOSTILE, [_file(filename, requires_python='"><b x="')])
    assert "<script>" not in page and "<b " not in page
    parsed = _parse(page)
    assert "script" not in parsed.tags and "b" not in parsed.tags
    ((attrs, text),) = parsed.anchors
    assert text == filename
    assert attrs["data-requires-python"] == '"><b x="'
    href = attrs["href"]
    assert href is not None
    assert href == wheel_url(filename) + "#sha256=" + "ab" * 32
    assert not set("<>\"' ") & set(href)
    assert parsed.title == f"Links for {HOSTILE}"


def test_project_json_schema() -> None:
    files = [
        _file("demo-1.10-py3-none-any.whl", requires_python=">=3.8", metadata_sha256="cd" * 32),
        _file("demo-1.9-py3-none-any.whl", size=7),
        _file("demo-1.9.tar.gz", url="../../sdists/demo-1.9.tar.gz"),
    ]
    data = json.loads(render_project_json("Demo_Pkg", files))
    assert data["meta"] == {"api-version": "1.3"}
    assert data["name"] == "demo-pkg"
    assert data["versions"] == ["1.9", "1.10"]
    by_name = {f["filename"]: f for f in data["files"]}
    new = by_name["demo-1.10-py3-none-any.whl"]
    assert new == {
        "filename": "demo-1.10-py3-none-any.whl",
        "url": "../../wheels/demo-1.10-py3-none-any.whl",
        "hashes": {"sha256": "ab" * 32},
        "size": 123,
        "yanked": False,
        "requires-python": ">=3.8",
        "core-metadata": {"sha256": "cd" * 32},
        "dist-info-metadata": {"sha256": "cd" * 32},
    }
    old = by_name["demo-1.9-py3-none-any.whl"]
    assert old["size"] == 7
    assert old["core-metadata"] is False and old["dist-info-metadata"] is False
    assert "requires-python" not in old


def test_project_json_keeps_hostile_values_verbatim() -> None:
    filename = "a\"<b>'&-1.0-py3-none-any.whl"
    data = json.loads(render_project_json(HOSTILE, [_file(filename, requires_python="<&>")]))
    (entry,) = data["files"]
    assert entry["filename"] == filename
    assert entry["requires-python"] == "<&>"
    assert entry["url"] == "../../wheels/a%22%3Cb%3E%27%26-1.0-py3-none-any.whl"


def test_versions_use_explicit_version_then_file_name() -> None:
    files = [
        _file("whatever.whl", version="2.0"),
        _file("demo-1.0rc1-py3-none-any.whl"),
        _file("not a dist file"),
        _file("demo-1.0-py3-none-any.whl"),
    ]
    assert project_versions(files) == ["1.0rc1", "1.0", "2.0"]


def test_output_is_deterministic() -> None:
    files = [_file(f"demo-1.{i}-py3-none-any.whl") for i in range(20)]
    shuffled = files[:]
    random.Random(4).shuffle(shuffled)
    assert render_project_html("demo", files) == render_project_html("demo", shuffled)
    assert render_project_json("demo", files) == render_project_json("demo", shuffled)
    names = [f"p{i}" for i in range(20)]
    assert render_root_html(names) == render_root_html(reversed(names))
    assert render_root_json(names) == render_root_json(reversed(names))


def _root_html_reference(projects: list[str]) -> str:
    # The root page as written before RootIndex: each name rendered, in one document.
    names = sorted(set(projects), key=lambda n: (canonicalize_name(n), n))
    links = "".join(
        f'    <a href="{html.escape(project_url(n), quote=True)}">{html.escape(n, quote=True)}'
        "</a><br>\n"
        for n in names
    )
    return (
        '<!DOCTYPE html>\n<html>\n  <head>\n    <meta charset="utf-8">\n'
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        "    <title>Simple index</title>\n  </head>\n  <body>\n"
        f"{links}  </body>\n</html>\n"
    )


def _root_json_reference(projects: list[str]) -> str:
    names = sorted(set(projects), key=lambda n: (canonicalize_name(n), n))
    data = {"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n in names]}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


ROOT_NAMES = ["a", "B", "b", "Foo_Bar", "foo-bar", "zeta", HOSTILE, 'ü"<x>\n\x00y', "p-1", "p.1"]


@pytest.mark.parametrize("seed", range(20))
def test_root_index_changed_one_project_at_a_time_is_a_fresh_render(seed: int) -> None:
    rng = random.Random(seed)
    root = RootIndex(rng.sample(ROOT_NAMES, rng.randrange(len(ROOT_NAMES))))
    listed = set(root.names())
    for _ in range(30):
        name = rng.choice(ROOT_NAMES)
        if rng.random() < 0.6:
            assert root.add(name) == (name not in listed)
            listed.add(name)
        else:
            assert root.discard(name) == (name in listed)
            listed.discard(name)
        assert (name in root) == (name in listed)
        assert len(root) == len(listed)
        expected = sorted(listed, key=lambda n: (canonicalize_name(n), n))
        assert root.names() == expected
        assert root.html() == _root_html_reference(expected)
        assert root.json() == _root_json_reference(expected)
        assert root.html() == render_root_html(listed)
        assert root.json() == render_root_json(listed)
    assert RootIndex().json() == _root_json_reference([])
    assert RootIndex().html() == _root_html_reference([])


def test_pep_740_provenance_url_on_both_pages_round_trips_through_the_parser() -> None:
    name = "demo-1.0-py3-none-any.whl"
    signed = _file(name, provenance=provenance_url(name))
    unsigned = _file("demo-0.9-py3-none-any.whl")
    page_url = "http://index.test/simple/demo/"
    expected = f"http://index.test/wheels/{name}.provenance"

    data = json.loads(render_project_json("demo", [signed, unsigned]))
    by_name = {f["filename"]: f for f in data["files"]}
    assert by_name[name]["provenance"] == f"../../wheels/{name}.provenance"
    assert "provenance" not in by_name["demo-0.9-py3-none-any.whl"]  # unsigned: no key at all
    html = render_project_html("demo", [signed, unsigned])
    anchors = {text: attrs for attrs, text in _parse(html).anchors}
    assert anchors[name]["data-provenance"] == f"../../wheels/{name}.provenance"
    assert "data-provenance" not in anchors["demo-0.9-py3-none-any.whl"]

    demo = canonicalize_name("demo")
    for parse, text in ((parse_json_page, json.dumps(data)), (parse_html_page, html)):
        files = {f.filename: f for f in parse(text.encode(), page_url, demo).files}
        assert files[name].provenance == expected
        assert files["demo-0.9-py3-none-any.whl"].provenance is None


def test_a_hostile_provenance_url_is_escaped_in_html() -> None:
    html = render_project_html("demo", [_file("demo-1.0-py3-none-any.whl", provenance=HOSTILE)])
    ((attrs, _),) = _parse(html).anchors
    assert attrs["data-provenance"] == HOSTILE
    assert "<il>" not in html
