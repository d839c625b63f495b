"""The chain of custody of a repository's wheels, checked from the files alone.

For each wheel, three guarantees:

- **source**: it has a build record (not a pre-built one, unless allowed), that record names this
  very file, and a provenance statement whose subject is this file (name and sha256) and whose
  sdist and build environment are the record's; the sdist kept in ``sdists/`` is there and
  (like the upstream index, when asked) still has the recorded sha256; with a public key, the
  signature is valid. What installers read about it agrees with the file: its PEP 658
  ``.metadata`` is the wheel's own METADATA, byte for byte (installers resolve dependencies from
  it), and the index pages list it with its sha256, the repository's own URL and the sha256 of
  that METADATA.
- **dependencies**: every wheel it needs at run time (its ``Requires-Dist`` for this interpreter,
  recursively) has the source guarantee.
- **build tools**: every wheel of its build environment (and of theirs, recursively, down to the
  self-building roots with no build environment), and of each dependency's, is a wheel of the
  repository with the source guarantee.

Dependencies are read from each wheel's own METADATA, never from the ``.metadata`` beside it.

Signatures: with pinned keys (``public_keys``, each a ``--public-key``), every provenance must
be signed by one of them (its DSSE envelope, and the PEP 740 provenance object when there is
one); each entry names the key that signed it (``ChainEntry.signer``). Without one, each
signature is checked with the key the repository publishes under the key id it names
(``repo.published_keys``): that catches a signed file changed on its own, but the writer of the
repository can publish a key of their own, so the report says which keys signed and how to pin
one (``unpinned_note``); a repository with no key at all gets ``UNSIGNED_NOTE``. Either way, a
repository rewritten consistently (another wheel with a build record, provenance, signature and
metadata made to match it) passes unless a key its writer cannot reach is pinned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urljoin

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..core.errors import RewheelError
from ..core.fsutil import sha256_file
from ..core.paths import is_local_sdist_url
from ..core.records import BuildRecord
from ..core.types import IndexFile, Upstream, WheelRef
from ..core.versions import normal_version
from ..index.index_pages import PROVENANCE_OBJECT_SUFFIX, provenance_url, sdist_url, wheel_url
from ..index.index_parse import parse_html_page, parse_json_page
from ..repo.published_keys import KEYS_DIR as KEYS_DIR_NAME
from ..repo.published_keys import PublicKey, key_file_name, keys_dir, published_keys
from ..repo.repository import Repository
from ..repo.wheelfile import READ_ERRORS, read_metadata_bytes, run_requirements
from .custody import (
    BuildTool,
    ChainEntry,
    ChainReport,
    CustodyWalk,
    Result,
    Verdict,
    dedupe,
)
from .provenance import (
    DSSE_SUFFIX,
    check_envelope,
    check_statement,
    envelope_keyids,
    load_public_key_files,
    pinned_signer,
    read_provenance_object,
    sdist_filename,
)

# Said once by a check made with no key given (--public-key) or published in the repository.
UNSIGNED_NOTE = (
    "no signing key given or found: hashes, records and provenance were checked against each "
    "other, which catches a file changed on its own, but not a repository rewritten "
    "consistently (another wheel with its build record, provenance subject, metadata and index "
    "pages made to match); only signatures checked with --public-key, a key the writer of the "
    "repository cannot reach, catch that"
)


def unpinned_note(signers: Mapping[str, int | None], keys_folder: Path) -> str:
    """What a check made with the repository's own published keys, none pinned, proves;
    ``signers``: how many wheels each key signed (None: not counted)."""
    listed = "; ".join(
        f"{keyid} ({'' if count is None else f'{count} wheel(s), '}"
        f"{keys_folder / key_file_name(keyid)})"
        for keyid, count in sorted(signers.items())
    )
    first = keys_folder / key_file_name(min(signers))
    return (
        f"signatures checked with the key(s) the repository publishes, which you did not pin:"
        f" {listed}. That catches a signed file changed on its own, but whoever can write the"
        " repository can publish a key of their own and sign a rewrite with it, which passes."
        " Compare the fingerprint with one you got elsewhere (from whoever runs the repository),"
        f" then pin it: --public-key {first}"
    )


_READ_ERRORS: tuple[type[Exception], ...] = (RewheelError, *READ_ERRORS)
# Where the index pages are taken to be served, to resolve the links they hold.
_PAGES_AT = "http://repository.invalid/simple/"


class _Checker:
    """The repository on disk as a ``WheelSource``: its wheels, build records, provenance,
    signatures, kept sdists and index pages."""

    tool_absent = "a wheel of the repository"
    dependency_absent = "in the repository"

    def __init__(
        self,
        repo: Repository,
        *,
        allow_prebuilt: bool,
        upstream: Upstream | None,
        pinned: Mapping[str, PublicKey],
        installed: set[tuple[str, str]] | None,
    ) -> None:
        self.repo = repo
        self.allow_prebuilt = allow_prebuilt
        self.upstream = upstream
        self.pinned = dict(pinned)  # by the user (--public-key), by key id
        self.signed_by: dict[str, str] = {}  # wheel file name -> key id of a valid signature
        self.installed = installed
        self.notes: list[str] = []
        self.published, self.key_problems = published_keys(repo.root)
        self.signers: dict[str, int] = {}
        self.unsigned: list[str] = []  # labels of wheels without a signature (unpinned)
        self.unknown_keys: dict[str, list[str]] = {}  # keyid -> labels, not published
        self.wheels = repo.wheels()
        self.by_sha = {w.sha256: w for w in self.wheels}
        self.by_name: dict[str, list[WheelRef]] = {}
        for w in self.wheels:
            self.by_name.setdefault(w.name, []).append(w)
        self.records = self._load_records()
        self._metadata: dict[str, bytes | str] = {}
        self._pages: dict[str, list[tuple[str, IndexFile]]] = {}
        self.problems: list[str] = []

    def _load_records(self) -> dict[tuple[str, str], BuildRecord]:
        out: dict[tuple[str, str], BuildRecord] = {}
        if not self.repo.records_dir.is_dir():
            return out
        for path in sorted(self.repo.records_dir.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                record = BuildRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):  # RecordError is a ValueError
                self.notes.append(f"unreadable build record {path.name}")
                continue
            out[(canonicalize_name(record.name), normal_version(record.version))] = record
        return out

    def record(self, ref: WheelRef) -> BuildRecord | None:
        return self.records.get((ref.name, normal_version(ref.version)))

    def key(self, ref: WheelRef) -> str:
        return ref.filename

    def label(self, ref: WheelRef) -> str:
        return f"{ref.name} {ref.version}"

    def tool_label(self, tool: BuildTool[WheelRef], wheel: WheelRef) -> str:
        return self.label(wheel)  # the wheel's name and version, not the record's spelling

    # -- the wheel itself

    def check_wheel(self, ref: WheelRef) -> Result:
        label = self.label(ref)
        record = self.record(ref)
        if record is None:
            return Verdict.BROKEN, [f"{label}: no build record: {ref.filename} was not built here"]
        if record.wheel_ref != (ref.filename, ref.sha256):
            return Verdict.BROKEN, [
                f"{label}: {ref.filename} is not the wheel its build record names"
                f" ({record.wheel}, sha256 {record.wheel_sha256[:12]}...)"
            ]
        if record.prebuilt:
            if not self.allow_prebuilt:
                return Verdict.BROKEN, [
                    f"{label}: a pre-built wheel, not built from source (--allow-prebuilt"
                    " accepts it)"
                ]
            served = self._check_served(ref, label)
            return (Verdict.BROKEN, served) if served else (Verdict.PREBUILT, [])
        problems = self._check_provenance(ref, record, label)
        problems += self._check_sdist(ref, record, label)
        problems += self._check_served(ref, label)
        return (Verdict.BROKEN if problems else Verdict.OK), problems

    # -- what installers read about it

    def metadata(self, ref: WheelRef) -> bytes | str:
        """The wheel's own METADATA, or why it cannot be read."""
        if ref.filename not in self._metadata:
            try:
                self._metadata[ref.filename] = read_metadata_bytes(self.repo.wheel_path(ref))
            except _READ_ERRORS as exc:
                self._metadata[ref.filename] = f"cannot read its METADATA: {exc}"
        return self._metadata[ref.filename]

    def _check_served(self, ref: WheelRef, label: str) -> list[str]:
        own = self.metadata(ref)
        if isinstance(own, str):
            return [f"{label}: {own}"]
        problems = []
        sidecar = self.repo.wheel_path(ref).with_name(ref.filename + ".metadata")
        try:
            served = sidecar.read_bytes()
        except FileNotFoundError:
            served = None  # installers then read the wheel's own
        except OSError as exc:
            return [f"{label}: cannot read wheels/{sidecar.name}: {exc}"]
        if served is not None and served != own:
            problems.append(
                f"{label}: wheels/{sidecar.name} is not the wheel's own METADATA: installers "
                "resolve with it (a Requires-Dist taken out there leaves a dependency out)"
            )
        own_sha256 = hashlib.sha256(own).hexdigest()
        url = urljoin(f"{_PAGES_AT}{ref.name}/", wheel_url(ref.filename))
        for page, file in self.pages(ref.name):
            if file.filename != ref.filename:
                continue
            if file.url != url:
                problems.append(
                    f"{label}: {page} links {ref.filename} to {file.url}, not to the repository's"
                    " own file"
                )
            if file.sha256 != ref.sha256:
                problems.append(
                    f"{label}: {page} lists {ref.filename} with another sha256"
                    f" ({file.sha256 or 'none'}) than the wheel's"
                )
            own_provenance = urljoin(f"{_PAGES_AT}{ref.name}/", provenance_url(ref.filename))
            if file.provenance is not None and file.provenance != own_provenance:
                problems.append(
                    f"{label}: {page} links the provenance of {ref.filename} to"
                    f" {file.provenance}, not to the repository's own file"
                )
            if file.metadata_sha256 is not None and file.metadata_sha256 != own_sha256:
                problems.append(
                    f"{label}: {page} gives the sha256 of other metadata than the wheel's own"
                    f" METADATA for {ref.filename}"
                )
        return problems

    def pages(self, project: str) -> list[tuple[str, IndexFile]]:
        """The files the index pages of ``project`` list, with the page that lists each."""
        if project in self._pages:
            return self._pages[project]
        out: list[tuple[str, IndexFile]] = []
        page_url = f"{_PAGES_AT}{project}/"
        for page, parse in (("index.html", parse_html_page), ("index.json", parse_json_page)):
            path = self.repo.simple_dir / project / page
            name = f"simple/{project}/{page}"
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.problems.append(f"{name}: cannot be read: {exc}")
                continue
            try:
                files = parse(data, page_url, canonicalize_name(project)).files
            except RewheelError as exc:
                self.problems.append(f"{name}: cannot be read: {exc.message}")
                continue
            out.extend((name, f) for f in files)
        known = {w.filename: w for w in self.by_name.get(project, [])}
        sdists = self._recorded_sdists(project)
        for name, file in out:
            if file.filename in known:
                continue
            if file.filename in sdists:
                self._check_listed_sdist(project, name, file, sdists[file.filename])
                continue
            self.problems.append(
                f"{name} lists {file.filename}, which is neither a wheel of the repository nor"
                " an sdist its records say a wheel was built from"
            )
        self._pages[project] = out
        return out

    def _recorded_sdists(self, project: str) -> dict[str, str]:
        """The sdists the pages of ``project`` may list: file name -> sha256, as the records of
        its wheels say they were built from (the pages list them for ``pip download``)."""
        out: dict[str, str] = {}
        for (name, _version), record in self.records.items():
            if name == project and record.sdist_url and record.sdist_sha256:
                out[sdist_filename(record.sdist_url)] = record.sdist_sha256
        return out

    def _check_listed_sdist(self, project: str, page: str, file: IndexFile, recorded: str) -> None:
        """A listed sdist must be the repository's own copy, with the recorded sha256."""
        own = urljoin(f"{_PAGES_AT}{project}/", sdist_url(file.filename))
        if file.url != own:
            self.problems.append(
                f"{page} links {file.filename} to {file.url}, not to the repository's own copy"
            )
        if file.sha256 != recorded:
            self.problems.append(
                f"{page} lists {file.filename} with another sha256 ({file.sha256 or 'none'})"
                " than the one its wheel was built from"
            )

    def _check_provenance(self, ref: WheelRef, record: BuildRecord, label: str) -> list[str]:
        path = self.repo.provenance_path(ref)
        try:
            payload = path.read_bytes()
            statement = json.loads(payload)
        except FileNotFoundError:
            return [f"{label}: no provenance ({path.name})"]
        except (OSError, ValueError) as exc:
            return [f"{label}: unreadable provenance {path.name}: {exc}"]
        problems = [
            f"{label}: {p}"
            for p in check_statement(
                statement, wheel_filename=ref.filename, wheel_sha256=ref.sha256, record=record
            )
        ]
        named = record.provenance
        if named is not None and named != path.name:
            problems.append(f"{label}: the build record names another provenance file ({named})")
        problems += self._check_signature(ref, payload, label, record.from_cache)
        problems += self._check_provenance_object(ref, payload, label)
        return problems

    def _check_signature(
        self, ref: WheelRef, payload: bytes, label: str, from_cache: str | None = None
    ) -> list[str]:
        """The DSSE envelope of the statement: signed by the pinned key, or else by the
        published key it names. A wheel taken from a shared build cache (``from_cache``) was
        built elsewhere: only its signature vouches for it, so it must have one that verifies."""
        dsse = self.repo.wheel_path(ref).with_name(ref.filename + DSSE_SUFFIX)
        try:
            envelope = json.loads(dsse.read_bytes())
        except FileNotFoundError:
            if self.pinned:
                return [f"{label}: provenance is not signed ({dsse.name} missing)"]
            if from_cache is not None:
                return [
                    f"{label}: taken from the build cache {from_cache}, but its provenance is"
                    f" not signed ({dsse.name} missing)"
                ]
            self.unsigned.append(label)
            return []
        except (OSError, ValueError) as exc:
            return [f"{label}: unreadable signed provenance {dsse.name}: {exc}"]
        key: PublicKey | None
        if self.pinned:
            key, why = pinned_signer(envelope, payload, self.pinned)
        else:
            claimed = envelope_keyids(envelope)
            known = [self.published[k] for k in claimed if k in self.published]
            if not known and from_cache is not None:
                return [
                    f"{label}: taken from the build cache {from_cache}, but signed by a key the"
                    " repository does not publish, so its signature cannot be checked"
                ]
            if not known:
                for keyid in claimed[:1] or ["(none named)"]:
                    self.unknown_keys.setdefault(keyid, []).append(label)
                return []
            key = known[0]
            why = check_envelope(envelope, payload, key)
        if key is None or why is not None:
            return [f"{label}: {why}"]
        self.signers[key.keyid] = self.signers.get(key.keyid, 0) + 1
        self.signed_by[ref.filename] = key.keyid
        return []

    def _check_provenance_object(self, ref: WheelRef, payload: bytes, label: str) -> list[str]:
        """The PEP 740 provenance object the pages link to, when there is one: the same
        statement, signed by the pinned key (or by a key the repository publishes)."""
        path = self.repo.wheel_path(ref).with_name(ref.filename + PROVENANCE_OBJECT_SUFFIX)
        try:
            document = json.loads(path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            return [f"{label}: unreadable PEP 740 provenance {path.name}: {exc}"]
        attestations, problems = read_provenance_object(document)
        problems = [f"{label}: {path.name}: {p}" for p in problems]
        if not attestations and not problems:
            problems.append(f"{label}: {path.name} holds no attestation rewheel can check")
        for attested in attestations:
            if attested.statement != payload:
                problems.append(
                    f"{label}: {path.name} carries another statement than the provenance file"
                )
            elif not attested.signed:
                problems.append(f"{label}: {path.name}: its signature is not valid")
            elif self.pinned and attested.key.keyid not in self.pinned:
                problems.append(
                    f"{label}: {path.name} is signed by the key {attested.key.keyid}, not by"
                    " a pinned one"
                )
            elif not self.pinned and attested.key.keyid not in self.published:
                problems.append(
                    f"{label}: {path.name} is signed by the key {attested.key.keyid}, which"
                    " the repository does not publish"
                )
        return problems

    def _check_sdist(self, ref: WheelRef, record: BuildRecord, label: str) -> list[str]:
        url, sha256 = record.sdist_url, record.sdist_sha256
        if url is None or sha256 is None:
            return [f"{label}: the build record names no sdist and sha256"]
        filename = sdist_filename(url)
        problems = []
        local = self.repo.sdists_dir / filename
        made_here = is_local_sdist_url(url)
        if not local.is_file():
            fetch = (
                f"run bootstrap again on the project folder it was made of ({url.split('#')[0]})"
                if made_here
                else f"download it again from {url} into sdists/"
            )
            problems.append(
                f"{label}: sdists/{filename}, the kept copy of the sdist it was built from, is"
                " gone, so nothing here shows any more what it was built from and rebuild"
                f" --check cannot run (bootstrap does not fetch it again for a wheel it reuses):"
                f" {fetch} (its sha256 must be {sha256}),"
                " or, if it is gone from there too, remove this wheel and bootstrap again"
            )
        elif sha256_file(local) != sha256:
            problems.append(f"{label}: sdists/{filename} no longer has the recorded sha256")
        if made_here and self.upstream is not None:
            # Packed of a project folder on the machine that built it: no index lists it, and
            # an upstream project of the same name is another project's sdist.
            self.notes.append(
                f"{label}: built from a local project folder ({url.split('#')[0]}), which no"
                " index lists"
            )
        elif self.upstream is not None:
            try:
                page = self.upstream.get_project(ref.name)
            except RewheelError as exc:
                self.notes.append(f"{label}: upstream index not reachable: {exc.message}")
                return problems
            listed = [f for f in page.files if f.filename == filename]
            if not listed:
                self.notes.append(f"{label}: the upstream index no longer lists {filename}")
            elif not any(f.sha256 and f.sha256.lower() == sha256 for f in listed):
                problems.append(
                    f"{label}: the upstream index lists {filename} with another sha256 than the"
                    " recorded one"
                )
        return problems

    # -- its build environment

    def unknown_tools(self, ref: WheelRef, own: Verdict) -> Result | None:
        label = self.label(ref)
        record = self.record(ref)
        if record is None:
            return Verdict.BROKEN, [f"{label}: build environment unknown (no build record)"]
        if record.prebuilt:
            if self.allow_prebuilt:
                return Verdict.PREBUILT, []
            return Verdict.BROKEN, [f"{label}: build tools unknown (a pre-built wheel)"]
        return None

    def build_tools(self, ref: WheelRef) -> Iterator[BuildTool[WheelRef]]:
        """The wheels its build record lists, found by sha256 (and name) among the
        repository's."""
        record = self.record(ref)
        for entry in record.build_env if record is not None else ():
            tool = self.by_sha.get(entry.sha256)
            if tool is not None and tool.name != canonicalize_name(entry.name):
                tool = None
            yield BuildTool(entry.name, entry.version, entry.sha256, tool)

    # -- what it needs at run time

    def requirements(self, ref: WheelRef) -> list[Requirement]:
        data = self.metadata(ref)
        if isinstance(data, str):
            return []  # reported with the wheel itself
        return run_requirements(data)

    def wheels_named(self, name: str) -> list[tuple[WheelRef, str]]:
        """The repository's wheels of ``name`` (with ``installed``, those among them only)."""
        return [
            (w, w.version)
            for w in self.by_name.get(canonicalize_name(name), [])
            if self.installed is None or (w.name, normal_version(w.version)) in self.installed
        ]

    def signer(self, ref: WheelRef) -> str | None:
        """The key id of the valid signature ``ref``'s provenance carries, once checked."""
        return self.signed_by.get(ref.filename)


def verify_chain(
    repo: Repository,
    packages: Sequence[tuple[str, str]] | None = None,
    *,
    allow_prebuilt: bool = False,
    upstream: Upstream | None = None,
    public_keys: Sequence[Path] = (),
    installed_only: bool = False,
) -> ChainReport:
    """Check the chain of custody of ``packages`` ((name, version) pairs; None: every wheel).

    With ``installed_only``, dependencies are looked for among ``packages`` only (they are what a
    venv holds). ``upstream`` also compares each sdist's sha256 with what the index lists now.
    ``public_keys``: the pinned keys (PEM files); each provenance must be signed by one of them.
    """
    installed = (
        {(str(canonicalize_name(n)), normal_version(v)) for n, v in packages}
        if installed_only and packages is not None
        else None
    )
    checker = _Checker(
        repo,
        allow_prebuilt=allow_prebuilt,
        upstream=upstream,
        pinned=load_public_key_files(public_keys),
        installed=installed,
    )
    walk = CustodyWalk(checker)
    report = ChainReport()
    if packages is None:
        targets: list[WheelRef] = list(checker.wheels)
    else:
        targets = []
        for name, version in sorted(
            {(canonicalize_name(n), normal_version(v)) for n, v in packages}
        ):
            refs = [
                w for w in checker.by_name.get(name, []) if normal_version(w.version) == version
            ]
            if not refs:
                report.entries.append(
                    ChainEntry(
                        name,
                        version,
                        None,
                        Verdict.BROKEN,
                        Verdict.BROKEN,
                        Verdict.BROKEN,
                        [f"{name} {version}: no wheel in the repository"],
                    )
                )
            targets.extend(refs)
    report.entries.extend(walk.entry(ref) for ref in targets)
    report.entries.sort(key=lambda e: (e.name, normal_version(e.version), e.wheel or ""))
    # Pages of the projects checked (all of them for the whole repository): files they list
    # that the repository does not hold.
    if packages is None and checker.repo.simple_dir.is_dir():
        projects = {p.name for p in checker.repo.simple_dir.iterdir() if p.is_dir()}
    else:
        projects = {ref.name for ref in targets}
    for project in sorted(projects):
        checker.pages(project)
    report.problems = dedupe(checker.problems + checker.key_problems)
    report.signers = dict(checker.signers)
    if not public_keys:
        checker.notes += _signing_notes(checker, keys_dir(repo.root))
    report.notes = dedupe(checker.notes)
    return report


def _few(labels: Sequence[str]) -> str:
    shown = ", ".join(labels[:5])
    return shown + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")


def _signing_notes(checker: _Checker, keys_folder: Path) -> list[str]:
    """What the signatures of a check made without a pinned key say, and what they cannot."""
    notes = []
    for keyid, labels in sorted(checker.unknown_keys.items()):
        notes.append(
            f"{len(labels)} wheel(s) signed by the key {keyid}, which the repository does not"
            f" publish (no {KEYS_DIR_NAME}/{key_file_name(keyid)}), so their signatures were not"
            f" checked: {_few(labels)}; pin that key with --public-key to check them"
        )
    if checker.unsigned and (checker.signers or checker.unknown_keys):
        notes.append(
            f"{len(checker.unsigned)} wheel(s) have unsigned provenance (built with --no-sign,"
            f" or before rewheel signed by default): {_few(checker.unsigned)}"
        )
    if checker.signers:
        notes.append(unpinned_note(checker.signers, keys_folder))
    else:
        notes.append(UNSIGNED_NOTE)
    return notes


def signing_note(repo: Repository) -> str:
    """The note of a check made with no key pinned, from the keys the repository publishes
    alone (for ``rewheel install``, which reports no counts)."""
    published, _ = published_keys(repo.root)
    if not published:
        return UNSIGNED_NOTE
    return unpinned_note(dict.fromkeys(published), keys_dir(repo.root))
