"""Build provenance: an in-toto Statement v1 with a SLSA provenance v1 predicate for each wheel.

``statement()`` is pure: it turns the facts of one build (``BuildFacts``) into the statement,
whose every field docs/provenance.md describes and ``provenance.schema.json`` (beside this
module, ``schema()``) defines. ``check_statement()`` is its counterpart for ``verify``. The I/O
around them is small and kept apart: ``system_tools()`` and ``build_platform()`` look at this
machine, ``write_provenance()`` writes the statement (and, given a key, its signature) beside
the wheel.

Layout beside ``wheels/<wheel>``: ``<wheel>.provenance.json`` (the statement, always);
``<wheel>.provenance.dsse.json`` (a DSSE envelope of it signed with Ed25519) and
``<wheel>.provenance`` (the PEP 740 provenance object the index pages link to, holding the same
statement and signature), when signed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.tags import sys_tags
from packaging.utils import canonicalize_name

from .. import __version__
from ..core.errors import ConfigError, Step
from ..core.fsutil import atomic_write_bytes, sha256_file
from ..core.paths import sdist_filename as sdist_filename
from ..core.records import BuildRecord
from ..index.index_pages import PROVENANCE_OBJECT_SUFFIX
from ..repo.published_keys import KeyFormatError, PublicKey, load_public_key

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# Documented in docs/provenance.md: a PEP 517 build_wheel (or a recipe) of one sdist in a fresh
# venv of exactly the listed wheels, in rewheel's sandbox.
BUILD_TYPE = "urn:rewheel:build-type:pep517-wheel:v1"
SCHEMA_FILE = "provenance.schema.json"
DSSE_PAYLOAD_TYPE = "application/vnd.in-toto+json"
PROVENANCE_SUFFIX = ".provenance.json"
DSSE_SUFFIX = ".provenance.dsse.json"
# The PEP 740 provenance object beside each signed wheel: <wheel>.provenance.
PUBLISHER_KIND = "rewheel"


def builder_id(version: str = __version__) -> str:
    return f"pkg:pypi/rewheel@{version}"


def wheel_purl(name: str, version: str, filename: str | None = None) -> str:
    purl = f"pkg:pypi/{canonicalize_name(name)}@{version}"
    return f"{purl}?file_name={filename}" if filename else purl


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Tool:
    """A program of this machine that took part in the build (a builder dependency)."""

    name: str
    version: str
    uri: str | None = None
    sha256: str | None = None
    role: str = "system-tool"  # builder, interpreter, installer, system-tool
    annotations: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvWheel:
    """One wheel of the build environment."""

    name: str
    version: str
    sha256: str
    filename: str | None = None


@dataclass(frozen=True)
class BuildFacts:
    """Everything a provenance statement says about one build, as plain data."""

    name: str
    version: str
    wheel_filename: str
    wheel_sha256: str
    sdist_url: str
    sdist_sha256: str
    build_env: Sequence[EnvWheel]
    build_system_requires: Sequence[str]
    backend_requires: Sequence[str]
    why: Sequence[Mapping[str, str | None]]  # {"package", "requirement", "kind"}
    tools: Sequence[Tool]
    platform: Mapping[str, Any]  # build_platform()
    reproducibility: Mapping[str, str]  # the variables set for reproducible output
    source_date_epoch: int
    build_path: str
    network_isolated: bool
    started: float  # seconds since the epoch
    finished: float
    log_name: str | None = None
    log_sha256: str | None = None
    builder_version: str = __version__
    extra: Mapping[str, Any] = field(default_factory=dict)
    # How the build code was contained (sandbox.SandboxPolicy.as_record()).
    sandbox: Mapping[str, Any] = field(default_factory=lambda: {"kind": "none"})
    # Every setting applied to the build (attest.settings_parameters); None: not known.
    settings: Mapping[str, Any] | None = None
    # How the build ran (build.conditions.BuildConditions.as_record()); None: not recorded
    # where it ran (a Dask worker's build).
    conditions: Mapping[str, Any] | None = None


def _descriptor(
    name: str,
    *,
    uri: str | None,
    sha256: str | None,
    annotations: Mapping[str, Any],
) -> dict[str, Any]:
    """A SLSA ResourceDescriptor."""
    out: dict[str, Any] = {"name": name}
    if uri:
        out["uri"] = uri
    if sha256:
        out["digest"] = {"sha256": sha256}
    out["annotations"] = dict(annotations)
    return out


# The keys of internalParameters that come from the build's conditions (null when not recorded).
_CONDITION_KEYS = (
    "umask",
    "cores",
    "parallelism",
    "distExtraConfig",
    "environment",
    "sitecustomize",
    "hookRunner",
)


def _builder_dependencies(facts: BuildFacts) -> list[dict[str, Any]]:
    """rewheel, the interpreter, uv, the compilers, the system tools and libraries: what the
    build took from this machine rather than from the sdist and the build environment."""
    out = []
    for tool in facts.tools:
        out.append(
            _descriptor(
                tool.name,
                uri=tool.uri,
                sha256=tool.sha256,
                annotations={"role": tool.role, "version": tool.version, **tool.annotations},
            )
        )
    conditions = facts.conditions or {}
    for program in conditions.get("programs") or []:
        out.append(
            _descriptor(
                str(program["name"]),
                uri=f"file://{program['realPath']}",
                sha256=program.get("sha256"),
                annotations={
                    "role": "compiler",
                    "version": program.get("version"),
                    "path": program.get("path"),
                    "origin": program.get("origin"),
                },
            )
        )
    linkage = conditions.get("linkage") or {}
    for library in linkage.get("systemLibraries") or []:
        out.append(
            _descriptor(
                str(library["path"]).rsplit("/", 1)[-1],
                uri=f"file://{library['realPath']}",
                sha256=library.get("sha256"),
                annotations={
                    "role": "system-library",
                    "path": library["path"],
                    "debianPackage": library.get("debianPackage"),
                    "debianVersion": library.get("debianVersion"),
                },
            )
        )
    return out


def statement(facts: BuildFacts) -> dict[str, Any]:
    """The in-toto Statement v1 (SLSA provenance v1 predicate) of one wheel build."""
    dependencies = [
        _descriptor(
            sdist_filename(facts.sdist_url),
            uri=facts.sdist_url,
            sha256=facts.sdist_sha256,
            annotations={"role": "source"},
        )
    ]
    for wheel in sorted(facts.build_env, key=lambda w: (canonicalize_name(w.name), w.version)):
        dependencies.append(
            _descriptor(
                wheel.filename or f"{canonicalize_name(wheel.name)}=={wheel.version}",
                uri=wheel_purl(wheel.name, wheel.version, wheel.filename),
                sha256=wheel.sha256,
                annotations={
                    "role": "build-environment",
                    "package": canonicalize_name(wheel.name),
                    "version": wheel.version,
                },
            )
        )
    byproducts = []
    if facts.log_name:
        byproducts.append(
            _descriptor(
                facts.log_name, uri=None, sha256=facts.log_sha256, annotations={"role": "log"}
            )
        )
    conditions = facts.conditions or {}
    linkage = conditions.get("linkage")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": facts.wheel_filename, "digest": {"sha256": facts.wheel_sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "package": {"name": facts.name, "version": facts.version},
                    "source": {"uri": facts.sdist_url, "digest": {"sha256": facts.sdist_sha256}},
                    "why": [dict(w) for w in facts.why],
                    "buildSystemRequires": list(facts.build_system_requires),
                    "backendRequires": list(facts.backend_requires),
                    "settings": None if facts.settings is None else dict(facts.settings),
                    **dict(facts.extra),
                },
                "internalParameters": {
                    "sourceDateEpoch": facts.source_date_epoch,
                    "reproducibilityEnvironment": dict(facts.reproducibility),
                    "buildPath": facts.build_path,
                    "networkIsolated": facts.network_isolated,
                    "sandbox": dict(facts.sandbox),
                    "platform": dict(facts.platform),
                    **{key: conditions.get(key) for key in _CONDITION_KEYS},
                    "linkage": (
                        None
                        if linkage is None
                        else {"files": linkage["files"], "unreadable": linkage["unreadable"]}
                    ),
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": builder_id(facts.builder_version),
                    "version": {"rewheel": facts.builder_version},
                    "builderDependencies": _builder_dependencies(facts),
                },
                "metadata": {
                    "startedOn": rfc3339(facts.started),
                    "finishedOn": rfc3339(facts.finished),
                },
                "byproducts": byproducts,
            },
        },
    }


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the statements ``statement()`` writes."""
    text = importlib.resources.files(__package__).joinpath(SCHEMA_FILE).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def statement_bytes(stmt: Mapping[str, Any]) -> bytes:
    """The bytes written to ``<wheel>.provenance.json`` (and signed, when signing)."""
    return (json.dumps(stmt, indent=2, sort_keys=True) + "\n").encode("utf-8")


# ---------------------------------------------------------------- checking


def role_entries(items: object, role: str) -> list[Mapping[str, Any]]:
    """The resource descriptors in ``items`` (a statement's list, or anything) annotated with
    ``role``: "source", "build-environment", "system-tool"..."""
    if not isinstance(items, list):
        return []
    return [
        item
        for item in items
        if isinstance(item, Mapping)
        and isinstance(item.get("annotations"), Mapping)
        and item["annotations"].get("role") == role
    ]


def sha256_of(dep: Mapping[str, Any]) -> str | None:
    """The sha256 in a resource descriptor's ``digest`` (a subject, a resolved dependency)."""
    digest = dep.get("digest")
    if isinstance(digest, Mapping) and isinstance(digest.get("sha256"), str):
        return str(digest["sha256"])
    return None


def check_statement(
    stmt: Any,
    *,
    wheel_filename: str,
    wheel_sha256: str,
    record: BuildRecord | None = None,
) -> list[str]:
    """What is wrong with ``stmt`` as the provenance of this wheel (and its build record)."""
    if not isinstance(stmt, Mapping):
        return ["provenance is not a JSON object"]
    problems = []
    if stmt.get("_type") != STATEMENT_TYPE:
        problems.append(f"provenance _type is {stmt.get('_type')!r}, not {STATEMENT_TYPE}")
    if stmt.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"provenance predicateType is {stmt.get('predicateType')!r}")
    subjects = stmt.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        return [*problems, "provenance must have exactly one subject"]
    subject = subjects[0]
    if subject.get("name") != wheel_filename:
        problems.append(f"provenance subject is {subject.get('name')!r}, not {wheel_filename}")
    if sha256_of(subject) != wheel_sha256:
        problems.append("provenance subject sha256 does not match the wheel")
    if record is None:
        return problems
    predicate = stmt.get("predicate")
    build = predicate.get("buildDefinition") if isinstance(predicate, Mapping) else None
    deps = build.get("resolvedDependencies") if isinstance(build, Mapping) else None
    if not isinstance(deps, list) or not all(isinstance(d, Mapping) for d in deps):
        return [*problems, "provenance has no resolvedDependencies"]
    sources = role_entries(deps, "source")
    if len(sources) != 1:
        problems.append(f"provenance names {len(sources)} sources, not 1")
    else:
        if sha256_of(sources[0]) != record.sdist_sha256:
            problems.append("the sdist sha256 of the provenance and of the build record differ")
        if sources[0].get("uri") != record.sdist_url:
            problems.append("the sdist URL of the provenance and of the build record differ")
    in_provenance = sorted(
        (str(d["annotations"].get("package")), str(d["annotations"].get("version")), sha256_of(d))
        for d in role_entries(deps, "build-environment")
    )
    in_record = sorted(
        (str(canonicalize_name(w.name)), w.version, w.sha256) for w in record.build_env
    )
    if in_provenance != in_record:
        problems.append("the build environment of the provenance and of the build record differ")
    return problems


# ---------------------------------------------------------------- this machine


def _first_line(cmd: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=30, check=False, stdin=None
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def _file_sha256(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return sha256_file(Path(os.path.realpath(path)))
    except OSError:
        return None


@functools.cache
def rewheel_digest() -> str | None:
    """A sha256 over rewheel's own code as it runs here: every file of the package (not its
    caches), by relative path and content. None if it cannot be read."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    try:
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.relative_to(root).parts
        )
        for path in files:
            rel = path.relative_to(root).as_posix()
            digest.update(f"{rel}\0{sha256_file(path)}\n".encode())
    except OSError:
        return None
    return digest.hexdigest()


@functools.cache
def system_tools(python: str = sys.executable) -> tuple[Tool, ...]:
    """rewheel itself, the interpreter (which every build environment is made from) and uv,
    with versions and digests."""
    from uv import find_uv_bin

    real_python = os.path.realpath(python)
    tools = [
        Tool(
            "rewheel",
            __version__,
            uri=builder_id(),
            sha256=rewheel_digest(),
            role="builder",
        ),
        Tool(
            "python",
            platform.python_version(),
            uri=f"file://{real_python}",
            sha256=_file_sha256(real_python),
            role="interpreter",
            annotations={
                "implementation": sys.implementation.name,
                "build": " ".join(platform.python_build()),
                "compiler": platform.python_compiler(),
                "path": python,
            },
        ),
    ]
    try:
        uv_version = importlib.metadata.version("uv")
    except importlib.metadata.PackageNotFoundError:
        uv_version = "unknown"
    uv_bin = find_uv_bin()
    tools.append(
        Tool(
            "uv",
            uv_version,
            uri=f"pkg:pypi/uv@{uv_version}",
            sha256=_file_sha256(uv_bin),
            role="installer",
            annotations={"path": os.path.realpath(uv_bin)},
        )
    )
    return tuple(tools)


@functools.cache
def _cc_version() -> str | None:
    cc = shutil.which("cc")
    return None if cc is None else _first_line([cc, "--version"])


@functools.cache
def build_platform() -> dict[str, Any]:
    """The interpreter and platform the wheels are built on and for."""
    libc, libc_version = platform.libc_ver()
    tags = [str(t) for t in sys_tags()]
    return {
        "implementation": sys.implementation.name,
        "pythonVersion": platform.python_version(),
        "pythonCompiler": platform.python_compiler(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "libc": {"name": libc, "version": libc_version},
        "compiler": _cc_version(),
        "bestTag": tags[0] if tags else None,
        "tagCount": len(tags),
    }


# ---------------------------------------------------------------- signing (DSSE, Ed25519)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


class Signer:
    """An Ed25519 private key from a PEM file (unencrypted PKCS#8, as ``openssl genpkey
    -algorithm ed25519`` writes it). ``data``: the file's bytes, when the caller read them
    itself (``trust.keys`` does, with its checks)."""

    def __init__(self, key_file: Path, *, data: bytes | None = None) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            pem = key_file.read_bytes() if data is None else data
            key = serialization.load_pem_private_key(pem, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"cannot load the signing key {key_file}: {exc}", step=Step.SIGN
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{key_file} is not an Ed25519 private key", step=Step.SIGN)
        self._key = key
        self.path = key_file
        self.public_key = load_public_key(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.keyid = self.public_key.keyid

    def sign(self, payload: bytes) -> bytes:
        """The Ed25519 signature of the DSSE encoding of ``payload`` (an in-toto statement)."""
        return self._key.sign(pae(DSSE_PAYLOAD_TYPE, payload))

    def envelope(self, payload: bytes) -> dict[str, Any]:
        return dsse_envelope(payload, self.keyid, self.sign(payload))


def dsse_envelope(payload: bytes, keyid: str, signature: bytes) -> dict[str, Any]:
    """The DSSE envelope of an in-toto statement and one signature of it."""
    return {
        "payloadType": DSSE_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode("ascii")}],
    }


def load_public_key_file(path: Path) -> PublicKey:
    """The Ed25519 public key in ``path`` (PEM), or a ConfigError naming the file."""
    try:
        return load_public_key(path.read_bytes())
    except (OSError, KeyFormatError) as exc:
        raise ConfigError(
            f"cannot load the public key {path}: {exc}",
            step=Step.VERIFY,
            hint="--public-key takes an Ed25519 public key in PEM, such as the repository's"
            " keys/<fingerprint>.pub.pem: one key per file, each key with its own --public-key",
        ) from exc


def load_public_key_files(paths: Iterable[Path]) -> dict[str, PublicKey]:
    """The keys of ``--public-key`` (repeatable): each file one Ed25519 public key in PEM, by
    key id; a ConfigError names a file that holds none, or more than one."""
    keys: dict[str, PublicKey] = {}
    for path in paths:
        key = load_public_key_file(path)
        keys[key.keyid] = key
    return keys


def envelope_keyids(envelope: Any) -> list[str]:
    """The key ids the signatures of a DSSE envelope claim (not checked)."""
    signatures = envelope.get("signatures") if isinstance(envelope, Mapping) else None
    return [
        str(sig["keyid"])
        for sig in (signatures if isinstance(signatures, list) else [])
        if isinstance(sig, Mapping) and isinstance(sig.get("keyid"), str)
    ]


def envelope_signatures(envelope: Mapping[str, Any]) -> list[bytes]:
    """The signatures of a DSSE envelope, decoded (unchecked; entries that are not base64 are
    left out)."""
    signatures = envelope.get("signatures")
    decoded = []
    for sig in signatures if isinstance(signatures, list) else []:
        if not isinstance(sig, Mapping):
            continue
        try:
            decoded.append(base64.b64decode(str(sig.get("sig")), validate=True))
        except ValueError:
            continue
    return decoded


def check_envelope(envelope: Any, payload: bytes, key: PublicKey) -> str | None:
    """None if ``envelope`` carries ``payload`` with a valid signature by ``key``, else why not."""
    if not isinstance(envelope, Mapping) or envelope.get("payloadType") != DSSE_PAYLOAD_TYPE:
        return "the signed envelope is not an in-toto DSSE envelope"
    try:
        carried = base64.b64decode(str(envelope.get("payload")), validate=True)
    except ValueError:
        return "the signed envelope's payload is not base64"
    if carried != payload:
        return "the signed envelope carries another statement than the provenance file"
    signed = pae(DSSE_PAYLOAD_TYPE, carried)
    if any(key.verifies(signature, signed) for signature in envelope_signatures(envelope)):
        return None
    return f"no valid signature by the key {key.keyid}"


def pinned_signer(
    envelope: Any, payload: bytes, pinned: Mapping[str, PublicKey]
) -> tuple[PublicKey | None, str | None]:
    """Which of the ``pinned`` keys signed ``envelope`` (carrying ``payload``): (that key,
    None), or (None, why none did, naming the pinned keys and the ones the envelope claims)."""
    why = None
    for key in pinned.values():
        why = check_envelope(envelope, payload, key)
        if why is None:
            return key, None
        if not why.startswith("no valid signature"):
            return None, why  # not a signed envelope of this statement: no key can make it one
    claimed = ", ".join(envelope_keyids(envelope)[:4]) or "none"
    keys = ", ".join(sorted(pinned))
    which = f"the key {keys}" if len(pinned) == 1 else f"any of the pinned keys {keys}"
    return None, f"no valid signature by {which}; its signatures name the key(s) {claimed}"


# ---------------------------------------------------------------- PEP 740 provenance objects


def provenance_object(payload: bytes, signature: bytes, key: PublicKey) -> dict[str, Any]:
    """The PEP 740 provenance object served beside a wheel (``<wheel>.provenance``): one
    bundle, whose publisher is rewheel's signing key, holding one attestation of the statement
    ``payload``. Where it departs from PEP 740 (no Sigstore certificate, Ed25519) is in
    docs/provenance.md, "PEP 740"."""
    return {
        "version": 1,
        "attestation_bundles": [
            {
                "publisher": {
                    "kind": PUBLISHER_KIND,
                    "claims": {},
                    "keyid": key.keyid,
                    "algorithm": "ed25519",
                },
                "attestations": [
                    {
                        "version": 1,
                        "verification_material": {
                            "public_key": base64.b64encode(key.der).decode("ascii"),
                            "transparency_entries": [],
                        },
                        "envelope": {
                            "statement": base64.b64encode(payload).decode("ascii"),
                            "signature": base64.b64encode(signature).decode("ascii"),
                        },
                    }
                ],
            }
        ],
    }


@dataclass(frozen=True)
class Attested:
    """One attestation of a PEP 740 provenance object, decoded (nothing checked yet)."""

    statement: bytes
    signature: bytes
    key: PublicKey
    publisher: Mapping[str, Any]

    @property
    def signed(self) -> bool:
        """Whether the signature is the key's, over the DSSE encoding of the statement."""
        return self.key.verifies(self.signature, pae(DSSE_PAYLOAD_TYPE, self.statement))


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a base64 string")
    return base64.b64decode(value, validate=True)


def read_provenance_object(obj: Any) -> tuple[list[Attested], list[str]]:
    """The attestations of a PEP 740 provenance object that rewheel can check (publisher kind
    ``rewheel``), and what is wrong with the object or the ones it cannot read."""
    if not isinstance(obj, Mapping) or obj.get("version") != 1:
        return [], ["not a PEP 740 provenance object of version 1"]
    bundles = obj.get("attestation_bundles")
    if not isinstance(bundles, list) or not bundles:
        return [], ["the provenance object has no attestation_bundles"]
    found: list[Attested] = []
    problems: list[str] = []
    for bundle in bundles:
        publisher = bundle.get("publisher") if isinstance(bundle, Mapping) else None
        attestations = bundle.get("attestations") if isinstance(bundle, Mapping) else None
        if not isinstance(publisher, Mapping) or not isinstance(attestations, list):
            problems.append("an attestation bundle without publisher and attestations")
            continue
        if publisher.get("kind") != PUBLISHER_KIND:
            problems.append(
                f"an attestation bundle of publisher kind {str(publisher.get('kind'))[:80]!r},"
                " which rewheel does not check"
            )
            continue
        for attestation in attestations:
            try:
                if not isinstance(attestation, Mapping) or attestation.get("version") != 1:
                    raise ValueError("not an attestation object of version 1")
                material = attestation.get("verification_material")
                envelope = attestation.get("envelope")
                if not isinstance(material, Mapping) or not isinstance(envelope, Mapping):
                    raise ValueError("no verification_material and envelope")
                key = load_public_key(_b64(material.get("public_key")))
                found.append(
                    Attested(
                        statement=_b64(envelope.get("statement")),
                        signature=_b64(envelope.get("signature")),
                        key=key,
                        publisher=publisher,
                    )
                )
            except ValueError as exc:  # KeyFormatError is one
                problems.append(f"an attestation that cannot be read: {exc}")
    return found, problems


# ---------------------------------------------------------------- writing


def write_provenance(
    wheel_path: Path, stmt: Mapping[str, Any], *, signer: Signer | None = None
) -> Path:
    """Write the statement beside ``wheel_path`` and, given a signer, its DSSE envelope and the
    PEP 740 provenance object that carries the same signature; return the statement's path."""
    payload = statement_bytes(stmt)
    path = wheel_path.with_name(wheel_path.name + PROVENANCE_SUFFIX)
    if signer is not None:
        signature = signer.sign(payload)
        envelope = dsse_envelope(payload, signer.keyid, signature)
        dsse = wheel_path.with_name(wheel_path.name + DSSE_SUFFIX)
        atomic_write_bytes(dsse, (json.dumps(envelope, indent=2) + "\n").encode("utf-8"))
        served = wheel_path.with_name(wheel_path.name + PROVENANCE_OBJECT_SUFFIX)
        document = provenance_object(payload, signature, signer.public_key)
        atomic_write_bytes(served, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
    atomic_write_bytes(path, payload)
    return path
