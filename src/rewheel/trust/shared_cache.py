"""A shared build cache: wheels another rewheel repository built, taken only when they are
exactly what this run would build, signed by a key the user trusts (``--cache-url``).

The other repository (served over HTTP by ``rewheel serve`` or any web server, or a folder on
this machine) offers its builds as static files (``repo.build_cache``). Before a pin is built
here, ``SharedBuildCache`` implements the core's ``bootstrap.SharedCache``:

1. ``hints``: ``build-cache/sdist-<sha256>.json`` names the keys the pin's sdist (by the sha256
   this run's index listed and checked) was built under; for each, ``build-cache/<key>.json``
   (its build record) and the DSSE envelope of its provenance are fetched. An offer is kept only
   if the envelope is signed by a trusted key (pinned with ``--cache-key-trust``, or the key this
   run signs with), the record is the signed statement's (subject, sdist, build environment), the
   record names this pin, this sdist and that key, and the key recomputed from the signed
   statement (sdist, build environment's wheels, interpreter, settings digest, system tools) is
   that key. Offered only when its interpreter and settings digest are this run's, and when the
   sdist's ``build-system.requires`` (read in the archive, nothing extracted, no code run) are the
   ones it names: the core then resolves the build environment the statement names, here, from
   this repository, in the steps a build here takes, so that a miss changes nothing in the run.
2. ``fetch``: only when the key this run computed for that environment is the offer's key, and
   the environment's wheels are, by sha256, the ones the statement lists. The wheel is then
   downloaded with the sha256 the signed statement gives, published with the statement, its
   signature, its PEP 740 object and the signer's public key (``keys/``), with the sdist kept in
   ``sdists/`` (the sha256 this run verified), and recorded with ``from_cache`` set to where it
   came from.

Whatever the cache answers, nothing it says is believed without the signature: an answer that
fails a check is refused with a notice and the package is built here. A cache that cannot be
reached in time, or sends more than a limit allows, is not asked again for the rest of the run.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from ..build.extract import read_root_file
from ..build.pipeline import build_cache_key
from ..build.pyproject import build_system_of
from ..build.systools import SystemTool
from ..core.bootstrap import CacheHint
from ..core.errors import IntegrityError, RewheelError
from ..core.fsutil import atomic_write_bytes, sha256_file
from ..core.paths import sdist_filename
from ..core.records import BuildRecord, RecordError
from ..core.resolver import Pin
from ..core.types import Upstream, WheelRef
from ..core.versions import normal_version
from ..index.credentials import split_credentials
from ..index.http import HttpClient, LimitExceeded
from ..index.index_pages import PROVENANCE_OBJECT_SUFFIX
from ..repo.build_cache import CACHE_DIR, MARKER, entry_name, is_sha256, sdist_index_name
from ..repo.published_keys import PublicKey, publish_key
from ..repo.repository import Repository
from ..ui.browse_pages import open_below
from .provenance import (
    BUILD_TYPE,
    DSSE_PAYLOAD_TYPE,
    DSSE_SUFFIX,
    PROVENANCE_SUFFIX,
    check_statement,
    dsse_envelope,
    envelope_keyids,
    envelope_signatures,
    pae,
    provenance_object,
    role_entries,
    sha256_of,
)

__all__ = [
    "MAX_JSON_BYTES",
    "CacheSource",
    "FolderCache",
    "HttpCache",
    "KeyInputs",
    "SharedBuildCache",
    "cache_source",
    "statement_cache_key",
]

MAX_JSON_BYTES = 1 << 20  # a record, an index or a signed statement: a few to some 100 KiB
MAX_OFFERS = 4  # keys tried per sdist
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")


class CacheUnavailable(Exception):
    """The cache could not be asked: unreachable, too slow, or an answer over a limit."""


class CacheSource(Protocol):
    """Where the other repository's files are read from; ``label`` is said in notices and
    recorded in ``from_cache``."""

    label: str

    def read(self, relpath: str, limit: int) -> bytes | None:
        """The file at ``relpath`` (below the repository), or None when there is none; raises
        ``CacheUnavailable`` when it cannot be read or is larger than ``limit``."""
        ...

    def download(self, relpath: str, dest: Path, sha256: str) -> bool:
        """``relpath`` into ``dest`` when its sha256 is ``sha256`` (True); False and nothing
        left at ``dest`` when it is not there or other bytes; ``CacheUnavailable`` as ``read``."""
        ...


class HttpCache:
    """A repository served over HTTP(S): ``rewheel serve``, or any server of its folder."""

    def __init__(self, base_url: str, client: HttpClient) -> None:
        # Credentials in the URL go to its host only, as a header; records name it without them.
        base_url, self.headers = split_credentials(base_url)
        self.label = base_url
        self.base = base_url.rstrip("/") + "/"
        self.client = client

    def read(self, relpath: str, limit: int) -> bytes | None:
        url = self.base + quote(relpath)
        try:
            response = self.client.get(
                url, step="cache", limit="metadata_bytes", headers=self.headers
            )
        except RewheelError as exc:  # unreachable, a deadline, a limit (LimitExceeded)
            raise CacheUnavailable(exc.message) from exc
        if response.status == 404:
            return None
        if response.status != 200:
            raise CacheUnavailable(f"GET {url}: HTTP {response.status}")
        if len(response.body) > limit:
            raise CacheUnavailable(f"GET {url}: answer over {limit} bytes")
        return response.body

    def download(self, relpath: str, dest: Path, sha256: str) -> bool:
        url = self.base + quote(relpath)
        try:
            self.client.download_to(url, dest, sha256, headers=self.headers)
        except IntegrityError:
            return False  # other bytes than the signed ones (dest is left untouched)
        except LimitExceeded as exc:
            raise CacheUnavailable(exc.message) from exc
        except RewheelError as exc:
            if exc.message.endswith("HTTP 404"):
                return False
            raise CacheUnavailable(exc.message) from exc
        return True


class FolderCache:
    """A repository on this machine (or a mounted one), read without following links."""

    def __init__(self, root: Path) -> None:
        self.label = str(root)
        self.root = root

    def read(self, relpath: str, limit: int) -> bytes | None:
        try:
            with open_below(self.root, self.root / relpath) as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheUnavailable(f"{self.root / relpath}: {exc}") from exc
        if len(data) > limit:
            raise CacheUnavailable(f"{self.root / relpath}: over {limit} bytes")
        return data

    def download(self, relpath: str, dest: Path, sha256: str) -> bool:
        try:
            with open_below(self.root, self.root / relpath) as f, dest.open("wb") as out:
                shutil.copyfileobj(f, out)
        except FileNotFoundError:
            dest.unlink(missing_ok=True)
            return False
        except OSError as exc:
            dest.unlink(missing_ok=True)
            raise CacheUnavailable(f"{self.root / relpath}: {exc}") from exc
        if sha256_file(dest) != sha256:
            dest.unlink()
            return False
        return True


def cache_source(where: str, client: Callable[[], HttpClient]) -> CacheSource:
    """The source ``--cache-url`` names: an http(s) URL, a ``file://`` URL or a folder."""
    if where.startswith(("http://", "https://")):
        # The repository's root, also when given as its index (what installers are given).
        base = where.rstrip("/").removesuffix("/simple")
        return HttpCache(base + "/", client())
    path = where.removeprefix("file://")
    return FolderCache(Path(path).expanduser().absolute())


# -- what a signed statement says about the key of its build ------------------------------------


@dataclass(frozen=True)
class KeyInputs:
    """What a cache key is made of besides the build environment's wheels: the same for a
    build here and a build in the cache, or the key cannot be the same."""

    interpreter: str  # ``build.pipeline.interpreter_tag()``
    settings_digest: str  # ``PackageSettings.digest()`` of the package


def statement_cache_key(statement: Mapping[str, Any]) -> str | None:
    """The cache key of the build a provenance statement describes, computed from the statement
    alone as ``build.pipeline.build_cache_key`` computes it for a build; None when the
    statement does not say all it needs."""
    found = _statement_key(statement)
    return None if found is None else found[0]


def _statement_key(statement: Mapping[str, Any]) -> tuple[str, KeyInputs] | None:
    """``statement_cache_key``, and the inputs of that key besides the environment."""
    predicate = statement.get("predicate")
    build = predicate.get("buildDefinition") if isinstance(predicate, Mapping) else None
    run = predicate.get("runDetails") if isinstance(predicate, Mapping) else None
    if not isinstance(build, Mapping) or not isinstance(run, Mapping):
        return None
    external = build.get("externalParameters")
    internal = build.get("internalParameters")
    deps = build.get("resolvedDependencies")
    builder = run.get("builder")
    if not (
        isinstance(external, Mapping)
        and isinstance(internal, Mapping)
        and isinstance(builder, Mapping)
    ):
        return None
    settings = external.get("settings")
    platform = internal.get("platform")
    if not isinstance(settings, Mapping) or not isinstance(platform, Mapping):
        return None
    digest, impl = settings.get("digest"), platform.get("implementation")
    python, best = platform.get("pythonVersion"), platform.get("bestTag")
    if not all(isinstance(v, str) for v in (digest, impl, python, best)):
        return None
    sources = role_entries(deps, "source")
    if len(sources) != 1 or sha256_of(sources[0]) is None:
        return None
    env = []
    for item in role_entries(deps, "build-environment"):
        sha = sha256_of(item)
        if sha is None:
            return None
        env.append(WheelRef(canonicalize_name("x"), "0", "x", sha))  # only the sha256 counts
    tools = []
    for item in role_entries(builder.get("builderDependencies"), "system-tool"):
        uri, version = item.get("uri"), item["annotations"].get("version")
        if not isinstance(uri, str) or not uri.startswith("file://"):
            return None
        tools.append(SystemTool(str(item.get("name")), uri.removeprefix("file://"), str(version)))
    major_minor = ".".join(str(python).split(".")[:2])
    inputs = KeyInputs(interpreter=f"{impl}-{major_minor}-{best}", settings_digest=str(digest))
    key = build_cache_key(
        sdist_sha256=sha256_of(sources[0]),
        build_env=env,
        interpreter=inputs.interpreter,
        settings_digest=inputs.settings_digest,
        system_tools=tools,
    )
    return key, inputs


# -- the cache -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Offer:
    """One build the cache offers, checked as far as it can be before the environment is known."""

    record: BuildRecord
    payload: bytes  # the statement, byte for byte as signed
    signature: bytes
    signer: PublicKey
    env_sha256: tuple[str, ...]  # sorted
    inputs: KeyInputs


class SharedBuildCache:
    """``bootstrap.SharedCache`` over a ``CacheSource``, publishing into ``repo``. Thread safe.

    ``trusted``: the keys whose signatures make a build acceptable; ``inputs``: this run's
    interpreter and settings digest of a pin (an offer made with others is a sure miss, and is
    not offered: the core would otherwise resolve and wait for build tools a build here does not
    need); ``upstream``: where the sdist is downloaded from when the cache does not have it;
    ``notice``: hears why an offer was refused (each reason once per package) and when the cache
    stops being asked.

    ``dry_run`` (``update --dry-run``, and the plan ``update`` prints): every check that the
    signed statement, the record and the sdist allow is made (the sdist is downloaded into a
    scratch folder), and ``fetch`` returns the record of what a run would take without
    downloading the wheel or writing anything into the repository. What only the wheel shows
    (its bytes are the signed ones and pass the checks of publication) is left to the run,
    which builds the package here if they fail.
    """

    def __init__(
        self,
        source: CacheSource,
        repo: Repository,
        *,
        trusted: Sequence[PublicKey],
        inputs: Callable[[Pin], KeyInputs],
        upstream: Upstream | None = None,
        notice: Callable[[str], None] | None = None,
        dry_run: bool = False,
    ) -> None:
        self.source = source
        self.repo = repo
        self.trusted = {key.keyid: key for key in trusted}
        self.inputs = inputs
        self.upstream = upstream
        self.dry_run = dry_run
        self._notice = notice or (lambda _text: None)
        self._lock = threading.Lock()
        self._offers: dict[tuple[str, str, str], _Offer] = {}
        self._unavailable: str | None = None
        self._untrusted_said: set[str] = set()
        self._marker_checked = False

    # -- the core's interface

    def hints(self, pin: Pin) -> Sequence[CacheHint]:
        sdist = pin.sdist.sha256.lower() if pin.sdist.sha256 else None
        if sdist is None or not is_sha256(sdist) or self._unavailable is not None:
            return []
        try:
            listing = self.source.read(f"{CACHE_DIR}/{sdist_index_name(sdist)}", MAX_JSON_BYTES)
            if listing is None:
                self._check_marker()
                return []
            try:
                document = json.loads(listing)
                keys = document.get("keys") if isinstance(document, dict) else None
                if not isinstance(keys, list):
                    raise ValueError("no list of keys")
            except ValueError as exc:
                self._refuse(pin, f"its sdist index is not one ({exc})")
                return []
            here = self.inputs(pin)
            offers = []
            for key in list(reversed(keys))[:MAX_OFFERS]:
                offer = self._offer(pin, sdist, key)
                # Made with other settings or another Python: another key, no one's fault.
                if offer is not None and offer.inputs == here:
                    offers.append((key, offer))
            if not offers:
                return []
            # The core resolves the environment these name, as a build here would resolve the
            # sdist's: a statement that names others (another rewheel, a signer who lies)
            # would have it resolve, build and wait for what no build here needs.
            requires = self._sdist_requires(pin)
            if isinstance(requires, str):
                self._refuse(pin, requires)
                return []
            hints = []
            for key, offer in offers:
                named = tuple(offer.record.build_system_requires)
                if named != requires:
                    self._refuse(
                        pin,
                        f"its signed provenance names the build requirements {list(named)},"
                        f" and its sdist has {list(requires)}",
                    )
                    continue
                hints.append(
                    CacheHint(
                        cache_key=key,
                        build_requires=offer.record.build_system_requires,
                        backend_requires=offer.record.backend_requires,
                        build_env_sha256=offer.env_sha256,
                    )
                )
            return hints
        except CacheUnavailable as exc:
            self._give_up(str(exc))
            return []

    def fetch(
        self, pin: Pin, hint: CacheHint, build_env: Sequence[WheelRef], cache_key: str
    ) -> BuildRecord | None:
        with self._lock:
            offer = self._offers.get((pin.name, str(pin.version), hint.cache_key))
        if offer is None or cache_key != hint.cache_key or self._unavailable is not None:
            return None
        if tuple(sorted(w.sha256 for w in build_env)) != offer.env_sha256:
            self._refuse(pin, "its build environment's wheels are not the ones in this repository")
            return None
        if self.dry_run:  # what a run would take, as far as it can be told without the wheel
            return dataclasses.replace(offer.record, why=(), log=None, from_cache=self.source.label)
        try:
            return self._take(pin, offer)
        except CacheUnavailable as exc:
            self._give_up(str(exc))
            return None

    # -- checking an offer

    def _offer(self, pin: Pin, sdist: str, key: object) -> _Offer | None:
        if not is_sha256(key):
            self._refuse(pin, f"it lists {str(key)[:80]!r}, which is not a cache key")
            return None
        assert isinstance(key, str)
        data = self.source.read(f"{CACHE_DIR}/{entry_name(key)}", MAX_JSON_BYTES)
        if data is None:
            return None
        try:
            record = BuildRecord.from_json(json.loads(data))
        except (ValueError, RecordError) as exc:
            self._refuse(pin, f"its record for key {key[:12]}... is not one ({exc})")
            return None
        why = self._record_problem(pin, sdist, key, record)
        if why is not None:
            self._refuse(pin, why)
            return None
        envelope_data = self.source.read(f"wheels/{record.wheel}{DSSE_SUFFIX}", MAX_JSON_BYTES)
        if envelope_data is None:
            self._refuse(pin, f"{record.wheel} has no signed provenance there")
            return None
        signed = self._signed(pin, envelope_data)
        if signed is None:
            return None
        payload, signature, signer = signed
        try:
            statement = json.loads(payload)
        except ValueError:
            self._refuse(pin, "its signed provenance is not JSON")
            return None
        why = self._statement_problem(pin, key, record, statement)
        if why is not None:
            self._refuse(pin, why)
            return None
        keyed = _statement_key(statement)
        assert keyed is not None  # _statement_problem checked the key it gives
        offer = _Offer(
            record=record,
            payload=payload,
            signature=signature,
            signer=signer,
            env_sha256=tuple(sorted(e.sha256 for e in record.build_env)),
            inputs=keyed[1],
        )
        with self._lock:
            self._offers[(pin.name, str(pin.version), key)] = offer
        return offer

    @staticmethod
    def _record_problem(pin: Pin, sdist: str, key: str, record: BuildRecord) -> str | None:
        if canonicalize_name(record.name) != pin.name or normal_version(
            record.version
        ) != normal_version(str(pin.version)):
            return f"its record for key {key[:12]}... is of {record.name} {record.version}"
        if record.cache_key != key:
            return f"the record it serves as key {key[:12]}... claims another key"
        if record.sdist_sha256 != sdist:
            return "its record names another sdist (sha256) than the one this run verified"
        if record.prebuilt:
            return "it offers a pre-built wheel"
        if not _FILE_NAME.fullmatch(record.wheel) or not record.wheel.endswith(".whl"):
            return f"its record names the wheel {record.wheel[:80]!r}, which is no file name"
        try:
            name, version, _build, _tags = parse_wheel_filename(record.wheel)
        except InvalidWheelFilename:
            return f"its record names {record.wheel[:80]!r}, which is no wheel file name"
        if name != pin.name or normal_version(str(version)) != normal_version(str(pin.version)):
            return f"its record names the wheel {record.wheel}, of another package"
        if record.provenance != record.wheel + PROVENANCE_SUFFIX:
            return "its record names another provenance file than the wheel's"
        if record.sdist_url is None or sdist_filename(record.sdist_url) != pin.sdist.filename:
            return "its record names another sdist file than the one this run verified"
        return None

    def _signed(self, pin: Pin, data: bytes) -> tuple[bytes, bytes, PublicKey] | None:
        """The statement, the signature and the trusted key that made it; None (said) if no
        trusted key signed the envelope."""
        try:
            envelope = json.loads(data)
            if not isinstance(envelope, Mapping) or envelope.get("payloadType") != (
                DSSE_PAYLOAD_TYPE
            ):
                raise ValueError("not an in-toto DSSE envelope")
            payload = base64.b64decode(str(envelope.get("payload")), validate=True)
            if not isinstance(envelope.get("signatures"), list):
                raise ValueError("no signatures")
        except ValueError as exc:
            self._refuse(pin, f"its signed provenance cannot be read ({exc})")
            return None
        signed = pae(DSSE_PAYLOAD_TYPE, payload)
        for signature in envelope_signatures(envelope):
            for key in self.trusted.values():
                if key.verifies(signature, signed):
                    return payload, signature, key
        claimed = [k for k in envelope_keyids(envelope) if k not in self.trusted]
        if claimed and all(k not in self.trusted for k in claimed):
            keyid = claimed[0][:64]
            with self._lock:
                first = keyid not in self._untrusted_said
                self._untrusted_said.add(keyid)
            if first:
                self._notice(
                    f"the build cache {self.source.label} offers builds signed by the key"
                    f" {keyid}, which is not trusted here: they are built here instead. If that"
                    " key is whoever runs the cache (compare its fingerprint with one you got"
                    " from them), pin it: --cache-key-trust KEY.pub.pem"
                )
            return None
        self._refuse(pin, "its provenance has no valid signature by a trusted key")
        return None

    @staticmethod
    def _statement_problem(
        pin: Pin, key: str, record: BuildRecord, statement: object
    ) -> str | None:
        problems = check_statement(
            statement, wheel_filename=record.wheel, wheel_sha256=record.wheel_sha256, record=record
        )
        if problems:
            return f"its record and signed provenance disagree: {problems[0]}"
        assert isinstance(statement, Mapping)
        predicate = statement.get("predicate")
        build = predicate.get("buildDefinition") if isinstance(predicate, Mapping) else None
        if not isinstance(build, Mapping) or build.get("buildType") != BUILD_TYPE:
            return "its signed provenance is not of rewheel's build type"
        external = build.get("externalParameters")
        package = external.get("package") if isinstance(external, Mapping) else None
        if not isinstance(package, Mapping) or (
            package.get("name"),
            normal_version(str(package.get("version"))),
        ) != (pin.name, normal_version(str(pin.version))):
            return "its signed provenance is of another package"
        assert isinstance(external, Mapping)
        if external.get("buildSystemRequires") != list(
            record.build_system_requires
        ) or external.get("backendRequires") != list(record.backend_requires):
            return "its record and signed provenance name other build requirements"
        if statement_cache_key(statement) != key:
            return (
                f"the key recomputed from its signed provenance is not {key[:12]}..., the key it"
                " is offered under"
            )
        return None

    # -- taking a build

    def _take(self, pin: Pin, offer: _Offer) -> BuildRecord | None:
        record = offer.record
        staging = self.repo.cache_dir / "shared"
        staging.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=staging) as tmp:
            wheel = Path(tmp) / record.wheel
            if not self.source.download(f"wheels/{record.wheel}", wheel, record.wheel_sha256):
                self._refuse(
                    pin, f"{record.wheel} is not there, or not the wheel its provenance signs"
                )
                return None
            if self._keep_sdist(pin, self.repo.sdists_dir) is None:
                self._refuse(pin, f"its sdist {pin.sdist.filename} could not be kept")
                return None
            try:
                ref = self.repo.publish_wheel(wheel)
            except RewheelError as exc:
                self._refuse(pin, f"{record.wheel} cannot be published: {exc.message}")
                return None
        if ref.sha256 != record.wheel_sha256 or ref.filename != record.wheel:
            self._refuse(pin, f"{record.wheel} changed while being published")
            return None
        self._write_provenance(ref, offer)
        self.repo.regenerate_project(ref.name)
        # The log stayed on the machine that built it: nothing here to name.
        return dataclasses.replace(record, why=(), log=None, from_cache=self.source.label)

    def _sdist_requires(self, pin: Pin) -> tuple[str, ...] | str:
        """The ``build-system.requires`` of ``pin``'s sdist (the settings' patches not applied),
        read from its ``pyproject.toml`` in the archive (nothing extracted, no code run); or
        why they cannot be read. The sdist is kept in ``sdists/`` (a build here or a hit keeps
        it too); a dry run keeps it in a scratch folder only."""
        if self.dry_run:
            with tempfile.TemporaryDirectory(prefix="rewheel-cache-") as tmp:
                return self._read_requires(pin, self._keep_sdist(pin, Path(tmp)))
        return self._read_requires(pin, self._keep_sdist(pin, self.repo.sdists_dir))

    @staticmethod
    def _read_requires(pin: Pin, sdist: Path | None) -> tuple[str, ...] | str:
        if sdist is None:
            return (
                f"its sdist {pin.sdist.filename} could not be had, to read its build requirements"
            )
        try:
            data = read_root_file(sdist, "pyproject.toml", package=pin.name)
            return tuple(build_system_of(data, package=pin.name).requires)
        except RewheelError as exc:
            return f"its sdist's build requirements cannot be read here: {exc.message}"

    def _keep_sdist(self, pin: Pin, folder: Path) -> Path | None:
        """The sdist the build came from, in ``folder`` (``sdists/``, or a plan's scratch) with
        the sha256 this run verified: from the cache, else from the upstream index."""
        sha256 = str(pin.sdist.sha256).lower()
        name = pin.sdist.filename
        if not _FILE_NAME.fullmatch(name):
            return None
        kept = folder / name
        if kept.is_file() and not kept.is_symlink() and sha256_file(kept) == sha256:
            return kept
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{name}.cache.tmp"
        if self.source.download(f"sdists/{name}", partial, sha256):
            partial.replace(kept)
            return kept
        if self.upstream is None:
            return None
        try:
            return self.upstream.download(pin.sdist, folder)
        except RewheelError:
            return None

    def _write_provenance(self, ref: WheelRef, offer: _Offer) -> None:
        path = self.repo.wheel_path(ref)
        envelope = dsse_envelope(offer.payload, offer.signer.keyid, offer.signature)
        document = provenance_object(offer.payload, offer.signature, offer.signer)
        publish_key(self.repo.root, offer.signer)
        atomic_write_bytes(
            path.with_name(ref.filename + DSSE_SUFFIX),
            (json.dumps(envelope, indent=2) + "\n").encode("utf-8"),
        )
        atomic_write_bytes(
            path.with_name(ref.filename + PROVENANCE_OBJECT_SUFFIX),
            (json.dumps(document, indent=2) + "\n").encode("utf-8"),
        )
        atomic_write_bytes(path.with_name(ref.filename + PROVENANCE_SUFFIX), offer.payload)

    # -- saying why

    def _check_marker(self) -> None:
        """On the first miss, once per run: a cache without ``build-cache/format.json`` is most
        likely a wrong URL (a 404 to every lookup would otherwise say nothing); said once, and
        the cache is still asked (a repository of an older rewheel has entries but no marker)."""
        with self._lock:
            if self._marker_checked:
                return
            self._marker_checked = True
        if self.source.read(f"{CACHE_DIR}/{MARKER}", MAX_JSON_BYTES) is None:
            self._notice(
                f"the build cache {self.source.label} has no {CACHE_DIR}/{MARKER}: it is not the"
                " root of a rewheel repository (its folder, or the URL `rewheel serve` gives), or"
                " that repository has offered no build yet; what it does not have is built here"
            )

    def _refuse(self, pin: Pin, why: str) -> None:
        self._notice(f"{pin}: not taken from the build cache {self.source.label}: {why}")

    def _give_up(self, why: str) -> None:
        with self._lock:
            first = self._unavailable is None
            self._unavailable = why
        if first:
            self._notice(
                f"the build cache {self.source.label} is not asked again in this run: {why};"
                " what it would have given is built here"
            )
