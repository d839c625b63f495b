"""The browsable pages: rendering, writing them from a repository, and serving them and the logs."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import http.client
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.sdists import SdistSpec, make_wheel

from rewheel.core.records import BuildRecord
from rewheel.core.types import WheelRef
from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer
from rewheel.ui.browse_pages import (
    ProjectInfo,
    Site,
    VersionInfo,
    WheelInfo,
    collect,
    render_site,
    write_browse,
)

SHA_A = "a" * 64
SHA_T = "b" * 64


def site() -> Site:
    tool = VersionInfo(
        name="tool",
        version="1.0",
        wheels=(WheelInfo("tool-1.0-py3-none-any.whl", SHA_T, 1234),),
        record=BuildRecord(
            name="tool",
            version="1.0",
            sdist_url=None,
            sdist_sha256=None,
            wheel="tool-1.0-py3-none-any.whl",
            wheel_sha256=SHA_T,
        ),
        in_last_run=True,
        log="tool-1.0.log",
    )
    app_record = {
        "name": "app",
        "version": "2.0",
        "wheel": "app-2.0-py3-none-any.whl",
        "wheel_sha256": SHA_A,
        "sdist_url": "https://files.example/app-2.0.tar.gz",
        "sdist_sha256": "c" * 64,
        "why": [
            {"package": None, "requirement": "app>=2", "kind": "toplevel"},
            {"package": "tool==1.0", "requirement": "app", "kind": "install"},
        ],
        "build_env": [
            {"name": "tool", "version": "1.0", "sha256": SHA_T},
            {"name": "gone", "version": "9", "sha256": "d" * 64},
        ],
        "build_system_requires": ["tool"],
        "backend_requires": [],
        "seconds": 1.25,
        "cache_key": "e" * 64,
    }
    app_new = VersionInfo(
        name="app",
        version="2.0",
        wheels=(
            WheelInfo(
                "app-2.0-py3-none-any.whl",
                SHA_A,
                2_500_000,
                provenance=("app-2.0-py3-none-any.whl.provenance.json",),
            ),
        ),
        record=BuildRecord.from_json(app_record),
        in_last_run=True,
        summary="An <app> & more",
        requires_python=">=3.9",
        requires_dist=("tool>=1",),
        log="app-2.0.log",
    )
    app_old = VersionInfo(
        name="app", version="1.0", wheels=(WheelInfo("app-1.0-py3-none-any.whl", "f" * 64, 10),)
    )
    return Site(
        projects=(
            ProjectInfo("app", (app_new, app_old)),
            ProjectInfo("tool", (tool,)),
        ),
        has_graph=True,
        title="my repo",
    )


def test_front_page_lists_projects_with_latest_version_and_summary() -> None:
    index = render_site(site())["index.html"]
    assert '<a href="app.html">app</a></td><td>2.0</td><td>2</td>' in index
    assert "An &lt;app&gt; &amp; more" in index and "<app>" not in index
    assert '<a href="tool.html">tool</a>' in index
    assert 'href="graph.html"' in index and 'href="../simple/"' in index
    assert "2 projects, 3 wheels" in index


def test_project_page_shows_files_why_build_env_provenance_and_log() -> None:
    page = render_site(site())["app.html"]
    # Files, with sha256 and provenance.
    assert '<a class="wheel" href="../wheels/app-2.0-py3-none-any.whl">' in page
    assert f'<code class="sha256">{SHA_A}</code>' in page
    assert 'href="../wheels/app-2.0-py3-none-any.whl.provenance.json">provenance</a>' in page
    assert "2.5 MB" in page
    # Why: the request and the package that asked, linked to its version's section.
    assert "requested as <code>app&gt;=2</code>" in page
    assert '<a href="tool.html#v-1.0">tool==1.0</a> needs <code>app</code>' in page
    assert '<span class="kind install">install</span>' in page
    # The build environment: linked when in the repository, flagged when not.
    assert '<a class="env-link" href="tool.html#v-1.0">tool 1.0</a>' in page
    assert "gone 9" in page and "(not in this repository)" in page
    # The log, and the older version with no record.
    assert '<a class="log" href="../logs/app-2.0.log">app-2.0.log</a>' in page
    assert 'id="v-1.0"' in page and "No build record for this version." in page
    assert "An &lt;app&gt; &amp; more" in page


def test_tool_page_lists_the_builds_it_was_in_the_environment_of() -> None:
    page = render_site(site())["tool.html"]
    assert '<ul class="used-by"><li><a href="app.html#v-2.0">app==2.0</a></li></ul>' in page
    assert "Empty: built with no other package installed." in page


# -- from a repository --------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path, broken_provenance: None) -> Repository:
    """A repository with two projects published, a build-order.json, a graph and logs; app's
    provenance is a stand-in ``{}`` (so ``broken_provenance``: no schema check)."""
    r = Repository(tmp_path / "repo")
    r.ensure_layout()
    built = tmp_path / "built"
    tool = r.publish_wheel(make_wheel(SdistSpec("tool", "1.0"), built))
    app = r.publish_wheel(make_wheel(SdistSpec("app", "2.0", install_requires=["tool"]), built))
    r.regenerate_index()
    order = [
        {
            "name": "tool",
            "version": "1.0",
            "wheel": tool.filename,
            "wheel_sha256": tool.sha256,
            "sdist_url": None,
            "sdist_sha256": None,
            "why": [{"package": "app==2.0", "requirement": "tool", "kind": "build-system"}],
            "build_env": [],
            "log": str(r.logs_dir / "tool-1.0.log"),
        },
        {
            "name": "app",
            "version": "2.0",
            "wheel": app.filename,
            "wheel_sha256": app.sha256,
            "sdist_url": None,
            "sdist_sha256": None,
            "why": [{"package": None, "requirement": "app", "kind": "toplevel"}],
            "build_env": [tool.as_record()],
            "log": str(r.logs_dir / "app-2.0.log"),
        },
    ]
    r.write_json("build-order.json", order)
    r.write_json(
        "graph.json",
        {
            "nodes": [
                {"id": "app==2.0", "name": "app", "version": "2.0"},
                {"id": "tool==1.0", "name": "tool", "version": "1.0"},
            ],
            "edges": [
                {"from": None, "to": "app==2.0", "requirement": "app", "kind": "toplevel"},
                {"from": "app==2.0", "to": "tool==1.0", "requirement": "tool", "kind": "install"},
            ],
        },
    )
    (r.logs_dir / "tool-1.0.log").write_text("# rewheel build log of tool==1.0\nok\n")
    (r.logs_dir / "app-2.0.log").write_text("# rewheel build log of app==2.0\nok\n")
    (r.wheels_dir / f"{app.filename}.provenance.json").write_text("{}")
    return r


def _ref(repo: Repository, name: str) -> WheelRef:
    (ref,) = [w for w in repo.wheels() if w.name == name]
    return ref


def test_collect_reads_wheels_records_metadata_logs_and_provenance(repo: Repository) -> None:
    got = collect(repo, has_graph=True)
    assert [p.name for p in got.projects] == ["app", "tool"]
    app = got.projects[0].latest
    (wheel,) = app.wheels
    assert wheel.sha256 == _ref(repo, "app").sha256
    assert wheel.provenance == (f"{wheel.filename}.provenance.json",)
    assert app.log == "app-2.0.log"
    assert app.in_last_run and app.record is not None and app.record.why[0].kind == "toplevel"
    assert app.requires_dist == ("tool",)


def test_write_browse_writes_pages_keeps_simple_untouched_and_removes_stale_pages(
    repo: Repository,
) -> None:
    simple_before = {p: p.read_bytes() for p in repo.simple_dir.rglob("*") if p.is_file()}
    out = write_browse(repo)
    assert sorted(p.name for p in out.iterdir()) == [
        "app.html",
        "graph.html",
        "index.html",
        "tool.html",
    ]
    assert _ref(repo, "app").sha256 in (out / "app.html").read_text()
    assert "tool==1.0" in (out / "graph.html").read_text()
    assert {p: p.read_bytes() for p in repo.simple_dir.rglob("*") if p.is_file()} == simple_before

    # Unchanged pages are not rewritten; a project that is gone loses its page.
    (out / "stale.html").write_text("old")
    mtime = (out / "index.html").stat().st_mtime_ns
    write_browse(repo)
    assert not (out / "stale.html").exists()
    assert (out / "index.html").stat().st_mtime_ns == mtime


def test_a_broken_graph_json_leaves_the_graph_page_out(repo: Repository) -> None:
    (repo.root / "graph.json").write_text('{"nodes": 1}')
    out = write_browse(repo)
    assert not (out / "graph.html").exists()
    assert 'href="graph.html"' not in (out / "index.html").read_text()


# -- served ---------------------------------------------------------------------------------


@pytest.fixture
def server(repo: Repository) -> Iterator[IndexServer]:
    write_browse(repo)
    with IndexServer(repo) as s:
        yield s


def get(server: IndexServer, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_root_redirects_to_the_browsable_pages(server: IndexServer) -> None:
    for path in ("/", "/browse"):
        status, headers, _ = get(server, path)
        assert (status, headers["Location"]) == (301, "/browse/")
    status, headers, body = get(server, "/browse/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<a href="app.html">app</a>' in body
    status, _, body = get(server, "/browse/app.html")
    assert status == 200 and b"app 2.0" in body
    # The installers' index is still there, as it was.
    status, _, body = get(server, "/simple/")
    assert status == 200 and b"/simple/" not in body and b"app" in body


def test_logs_are_served_read_only_as_text(server: IndexServer, repo: Repository) -> None:
    status, headers, body = get(server, "/logs/app-2.0.log")
    assert status == 200 and headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body == (repo.logs_dir / "app-2.0.log").read_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("PUT", "/logs/app-2.0.log", body=b"x")
    assert conn.getresponse().status in (404, 405, 501)
    conn.close()
    assert body == (repo.logs_dir / "app-2.0.log").read_bytes()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/logs/../build-order.json", 400),
        ("/logs/%2e%2e/build-order.json", 400),
        ("/logs/..%2fbuild-order.json", 400),
        ("/logs/missing.log", 404),
        ("/logs/", 404),
        ("/logs/.hidden.log", 404),
        ("/logs/sub/x.log", 404),
        ("/logs/link.log", 404),  # a symbolic link, to a file outside logs/
        ("/browse/../graph.json", 400),
        ("/browse/missing.html", 404),
        ("/browse/notes.txt", 404),
    ],
)
def test_no_way_out_of_logs_and_browse(
    server: IndexServer, repo: Repository, path: str, status: int
) -> None:
    (repo.logs_dir / ".hidden.log").write_text("secret")
    (repo.logs_dir / "sub").mkdir(exist_ok=True)
    (repo.logs_dir / "sub" / "x.log").write_text("x")
    outside = repo.root.parent / "outside.log"
    outside.write_text("secret")
    if not (repo.logs_dir / "link.log").is_symlink():
        os.symlink(outside, repo.logs_dir / "link.log")
    (repo.root / "browse" / "notes.txt").write_text("x")
    got, _, body = get(server, path)
    assert got == status
    assert b"secret" not in body


def test_browse_front_page_before_anything_was_built(tmp_path: Path) -> None:
    empty = Repository(tmp_path / "empty")
    empty.ensure_layout()
    with IndexServer(empty) as s:
        status, _, body = get(s, "/browse/")
    assert status == 200 and b"Nothing was built into this repository yet." in body


def test_the_full_record_is_shown_as_escaped_json(repo: Repository) -> None:
    out = write_browse(repo)
    page = (out / "app.html").read_text()
    pre = page.split("<pre>")[1].split("</pre>")[0]
    assert json.loads(html.unescape(pre))["name"] == "app"


# -- hostile records and planted links --------------------------------------------------------


def _anchor_hrefs(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<a\b[^>]*\bhref="([^"]*)"', page)]


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)//https://files.example/app-2.0.tar.gz",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "\x01javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/app-2.0.tar.gz",
        "https:\\\\evil.example\\app-2.0.tar.gz",
    ],
)
def test_only_http_urls_become_links(url: str) -> None:
    s = site()
    app = s.projects[0]
    assert app.versions[0].record is not None
    record = dataclasses.replace(app.versions[0].record, sdist_url=url)
    hostile = dataclasses.replace(app.versions[0], record=record)
    project = dataclasses.replace(app, versions=(hostile, *app.versions[1:]))
    page = render_site(dataclasses.replace(s, projects=(project, *s.projects[1:])))["app.html"]
    for href in _anchor_hrefs(page):
        scheme = href.split(":", 1)[0].lower() if ":" in href else ""
        assert scheme in ("", "http", "https"), href
        assert href.startswith(("http://", "https://")) or ":" not in href, href
        assert not href.startswith("//"), href
    assert html.escape(url, quote=True) in page  # still shown, as text


def test_an_https_sdist_url_is_a_link() -> None:
    page = render_site(site())["app.html"]
    assert '<a href="https://files.example/app-2.0.tar.gz">app-2.0.tar.gz</a>' in page


def test_the_policy_allows_exactly_the_pages_own_scripts_and_styles(repo: Repository) -> None:
    from rewheel.serve.server import CONTENT_SECURITY_POLICY

    directives = {}
    for directive in CONTENT_SECURITY_POLICY.split(";"):
        name, _, value = directive.strip().partition(" ")
        directives[name] = value
    assert directives["default-src"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    out = write_browse(repo)
    pages = {p.name: p.read_text() for p in out.iterdir()}
    assert {"index.html", "app.html", "graph.html"} <= set(pages)
    for name, page in pages.items():
        scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
        styles = re.findall(r"<style>(.*?)</style>", page, re.S)
        assert styles and (scripts or name not in ("index.html", "graph.html"))
        for source, directive in [(s, "script-src") for s in scripts] + [
            (s, "style-src") for s in styles
        ]:
            digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in directives[directive].split(), (name, directive)
        # Nothing the policy would block without saying: no inline handlers or style attributes.
        assert not re.search(r"<[^>]*\s(on\w+|style)\s*=", page, re.I), name
        # The graph's data is a JSON block, not a script the policy has to allow.
        assert len(re.findall(r"<script\b", page)) == len(scripts) + page.count(
            '<script type="application/json"'
        )


def test_nothing_is_read_through_a_symbolic_link(repo: Repository, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(
        json.dumps({"name": "tool", "version": "1.0", "sdist_url": "https://TOP-SECRET/"})
    )
    metadata = tmp_path / "METADATA"
    metadata.write_text("Metadata-Version: 2.1\nName: app\nVersion: 2.0\nSummary: TOP-SECRET\n")
    (repo.records_dir / "tool-1.0.json").unlink(missing_ok=True)
    (repo.records_dir / "tool-1.0.json").symlink_to(secret)
    app = _ref(repo, "app")
    (repo.wheels_dir / f"{app.filename}.metadata").unlink()
    (repo.wheels_dir / f"{app.filename}.metadata").symlink_to(metadata)
    (repo.logs_dir / "leak.log").symlink_to(secret)
    (repo.wheels_dir / "leak-1.0-py3-none-any.whl").symlink_to(repo.wheel_path(app))
    (repo.root / "build-order.json").unlink()
    (repo.root / "build-order.json").symlink_to(secret)
    out = write_browse(repo)
    for page in out.iterdir():
        text = page.read_text()
        assert "TOP-SECRET" not in text, page.name
        assert "leak" not in text, page.name
