"""Rendering the pages of a simple repository: PEP 503 HTML and PEP 691 JSON.

Pure functions from plain values to text, so they can be tested without a filesystem. Output is
deterministic (sorted) so that regenerating an unchanged repository rewrites identical bytes.
Every name, file name and attribute is escaped: the values come from wheel file names and metadata,
which this module does not trust.
"""

from __future__ import annotations

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

# PEP 629 / PEP 700: the version of the simple API these pages follow.
API_VERSION = "1.1"
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_CONTENT_TYPE = "application/vnd.pypi.simple.v1+html"


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


def wheel_url(filename: str) -> str:
    """The URL of a published wheel relative to its project page ``simple/<name>/``."""
    return "../../wheels/" + quote(filename, safe="")


def sdist_url(filename: str) -> str:
    """The URL of an sdist in the repository relative to its project page ``simple/<name>/``."""
    return "../../sdists/" + quote(filename, safe="")


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


def render_root_html(projects: Iterable[str]) -> str:
    body = [
        f'<a href="{_attr(project_url(name))}">{html.escape(name, quote=True)}</a><br>'
        for name in _sorted_projects(projects)
    ]
    return _html_document("Simple index", body)


def render_root_json(projects: Iterable[str]) -> str:
    return _json_document(
        {
            "meta": {"api-version": API_VERSION},
            "projects": [{"name": name} for name in _sorted_projects(projects)],
        }
    )


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
