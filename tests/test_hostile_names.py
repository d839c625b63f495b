"""Names and versions: every spelling of a project is one project (PEP 503), sdist file names are
read as PEP 625 says, hostile text is escaped on the pages, and versions sort as PEP 440 and the
wheel spec say."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from conftest import Upstream, run_bootstrap
from packaging.utils import canonicalize_name
from packaging.version import Version
from support.sdists import SdistSpec, make_sdist, make_wheel

from rewheel.core.resolver import sdist_versions
from rewheel.core.types import IndexFile, ProjectPage
from rewheel.repo.repository import Repository


def test_every_spelling_of_a_name_is_one_build(upstream: Upstream, tmp_path: Path) -> None:
    # Served under its pre-PEP 625 file name, as old sdists on PyPI are.
    built = make_sdist(SdistSpec("Foo.Bar", "1.0"), tmp_path / "legacy")
    upstream.index.add(built.rename(built.with_name("Foo.Bar-1.0.tar.gz")))
    upstream.sdist("app", "1.0", install_requires=["FOO_bar>=1"], build_requires=["foo.BAR"])
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["Foo_Bar", "foo-bar", "FOO.bar", "app"])
    assert result.ok, result.failures
    assert result.built == 2
    order = json.loads((repo / "build-order.json").read_text())
    assert sorted(e["name"] for e in order) == ["app", "foo-bar"]
    (entry,) = [e for e in order if e["name"] == "foo-bar"]
    assert entry["sdist_url"].endswith("/Foo.Bar-1.0.tar.gz")
    wheels = [r.filename for r in Repository(repo).wheels()]
    assert wheels == ["app-1.0-py3-none-any.whl", "foo_bar-1.0-py3-none-any.whl"]
    assert sorted(p.name for p in (repo / "simple").iterdir() if p.is_dir()) == ["app", "foo-bar"]
    # One page fetch per project, whatever the spelling.
    pages = [p for _m, p in upstream.index.requests if p.startswith("/simple/")]
    assert sorted(pages) == ["/simple/app/", "/simple/foo-bar/"]


def _file(filename: str) -> IndexFile:
    return IndexFile(filename=filename, url=f"https://example.invalid/{filename}", sha256=None)


def test_sdist_file_names_are_read_as_pep_625_says() -> None:
    page = ProjectPage(
        name=canonicalize_name("foo"),
        files=(
            _file("foo-1.0.zip"),
            _file("foo-1.0.tar.gz"),  # preferred over the zip of the same version
            _file("Foo-1.1.zip"),  # legacy spelling: still foo
            _file("foo-bar-2.0.tar.gz"),  # another project (foo-bar), not foo "bar-2.0"
            _file("foo_bar-3.0.tar.gz"),  # foo-bar again
            _file("foo-4.0.tar.bz2"),  # not an sdist format an index may serve today
            _file("foo-5.0-py3-none-any.whl"),  # a wheel: never built from
            _file("foo-not.a.version.tar.gz"),
        ),
    )
    found = sdist_versions(page, Version("3.11"))
    assert {str(v): f.filename for v, f in found.items()} == {
        "1.0": "foo-1.0.tar.gz",
        "1.1": "Foo-1.1.zip",
    }


def _publish(repo: Repository, tmp_path: Path, version: str, *, build: str = "") -> str:
    wheel = make_wheel(SdistSpec("tiny", version), tmp_path / f"w-{version}-{build}")
    if build:
        wheel = wheel.rename(wheel.with_name(wheel.name.replace("-py3-", f"-{build}-py3-")))
    return repo.publish_wheel(wheel).filename


def test_local_versions_and_build_tags_sort_as_the_specs_say(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    for version in ("1.0+local.10", "1.1.dev0", "1.0.post1", "1.0", "1.0+local.2", "1.0rc1"):
        _publish(repo, tmp_path, version)
    for build in ("10", "2", "2a"):
        _publish(repo, tmp_path, "1.0", build=build)
    repo.regenerate_index()
    page = json.loads((repo.simple_dir / "tiny" / "index.json").read_text())
    assert page["versions"] == [
        "1.0rc1",
        "1.0",
        "1.0+local.2",
        "1.0+local.10",
        "1.0.post1",
        "1.1.dev0",
    ]
    listed = {f["filename"] for f in page["files"]}
    assert {"tiny-1.0-2-py3-none-any.whl", "tiny-1.0-10-py3-none-any.whl"} <= listed
    html = (repo.simple_dir / "tiny" / "index.html").read_text()
    assert html.count("<a ") == len(listed) == 9
    # Build tags: none first, then by number, then by the text after it (wheel spec).
    assert [r.filename for r in repo.find_wheels("tiny", "1.0")] == [
        "tiny-1.0-py3-none-any.whl",
        "tiny-1.0-2-py3-none-any.whl",
        "tiny-1.0-2a-py3-none-any.whl",
        "tiny-1.0-10-py3-none-any.whl",
    ]
    # "1.0+local.2" is not "1.0": a local version is a release of its own.
    assert [r.version for r in repo.find_wheels("tiny", "1.0+local.2")] == ["1.0+local.2"]


def test_hostile_metadata_is_escaped_on_the_pages(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    hostile = '>=3"><script>alert(1)</script><a x="'
    wheel = make_wheel(SdistSpec("tiny", "1.0", requires_python=">=3"), tmp_path / "w")
    _replace_requires_python(wheel, hostile)
    repo.publish_wheel(wheel)
    repo.regenerate_index()
    html = (repo.simple_dir / "tiny" / "index.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("<a ") == 1
    page = json.loads((repo.simple_dir / "tiny" / "index.json").read_text())
    assert page["files"][0]["requires-python"] == hostile  # JSON keeps it, escaped by JSON


def _replace_requires_python(wheel: Path, value: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        members = [(i, zf.read(i)) for i in zf.infolist()]
    with zipfile.ZipFile(wheel, "w") as zf:
        for info, data in members:
            if info.filename.endswith("/METADATA"):
                data = data.replace(b"Requires-Python: >=3", f"Requires-Python: {value}".encode())
            zf.writestr(info, data)
