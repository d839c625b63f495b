"""Checking a served index from outside: ``rewheel verify --index URL``.

Only what every client of the index gets is used: its pages and files over HTTP, through
``index.http.HttpClient`` and its limits (a page, a metadata file or a provenance object is read
into memory up to its limit; a file is streamed into a private temporary folder, up to the size
its page lists, and removed once hashed and read). Nothing of the repository on disk is read:
this is how someone who installs from the index checks it. With a pinned key it is as strong as
``verify --repo --public-key`` for what the index serves; without one it checks that what is
served agrees with itself and says which key signed (as ``chain`` does).

For every wheel the pages list (the JSON and the HTML page must list the same files alike):

- **built from source**: the file is downloaded and has the sha256 its page lists; its PEP 658
  metadata, when the page offers it, is the wheel's own METADATA with the sha256 the page gives;
  the page links a PEP 740 provenance object on the index's own host (a link elsewhere is a
  finding and is not fetched) whose every rewheel attestation is signed (by the pinned key) and
  carries an in-toto statement whose subject is this file, name and sha256; the sdist it names,
  when the index lists it, has the sha256 the statement says;
- **build tools**: every wheel of the build environment the statement names is on the index with
  that sha256 and is built from source, recursively;
- **dependencies**: every wheel its METADATA requires (for this interpreter, recursively) is on
  the index and built from source.

Every sdist the pages list is downloaded too and must have its listed sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from packaging.requirements import Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..core.errors import RewheelError
from ..core.types import IndexFile
from ..index.credentials import split_credentials
from ..index.http import HttpClient, Response
from ..index.index_pages import project_url
from ..index.index_parse import parse_page, parse_root_page
from ..repo.published_keys import PublicKey
from ..repo.wheelfile import READ_ERRORS, read_metadata_bytes, run_requirements
from .chain import UNSIGNED_NOTE
from .custody import BuildTool, ChainReport, CustodyWalk, Result, Verdict, dedupe
from .provenance import (
    PREDICATE_TYPE,
    check_statement,
    read_provenance_object,
    role_entries,
    sdist_filename,
    sha256_of,
)

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
HTML_ACCEPT = "application/vnd.pypi.simple.v1+html, text/html;q=0.5"
_READ_ERRORS: tuple[type[Exception], ...] = (RewheelError, *READ_ERRORS)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _label(file: IndexFile) -> str:
    try:
        if file.filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(file.filename)
        else:
            name, version = parse_sdist_filename(file.filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return file.filename
    return f"{name} {version}"


@dataclass
class _Built:
    """What a wheel's verified provenance says it was built from."""

    source: tuple[str, str | None] | None  # sdist file name, sha256
    build_env: list[tuple[str, str, str]] = field(default_factory=list)  # package, version, sha


def _built_from(statement: Mapping[str, Any]) -> _Built:
    predicate = statement.get("predicate")
    build = predicate.get("buildDefinition") if isinstance(predicate, Mapping) else None
    deps = build.get("resolvedDependencies") if isinstance(build, Mapping) else None
    built = _Built(source=None)
    for dep in role_entries(deps, "source"):
        if isinstance(dep.get("uri"), str):
            built.source = (sdist_filename(dep["uri"]), sha256_of(dep))
    for dep in role_entries(deps, "build-environment"):
        sha256 = sha256_of(dep)
        if sha256 is not None:
            annotations = dep["annotations"]
            built.build_env.append(
                (str(annotations.get("package")), str(annotations.get("version")), sha256)
            )
    return built


class _IndexChecker:
    """An index over HTTP as a ``WheelSource``: its pages, files, PEP 658 metadata and PEP 740
    provenance objects, each fetched once."""

    tool_absent = "on the index"
    dependency_absent = "on the index"

    def __init__(
        self,
        client: HttpClient,
        index_url: str,
        *,
        pinned: Mapping[str, PublicKey],
        allow_prebuilt: bool,
        scratch: Path,
    ) -> None:
        self.client = client
        # Credentials in the URL are sent (every request goes to its host), never shown.
        index_url, self._auth = split_credentials(index_url)
        self.base = index_url if index_url.endswith("/") else index_url + "/"
        self.origin = _origin(self.base)
        self.pinned = dict(pinned)  # --public-key, by key id
        self.signed_by: dict[str, str] = {}  # file URL -> key id of a valid attestation
        self.allow_prebuilt = allow_prebuilt
        self.scratch = scratch
        self.problems: list[str] = []  # of the index, not of one wheel
        self.notes: list[str] = []
        self.signers: dict[str, int] = {}
        self._pages: dict[str, list[IndexFile]] = {}
        self._own: dict[str, Result] = {}
        self._built: dict[str, _Built] = {}
        self._metadata: dict[str, bytes] = {}

    # -- HTTP

    def _get(
        self,
        url: str,
        accept: str,
        what: str,
        *,
        limit: Literal["page_bytes", "metadata_bytes"] = "page_bytes",
    ) -> Response | str:
        """The answer to a GET, or why there is none to use."""
        try:
            response = self.client.get(url, {"Accept": accept, **self._auth}, limit=limit)
        except RewheelError as exc:
            return f"{what} cannot be fetched: {exc.message}"
        if response.status != 200:
            return f"{what} ({url}): HTTP {response.status}"
        if response.url and _origin(response.url) != self.origin:
            return f"{what} ({url}) was redirected to another host ({response.url})"
        return response

    def _same_host(self, url: str) -> bool:
        return _origin(url) == self.origin

    # -- pages

    def projects(self) -> list[str]:
        listed: dict[str, list[str]] = {}
        for accept in (JSON_ACCEPT, HTML_ACCEPT):
            answer = self._get(self.base, accept, "the root page")
            if isinstance(answer, str):
                self.problems.append(answer)
                continue
            try:
                listed[answer.headers.get("Content-Type", "")] = parse_root_page(
                    answer.body, answer.headers.get("Content-Type"), answer.url or self.base
                )
            except RewheelError as exc:
                self.problems.append(exc.message)
        lists = list(listed.values())
        if len(lists) == 2 and lists[0] != lists[1]:
            only = sorted(set(lists[0]) ^ set(lists[1]))
            self.problems.append(
                f"the JSON and HTML root pages list different projects: {', '.join(only)}"
            )
        return sorted({name for names in lists for name in names})

    def files(self, project: str) -> list[IndexFile]:
        """The files the pages of ``project`` list (the JSON page's; both compared)."""
        name = canonicalize_name(project)
        if name in self._pages:
            return self._pages[name]
        url = urljoin(self.base, project_url(name))
        pages: list[tuple[str, list[IndexFile]]] = []
        for accept in (JSON_ACCEPT, HTML_ACCEPT):
            answer = self._get(url, accept, f"the page of {name}")
            if isinstance(answer, str):
                self.problems.append(answer)
                continue
            content_type = answer.headers.get("Content-Type")
            try:
                page = parse_page(answer.body, content_type, answer.url or url, name)
            except RewheelError as exc:
                self.problems.append(exc.message)
                continue
            kind = "JSON" if "json" in (content_type or "") else "HTML"
            pages.append((kind, list(page.files)))
        if len(pages) == 2 and pages[0][0] != pages[1][0]:
            self._compare_pages(name, pages[0][1], pages[1][1])
        files = pages[0][1] if pages else []
        self._pages[name] = files
        return files

    def _compare_pages(
        self, name: NormalizedName, json_files: list[IndexFile], html_files: list[IndexFile]
    ) -> None:
        def facts(f: IndexFile) -> tuple[str, str | None, str | None, str | None]:
            return (f.url, f.sha256, f.metadata_sha256, f.provenance)

        by_json = {f.filename: facts(f) for f in json_files}
        by_html = {f.filename: facts(f) for f in html_files}
        for filename in sorted(set(by_json) | set(by_html)):
            if by_json.get(filename) != by_html.get(filename):
                self.problems.append(
                    f"the JSON and HTML pages of {name} disagree about {filename} (its URL,"
                    " sha256, metadata or provenance, or whether it is listed)"
                )

    # -- one wheel

    def key(self, file: IndexFile) -> str:
        return file.url

    def label(self, file: IndexFile) -> str:
        return _label(file)

    def tool_label(self, tool: BuildTool[IndexFile], wheel: IndexFile) -> str:
        return f"{tool.name} {tool.version}"  # as the statement names it

    def check_wheel(self, file: IndexFile) -> Result:
        """Kept here too, not only by the walk: ``requirements`` needs the download it makes."""
        if file.url not in self._own:
            self._own[file.url] = self._check_own(file)
        return self._own[file.url]

    def _download(self, file: IndexFile, label: str) -> tuple[str, bytes | None] | str:
        """The file's sha256 and, for a wheel, its METADATA; or why not."""
        if not self._same_host(file.url):
            return (
                f"{label}: the page links {file.filename} to {file.url}, on another host than"
                " the index: not fetched"
            )
        path = self.scratch / file.filename
        try:
            digest = self.client.download_to(file.url, path, size=file.size, headers=self._auth)
        except RewheelError as exc:
            return f"{label}: {file.filename} cannot be downloaded: {exc.message}"
        try:
            if not file.filename.endswith(".whl"):
                return digest, None
            try:
                return digest, read_metadata_bytes(path)
            except _READ_ERRORS as exc:
                return f"{label}: {file.filename} is not a readable wheel: {exc}"
        finally:
            with contextlib.suppress(OSError):
                path.unlink()

    def _check_own(self, file: IndexFile) -> Result:
        label = _label(file)
        got = self._download(file, label)
        if isinstance(got, str):
            return Verdict.BROKEN, [got]
        digest, metadata = got
        problems = []
        if file.sha256 is None:
            problems.append(f"{label}: the page lists {file.filename} without a sha256")
        elif digest != file.sha256:
            problems.append(
                f"{label}: {file.filename} as served has the sha256 {digest}, not the"
                f" {file.sha256} its page lists"
            )
        if metadata is None:
            return (Verdict.BROKEN if problems else Verdict.OK), problems
        self._metadata[file.url] = metadata
        problems += self._check_metadata(file, label, metadata)
        if file.provenance is None:
            if self.allow_prebuilt:
                return (Verdict.BROKEN, problems) if problems else (Verdict.PREBUILT, [])
            problems.append(
                f"{label}: the index gives no provenance for {file.filename} (a pre-built"
                " wheel, or one built with --no-sign; --allow-prebuilt accepts it)"
            )
        else:
            problems += self._check_provenance(file, label, digest)
        return (Verdict.BROKEN if problems else Verdict.OK), problems

    def _check_metadata(self, file: IndexFile, label: str, metadata: bytes) -> list[str]:
        """PEP 658: what installers resolve with must be the wheel's own METADATA."""
        if not file.has_metadata:
            return []
        answer = self._get(
            file.url + ".metadata", "*/*", f"{label}: its metadata", limit="metadata_bytes"
        )
        if isinstance(answer, str):
            return [answer]
        problems = []
        if answer.body != metadata:
            problems.append(
                f"{label}: the metadata served for {file.filename} is not the wheel's own"
                " METADATA (installers resolve with it)"
            )
        if file.metadata_sha256 is not None and file.metadata_sha256 != (
            hashlib.sha256(answer.body).hexdigest()
        ):
            problems.append(
                f"{label}: the page gives another sha256 for the metadata of {file.filename}"
            )
        return problems

    def _check_provenance(self, file: IndexFile, label: str, digest: str) -> list[str]:
        url = file.provenance or ""
        if not self._same_host(url):
            return [
                f"{label}: the page links the provenance of {file.filename} to {url}, on"
                " another host than the index: not fetched"
            ]
        answer = self._get(url, "application/json", f"{label}: its provenance")
        if isinstance(answer, str):
            return [answer]
        try:
            document = json.loads(answer.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # too deeply nested
            return [f"{label}: the provenance of {file.filename} is not JSON: {exc}"]
        attestations, found = read_provenance_object(document)
        problems = [f"{label}: provenance of {file.filename}: {p}" for p in found]
        if not attestations:
            return [*problems, f"{label}: no attestation of {file.filename} rewheel can check"]
        for attested in attestations:
            keyid = attested.key.keyid
            if attested.publisher.get("keyid") != keyid:
                problems.append(
                    f"{label}: the publisher of an attestation of {file.filename} names another"
                    " key than the one that verifies it"
                )
            if self.pinned and keyid not in self.pinned:
                problems.append(
                    f"{label}: {file.filename} is attested by the key {keyid}, not by a pinned one"
                )
                continue
            if not attested.signed:
                problems.append(
                    f"{label}: the signature of the attestation of {file.filename} is not valid"
                )
                continue
            try:
                statement = json.loads(attested.statement)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                problems.append(f"{label}: an attested statement is not JSON: {exc}")
                continue
            found = check_statement(statement, wheel_filename=file.filename, wheel_sha256=digest)
            if isinstance(statement, Mapping) and statement.get("predicateType") == PREDICATE_TYPE:
                built = _built_from(statement)
                self._built.setdefault(file.url, built)
                found += self._check_source(file, built)
            if found:
                problems += [f"{label}: {file.filename}: {p}" for p in found]
                continue
            self.signers[keyid] = self.signers.get(keyid, 0) + 1
            self.signed_by.setdefault(file.url, keyid)
        if file.url not in self._built and not problems:
            problems.append(f"{label}: no attested SLSA provenance names its build")
        return problems

    def _check_source(self, file: IndexFile, built: _Built) -> list[str]:
        if built.source is None:
            return ["the provenance names no sdist"]
        filename, sha256 = built.source
        project = canonicalize_name(file.filename.split("-", 1)[0])
        for listed in self._pages.get(project, []):
            if listed.filename == filename and listed.sha256 != sha256:
                return [f"the index lists {filename} with another sha256 than the provenance"]
        return []

    # -- its build environment

    def unknown_tools(self, file: IndexFile, own: Verdict) -> Result | None:
        if file.url in self._built:
            return None
        if own == Verdict.PREBUILT:
            return Verdict.PREBUILT, []
        return Verdict.BROKEN, [
            f"{_label(file)}: build environment unknown (no verified provenance)"
        ]

    def build_tools(self, file: IndexFile) -> Iterator[BuildTool[IndexFile]]:
        """The wheels its verified statement names, found by sha256 on the page of each (which
        is fetched when the walk comes to it)."""
        for package, version, sha256 in self._built[file.url].build_env:
            tool = next(
                (
                    f
                    for f in self.files(package)
                    if f.sha256 == sha256 and f.filename.endswith(".whl")
                ),
                None,
            )
            yield BuildTool(package, version, sha256, tool)

    # -- what it needs at run time

    def requirements(self, file: IndexFile) -> list[Requirement]:
        self.check_wheel(file)
        data = self._metadata.get(file.url)
        if data is None:
            return []
        return run_requirements(data)

    def wheels_named(self, name: str) -> list[tuple[IndexFile, Version]]:
        """The wheels the pages of ``name`` list, with the versions their file names give."""
        out = []
        for listed in self.files(name):
            if not listed.filename.endswith(".whl"):
                continue
            try:
                version = parse_wheel_filename(listed.filename)[1]
            except (InvalidWheelFilename, InvalidVersion):
                continue
            out.append((listed, version))
        return out

    def signer(self, file: IndexFile) -> str | None:
        """The key id of the valid attestation ``file`` carries, once checked."""
        return self.signed_by.get(file.url)


def verify_index(
    client: HttpClient,
    index_url: str,
    *,
    scratch: Path,
    public_keys: Sequence[PublicKey] = (),
    allow_prebuilt: bool = False,
) -> ChainReport:
    """Check every file of the index at ``index_url`` (its root, ``.../simple/``) from outside.

    ``scratch``: a private folder that downloads go through (each removed once read).
    ``public_keys``: the pinned keys; every attestation must be signed with one of them.
    """
    checker = _IndexChecker(
        client,
        index_url,
        pinned={key.keyid: key for key in public_keys},
        allow_prebuilt=allow_prebuilt,
        scratch=scratch,
    )
    walk = CustodyWalk(checker)
    report = ChainReport()
    files = [(p, f) for p in checker.projects() for f in checker.files(p)]
    for _, file in files:
        if file.filename.endswith(".whl"):
            report.entries.append(walk.entry(file))
        else:
            report.problems += walk.own(file)[1]  # an sdist: its hash
    report.entries.sort(key=lambda e: (e.name, e.version, e.wheel or ""))
    report.problems = dedupe(report.problems + checker.problems)
    report.signers = dict(checker.signers)
    if not public_keys:
        if checker.signers:
            keys = "; ".join(
                f"{keyid} ({count} wheel(s))" for keyid, count in sorted(checker.signers.items())
            )
            checker.notes.append(
                f"attestations checked with the key each carries, which you did not pin: {keys}."
                " That shows what the index serves agrees with itself, nothing more: whoever"
                " runs the index can sign a rewrite with a key of their own. Compare the"
                " fingerprint with one you got elsewhere, then pin it: --public-key"
                " KEY.pub.pem (the index serves it at keys/<fingerprint>.pub.pem)"
            )
        else:
            checker.notes.append(UNSIGNED_NOTE)
    report.notes = dedupe(checker.notes)
    return report
