"""Browsable pages of a repository, for people: what is in it, why, and how each wheel was built.

What the repository remembers of its last runs (``core.history``) says why each package is there,
which run had it, and which packages failed or were left unbuilt, with their chains: those have
sections too, and the front page lists them.

Written as static files under ``browse/`` (``index.html``, one ``<project>.html`` per project and
``graph.html``), so they work from ``rewheel serve``, from any static file server or from disk.
Links are relative: ``../wheels/<file>``, ``../logs/<log>``, ``<project>.html#v-<version>``.
The installers' pages under ``simple/`` are a different thing and are not touched here.

``collect`` reads the repository, ``render_site`` is pure (values in, HTML text out, every value
escaped: names, requirements and metadata are not trusted; only ``http(s)://`` addresses become
links), ``write_browse`` writes the files. What a build could have planted in the repository is
not trusted either: nothing is read through a symbolic link (``open_below``), and the pages' own
scripts and styles are the only ones ``content_security_policy`` lets a browser run.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from packaging.utils import canonicalize_name

from ..core.errors import RepositoryError, Step
from ..core.fsutil import atomic_write_text, is_plain_file
from ..core.history import History, Remembered
from ..core.records import BuildRecord, RecordError, Why
from ..core.report import Outcome
from ..core.versions import newest_first, normal_version
from ..index.index_pages import PROVENANCE_OBJECT_SUFFIX
from ..repo.published_keys import KEYS_DIR, key_file_name, published_keys
from ..repo.repository import Repository
from ..repo.wheelfile import parse_metadata
from .assets import read_asset
from .graph_export import (
    INLINE_SCRIPTS,
    INLINE_STYLES,
    Graph,
    chains,
    format_chain,
    history_graph,
    run_graph,
    to_html,
)

BROWSE_DIR = "browse"
PROVENANCE_SUFFIXES = (".provenance.json", ".provenance.dsse.json", PROVENANCE_OBJECT_SUFFIX)
_PROVENANCE_LABELS = {
    ".provenance.json": "provenance",
    ".provenance.dsse.json": "signed provenance",
    PROVENANCE_OBJECT_SUFFIX: "PEP 740 provenance",
}
_PAGE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?\.html$")
# An address shown as a link: spelled out with its scheme, nothing a browser would strip or fold
# (spaces, controls, backslashes) so that what is checked is what the browser follows.
_LINKABLE_URL = re.compile(r"^https?://[^\s\x00-\x1f\x7f\\]+$", re.IGNORECASE)
# Chains shown for a package that failed or was not built (``rewheel why`` lists them all).
MAX_PAGE_CHAINS = 10


@dataclass(frozen=True)
class WheelInfo:
    filename: str
    sha256: str
    size: int
    provenance: tuple[
        str, ...
    ] = ()  # files beside the wheel in wheels/, e.g. <wheel>.provenance.json


@dataclass(frozen=True)
class VersionInfo:
    name: str  # normalized
    version: str
    wheels: tuple[WheelInfo, ...]
    record: BuildRecord | None = None  # build-order.json entry, else records/ file
    in_last_run: bool = False  # listed in build-order.json (so ``why`` is complete)
    summary: str | None = None
    requires_python: str | None = None
    requires_dist: tuple[str, ...] = ()
    log: str | None = None  # file name in logs/
    remembered: Remembered | None = None  # what the remembered runs say of it (core.history)
    chains: tuple[str, ...] = ()  # for one not in the repository: chains that brought it in
    chains_cut: bool = False  # more chains than shown

    @property
    def outcome(self) -> Outcome | None:
        return None if self.remembered is None else self.remembered.node.outcome

    @property
    def not_built(self) -> bool:
        """No wheel of it here: its newest run failed on it or left it unbuilt."""
        return not self.wheels and self.outcome is not None and not self.outcome.in_repository


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    versions: tuple[VersionInfo, ...]  # newest first

    @property
    def latest(self) -> VersionInfo:
        built = [v for v in self.versions if v.wheels]
        return built[0] if built else self.versions[0]

    @property
    def has_wheels(self) -> bool:
        return any(v.wheels for v in self.versions)


@dataclass(frozen=True)
class Site:
    projects: tuple[ProjectInfo, ...]
    has_graph: bool = False
    title: str = "rewheel repository"
    notes: tuple[str, ...] = ()  # run files that could not be read
    runs: int = 0  # runs remembered
    keys: tuple[str, ...] = ()  # key ids of the signing keys published in keys/


# -- rendering (pure) -------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def page_name(project: str) -> str:
    return f"{canonicalize_name(project)}.html"


def version_anchor(version: str) -> str:
    return f"v-{version}"


def version_href(project: str, version: str) -> str:
    return f"{page_name(project)}#{quote(version_anchor(version), safe='')}"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n"
        '<link rel="icon" href="data:,">\n'  # no favicon request to the server
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        f"{body}</body>\n</html>\n"
    )


def _kind(kind: str) -> str:
    return f'<span class="kind {_e(kind)}">{_e(kind)}</span>'


def render_index(site: Site) -> str:
    """The front page: every project, its latest version and summary, and how to install."""
    wheels = sum(len(v.wheels) for p in site.projects for v in p.versions)
    built = [p for p in site.projects if p.has_wheels]
    links = ['<a href="../simple/">simple index (for installers)</a>']
    if site.has_graph:
        links.insert(0, '<a href="graph.html" id="graph-link">dependency graph</a>')
    rows = []
    for p in built:
        latest = p.latest
        rows.append(
            f'<tr data-name="{_e(p.name)}"><td><a href="{_e(page_name(p.name))}">{_e(p.name)}</a>'
            f"</td><td>{_e(latest.version)}</td><td>{len(p.versions)}</td>"
            f"<td>{_e(latest.summary or '')}</td></tr>\n"
        )
    body = (
        f"<h1>{_e(site.title)}</h1>\n"
        f'<p id="counts">{len(built)} projects, {wheels} wheels, each built here from '
        "its sdist. " + " · ".join(links) + "</p>\n"
        "<p>Install from it: <code>pip install --index-url "
        '<span id="origin">http://HOST:PORT</span>/simple/ NAME</code></p>\n'
        '<input type="search" id="filter" placeholder="filter projects" aria-label="filter">\n'
        '<table id="projects"><thead><tr><th>project</th><th>latest</th><th>versions</th>'
        "<th>summary</th></tr></thead>\n<tbody>\n" + "".join(rows) + "</tbody></table>\n"
    )
    body += _keys_paragraph(site.keys)
    if not built:
        body += '<p class="muted">Nothing was built into this repository yet.</p>\n'
    body += _not_built_table(site)
    if site.runs:
        body += (
            f'<p class="muted" id="runs">What the last {site.runs} run(s) did is remembered.</p>\n'
        )
    for note in site.notes:
        body += f'<p class="muted note">note: {_e(note)}</p>\n'
    body += _INDEX_SCRIPT
    return _page(site.title, body)


def _keys_paragraph(keys: Sequence[str]) -> str:
    """The signing keys the repository publishes, with their fingerprints: what to pin."""
    if not keys:
        return (
            '<p id="signing-keys" class="muted">No signing key is published here: the '
            "provenance of these wheels is not signed.</p>\n"
        )
    items = "".join(
        f'<li><code class="fingerprint">{_e(keyid)}</code> '
        f'(<a class="public-key" href="../{KEYS_DIR}/{_e(quote(key_file_name(keyid)))}">'
        "Ed25519 public key</a>)</li>"
        for keyid in keys
    )
    return (
        '<div id="signing-keys"><p>Provenance is signed (DSSE, PEP 740) with the key'
        f"{'s' if len(keys) > 1 else ''} below, by fingerprint (sha256 of the public key):</p>"
        f"<ul>{items}</ul>"
        '<p class="muted">Whoever can change this page can change the key too: compare the '
        "fingerprint with one you got from whoever runs this repository, then pin it: "
        "<code>rewheel verify --index URL --public-key KEY.pub.pem</code>.</p></div>\n"
    )


_STATUS: dict[Outcome | None, str] = {
    Outcome.FAILED: "failed",
    Outcome.DEPENDENCY_FAILED: "not built: a dependency failed",
    Outcome.NOT_ATTEMPTED: "not attempted",
}


def _not_built_table(site: Site) -> str:
    """The packages the newest run that had them failed on or left unbuilt."""
    rows = []
    for p in site.projects:
        for v in p.versions:
            if not v.not_built or v.remembered is None:
                continue
            r = v.remembered
            error = r.node.error
            reason = _problem_text(v)
            rows.append(
                f'<tr class="{_e(_status_class(v))}" data-name="{_e(p.name)}">'
                f'<td><a href="{_e(version_href(p.name, v.version))}">{_e(p.name)}</a></td>'
                f"<td>{_e(v.version)}</td><td>{_e(_STATUS.get(r.node.outcome, ''))}</td>"
                f"<td>{_e(error.step if error is not None and error.step else '')}</td>"
                f"<td>{_e(reason)}</td><td>{_e(r.run.label)}</td></tr>\n"
            )
    if not rows:
        return ""
    return (
        "<h2>Failed or not built</h2>\n"
        '<table id="not-built"><thead><tr><th>project</th><th>version</th><th>status</th>'
        "<th>step</th><th>reason</th><th>run</th></tr></thead>\n<tbody>\n"
        + "".join(rows)
        + "</tbody></table>\n"
    )


def _status_class(version: VersionInfo) -> str:
    return "failed" if version.outcome is Outcome.FAILED else "unbuilt"


def _problem_text(version: VersionInfo) -> str:
    """Why a version failed or was not built, in one line."""
    remembered = version.remembered
    if remembered is None:
        return ""
    error = remembered.node.error
    if error is None:
        return "the run ended before it was reached"
    return error.first_line.removeprefix("not built: ")


# Fills in the server's address when served over HTTP, and filters the table as one types.
_CSS = read_asset("browse.css")
_INDEX_JS = read_asset("browse-index.js")
_INDEX_SCRIPT = f"<script>{_INDEX_JS}</script>\n"


def _csp_hashes(sources: Iterable[str]) -> str:
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
        for text in sources
    )


def content_security_policy() -> str:
    """The Content-Security-Policy the pages are served with: nothing but their own inline
    scripts and styles (allowed by hash, so an injected one would not run), no requests at all
    but the inline favicon, and no framing. Links and ``location`` still work.
    """
    return (
        "default-src 'none'; "
        f"script-src {_csp_hashes((_INDEX_JS, *INLINE_SCRIPTS))}; "
        f"style-src {_csp_hashes((_CSS, *INLINE_STYLES))}; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _why(version: VersionInfo, known: Mapping[str, set[str]]) -> str:
    remembered = version.remembered
    reasons: Sequence[Why] = version.record.why if version.record is not None else ()
    run_line = ""
    if remembered is not None:
        run = remembered.run
        reasons = [
            Why(e.parent, e.requirement, e.kind) for e in run.edges if e.child == remembered.id
        ]
        run_line = f'<p class="run">In the {_e(run.label)}.</p>\n'
        built_by = remembered.built_by
        if built_by is not None and built_by is not run:
            run_line += (
                f'<p class="built-by">Its wheel was built by the {_e(built_by.label)}.</p>\n'
            )
    items = []
    for reason in reasons:
        kind, requirement, parent = reason.kind, reason.requirement, reason.package
        if parent is None:
            items.append(f"<li>requested as <code>{_e(requirement)}</code> {_kind(kind)}</li>")
        else:
            items.append(
                f"<li>{_node_link(parent, known)} needs <code>{_e(requirement)}</code> "
                f"{_kind(kind)}</li>"
            )
    if items:
        return run_line + '<ul class="why">\n' + "\n".join(items) + "\n</ul>\n"
    if version.in_last_run or remembered is not None:
        return run_line + '<p class="muted">No reason recorded.</p>\n'
    return (
        '<p class="muted">Not part of the runs this repository remembers (built by an earlier '
        "run).</p>\n"
    )


def _failure(version: VersionInfo) -> str:
    """What a version that failed or was not built shows instead of its files."""
    remembered = version.remembered
    if remembered is None:
        return ""
    error = remembered.node.error
    label = _STATUS.get(remembered.node.outcome, "")
    step = f" [{error.step}]" if error is not None and error.step else ""
    out = [
        f'<p class="status {_e(_status_class(version))}">{_e(label.capitalize())}{_e(step)} '
        f"in the {_e(remembered.run.label)}.</p>\n"
    ]
    if error is not None:
        out.append(f'<pre class="error">{_e(error.message)}</pre>\n')
        if error.chains:
            items = "".join(f"<li><code>{_e(' -> '.join(c))}</code></li>" for c in error.chains)
            out.append(f'<ul class="error-chains">{items}</ul>\n')
        if error.hint:
            out.append(f'<p class="hint">{_e(error.hint)}</p>\n')
    else:
        out.append(f'<p class="muted">{_e(_problem_text(version))}.</p>\n')
    if version.log:
        href = f"../logs/{quote(version.log)}"
        out.append(f'<p><a class="log" href="{_e(href)}">build log</a></p>\n')
    if version.chains:
        items = "".join(f"<li><code>{_e(c)}</code></li>" for c in version.chains)
        more = (
            f'<p class="muted">and more (<code>rewheel why '
            f"{_e(version.name)}=={_e(version.version)}</code> lists them all)</p>\n"
            if version.chains_cut
            else ""
        )
        out.append(
            f'<h3>Chains from the requested packages</h3>\n<ul class="chains">{items}</ul>\n{more}'
        )
    return "".join(out)


def _node_link(node: str, known: Mapping[str, set[str]]) -> str:
    name, _, version = node.partition("==")
    project = canonicalize_name(name)
    if version in known.get(project, set()):
        return f'<a href="{_e(version_href(project, version))}">{_e(node)}</a>'
    return _e(node)


def _build_env(record: BuildRecord, known: Mapping[str, set[str]], shas: set[str]) -> str:
    env = record.build_env
    if not env:
        if record.prebuilt:
            return '<p class="muted">None: the upstream\'s own wheel was taken, not built.</p>\n'
        return '<p class="muted">Empty: built with no other package installed.</p>\n'
    rows = []
    for item in env:
        name, version, sha256 = item.name, item.version, item.sha256
        project = canonicalize_name(name)
        label = f"{project} {version}"
        if version in known.get(project, set()):
            cell = (
                f'<a class="env-link" href="{_e(version_href(project, version))}">{_e(label)}</a>'
            )
        else:
            cell = _e(label)
        note = "" if sha256 in shas else ' <span class="muted">(not in this repository)</span>'
        rows.append(
            f'<tr><td>{cell}</td><td><code class="sha256">{_e(sha256)}</code>{note}</td></tr>'
        )
    return (
        '<table class="build-env"><thead><tr><th>wheel</th><th>sha256</th></tr></thead><tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table>\n"
    )


def _url_link(url: str) -> str:
    """A link to ``url`` when it is an ``http(s)://`` address, else the address as plain text.

    A record is written from what an index said: ``javascript:`` or ``data:`` must not become
    something to click on.
    """
    if _LINKABLE_URL.match(url):
        return f'<a href="{_e(url)}">{_e(url.rsplit("/", 1)[-1])}</a>'
    return f'<code class="url">{_e(url)}</code>'


def _dl(items: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f"<dl>{rows}</dl>\n" if rows else ""


def _requirements(values: Sequence[str]) -> str:
    if not values:
        return '<span class="muted">none</span>'
    return ", ".join(f"<code>{_e(v)}</code>" for v in values)


def _used_by(
    version: VersionInfo, users: Mapping[str, list[str]], known: Mapping[str, set[str]]
) -> str:
    nodes = sorted({node for w in version.wheels for node in users.get(w.sha256, [])})
    if not nodes:
        return '<p class="muted">No build environment of this repository held it.</p>\n'
    items = "".join(f"<li>{_node_link(node, known)}</li>" for node in nodes)
    return f'<ul class="used-by">{items}</ul>\n'


def _version_section(
    project: ProjectInfo,
    version: VersionInfo,
    known: Mapping[str, set[str]],
    shas: set[str],
    users: Mapping[str, list[str]],
) -> str:
    record = version.record
    out = [
        f'<section class="version" id="{_e(version_anchor(version.version))}">\n'
        f"<h2>{_e(project.name)} {_e(version.version)}</h2>\n"
    ]
    facts: list[tuple[str, str]] = []
    if version.summary:
        facts.append(("summary", _e(version.summary)))
    if version.requires_python:
        facts.append(("requires python", f"<code>{_e(version.requires_python)}</code>"))
    if version.requires_dist:
        facts.append(("requires", _requirements(list(version.requires_dist))))
    out.append(_dl(facts))

    if version.not_built:
        out.append(_failure(version))
        out.append("<h3>Why it is here</h3>\n")
        out.append(_why(version, known))
        out.append("</section>\n")
        return "".join(out)
    if version.outcome is not None and not version.outcome.in_repository:
        # A wheel of it is here, from an earlier run; its newest run did not build it again.
        out.append(_failure(version))

    out.append("<h3>Files</h3>\n")
    rows = []
    for w in version.wheels:
        extra = []
        for fname in w.provenance:
            label = _PROVENANCE_LABELS[fname[len(w.filename) :]]
            extra.append(f'<a class="provenance" href="../wheels/{_e(quote(fname))}">{label}</a>')
        rows.append(
            f'<tr><td><a class="wheel" href="../wheels/{_e(quote(w.filename))}">'
            f"{_e(w.filename)}</a>{' · ' + ' · '.join(extra) if extra else ''}</td>"
            f"<td>{_size(w.size)}</td>"
            f'<td><code class="sha256">{_e(w.sha256)}</code></td></tr>'
        )
    out.append(
        '<table class="files"><thead><tr><th>file</th><th>size</th><th>sha256</th></tr>'
        "</thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n"
    )

    out.append("<h3>Why it is here</h3>\n")
    out.append(_why(version, known))
    out.append("<h3>In the build environment of</h3>\n")
    out.append(_used_by(version, users, known))

    if record:
        out.append("<h3>How it was built</h3>\n")
        built: list[tuple[str, str]] = []
        if record.prebuilt:
            built.append(("source", "the upstream's pre-built wheel (allowed by the settings)"))
        if record.from_cache:
            # Built by another repository and taken from it, signed by a key this one trusted.
            built.append(
                ("source", f"built elsewhere, taken from the build cache {_e(record.from_cache)}")
            )
        if record.sdist_url:
            built.append(("sdist", _url_link(record.sdist_url)))
        if record.sdist_sha256:
            built.append(("sdist sha256", f'<code class="sha256">{_e(record.sdist_sha256)}</code>'))
        if not record.prebuilt:
            built.append(("build-system.requires", _requirements(record.build_system_requires)))
            built.append(("backend asked for", _requirements(record.backend_requires)))
        built.append(("build time", f"{record.seconds:.1f}s"))
        if record.cache_key:
            built.append(("cache key", f'<code class="sha256">{_e(record.cache_key)}</code>'))
        if version.log:
            href = f"../logs/{quote(version.log)}"
            built.append(("log", f'<a class="log" href="{_e(href)}">{_e(version.log)}</a>'))
        out.append(_dl(built))
        out.append("<h3>Build environment</h3>\n")
        out.append(_build_env(record, known, shas))
        out.append(
            "<details><summary>the full record</summary><pre>"
            + _e(json.dumps(record.to_json(), indent=2, sort_keys=True, default=str))
            + "</pre></details>\n"
        )
    elif version.log:
        href = f"../logs/{quote(version.log)}"
        out.append(f'<p><a class="log" href="{_e(href)}">build log</a></p>\n')
    else:
        out.append('<p class="muted">No build record for this version.</p>\n')
    out.append("</section>\n")
    return "".join(out)


@dataclass(frozen=True)
class _Links:
    """What every project page looks up about the whole site."""

    known: dict[str, set[str]]  # project -> versions with a section
    shas: set[str]  # every wheel's sha256
    users: dict[str, list[str]]  # wheel sha256 -> the builds whose environment held it

    @classmethod
    def of(cls, site: Site) -> _Links:
        users: dict[str, list[str]] = {}
        for p in site.projects:
            for v in p.versions:
                for item in v.record.build_env if v.record is not None else ():
                    users.setdefault(item.sha256, []).append(f"{p.name}=={v.version}")
        return cls(
            known={p.name: {v.version for v in p.versions} for p in site.projects},
            shas={w.sha256 for p in site.projects for v in p.versions for w in v.wheels},
            users=users,
        )


def render_project(project: ProjectInfo, site: Site, links: _Links | None = None) -> str:
    """A project's page: a section per version with files, reasons, build environment, log."""
    links = links or _Links.of(site)
    versions = " ".join(
        f'<a href="#{_e(quote(version_anchor(v.version), safe=""))}">{_e(v.version)}</a>'
        + (
            f' <span class="{_e(_status_class(v))}">({_e(_STATUS.get(v.outcome, ""))})</span>'
            if v.not_built
            else ""
        )
        for v in project.versions
    )
    body = (
        '<nav><a href="index.html">all projects</a>'
        + (' · <a href="graph.html">dependency graph</a>' if site.has_graph else "")
        + "</nav>\n"
        f"<h1>{_e(project.name)}</h1>\n"
        f'<p class="versions">versions: {versions}</p>\n'
        + "".join(
            _version_section(project, v, links.known, links.shas, links.users)
            for v in project.versions
        )
    )
    return _page(f"{project.name} · {site.title}", body)


def render_site(site: Site) -> dict[str, str]:
    """Every page of ``site`` by file name (graph.html is added by the writer)."""
    links = _Links.of(site)
    pages = {"index.html": render_index(site)}
    for project in site.projects:
        pages[page_name(project.name)] = render_project(project, site, links)
    return pages


# -- reading the repository -------------------------------------------------------------------


def open_below(root: Path, path: Path) -> BinaryIO:
    """Open the regular file ``path`` (``root`` or a folder under it) without following a
    symbolic link anywhere below ``root``: not the file, not a folder on the way.

    Each folder is opened relative to the one before with ``O_NOFOLLOW`` (no window for a link
    to be swapped in between a check and the open). A link, a missing file or anything but a
    regular file raises ``OSError``; a missing one ``FileNotFoundError``. ``root`` itself is
    taken as given.
    """
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise FileNotFoundError(f"{path} is not under {root}") from None
    if not parts or any(part in (".", "..") for part in parts):
        raise IsADirectoryError(f"{path} names no file under {root}")
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(
                part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder
            )
            os.close(folder)
            folder = inner
        # O_NONBLOCK: opening a FIFO planted in place of a file does not hang the reader.
        fd = os.open(
            parts[-1],
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
            dir_fd=folder,
        )
    finally:
        os.close(folder)
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise IsADirectoryError(f"{path} is not a regular file")
    return f


def _read_below(root: Path, path: Path) -> bytes:
    with open_below(root, path) as f:
        return f.read()


def _read_json(repo: Repository, path: Path) -> Any:
    try:
        return json.loads(_read_below(repo.root, path).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # a page that cannot show one record is still worth writing


def _record(data: object) -> BuildRecord | None:
    try:
        return BuildRecord.from_json(data)
    except RecordError:
        return None  # a page that cannot show one record is still worth writing


def _records(
    repo: Repository,
) -> tuple[dict[tuple[str, str], BuildRecord], set[tuple[str, str]]]:
    """Records by (name, version): records/ first, build-order.json (with ``why``) over them."""
    by_key: dict[tuple[str, str], BuildRecord] = {}
    if repo.records_dir.is_dir() and not repo.records_dir.is_symlink():
        for path in sorted(repo.records_dir.glob("*.json")):
            if path.name.startswith("."):
                continue
            if (record := _record(_read_json(repo, path))) is not None:
                by_key[(canonicalize_name(record.name), normal_version(record.version))] = record
    in_last_run: set[tuple[str, str]] = set()
    order = _read_json(repo, repo.root / "build-order.json")
    for data in order if isinstance(order, list) else []:
        if (record := _record(data)) is not None:
            key = (canonicalize_name(record.name), normal_version(record.version))
            by_key[key] = record
            in_last_run.add(key)
    return by_key, in_last_run


def default_title(repo: Repository) -> str:
    return f"rewheel repository {repo.root.resolve().name}"


_PROJECT = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _remembered(history: History) -> dict[tuple[str, str], Remembered]:
    """The remembered packages by (project, normalized version); a name that could not name a
    page (a hand-edited run file) is left out."""
    out = {}
    for r in history.packages.values():
        name = canonicalize_name(r.node.name)
        if _PROJECT.match(name):
            out[(str(name), normal_version(r.node.version))] = r
    return out


def collect(
    repo: Repository,
    *,
    title: str | None = None,
    has_graph: bool = False,
    history: History | None = None,
) -> Site:
    """What the pages show, read from the repository's wheels, records, logs and run files."""
    history = repo.history() if history is None else history
    remembered = _remembered(history)
    records, in_last_run = _records(repo)
    # Only what the server would hand out is linked: regular files, not symbolic links.
    logs = (
        {p.name for p in repo.logs_dir.iterdir() if is_plain_file(p)}
        if repo.logs_dir.is_dir() and not repo.logs_dir.is_symlink()
        else set()
    )
    present = (
        {p.name for p in repo.wheels_dir.iterdir() if is_plain_file(p)}
        if repo.wheels_dir.is_dir() and not repo.wheels_dir.is_symlink()
        else set()
    )
    grouped: dict[str, dict[str, list[WheelInfo]]] = {}
    metadata: dict[tuple[str, str], bytes] = {}
    for ref in repo.wheels():
        path = repo.wheel_path(ref)
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue  # a symbolic link: not served, so not shown
        size = st.st_size
        provenance = tuple(
            ref.filename + suffix
            for suffix in PROVENANCE_SUFFIXES
            if ref.filename + suffix in present
        )
        grouped.setdefault(ref.name, {}).setdefault(ref.version, []).append(
            WheelInfo(ref.filename, ref.sha256, size, provenance)
        )
        key = (str(ref.name), normal_version(ref.version))
        if key not in metadata:
            with contextlib.suppress(OSError):
                metadata[key] = _read_below(repo.root, path.with_name(path.name + ".metadata"))
    # Versions with no wheel here that their newest run failed on or left unbuilt.
    with_wheels = {(n, normal_version(v)) for n, versions in grouped.items() for v in versions}
    for key, r in remembered.items():
        outcome = r.node.outcome
        if key not in with_wheels and outcome is not None and not outcome.in_repository:
            grouped.setdefault(key[0], {}).setdefault(r.node.version, [])
    graphs: dict[str, Graph] = {}
    projects = []
    for name in sorted(grouped):
        versions: list[VersionInfo] = []
        for version in newest_first(grouped[name]):
            key = (name, normal_version(version))
            record = records.get(key)
            raw = parse_metadata(metadata[key]) if key in metadata else None
            summary = raw.get("summary") if raw is not None else None
            requires_python = raw.get("requires_python") if raw is not None else None
            requires_dist = tuple(raw.get("requires_dist") or []) if raw is not None else ()
            known = remembered.get(key)
            error = known.node.error if known is not None else None
            log = None
            recorded_log = record.log if record else None
            for candidate in (
                Path(error.log).name if error is not None and error.log else None,
                Path(recorded_log).name if isinstance(recorded_log, str) else None,
                f"{name}-{version}.log",
            ):
                if candidate and candidate in logs:
                    log = candidate
                    break
            found: list[str] = []
            cut = False
            if known is not None and not grouped[name][version]:
                run = known.run
                graph = graphs.get(run.id)
                if graph is None:
                    graph = graphs[run.id] = run_graph(run)
                chain_list, cut = chains(graph, known.id, MAX_PAGE_CHAINS)
                found = [format_chain(c) for c in chain_list]
            versions.append(
                VersionInfo(
                    name=name,
                    version=version,
                    wheels=tuple(sorted(grouped[name][version], key=lambda w: w.filename)),
                    record=record,
                    in_last_run=key in in_last_run,
                    summary=str(summary).strip() if summary else None,
                    requires_python=str(requires_python).strip() if requires_python else None,
                    requires_dist=requires_dist,
                    log=log,
                    remembered=known,
                    chains=tuple(found),
                    chains_cut=cut,
                )
            )
        projects.append(ProjectInfo(name=name, versions=tuple(versions)))
    return Site(
        projects=tuple(projects),
        has_graph=has_graph,
        title=title or default_title(repo),
        notes=history.notes,
        runs=sum(1 for run in history.runs if run.started is not None),
        keys=tuple(sorted(published_keys(repo.root)[0])),
    )


def write_browse(repo: Repository) -> Path:
    """Write (or refresh) ``browse/`` from the repository; returns the folder.

    Pages are rewritten only when their text changed, and pages of projects that are gone are
    removed, so the folder always matches the repository.
    """
    out = repo.root / BROWSE_DIR
    title = default_title(repo)
    # Run files that cannot be read are skipped (with a note on the front page): the pages of
    # what can be read are still worth having.
    history = repo.history()
    graph_page = None
    if history.runs:
        graph_page = to_html(history_graph(history), title=f"{title}: dependency graph")
    try:
        site = collect(repo, title=title, has_graph=graph_page is not None, history=history)
        pages = render_site(site)
        if graph_page is not None:
            pages["graph.html"] = graph_page
        out.mkdir(parents=True, exist_ok=True)
        for name, text in pages.items():
            path = out / name
            try:
                if path.read_text(encoding="utf-8") == text:
                    continue
            except (OSError, UnicodeDecodeError):
                pass
            atomic_write_text(path, text)
        for path in out.iterdir():
            if _PAGE_NAME.match(path.name) and path.name not in pages:
                path.unlink(missing_ok=True)
    except OSError as exc:
        raise RepositoryError(
            f"cannot write the browsable pages in {out}: {exc}", step=Step.BROWSE
        ) from exc
    return out
