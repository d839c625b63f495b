"""``rewheel verify --index URL``: a served index checked from outside, over HTTP only.

Every file is downloaded and checked against its page's sha256; each wheel's PEP 740 provenance
object must be signed by the pinned key and name that very file; its build tools and
dependencies must be on the index. A hostile index is one of the cases: a swapped wheel with its
page hash fixed, a provenance or a wheel on another host (never fetched), pages that disagree,
a file longer than its page says.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner, Result
from conftest import Upstream
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.requirements import Requirement
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_wheel
from support.trees import (  # noqa: F401 (fixtures)
    built_tree,
    published_key,
    served_tree,
    tree_copy,
)

from rewheel import app
from rewheel.cli import cli
from rewheel.core.errors import ConfigError
from rewheel.index.http import HttpClient, Limits
from rewheel.repo.published_keys import published_keys
from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer
from rewheel.trust.chain import UNSIGNED_NOTE, Verdict


def _verify(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["verify", "--index", url, *args])


# ---------------------------------------------------------------- verify --index


def test_verify_index_holds_for_a_good_index_with_the_pinned_key(repo: Path, served: str) -> None:
    result = _verify(served, "--public-key", str(published_key(repo)))
    assert result.exit_code == 0, result.output
    for name in ("app", "lib-b", "tool-a"):
        assert (
            f"chain   {name} 1.0: built from source ok, dependencies ok, build tools ok"
            in result.output
        )
    assert f"chain of custody holds for 3 wheel(s) served at {served}" in result.output
    assert "did not pin" not in result.output and UNSIGNED_NOTE not in result.output


def test_verify_index_without_a_pinned_key_says_which_key_signed(repo: Path, served: str) -> None:
    keyid = published_key(repo).name.removesuffix(".pub.pem")
    result = _verify(served)
    assert result.exit_code == 0, result.output
    assert f"which you did not pin: {keyid} (3 wheel(s))" in result.output
    assert "--public-key" in result.output


def test_verify_index_with_another_key_pinned_fails(served: str, tmp_path: Path) -> None:
    other = tmp_path / "other.pub.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    result = _verify(served, "--public-key", str(other))
    assert result.exit_code == 1
    assert "not by a pinned one" in result.output
    assert "chain of custody broken for 3 of 3 wheel(s)" in result.output


def test_verify_index_takes_several_pinned_keys_and_names_each_wheels_signer(
    repo: Path, served: str, tmp_path: Path
) -> None:
    # The index's key among others pinned: every attestation is signed by one of them, and
    # each wheel's line says which.
    other = tmp_path / "other.pub.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    key = published_key(repo)
    result = _verify(served, "--public-key", str(other), "--public-key", str(key))
    assert result.exit_code == 0, result.output
    keyid = key.name.removesuffix(".pub.pem")
    sound = "built from source ok, dependencies ok, build tools ok"
    for name in ("app", "lib-b", "tool-a"):
        assert f"chain   {name} 1.0: {sound}, signed by {keyid}\n" in result.output


def _swap(repo: Path, name: str) -> Path:
    """Another wheel under ``name``'s file name, and pages regenerated so they list its hash."""
    (wheel,) = (repo / "wheels").glob(f"{name}-*.whl")
    other = make_wheel(SdistSpec(wheel.name.split("-")[0], "1.0"), repo.parent / "other")
    shutil.copy(other, wheel)
    (repo / "wheels" / f"{wheel.name}.metadata").unlink()
    Repository(repo).regenerate_index()
    return wheel


def test_a_swapped_wheel_with_its_page_hash_fixed_is_named(repo: Path, served: str) -> None:
    wheel = _swap(repo, "lib_b")
    result = _verify(served, "--public-key", str(published_key(repo)))
    assert result.exit_code == 1
    assert "CHAIN   lib-b 1.0: built from source BROKEN" in result.output
    assert (
        f"lib-b 1.0: {wheel.name}: provenance subject sha256 does not match the wheel"
        in result.output
    )
    assert "CHAIN   app 1.0: built from source ok, dependencies BROKEN" in result.output
    assert wheel.name in result.output


def test_a_file_that_is_not_what_its_page_lists_is_named(repo: Path, served: str) -> None:
    (wheel,) = (repo / "wheels").glob("tool_a-*.whl")
    data = bytearray(wheel.read_bytes())
    data[-1] ^= 1  # pages not regenerated: they still list the real hash
    wheel.write_bytes(bytes(data))
    report = app.verify_index(served, public_keys=[published_key(repo)])
    entries = {e.name: e for e in report.entries}
    assert entries["tool-a"].source == Verdict.BROKEN
    assert any(
        p.startswith(f"tool-a 1.0: {wheel.name} as served has the sha256")
        for p in entries["tool-a"].problems
    )
    assert entries["lib-b"].build_tools == Verdict.BROKEN  # built with it


def test_metadata_without_a_dependency_is_caught(repo: Path, served: str) -> None:
    (sidecar,) = (repo / "wheels").glob("app-*.whl.metadata")
    sidecar.write_bytes(
        b"".join(
            line
            for line in sidecar.read_bytes().splitlines(keepends=True)
            if not line.startswith(b"Requires-Dist")
        )
    )
    Repository(repo).regenerate_index()  # the page gives the new metadata's hash
    report = app.verify_index(served, public_keys=[published_key(repo)])
    (entry,) = [e for e in report.entries if e.name == "app"]
    assert any("is not the wheel's own METADATA" in p for p in entry.problems)


def _edit_pages(repo: Path, project: str, old: str, new: str) -> None:
    for page in ("index.json", "index.html"):
        path = repo / "simple" / project / page
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))


def test_a_provenance_url_on_another_host_is_a_finding_and_not_fetched(
    repo: Path, served: str, tmp_path: Path
) -> None:
    with FakeIndex() as elsewhere:
        (wheel,) = (repo / "wheels").glob("lib_b-*.whl")
        target = elsewhere.url.removesuffix("/simple") + f"/evil/{wheel.name}.provenance"
        _edit_pages(repo, "lib-b", f"../../wheels/{wheel.name}.provenance", target)
        result = _verify(served, "--public-key", str(published_key(repo)))
        assert elsewhere.requests == []
    assert result.exit_code == 1
    assert (
        f"lib-b 1.0: the page links the provenance of {wheel.name} to {target}, on another"
        " host than the index: not fetched"
    ) in result.output


def test_a_wheel_on_another_host_is_not_fetched(repo: Path, served: str) -> None:
    with FakeIndex() as elsewhere:
        (wheel,) = (repo / "wheels").glob("lib_b-*.whl")
        target = elsewhere.url.removesuffix("/simple") + f"/evil/{wheel.name}"
        _edit_pages(repo, "lib-b", f"../../wheels/{wheel.name}", target)
        report = app.verify_index(served, public_keys=[published_key(repo)])
        assert elsewhere.requests == []
    (entry,) = [e for e in report.entries if e.name == "lib-b"]
    assert any("on another host than the index: not fetched" in p for p in entry.problems)


def test_json_and_html_pages_that_disagree_are_a_finding(repo: Path, served: str) -> None:
    path = repo / "simple" / "tool-a" / "index.html"
    (wheel,) = (repo / "wheels").glob("tool_a-*.whl")
    text = path.read_text()
    path.write_text(text.replace(f' data-provenance="../../wheels/{wheel.name}.provenance"', ""))
    report = app.verify_index(served, public_keys=[published_key(repo)])
    assert report.problems == [
        f"the JSON and HTML pages of tool-a disagree about {wheel.name} (its URL, sha256,"
        " metadata or provenance, or whether it is listed)"
    ]
    assert not report.ok


def test_a_file_longer_than_its_page_says_is_not_downloaded_past_it(
    repo: Path, served: str
) -> None:
    page = repo / "simple" / "tool-a" / "index.json"
    data = json.loads(page.read_text())
    for file in data["files"]:
        file["size"] = 100
    page.write_text(json.dumps(data))
    report = app.verify_index(
        served,
        public_keys=[published_key(repo)],
        machine=app.Machine(http_client=lambda: HttpClient(limits=Limits(page_bytes=1 << 20))),
    )
    (entry,) = [e for e in report.entries if e.name == "tool-a"]
    assert any("cannot be downloaded" in p and "listed_size" in p for p in entry.problems)


def test_an_unsigned_index_cannot_be_verified_and_says_so(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("solo", "1.0")
    repo = tmp_path / "repo"
    options = app.BootstrapOptions(
        requirements=[Requirement("solo")],
        repo=repo,
        index_url=upstream.url,
        jobs=1,
        work_dir=tmp_path / "work",
        sign=False,
    )
    assert app.bootstrap(options).ok
    assert published_keys(repo) == ({}, [])
    with IndexServer(Repository(repo)) as server:
        result = _verify(server.url + "/")
        assert result.exit_code == 1
        assert "the index gives no provenance for solo-1.0-py3-none-any.whl" in result.output
        assert result.output.count(UNSIGNED_NOTE) == 1
        accepted = _verify(server.url + "/", "--allow-prebuilt")
        assert accepted.exit_code == 0, accepted.output
        assert "built from source pre-built" in accepted.output
        assert UNSIGNED_NOTE in accepted.output


def test_verify_index_refuses_what_is_not_an_http_url(tmp_path: Path) -> None:
    result = _verify(str(tmp_path))
    assert isinstance(result.exception, ConfigError)
    assert "--index takes the URL of an index" in str(result.exception)
    result = CliRunner().invoke(
        cli, ["verify", "--index", "http://127.0.0.1:1/simple/", "--venv", str(tmp_path)]
    )
    assert result.exit_code == 2 and "goes without --venv" in result.output


def test_a_provenance_object_nested_too_deep_is_a_finding_not_a_crash(
    repo: Path, served: str
) -> None:
    (wheel,) = (repo / "wheels").glob("tool_a-*.whl")
    wheel.with_name(wheel.name + ".provenance").write_text("[" * 100_000)
    report = app.verify_index(served, public_keys=[published_key(repo)])
    (entry,) = [e for e in report.entries if e.name == "tool-a"]
    assert any("is not JSON" in p for p in entry.problems)


def test_an_index_that_serves_no_wheel_does_not_pass(tmp_path: Path) -> None:
    empty = Repository(tmp_path / "empty")
    empty.ensure_layout()
    with IndexServer(empty) as server:
        result = _verify(server.url + "/")
    assert result.exit_code == 1
    assert f"no wheel is served at {server.url}/: nothing to verify" in result.output
