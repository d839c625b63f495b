"""PEP 740 in the index: the pages carry a ``provenance`` URL per signed wheel (PEP 691 JSON)
and ``data-provenance`` (HTML); the URL serves the wheel's PEP 740 provenance object as JSON,
holding the same statement and signature as its DSSE envelope. pip and uv ignore the new keys.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
from conftest import schema_errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.trees import (  # noqa: F401 (fixtures)
    built_tree,
    published_key,
    served_tree,
    tree_copy,
)
from uv import find_uv_bin

from rewheel.repo.repository import Repository
from rewheel.trust.chain import verify_chain
from rewheel.trust.provenance import DSSE_PAYLOAD_TYPE, Signer, pae, read_provenance_object

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"

# PEP 691 project page (API 1.x) with the keys of PEP 700 (versions, size), PEP 714
# (core-metadata) and PEP 740 (provenance): the shape every client may rely on.
PEP691_PROJECT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["meta", "name", "files", "versions"],
    "properties": {
        "meta": {
            "type": "object",
            "required": ["api-version"],
            "properties": {"api-version": {"type": "string", "pattern": r"^1\.[0-9]+$"}},
        },
        "name": {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "files": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["filename", "url", "hashes", "size"],
                "properties": {
                    "filename": {"type": "string"},
                    "url": {"type": "string"},
                    "hashes": {
                        "type": "object",
                        "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]+$"},
                    },
                    "requires-python": {"type": "string"},
                    "core-metadata": {"$ref": "#/$defs/metadata"},
                    "dist-info-metadata": {"$ref": "#/$defs/metadata"},
                    "gpg-sig": {"type": "boolean"},
                    "yanked": {"type": ["boolean", "string"]},
                    "size": {"type": "integer", "minimum": 0},
                    "upload-time": {"type": "string"},
                    "provenance": {"type": ["string", "null"]},
                },
            },
        },
    },
    "$defs": {
        "metadata": {
            "oneOf": [
                {"type": "boolean"},
                {"type": "object", "additionalProperties": {"type": "string"}},
            ]
        }
    },
}

# The provenance object of PEP 740 as rewheel writes it (docs/provenance.md, "PEP 740").
PEP740_PROVENANCE: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "attestation_bundles"],
    "properties": {
        "version": {"const": 1},
        "attestation_bundles": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["publisher", "attestations"],
                "properties": {
                    "publisher": {
                        "type": "object",
                        "required": ["kind", "claims", "keyid"],
                        "properties": {
                            "kind": {"const": "rewheel"},
                            "claims": {"type": "object"},
                            "keyid": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        },
                    },
                    "attestations": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["version", "verification_material", "envelope"],
                            "properties": {
                                "version": {"const": 1},
                                "verification_material": {
                                    "type": "object",
                                    "required": ["public_key", "transparency_entries"],
                                },
                                "envelope": {
                                    "type": "object",
                                    "required": ["statement", "signature"],
                                    "properties": {
                                        "statement": {"type": "string"},
                                        "signature": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def _get(url: str, accept: str = "*/*") -> tuple[str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request) as answer:
        return answer.headers["Content-Type"], answer.read()


# ---------------------------------------------------------------- PEP 740 on the pages


def test_pages_carry_a_provenance_url_per_wheel_that_serves_the_attestation(
    repo: Path, served: str
) -> None:
    keyid = published_key(repo).name.removesuffix(".pub.pem")
    content_type, body = _get(served + "lib-b/", JSON_TYPE)
    assert content_type == JSON_TYPE
    page = json.loads(body)
    assert page["meta"]["api-version"] == "1.3"
    jsonschema.validate(page, PEP691_PROJECT)
    (wheel,) = [f for f in page["files"] if f["filename"].endswith(".whl")]
    assert wheel["provenance"] == f"../../wheels/{wheel['filename']}.provenance"
    _, html = _get(served + "lib-b/", HTML_TYPE)
    assert f'data-provenance="../../wheels/{wheel["filename"]}.provenance"' in html.decode()

    url = urllib.request.urljoin(served + "lib-b/", wheel["provenance"])
    content_type, body = _get(url)
    assert content_type == "application/json"
    document = json.loads(body)
    jsonschema.validate(document, PEP740_PROVENANCE)
    (bundle,) = document["attestation_bundles"]
    assert bundle["publisher"] == {
        "kind": "rewheel",
        "claims": {},
        "keyid": keyid,
        "algorithm": "ed25519",
    }
    (attestation,) = bundle["attestations"]
    statement = base64.b64decode(attestation["envelope"]["statement"])
    # The statement is the provenance file byte for byte, signed as its DSSE envelope is.
    assert statement == (repo / "wheels" / f"{wheel['filename']}.provenance.json").read_bytes()
    assert json.loads(statement)["subject"][0]["digest"]["sha256"] == wheel["hashes"]["sha256"]
    assert schema_errors(json.loads(statement)) == []
    envelope = json.loads(
        (repo / "wheels" / f"{wheel['filename']}.provenance.dsse.json").read_text()
    )
    assert attestation["envelope"]["signature"] == envelope["signatures"][0]["sig"]
    public = serialization.load_der_public_key(
        base64.b64decode(attestation["verification_material"]["public_key"])
    )
    public.verify(  # type: ignore[union-attr, call-arg]
        base64.b64decode(attestation["envelope"]["signature"]), pae(DSSE_PAYLOAD_TYPE, statement)
    )
    (attested,), problems = read_provenance_object(document)
    assert problems == [] and attested.signed and attested.key.keyid == keyid
    # The other provenance files are JSON too.
    for suffix in (".provenance.json", ".provenance.dsse.json"):
        content_type, _ = _get(
            f"{served.removesuffix('simple/')}wheels/{wheel['filename']}{suffix}"
        )
        assert content_type == "application/json"


def test_every_project_page_of_a_run_validates_as_pep_691(repo: Path) -> None:
    pages = sorted((repo / "simple").glob("*/index.json"))
    assert len(pages) == 3
    for page in pages:
        data = json.loads(page.read_text())
        jsonschema.validate(data, PEP691_PROJECT)
        for file in data["files"]:
            if file["filename"].endswith(".whl"):
                assert file["provenance"].endswith(".whl.provenance")


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "PIP_CONFIG_FILE": os.devnull,
        "UV_NO_CONFIG": "1",
        **env,
    }
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=environ)


def test_pip_and_uv_install_from_the_index_with_provenance_keys(
    served: str, tmp_path: Path
) -> None:
    pip = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--isolated",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--index-url",
            served,
            "--target",
            str(tmp_path / "pip"),
            "app",
        ]
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert "WARNING" not in pip.stderr, pip.stderr
    assert sorted(p.name for p in (tmp_path / "pip").glob("*.dist-info")) == [
        "app-1.0.dist-info",
        "lib_b-1.0.dist-info",
    ]
    uv = _run(
        [
            find_uv_bin(),
            "pip",
            "install",
            "--no-cache",
            "--python",
            sys.executable,
            "--index-url",
            served,
            "--target",
            str(tmp_path / "uv"),
            "app",
        ]
    )
    assert uv.returncode == 0, uv.stdout + uv.stderr
    assert "warning" not in uv.stderr.lower(), uv.stderr
    assert sorted(p.name for p in (tmp_path / "uv").glob("*.dist-info")) == [
        "app-1.0.dist-info",
        "lib_b-1.0.dist-info",
    ]


def test_verify_repo_checks_the_provenance_object_the_pages_link_to(
    repo: Path, tmp_path: Path
) -> None:
    (wheel,) = (repo / "wheels").glob("tool_a-*.whl")
    served = wheel.with_name(wheel.name + ".provenance")
    document = json.loads(served.read_text())
    attestation = document["attestation_bundles"][0]["attestations"][0]
    statement = base64.b64decode(attestation["envelope"]["statement"])
    # Another statement than the provenance file (what an auditor of the index would read).
    attestation["envelope"]["statement"] = base64.b64encode(
        statement.replace(b'"networkIsolated": true', b'"networkIsolated": false')
    ).decode()
    served.write_text(json.dumps(document))
    (entry,) = [e for e in verify_chain(Repository(repo)).entries if e.name == "tool-a"]
    assert f"tool-a 1.0: {served.name} carries another statement than the provenance file" in (
        entry.problems
    )
    # The same statement, signed by a key the repository does not publish.
    signer = Signer(_private_key(tmp_path / "their.pem"))
    attestation["envelope"]["statement"] = base64.b64encode(statement).decode()
    attestation["envelope"]["signature"] = base64.b64encode(signer.sign(statement)).decode()
    attestation["verification_material"]["public_key"] = base64.b64encode(
        signer.public_key.der
    ).decode()
    served.write_text(json.dumps(document))
    (entry,) = [e for e in verify_chain(Repository(repo)).entries if e.name == "tool-a"]
    assert (
        f"tool-a 1.0: {served.name} is signed by the key {signer.keyid}, which the repository"
        " does not publish"
    ) in entry.problems
    (entry,) = [
        e
        for e in verify_chain(Repository(repo), public_keys=[published_key(repo)]).entries
        if e.name == "tool-a"
    ]
    assert any("not by a pinned one" in p for p in entry.problems)


def _private_key(path: Path) -> Path:
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path
