"""The one wheel module: reading a wheel, checking that it is safe to publish, writing one.

Pure parsing (file names, core metadata, RECORD) is kept apart from the functions that open a
file; everything else in rewheel that looks inside a wheel goes through here.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import stat
import struct
import time
import zipfile
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, NormalizedName, parse_wheel_filename

from ..core.errors import IntegrityError, RewheelError, UnsafeArchiveError
from ..core.paths import unsafe_member_name

if TYPE_CHECKING:
    from packaging.metadata import RawMetadata

# The largest METADATA rewheel reads: real ones are a few KiB (long descriptions reach a few
# hundred); a wheel a build wrote may hold a bomb.
MAX_METADATA_BYTES = 16 << 20

# Bytes of a wheel that no member accounts for (data descriptors are counted at their largest,
# so a real wheel shows a few bytes at most).
MAX_ZIP_GAP = 1 << 20

MIN_ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip member can have

# What reading a damaged or unusual zip can raise besides rewheel's own errors.
READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    KeyError,
    NotImplementedError,  # an unsupported compression method
    RuntimeError,  # an encrypted member
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,  # a damaged deflate stream
)

_CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # a zip member's local header, before its name
_MAX_DESCRIPTOR = 24  # a data descriptor after a member's data: 12 to 24 bytes


# -- names and formats (no I/O) --------------------------------------------------------------------


def wheel_name_version(filename: str) -> tuple[NormalizedName, str]:
    """Project name (normalized) and version of a wheel file name."""
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise RewheelError(f"not a valid wheel file name: {filename!r}") from exc
    return name, str(version)


def record_hash(data: bytes) -> str:
    """The RECORD form of the sha256 of ``data``: ``sha256=<urlsafe base64, no padding>``."""
    return _record_form(hashlib.sha256(data).digest())


def _record_form(sha256_digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(sha256_digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class RecordEntry:
    """One line of a RECORD file."""

    path: str
    hash: str | None  # "sha256=<urlsafe b64, no padding>" as RECORD writes it
    size: int | None


def parse_record(data: bytes) -> list[RecordEntry]:
    """The lines of a RECORD file (CSV: path, hash, size; empty fields are None)."""
    entries = []
    for row in csv.reader(io.StringIO(data.decode("utf-8"))):
        if not row:
            continue
        path = row[0]
        digest = row[1] if len(row) > 1 and row[1] else None
        size = int(row[2]) if len(row) > 2 and row[2] else None
        entries.append(RecordEntry(path, digest, size))
    return entries


def render_record(members: Iterable[tuple[str, bytes]], record_name: str) -> bytes:
    """The RECORD of ``members`` (path, content): a line with the sha256 and size of each, then
    one for RECORD itself, without either. CSV as the wheel spec says: a path holding a comma, a
    quote or a line break is quoted, so ``parse_record`` reads it back whole."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows((name, record_hash(data), len(data)) for name, data in members)
    writer.writerow((record_name, "", ""))
    return out.getvalue().encode()


# The core metadata fields rewheel reads, by their name in the file: the key of each in
# RawMetadata, and whether it is a list (a field that may appear more than once).
_READ_FIELDS = {
    "metadata-version": ("metadata_version", False),
    "name": ("name", False),
    "version": ("version", False),
    "summary": ("summary", False),
    "requires-python": ("requires_python", False),
    "license": ("license", False),
    "license-expression": ("license_expression", False),
    "requires-dist": ("requires_dist", True),
    "provides-extra": ("provides_extra", True),
    "dynamic": ("dynamic", True),
    "license-file": ("license_files", True),
    "classifier": ("classifiers", True),
}


def parse_metadata(data: bytes) -> RawMetadata:
    """Core metadata (a wheel's METADATA, an sdist's PKG-INFO) as packaging's raw fields.

    Parsed by ``packaging.metadata.parse_email`` and not validated: metadata that old backends
    wrote, which ``Metadata.from_raw`` refuses, reads as it always did. As leniently as the
    email parser rewheel used before: of the fields rewheel reads (``_READ_FIELDS``), one that
    parse_email sets apart, being given twice though single-valued or not being UTF-8, still
    counts, with its first value (or all of a list's values; Latin-1 where not UTF-8).
    """
    from packaging.metadata import parse_email  # a no-op re-run reads no metadata

    raw, unparsed = parse_email(data)
    fields = cast("dict[str, object]", raw)
    for email_name, values in unparsed.items():
        known = _READ_FIELDS.get(email_name)
        if known is not None and known[0] not in fields and values:
            key, is_list = known
            fields[key] = list(values) if is_list else values[0]
    return raw


def requires_dist(metadata: bytes) -> list[Requirement]:
    """The ``Requires-Dist`` entries of a core metadata file."""
    out = []
    for value in parse_metadata(metadata).get("requires_dist") or []:
        try:
            out.append(Requirement(value))
        except InvalidRequirement as exc:
            raise RewheelError(f"invalid Requires-Dist {value!r}: {exc}") from exc
    return out


def run_requirements(metadata: bytes) -> list[Requirement]:
    """What a wheel needs at run time here: its ``Requires-Dist`` entries whose marker holds on
    this machine without extras; entries that do not parse are left out (the metadata is the
    wheel's, not ours to refuse)."""
    return run_requirements_of(parse_metadata(metadata))


def run_requirements_of(metadata: RawMetadata | None) -> list[Requirement]:
    """``run_requirements`` of metadata already parsed (None: no metadata, no requirements)."""
    out = []
    for text in (metadata.get("requires_dist") or []) if metadata is not None else []:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(req)
    return out


@dataclass(frozen=True)
class WheelInfo:
    """What a wheel's WHEEL file says about the wheel's layout."""

    root_is_purelib: bool  # its root goes to purelib (else platlib)
    tags: tuple[str, ...]


def parse_wheel_info(data: bytes) -> WheelInfo:
    """A wheel's WHEEL file: email-style headers like core metadata's, with fields of its own."""
    msg = BytesParser().parsebytes(data)
    return WheelInfo(
        root_is_purelib=str(msg.get("Root-Is-Purelib") or "").strip().lower() == "true",
        tags=tuple(str(tag).strip() for tag in msg.get_all("Tag") or []),
    )


# -- reading ---------------------------------------------------------------------------------------


class WheelReader:
    """An open wheel file, read member by member; a context manager that closes it.

    Opening it reads only the zip's central directory: the members' names and attributes.
    Reading raises what zipfile raises on a damaged zip (see ``READ_ERRORS``), ``KeyError`` for
    a member that is not there, and ``IntegrityError`` for a wheel without exactly one
    ``.dist-info`` folder when one of its files is asked for.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zf = zipfile.ZipFile(path)

    def __enter__(self) -> WheelReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._zf.close()

    @property
    def members(self) -> list[zipfile.ZipInfo]:
        """Every member, folders included, in the order of the archive."""
        return self._zf.infolist()

    @property
    def comment(self) -> bytes:
        """The archive's comment."""
        return self._zf.comment

    def read(self, member: str | zipfile.ZipInfo) -> bytes:
        """The content of one member (by name: the last member of that name)."""
        return self._zf.read(member)

    def open(self, member: str | zipfile.ZipInfo) -> IO[bytes]:
        """One member's content as a seekable stream (seeking back decompresses again)."""
        return self._zf.open(member)

    def chunks(self, member: str | zipfile.ZipInfo) -> Iterator[bytes]:
        """The content of one member, in pieces of at most 1 MiB (a bomb is never held whole)."""
        with self._zf.open(member) as f:
            while chunk := f.read(_CHUNK):
                yield chunk

    def digest(self, member: str | zipfile.ZipInfo) -> str:
        """The sha256 of one member's content, as RECORD writes it, read in chunks."""
        sha256 = hashlib.sha256()
        with self._zf.open(member) as f:
            while chunk := f.read(_CHUNK):
                sha256.update(chunk)
        return _record_form(sha256.digest())

    def dist_info(self) -> str:
        """The name of the one top-level ``.dist-info`` folder."""
        tops = {n.split("/", 1)[0] for n in self._zf.namelist()}
        dist_infos = sorted(t for t in tops if t.endswith(".dist-info"))
        if len(dist_infos) != 1:
            raise IntegrityError(
                f"wheel {self.path.name} has {len(dist_infos)} .dist-info directories"
            )
        return dist_infos[0]

    def metadata(self) -> bytes:
        """The raw ``METADATA`` file (what PEP 658 serves as ``<wheel>.metadata``), read up to
        ``MAX_METADATA_BYTES`` whatever its header claims."""
        with self._zf.open(f"{self.dist_info()}/METADATA") as member:
            data = member.read(MAX_METADATA_BYTES + 1)
        if len(data) > MAX_METADATA_BYTES:
            raise IntegrityError(
                f"wheel {self.path.name} has a METADATA file larger than "
                f"{MAX_METADATA_BYTES >> 20} MiB; refused"
            )
        return data

    def record(self) -> list[RecordEntry]:
        """The entries of the ``.dist-info`` folder's RECORD."""
        return parse_record(self.read(f"{self.dist_info()}/RECORD"))


def read_metadata_bytes(wheel: Path) -> bytes:
    """The raw ``METADATA`` file of a wheel (what PEP 658 serves as ``<wheel>.metadata``),
    read up to ``MAX_METADATA_BYTES`` whatever its header claims."""
    with WheelReader(wheel) as reader:
        return reader.metadata()


def read_record(wheel: Path) -> list[RecordEntry]:
    """The entries of a wheel's RECORD."""
    with WheelReader(wheel) as reader:
        return reader.record()


def bytes_outside_members(wheel: Path) -> int:
    """How much of the wheel file is neither a member (header, data, descriptor) nor the central
    directory: nothing, in a zip any tool wrote. Zip readers skip such gaps, so a build could
    put a sparse hole there that costs it nothing and a repository its full size."""
    size = wheel.stat().st_size
    with wheel.open("rb") as f, zipfile.ZipFile(f) as zf:
        covered = size - zf.start_dir  # the central directory and the end records
        for info in zf.infolist():
            f.seek(info.header_offset)
            header = f.read(_LOCAL_HEADER.size)
            if len(header) < _LOCAL_HEADER.size:
                return size  # a member that starts past the end: nothing adds up
            name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
            covered += _LOCAL_HEADER.size + name_len + extra_len + info.compress_size
            if info.flag_bits & 0x08:
                covered += _MAX_DESCRIPTOR
    return max(size - covered, 0)


# -- checking --------------------------------------------------------------------------------------


def unsafe_wheel_member(info: zipfile.ZipInfo) -> str | None:
    """Why a wheel member is refused, or None: a name that could escape the install directory,
    or a link or special file (installers would write a symlink's target text as a file, or
    worse). Zip has no hard links; a unix mode in ``external_attr`` tells the file type."""
    why = unsafe_member_name(info.filename)
    if why:
        return why
    kind = stat.S_IFMT(info.external_attr >> 16)
    if info.is_dir():
        return (
            None if kind in (0, stat.S_IFDIR) else f"directory {info.filename!r} of type {kind:o}"
        )
    if kind == stat.S_IFLNK:
        return f"symlink member {info.filename!r}"
    if kind not in (0, stat.S_IFREG):
        return f"special file {info.filename!r} (type {kind:o})"
    return None


def check_wheel(wheel: Path) -> None:
    """Refuse a wheel file that is not a sound zip of safe members.

    It must start with a zip member, hold almost nothing outside its members, name no member
    that could escape the install directory (by its name, its RECORD, a link or a name given
    twice) and have no corrupt member. Raises ``IntegrityError`` or ``UnsafeArchiveError``
    naming the file; a file that cannot be read as a zip raises one of ``READ_ERRORS``.
    """
    with wheel.open("rb") as f:
        start = f.read(4)
    if start != b"PK\x03\x04":
        # Zip readers skip what comes before the archive: a build could pad a wheel with a
        # sparse hole that costs it nothing and the repository all of it.
        raise IntegrityError(f"wheel {wheel.name} does not start with a zip member; refused")
    gap = bytes_outside_members(wheel)
    if gap > MAX_ZIP_GAP:
        raise IntegrityError(f"wheel {wheel.name} holds {gap} bytes outside its members; refused")
    with zipfile.ZipFile(wheel) as zf:
        _check_members(zf, wheel.name)
        bad = zf.testzip()
    if bad is not None:
        raise IntegrityError(f"wheel {wheel.name} has a corrupt member {bad!r}")


def _check_members(zf: zipfile.ZipFile, filename: str) -> None:
    """Refuse a wheel that would write outside its install directory, through a member's
    name, its RECORD, a link, or a name given twice (two tools could pick different ones)."""
    seen: set[str] = set()
    records: list[str] = []
    for info in zf.infolist():
        why = unsafe_wheel_member(info)
        if why is None and info.filename in seen:
            why = f"member {info.filename!r} appears twice"
        if why:
            raise UnsafeArchiveError(f"wheel {filename}: {why}")
        seen.add(info.filename)
        parts = info.filename.split("/")
        if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "RECORD":
            records.append(info.filename)
    for record in records:
        try:
            entries = parse_record(zf.read(record))
        except (UnicodeDecodeError, ValueError, csv.Error) as exc:
            raise IntegrityError(f"wheel {filename}: unreadable {record}: {exc}") from exc
        for entry in entries:
            why = unsafe_member_name(entry.path)
            if why:
                raise UnsafeArchiveError(f"wheel {filename}: {record} lists {why}")


# -- writing ---------------------------------------------------------------------------------------


def write_wheel(
    dest: Path,
    members: Mapping[str, bytes],
    *,
    executable: Collection[str] = frozenset(),
    epoch: int = MIN_ZIP_EPOCH,
) -> Path:
    """Write the wheel ``dest`` holding ``members`` (archive path -> content) and their RECORD,
    which gives each member's sha256 and size; returns ``dest``.

    The members outside the one ``*.dist-info/`` folder come first, sorted, then that folder's,
    sorted, then RECORD. Every member gets the time ``epoch`` (no earlier than 1980, the first
    time zip can store) and mode 0644, or 0755 when it is in ``executable``: the same members
    give the same bytes. The file is written beside ``dest`` and renamed, so ``dest`` is whole.
    Raises ``ValueError`` unless exactly one top-level ``.dist-info`` folder is among the
    members, or when they already hold its RECORD.
    """
    dist_infos = {
        name.split("/", 1)[0]
        for name in members
        if "/" in name and name.split("/", 1)[0].endswith(".dist-info")
    }
    if len(dist_infos) != 1:
        raise ValueError(f"a wheel needs one .dist-info folder, not {sorted(dist_infos)}")
    dist_info = dist_infos.pop()
    record_name = f"{dist_info}/RECORD"
    if record_name in members:
        raise ValueError(f"{record_name} is written by write_wheel, not given")
    ordered = sorted(
        members.items(), key=lambda item: (item[0].startswith(dist_info + "/"), item[0])
    )
    ordered.append((record_name, render_record(ordered, record_name)))
    stamp = time.gmtime(max(epoch, MIN_ZIP_EPOCH))[:6]
    partial = dest.with_name(dest.name + ".part")
    with zipfile.ZipFile(partial, "w") as zf:
        for name, data in ordered:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so that the mode below is read
            mode = 0o755 if name in executable else 0o644
            info.external_attr = (0o100000 | mode) << 16
            zf.writestr(info, data)
    os.replace(partial, dest)
    return dest
