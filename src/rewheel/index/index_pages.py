"""Rendering the pages of a simple repository: PEP 503 HTML and PEP 691 JSON.

Pure functions from plain values to text, so they can be tested without a filesystem. Output is
deterministic (sorted) so that regenerating an unchanged repository rewrites identical bytes.
Every name, file name and attribute is escaped: the values come from wheel file names and metadata,
which this module does not trust.
"""

from __future__ import annotations

import bisect
import html
import json
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion

from ..core.versions import version_key

# PEP 629: the version of the simple API these pages follow; 1.3 has PEP 740's provenance.
API_VERSION = "1.3"
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_CONTENT_TYPE = "application/vnd.pypi.simple.v1+html"
# PEP 740: the provenance object of a file, served beside it (docs/provenance.md, "PEP 740").
PROVENANCE_OBJECT_SUFFIX = ".provenance"


@dataclass(frozen=True)
class PageFile:
    """One file as listed on a project page: a wheel, or the sdist a wheel was built from."""

    filename: str
    url: str  # relative to the project page, already percent-encoded (wheel_url, sdist_url)
    sha256: str
    size: int
    requires_python: str | None = None
    metadata_sha256: str | None = None  # PEP 658: served at url + ".metadata" when set
    version: str | None = None  # None: taken from the file name
    # PEP 740: the URL of its provenance object, relative like ``url`` (provenance_url).
    provenance: str | None = None


def wheel_url(filename: str) -> str:
    """The URL of a published wheel relative to its project page ``simple/<name>/``."""
    return "../../wheels/" + quote(filename, safe="")


def sdist_url(filename: str) -> str:
    """The URL of an sdist in the repository relative to its project page ``simple/<name>/``."""
    return "../../sdists/" + quote(filename, safe="")


def provenance_url(filename: str) -> str:
    """The URL of a published wheel's PEP 740 provenance object relative to its project page."""
    return wheel_url(filename + PROVENANCE_OBJECT_SUFFIX)


def project_url(name: str) -> str:
    """The URL of a project page relative to the root page ``simple/``."""
    return quote(canonicalize_name(name), safe="") + "/"


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _sorted_projects(projects: Iterable[str]) -> list[str]:
    return sorted(set(projects), key=lambda n: (canonicalize_name(n), n))


def _sorted_files(files: Iterable[PageFile]) -> list[PageFile]:
    return sorted(files, key=lambda f: f.filename)


def _file_version(file: PageFile) -> str | None:
    if file.version is not None:
        return file.version
    try:
        if file.filename.endswith(".whl"):
            return str(parse_wheel_filename(file.filename)[1])
        return str(parse_sdist_filename(file.filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def project_versions(files: Iterable[PageFile]) -> list[str]:
    """PEP 700 ``versions``: every version that has a file, in PEP 440 order."""
    versions = {v for f in files if (v := _file_version(f)) is not None}
    return sorted(versions, key=version_key)


def _html_document(title: str, body: list[str]) -> str:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        '    <meta charset="utf-8">',
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        f"    <title>{html.escape(title, quote=True)}</title>",
        "  </head>",
        "  <body>",
        *("    " + line for line in body),
        "  </body>",
        "</html>",
    ]
    return "\n".join(lines) + "\n"


def _json_document(data: dict[str, object]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


class RootIndex:
    """The projects of a root page, in page order, each with its part of both pages rendered.

    Adding or removing one project renders only that project, so that a repository of 10,000
    projects writes its new root pages without rendering every name again; ``html()`` and
    ``json()`` are exactly ``render_root_html`` and ``render_root_json`` of ``names()``.
    """

    def __init__(self, projects: Iterable[str] = ()) -> None:
        names = _sorted_projects(projects)
        self._keys = [_root_key(name) for name in names]  # sorted: the pages' order
        self._html = [_root_html_line(name) for name in names]
        self._json = [_root_json_entry(name) for name in names]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

    def __len__(self) -> int:
        return len(self._keys)

    def names(self) -> list[str]:
        return [name for _canonical, name in self._keys]

    def _find(self, name: str) -> int | None:
        key = _root_key(name)
        at = bisect.bisect_left(self._keys, key)
        return at if at < len(self._keys) and self._keys[at] == key else None

    def add(self, name: str) -> bool:
        """List ``name``; False when it already is."""
        key = _root_key(name)
        at = bisect.bisect_left(self._keys, key)
        if at < len(self._keys) and self._keys[at] == key:
            return False
        self._keys.insert(at, key)
        self._html.insert(at, _root_html_line(name))
        self._json.insert(at, _root_json_entry(name))
        return True

    def discard(self, name: str) -> bool:
        """Stop listing ``name``; False when it was not listed."""
        at = self._find(name)
        if at is None:
            return False
        del self._keys[at], self._html[at], self._json[at]
        return True

    def html(self) -> str:
        head, tail = _ROOT_HTML_FRAME
        return head + "".join(self._html) + tail

    def json(self) -> str:
        if not self._keys:
            return _json_document(_root_data([]))
        head, tail = _ROOT_JSON_FRAME
        return head + ",\n".join(self._json) + tail


def _root_key(name: str) -> tuple[str, str]:
    return (canonicalize_name(name), name)


def _root_data(projects: list[str]) -> dict[str, object]:
    return {"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n in projects]}


def _root_html_line(name: str) -> str:
    # One line of the root page's body, as _html_document indents it.
    link = f'<a href="{_attr(project_url(name))}">{html.escape(name, quote=True)}</a><br>'
    return f"    {link}\n"


def _root_json_entry(name: str) -> str:
    # One entry of the "projects" list as json.dumps indents it there, two levels deep; a JSON
    # string holds no raw newline, so the name adds no line.
    return "    " + json.dumps({"name": name}, indent=2, sort_keys=True).replace("\n", "\n    ")


def _frame(document: str, part: str) -> tuple[str, str]:
    """``document`` cut around its one ``part``: what comes before it and after it."""
    head, found, tail = document.partition(part)
    if not found:
        raise AssertionError(f"{part!r} is not in {document!r}")
    return head, tail


# The root pages around their projects, cut from the pages of one project (a NUL in its place,
# which no page holds otherwise): a root page is head + its projects' parts + tail (the JSON page
# of no project is the one exception, an empty list being written "[]").
_ROOT_HTML_FRAME = _frame(_html_document("Simple index", ["\x00"]), "    \x00\n")
_ROOT_JSON_FRAME = _frame(_json_document(_root_data(["\x00"])), _root_json_entry("\x00"))


def render_root_html(projects: Iterable[str]) -> str:
    return RootIndex(projects).html()


def render_root_json(projects: Iterable[str]) -> str:
    return RootIndex(projects).json()


def render_project_html(name: str, files: Iterable[PageFile]) -> str:
    body = [f"<h1>Links for {html.escape(name, quote=True)}</h1>"]
    for f in _sorted_files(files):
        attrs = [f'href="{_attr(f.url + "#sha256=" + f.sha256)}"']
        if f.requires_python is not None:
            attrs.append(f'data-requires-python="{_attr(f.requires_python)}"')
        if f.metadata_sha256 is not None:
            # PEP 714 renamed the attribute; the old one is kept for older installers.
            value = _attr("sha256=" + f.metadata_sha256)
            attrs.append(f'data-dist-info-metadata="{value}"')
            attrs.append(f'data-core-metadata="{value}"')
        if f.provenance is not None:
            attrs.append(f'data-provenance="{_attr(f.provenance)}"')
        body.append(f"<a {' '.join(attrs)}>{html.escape(f.filename, quote=True)}</a><br>")
    return _html_document(f"Links for {name}", body)


def _json_file(f: PageFile) -> dict[str, object]:
    metadata: dict[str, str] | bool = (
        {"sha256": f.metadata_sha256} if f.metadata_sha256 is not None else False
    )
    out: dict[str, object] = {
        "filename": f.filename,
        "url": f.url,
        "hashes": {"sha256": f.sha256},
        "size": f.size,
        "yanked": False,
        "core-metadata": metadata,
        "dist-info-metadata": metadata,
    }
    if f.requires_python is not None:
        out["requires-python"] = f.requires_python
    if f.provenance is not None:
        out["provenance"] = f.provenance
    return out


def render_project_json(name: str, files: Iterable[PageFile]) -> str:
    file_list = _sorted_files(files)
    return _json_document(
        {
            "meta": {"api-version": API_VERSION},
            "name": canonicalize_name(name),
            "files": [_json_file(f) for f in file_list],
            "versions": project_versions(file_list),
        }
    )
