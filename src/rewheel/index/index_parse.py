"""Parsing of index project pages: PEP 691 JSON and PEP 503 HTML. Pure functions, no I/O.

Both formats end up as the same ``ProjectPage`` so that nothing past this module knows which one
the index served. Anything unusable raises ``UpstreamError`` with step "index".
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from ..core.errors import Step, UpstreamError
from ..core.types import IndexFile, ProjectPage
from .credentials import without_credentials

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_STEP = Step.INDEX


# The media types of PEP 691 pages; an HTML page may come with no Content-Type at all (old PEP
# 503 servers, which only ever served HTML).
_JSON_TYPES = (JSON_V1, "application/vnd.pypi.simple.latest+json")
_HTML_TYPES = (HTML_V1, "application/vnd.pypi.simple.latest+html", "text/html", "")


def _fail(name: NormalizedName, page_url: str, why: str) -> UpstreamError:
    return UpstreamError(f"unusable project page {page_url}: {why}", package=name, step=_STEP)


def _link(base: str, href: str) -> str:
    """An absolute link of the page, without the credentials it may carry: links are recorded
    and printed (the user's own credentials, split off the index URL, are sent to its host)."""
    return without_credentials(urljoin(base, href))


def _check_sha256(value: object, name: NormalizedName, page_url: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise _fail(name, page_url, f"not a sha256 hex digest: {value!r}")
    return value.lower()


def _check_filename(filename: str, name: NormalizedName, page_url: str) -> str:
    # The file name becomes a path in a local directory: refuse anything that is not a plain name.
    if filename in ("", ".", "..") or any(c in filename for c in "/\\\x00"):
        raise _fail(name, page_url, f"unsafe file name {filename!r}")
    return filename


def _check_api_version(version: object, name: NormalizedName, page_url: str) -> None:
    if not isinstance(version, str):
        raise _fail(name, page_url, f"missing or invalid api-version {version!r}")
    major = version.split(".", 1)[0]
    if major != "1":
        raise _fail(name, page_url, f"unsupported index API version {version!r} (need 1.x)")


# --- PEP 691 JSON -----------------------------------------------------------------------------


def _json_metadata(
    file: dict[str, object], name: NormalizedName, page_url: str
) -> tuple[bool, str | None]:
    # PEP 714 renamed "dist-info-metadata" to "core-metadata"; the new key wins when both are there.
    value = file.get("core-metadata", file.get("dist-info-metadata", False))
    if isinstance(value, bool):
        return value, None
    if isinstance(value, dict):
        sha = value.get("sha256")
        return True, None if sha is None else _check_sha256(sha, name, page_url)
    raise _fail(name, page_url, f"invalid core-metadata value {value!r}")


def _json_file(file: object, name: NormalizedName, page_url: str) -> IndexFile:
    if not isinstance(file, dict):
        raise _fail(name, page_url, f"file entry is not an object: {file!r}")
    filename, url = file.get("filename"), file.get("url")
    if not isinstance(filename, str) or not isinstance(url, str):
        raise _fail(name, page_url, f"file entry without filename/url: {file!r}")
    hashes = file.get("hashes", {})
    if not isinstance(hashes, dict):
        raise _fail(name, page_url, f"hashes of {filename} is not an object")
    sha = hashes.get("sha256")
    requires_python = file.get("requires-python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise _fail(name, page_url, f"invalid requires-python of {filename}")
    yanked_value = file.get("yanked", False)
    if not isinstance(yanked_value, bool | str):
        raise _fail(name, page_url, f"invalid yanked value of {filename}")
    size = file.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise _fail(name, page_url, f"invalid size of {filename}")
    has_metadata, metadata_sha256 = _json_metadata(file, name, page_url)
    provenance = file.get("provenance")
    if provenance is not None and not isinstance(provenance, str):
        raise _fail(name, page_url, f"invalid provenance of {filename}")
    # Like pip: an empty reason string counts as "not yanked", a non-empty one is the reason.
    yanked = bool(yanked_value)
    return IndexFile(
        filename=_check_filename(filename, name, page_url),
        url=_link(page_url, url),
        sha256=None if sha is None else _check_sha256(sha, name, page_url),
        requires_python=requires_python or None,
        yanked=yanked,
        yanked_reason=yanked_value if isinstance(yanked_value, str) and yanked_value else None,
        has_metadata=has_metadata,
        metadata_sha256=metadata_sha256,
        size=size,
        provenance=_link(page_url, provenance) if provenance else None,
    )


def parse_json_page(data: bytes, page_url: str, name: NormalizedName) -> ProjectPage:
    """A PEP 691 (API version 1.x) JSON project page."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nesting
        raise _fail(name, page_url, f"invalid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise _fail(name, page_url, "JSON page is not an object")
    meta = doc.get("meta")
    _check_api_version(meta.get("api-version") if isinstance(meta, dict) else None, name, page_url)
    files = doc.get("files")
    if not isinstance(files, list):
        raise _fail(name, page_url, "JSON page has no files list")
    return ProjectPage(name=name, files=tuple(_json_file(f, name, page_url) for f in files))


# --- PEP 503 HTML -----------------------------------------------------------------------------


class _AnchorCollector(HTMLParser):
    """Collects anchors and the first ``<base href>``; attribute values arrive unescaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.repository_version: str | None = None
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href") is not None:
            self.anchors.append(attributes)
        elif tag == "base" and self.base is None and attributes.get("href") is not None:
            self.base = attributes["href"]
        elif tag == "meta" and attributes.get("name") == "pypi:repository-version":
            self.repository_version = attributes.get("content")


def _html_metadata(
    attributes: dict[str, str | None], name: NormalizedName, page_url: str
) -> tuple[bool, str | None]:
    value = attributes.get("data-core-metadata", attributes.get("data-dist-info-metadata"))
    if value is None or value.strip().lower() == "false":
        return False, None
    algorithm, sep, digest = value.strip().partition("=")
    if sep and algorithm.lower() == "sha256":
        return True, _check_sha256(digest, name, page_url)
    # "true", or a hash we do not check: the metadata is there, unverified.
    return True, None


def _html_file(
    attributes: dict[str, str | None], base_url: str, name: NormalizedName, page_url: str
) -> IndexFile:
    href = attributes["href"] or ""
    url, fragment = urldefrag(_link(base_url, href.strip()))
    sha = None
    algorithm, sep, digest = fragment.partition("=")
    if sep and algorithm.lower() == "sha256":
        sha = _check_sha256(digest, name, page_url)
    filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    yanked_reason = attributes.get("data-yanked")
    has_metadata, metadata_sha256 = _html_metadata(attributes, name, page_url)
    provenance = (attributes.get("data-provenance") or "").strip()
    return IndexFile(
        filename=_check_filename(filename, name, page_url),
        url=url,
        sha256=sha,
        requires_python=(attributes.get("data-requires-python") or "").strip() or None,
        yanked="data-yanked" in attributes,
        yanked_reason=yanked_reason or None,
        has_metadata=has_metadata,
        metadata_sha256=metadata_sha256,
        provenance=_link(base_url, provenance) if provenance else None,
    )


def _read_html(data: bytes, page_url: str, name: NormalizedName) -> _AnchorCollector:
    """The anchors (and base, and API version, checked) of a PEP 503 HTML page."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(name, page_url, f"HTML page is not UTF-8 ({exc})") from exc
    collector = _AnchorCollector()
    collector.feed(text)
    collector.close()
    if collector.repository_version is not None:
        _check_api_version(collector.repository_version, name, page_url)
    return collector


def parse_html_page(data: bytes, page_url: str, name: NormalizedName) -> ProjectPage:
    """A PEP 503 HTML project page (with the PEP 592/629/658/714/740 data attributes)."""
    collector = _read_html(data, page_url, name)
    base_url = urljoin(page_url, collector.base) if collector.base is not None else page_url
    files = tuple(_html_file(a, base_url, name, page_url) for a in collector.anchors)
    return ProjectPage(name=name, files=files)


def parse_page(
    data: bytes, content_type: str | None, page_url: str, name: NormalizedName
) -> ProjectPage:
    """A project page in whichever format its Content-Type names (PEP 691 negotiation).

    A page that cannot be read says what came: its size, its Content-Type and its first bytes.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        if media_type in _JSON_TYPES:
            return parse_json_page(data, page_url, name)
        if media_type in _HTML_TYPES:
            # No Content-Type at all: old PEP 503 servers, which only ever served HTML.
            return parse_html_page(data, page_url, name)
    except UpstreamError as exc:
        exc.message += f" ({_what_came(data, content_type)})"
        raise
    raise _fail(name, page_url, f"unexpected Content-Type {content_type!r}")


def _what_came(data: bytes, content_type: str | None) -> str:
    kind = "no Content-Type" if content_type is None else f"Content-Type {content_type!r}"
    return f"received {len(data)} bytes with {kind}, starting {data[:24]!r}"


def parse_root_page(data: bytes, content_type: str | None, page_url: str) -> list[str]:
    """The project names the root page of an index lists (PEP 691 JSON ``projects``, or the
    anchors of PEP 503 HTML, named by the last part of their link), normalized and sorted."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    root = NormalizedName("(root)")
    names: list[str] = []
    if media_type in _JSON_TYPES:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _fail(root, page_url, f"invalid JSON ({exc})") from exc
        meta = doc.get("meta") if isinstance(doc, dict) else None
        _check_api_version(
            meta.get("api-version") if isinstance(meta, dict) else None, root, page_url
        )
        projects = doc.get("projects")
        if not isinstance(projects, list):
            raise _fail(root, page_url, "JSON root page has no projects list")
        for project in projects:
            name = project.get("name") if isinstance(project, dict) else None
            if not isinstance(name, str):
                raise _fail(root, page_url, f"project entry without a name: {project!r}")
            names.append(name)
    elif media_type in _HTML_TYPES:
        for anchor in _read_html(data, page_url, root).anchors:
            path = urlsplit(urljoin(page_url, anchor["href"] or "")).path
            names.append(unquote(path.rstrip("/").rsplit("/", 1)[-1]))
    else:
        raise _fail(root, page_url, f"unexpected Content-Type {content_type!r}")
    return sorted({canonicalize_name(n) for n in names if n})
