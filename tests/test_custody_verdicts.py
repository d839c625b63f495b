"""The verdicts and messages of the chain of custody, pinned: ``verify --repo`` (the repository
on disk) and ``verify --index`` (the same repository served over HTTP), on one repository changed
in the ways the chain exists to catch.

Repository A is bootstrapped with key A; repository B takes A's builds from A as its build cache
(signed by key A, trusted with ``--cache-key-trust``) and builds one package of its own, ``solo``,
signed by key B. Each case is a copy of B: untouched, a wheel changed, a build tool changed, a
statement or a provenance object gone, a bad signature, a build from the cache without its
signature or whose key the repository no longer publishes, a dependency or a build tool gone.
Each is verified with no key pinned, with key B pinned, with the upstream index compared
(``--check-upstream``), and as a venv's subset (``installed_only``) on disk; with no key and with
key B pinned over HTTP.

What every check printed (and which keys it counted) is compared with ``custody_verdicts.json``
beside this file, with the machine's paths and ports replaced. The keys are made from fixed
bytes, so their ids are the same on every run. To write the file again after a deliberate change
of a message: ``REWHEEL_WRITE_GOLDEN=1 pytest tests/test_custody_verdicts.py``, and read the diff.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Upstream
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.requirements import Requirement
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_wheel

from rewheel import app
from rewheel.cli import cli
from rewheel.core.records import BuildRecord, EnvEntry
from rewheel.core.report import Outcome
from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer
from rewheel.trust.chain import ChainReport
from rewheel.trust.custody import MAX_TOOL_DEPTH

GOLDEN = Path(__file__).with_name("custody_verdicts.json")


@dataclass
class Trees:
    base: Path
    upstream: str
    repo: Path  # B
    key_a: Path  # public keys, PEM
    key_b: Path


def _key_files(folder: Path, name: str, seed: int) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    private = folder / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public = folder / f"{name}.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trees]:
    base = tmp_path_factory.mktemp("custody")
    keys = base / "keys"
    keys.mkdir(mode=0o700)
    private_a, public_a = _key_files(keys, "a", 1)
    private_b, public_b = _key_files(keys, "b", 2)
    files = base / "upstream-files"
    files.mkdir()
    with FakeIndex() as index:
        up = Upstream(index, files)
        up.sdist("tool-a", "1.0")
        up.sdist("lib-b", "1.0", build_requires=["tool-a"])
        up.sdist("App", "1.0", build_requires=["tool-a"], install_requires=["lib-b"])
        up.sdist("solo", "1.0", build_requires=["tool-a"], install_requires=["lib-b"])
        a = base / "a"
        first = app.bootstrap(
            app.BootstrapOptions(
                requirements=[Requirement("app")],
                repo=a,
                index_url=up.url,
                jobs=2,
                work_dir=base / "a-work",
                signing_key=private_a,
            )
        )
        assert first.ok, first.failures
        b = base / "b"
        second = app.bootstrap(
            app.BootstrapOptions(
                requirements=[Requirement("app"), Requirement("solo")],
                repo=b,
                index_url=up.url,
                jobs=2,
                work_dir=base / "b-work",
                signing_key=private_b,
                cache_url=str(a),
                cache_key_trust=[public_a],
            )
        )
        assert second.ok, second.failures
        assert second.outcomes["solo==1.0"] is Outcome.BUILT
        assert second.outcomes["app==1.0"] is Outcome.FROM_CACHE
        assert second.outcomes["tool-a==1.0"] is Outcome.FROM_CACHE
        yield Trees(base, up.url, b, public_a, public_b)


def _wheel(repo: Path, name: str) -> Path:
    (wheel,) = (repo / "wheels").glob(f"{name}-1.0-*.whl")
    return wheel


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def _good(repo: Path) -> None:
    pass


def _tampered_wheel(repo: Path) -> None:
    _flip_last_byte(_wheel(repo, "lib_b"))  # pages still list the real hash


def _tampered_tool(repo: Path) -> None:
    _flip_last_byte(_wheel(repo, "tool_a"))


def _statement_gone(repo: Path) -> None:
    wheel = _wheel(repo, "solo")
    wheel.with_name(wheel.name + ".provenance.json").unlink()


def _provenance_object_gone(repo: Path) -> None:
    wheel = _wheel(repo, "solo")
    wheel.with_name(wheel.name + ".provenance").unlink()


def _bad_signature(repo: Path) -> None:
    """Another signature on solo's statement, in its envelope and in its provenance object."""
    wheel = _wheel(repo, "solo")
    dsse = wheel.with_name(wheel.name + ".provenance.dsse.json")
    envelope = json.loads(dsse.read_text())
    envelope["signatures"][0]["sig"] = "A" * 86 + "=="
    dsse.write_text(json.dumps(envelope))
    provenance = wheel.with_name(wheel.name + ".provenance")
    document = json.loads(provenance.read_text())
    for bundle in document["attestation_bundles"]:
        for attestation in bundle["attestations"]:
            attestation["envelope"]["signature"] = "A" * 86 + "=="
    provenance.write_text(json.dumps(document))


def _cache_build_unsigned(repo: Path) -> None:
    wheel = _wheel(repo, "app")
    wheel.with_name(wheel.name + ".provenance.dsse.json").unlink()


def _cache_key_unpublished(repo: Path, key_a: Path) -> None:
    (published,) = [
        p for p in (repo / "keys").glob("*.pub.pem") if p.read_bytes() == key_a.read_bytes()
    ]
    published.unlink()


def _dependency_gone(repo: Path) -> None:
    for path in (repo / "wheels").glob("lib_b-1.0-*"):
        path.unlink()
    Repository(repo).regenerate_index()


def _build_tool_gone(repo: Path) -> None:
    for path in (repo / "wheels").glob("tool_a-1.0-*"):
        path.unlink()
    Repository(repo).regenerate_index()


CASES: dict[str, Callable[[Path, Trees], None]] = {
    "good": lambda repo, _t: _good(repo),
    "tampered wheel": lambda repo, _t: _tampered_wheel(repo),
    "tampered build tool": lambda repo, _t: _tampered_tool(repo),
    "statement gone": lambda repo, _t: _statement_gone(repo),
    "provenance object gone": lambda repo, _t: _provenance_object_gone(repo),
    "bad signature": lambda repo, _t: _bad_signature(repo),
    "cache build unsigned": lambda repo, _t: _cache_build_unsigned(repo),
    "cache key unpublished": lambda repo, t: _cache_key_unpublished(repo, t.key_a),
    "dependency gone": lambda repo, _t: _dependency_gone(repo),
    "build tool gone": lambda repo, _t: _build_tool_gone(repo),
}


def _report(report: ChainReport) -> dict[str, Any]:
    """Everything a check returns, in its order."""
    return {
        "entries": [
            [
                e.name,
                e.version,
                e.wheel,
                str(e.source),
                str(e.dependencies),
                str(e.build_tools),
                *e.problems,
            ]
            for e in report.entries
        ],
        "problems": report.problems,
        "notes": report.notes,
        "signers": list(report.signers.items()),
    }


def _cli(*args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["verify", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return [f"exit {result.exit_code}", *result.output.splitlines()]


def _checks(repo: Path, trees: Trees) -> dict[str, Any]:
    key_b = str(trees.key_b)
    out: dict[str, Any] = {
        "repo": _cli("--repo", str(repo)),
        "repo, key B pinned": _cli("--repo", str(repo), "--public-key", key_b),
        "repo, upstream compared": _cli(
            "--repo", str(repo), "--check-upstream", "--index-url", trees.upstream
        ),
        "repo report": _report(app.chain_of_custody(repo_root=repo, packages=None)),
        "repo report, key B pinned": _report(
            app.chain_of_custody(repo_root=repo, packages=None, public_keys=[trees.key_b])
        ),
        "repo report, installed app, solo and tool-a": _report(
            app.chain_of_custody(
                repo_root=repo,
                packages=[("App", "1.0"), ("solo", "1.0"), ("tool-a", "1.0"), ("gone", "2")],
                installed_only=True,
            )
        ),
    }
    with IndexServer(Repository(repo)) as server:
        url = server.url + "/"
        out["index"] = _cli("--index", url)
        out["index, key B pinned"] = _cli("--index", url, "--public-key", key_b)
        out["index report"] = _report(app.verify_index(url))
        out["index report, key B pinned"] = _report(
            app.verify_index(url, public_keys=[trees.key_b])
        )
        text = json.dumps(out)
        text = text.replace(server.url.removesuffix("/simple"), "<server>")
    text = text.replace(trees.upstream.removesuffix("/simple"), "<upstream>")
    text = text.replace(str(trees.base), "<tmp>")
    result: dict[str, Any] = json.loads(text)
    return result


def _hashes_named(golden: Any) -> Any:
    """sha256 digests (whole, or the 12 first digits) as the order they first appear in:
    the wheels' bytes need not be the same on every machine, their places in the messages do."""
    seen: dict[str, str] = {}

    def name(match: re.Match[str]) -> str:
        return seen.setdefault(match.group(0), f"<sha{len(seen) + 1}>")

    return json.loads(
        re.sub(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{12}(?=\.\.\.)", name, json.dumps(golden))
    )


@pytest.fixture(scope="module")
def observed(trees: Trees) -> dict[str, Any]:
    out = {}
    for case, change in CASES.items():
        copy = trees.base / f"case-{len(out)}" / "b"
        shutil.copytree(trees.repo, copy, symlinks=True)
        change(copy, trees)
        checks = _checks(copy, trees)
        text = json.dumps(checks).replace(str(copy), "<repo>")
        out[case] = json.loads(text)
    result: dict[str, Any] = _hashes_named(out)
    if os.environ.get("REWHEEL_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


@pytest.mark.parametrize("case", list(CASES))
def test_the_verdicts_and_messages_are_the_pinned_ones(case: str, observed: dict[str, Any]) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert observed[case] == golden[case]


# What only one of the two sees: an index serves no statement file, no signed envelope and no
# key of its own to check them with, only the provenance object made of them; on disk the signed
# statement is the proof, and a wheel without a provenance object is accepted.
ONLY_ON_DISK = ("statement gone", "cache build unsigned", "cache key unpublished")
ONLY_SERVED = ("provenance object gone",)


def test_the_cases_catch_what_they_are_about(observed: dict[str, Any]) -> None:
    """The pinned file is not a record of nothing: each change is caught where it can be."""
    for case, checks in observed.items():
        for check, unseen in (("repo", ONLY_SERVED), ("index", ONLY_ON_DISK)):
            holds = case == "good" or case in unseen
            code = checks[check][0]
            assert code == ("exit 0" if holds else "exit 1"), (case, check, checks[check])


def test_build_environments_nested_without_end_on_disk_are_cut_not_a_crash(
    tmp_path: Path,
) -> None:
    """Whoever writes a repository can make its build records nest build environments as deep
    as they like (each record naming the next wheel's sha256): verify --repo follows them at
    most MAX_TOOL_DEPTH deep, as verify --index does, instead of running out of stack."""
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    made = tmp_path / "made"
    below: EnvEntry | None = None
    for i in reversed(range(600)):  # t0000 is built with t0001, which is built with t0002...
        name = f"t{i:04d}"
        wheel = make_wheel(SdistSpec(name, "1.0"), made)
        shutil.copy(wheel, repo.wheels_dir / wheel.name)
        sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
        record = BuildRecord(
            name=name,
            version="1.0",
            sdist_url=f"https://example.invalid/{name}-1.0.tar.gz",
            sdist_sha256="0" * 64,
            wheel=wheel.name,
            wheel_sha256=sha256,
            build_env=() if below is None else (below,),
        )
        repo.record_path(name, "1.0").write_text(json.dumps(record.to_json()))
        below = EnvEntry(name, "1.0", sha256)
    result = CliRunner().invoke(cli, ["verify", "--repo", str(repo.root)])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    deeper = f"build environments nested deeper than {MAX_TOOL_DEPTH}: not followed"
    assert f"          - t0100 1.0: {deeper}" in result.output.splitlines()
