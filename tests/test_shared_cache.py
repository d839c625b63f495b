"""``--cache-url``: a second repository takes a first one's builds, over HTTP (``rewheel serve``)
or from its folder, only when each is signed by a trusted key and is exactly what it would build.

Repository A is built once from a synthetic tree (tool-a; lib-b and app built with tool-a; app
needs lib-b); each test bootstraps a repository B from the same upstream with A (or a copy of A
changed the way a hostile cache would) as its cache. What a hostile cache serves is refused with a
notice and built here; nothing of it reaches B.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Upstream, run_bootstrap
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.requirements import Requirement
from support.fake_index import FakeIndex

from rewheel import app
from rewheel.cli import cli, main
from rewheel.core.report import BootstrapResult, Outcome
from rewheel.index.http import HttpClient, Limits, RetryPolicy
from rewheel.repo.build_cache import CACHE_DIR
from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer
from rewheel.trust.provenance import DSSE_PAYLOAD_TYPE, dsse_envelope, pae
from rewheel.trust.shared_cache import statement_cache_key

NODES = ("app==1.0", "lib-b==1.0", "tool-a==1.0")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    files = tmp_path_factory.mktemp("cache-upstream")
    with FakeIndex() as index:
        up = Upstream(index, files)
        up.sdist("tool-a", "1.0")
        up.sdist("lib-b", "1.0", build_requires=["tool-a"])
        up.sdist("app", "1.0", build_requires=["tool-a"], install_requires=["lib-b"])
        up.sdist("tool-x", "1.0")  # needed only by a build of app patched to ask for it
        up.sdist("duo", "1.0", build_requires=["tool-a", "tool-x"])  # two build tools
        yield up


@pytest.fixture(scope="module")
def built(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("cache-a") / "a"
    result = run_bootstrap(upstream, repo, ["app"])
    assert result.ok, result.failures
    return repo


@pytest.fixture
def cache(built: Path, tmp_path: Path) -> Path:
    """A copy of repository A, for a test to change."""
    copy = tmp_path / "cache"
    shutil.copytree(built, copy, symlinks=True)
    return copy


def bootstrap_b(
    upstream: Upstream,
    repo: Path,
    cache_url: str | None,
    *,
    trust: list[Path] | None = None,
    machine: app.Machine | None = None,
    settings_dir: Path | None = None,
    jobs: int = 2,
) -> tuple[BootstrapResult, list[str]]:
    notices: list[str] = []
    options = app.BootstrapOptions(
        requirements=[Requirement("app")],
        repo=repo,
        index_url=upstream.url,
        jobs=jobs,
        work_dir=repo.parent / f"{repo.name}-work",
        cache_url=cache_url,
        cache_key_trust=trust or [],
        settings_dir=settings_dir,
    )
    result = app.bootstrap(options, notice=notices.append, machine=machine or app.Machine())
    assert result.ok, result.failures
    return result, notices


def verify_ok(repo: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["verify", "--repo", str(repo), *args])
    assert result.exit_code == 0, result.output
    return result.output


def entry(cache: Path, name: str) -> tuple[Path, dict[str, Any]]:
    """The build-cache entry of ``name`` in the cache, and its record."""
    record = json.loads((cache / "records" / f"{name}-1.0.json").read_text())
    path = cache / CACHE_DIR / f"{record['cache_key']}.json"
    return path, json.loads(path.read_text())


# ---------------------------------------------------------------- hits


def test_a_repository_served_by_rewheel_serve_gives_everything_and_nothing_is_built(
    upstream: Upstream, built: Path, tmp_path: Path
) -> None:
    b = tmp_path / "b"
    with IndexServer(Repository(built)) as server:
        result, notices = bootstrap_b(upstream, b, server.url)
    assert not notices, notices
    assert (result.built, result.from_cache, result.reused) == (0, 3, 0)
    assert {result.outcomes[n] for n in NODES} == {Outcome.FROM_CACHE}
    for node in NODES:
        name = node.split("==")[0]
        record = json.loads((b / "records" / f"{name}-1.0.json").read_text())
        assert record["from_cache"] == server.url.removesuffix("/simple") + "/"
        assert record["log"] is None
        ours = Repository(b).find_wheels(name, "1.0")
        theirs = Repository(built).find_wheels(name, "1.0")
        assert ours == theirs  # the very wheel, by name and sha256
        wheel = b / "wheels" / ours[0].filename
        assert wheel.with_name(wheel.name + ".provenance.dsse.json").is_file()
        assert (b / "sdists" / f"{name.replace('-', '_')}-1.0.tar.gz").is_file()
    out = verify_ok(b)
    assert "chain of custody holds for 3 wheel(s)" in out
    page = (b / "browse" / "app.html").read_text()
    assert f"taken from the build cache {server.url.removesuffix('/simple')}/" in page
    # The signer's key was published with its builds; pinned, it verifies them too.
    (key,) = (built / "keys").glob("*.pub.pem")
    assert (b / "keys" / key.name).read_bytes() == key.read_bytes()
    verify_ok(b, "--public-key", str(key))
    # The next run reuses them from its own repository: no cache asked, nothing built.
    again, _ = bootstrap_b(upstream, b, "http://127.0.0.1:9/")
    assert (again.built, again.from_cache, again.reused) == (0, 0, 3)


def test_a_folder_on_this_machine_is_a_cache_too(
    upstream: Upstream, built: Path, tmp_path: Path
) -> None:
    result, notices = bootstrap_b(upstream, tmp_path / "b", str(built))
    assert (result.built, result.from_cache) == (0, 3), notices
    assert json.loads((tmp_path / "b/records/app-1.0.json").read_text())["from_cache"] == str(built)


def test_a_url_that_is_no_cache_is_said_once(upstream: Upstream, tmp_path: Path) -> None:
    # The upstream's host answers 404 to every lookup, as a wrong URL would: said once, not
    # three times, and everything built here.
    wrong = upstream.url.removesuffix("/simple") + "/elsewhere/"
    result, notices = bootstrap_b(upstream, tmp_path / "b", wrong)
    assert (result.built, result.from_cache) == (3, 0)
    said = [n for n in notices if "has no build-cache/format.json" in n]
    assert len(said) == 1, notices
    assert wrong.rstrip("/") in said[0]
    _, in_folder = bootstrap_b(upstream, tmp_path / "c", str(tmp_path / "not-a-repository"))
    assert len([n for n in in_folder if "has no build-cache/format.json" in n]) == 1


def test_a_cache_that_lacks_one_build_says_nothing_and_one_without_the_marker_still_gives(
    upstream: Upstream, built: Path, cache: Path, tmp_path: Path
) -> None:
    assert json.loads((cache / CACHE_DIR / "format.json").read_text()) == {"format": 1}
    for index in (cache / CACHE_DIR).glob("sdist-*.json"):
        if b'"keys"' in index.read_bytes() and _of_app(cache, index):
            index.unlink()
    result, notices = bootstrap_b(upstream, tmp_path / "b", str(cache))
    assert (result.built, result.from_cache) == (1, 2)
    assert not [n for n in notices if "format.json" in n], notices
    # A repository of a rewheel without the marker: its builds are still taken, nothing said.
    older = tmp_path / "older"
    shutil.copytree(built, older, symlinks=True)
    (older / CACHE_DIR / "format.json").unlink()
    result, notices = bootstrap_b(upstream, tmp_path / "c", str(older))
    assert result.from_cache == 3 and not [n for n in notices if "format.json" in n], notices


def _of_app(cache: Path, index: Path) -> bool:
    record = json.loads((cache / "records" / "app-1.0.json").read_text())
    return index.name == f"sdist-{record['sdist_sha256']}.json"


def test_other_settings_here_mean_other_keys_and_the_builds_are_made_here(
    upstream: Upstream, built: Path, tmp_path: Path
) -> None:
    # Every package gets another variable here: every key differs, so the cache has nothing
    # this run would build.
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "_defaults.toml").write_text('[env]\nTOOL_FLAVOUR = "other"\n')
    result, notices = bootstrap_b(upstream, tmp_path / "b", str(built), settings_dir=settings)
    assert (result.built, result.from_cache) == (3, 0)
    # A key the cache does not have is no one's fault: nothing said about the cache.
    assert not [n for n in notices if "build cache" in n], notices


def test_a_build_tool_rebuilt_to_the_same_bytes_keeps_the_keys_of_what_it_builds(
    upstream: Upstream, built: Path, tmp_path: Path
) -> None:
    # Only tool-a's settings differ, so it is built here; its wheel does not depend on the
    # variable (nor, in the sandbox's fixed /build, on the build root), so the environments
    # of lib-b and app hold the same wheel by sha256: their keys, and the cache's builds, hold.
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "tool-a.toml").write_text('[env]\nTOOL_FLAVOUR = "other"\n')
    b = tmp_path / "b"
    result, notices = bootstrap_b(upstream, b, str(built), settings_dir=settings)
    assert result.outcomes["tool-a==1.0"] is Outcome.BUILT, notices
    assert Repository(b).find_wheels("tool-a", "1.0") == Repository(built).find_wheels(
        "tool-a", "1.0"
    )
    assert (result.built, result.from_cache) == (1, 2), notices


_PATCH_APP = """\
--- a/pyproject.toml
+++ b/pyproject.toml
@@ -1,4 +1,4 @@
 [build-system]
-requires = ["tool-a"]
+requires = ["tool-a", "tool-x"]
 build-backend = "tinybackend"
 backend-path = ["_backend"]
"""


def _run_shape(repo: Path) -> tuple[list[str], list[Any], list[dict[str, Any]]]:
    """What a run left of its build graph: the nodes of its build order, graph.json's nodes
    and its edges (sorted: builds running at once, or a hit faster than a build, may finish and
    record them in either order)."""
    records = json.loads((repo / "build-order.json").read_text())
    graph = json.loads((repo / "graph.json").read_text())
    edges = sorted(graph["edges"], key=lambda e: json.dumps(e, sort_keys=True))
    return sorted(f"{r['name']}=={r['version']}" for r in records), graph["nodes"], edges


def test_a_build_the_cache_offers_under_other_settings_leaves_the_run_as_without_a_cache(
    upstream: Upstream, built: Path, tmp_path: Path
) -> None:
    # The cache built app with a patch that adds tool-x to its build requirements (signed, by a
    # trusted key: the same run key). Here app has no settings: another key, a miss, so neither
    # tool-x nor an edge to it may appear, and nothing is built or waited for on its account.
    settings = tmp_path / "patched"
    settings.mkdir()
    (settings / "app.patch").write_text(_PATCH_APP)
    (settings / "app.toml").write_text('[[patches]]\nfile = "app.patch"\n')
    patched = tmp_path / "patched-repo"
    first = run_bootstrap(upstream, patched, ["app"], settings_dir=settings)
    assert first.ok, first.failures
    assert "tool-x==1.0" in first.outcomes  # the cache's build of app did need tool-x
    bootstrap_b(upstream, tmp_path / "plain", None, jobs=1)
    with_cache, notices = bootstrap_b(upstream, tmp_path / "b", str(patched), jobs=1)
    assert with_cache.outcomes["app==1.0"] is Outcome.BUILT, notices
    assert "tool-x==1.0" not in with_cache.outcomes, with_cache.outcomes
    assert _run_shape(tmp_path / "b") == _run_shape(tmp_path / "plain")
    assert not (tmp_path / "b" / "records" / "tool-x-1.0.json").exists()


# ---------------------------------------------------------------- keys


def _resign(cache: Path, name: str, key: Ed25519PrivateKey) -> None:
    """Sign ``name``'s statement in the cache with ``key`` instead."""
    wheel = next((cache / "wheels").glob(f"{name.replace('-', '_')}-1.0-*.whl"))
    payload = wheel.with_name(wheel.name + ".provenance.json").read_bytes()
    keyid = _keyid(key)
    envelope = dsse_envelope(payload, keyid, key.sign(pae(DSSE_PAYLOAD_TYPE, payload)))
    wheel.with_name(wheel.name + ".provenance.dsse.json").write_text(json.dumps(envelope))


def test_builds_signed_by_a_key_not_pinned_are_built_here_until_it_is_pinned(
    upstream: Upstream, cache: Path, tmp_path: Path
) -> None:
    other = Ed25519PrivateKey.generate()
    _resign(cache, "app", other)
    result, notices = bootstrap_b(upstream, tmp_path / "b", str(cache))
    assert result.outcomes["app==1.0"] is Outcome.BUILT
    assert result.outcomes["tool-a==1.0"] is Outcome.FROM_CACHE
    (said,) = [n for n in notices if "not trusted" in n]
    assert "--cache-key-trust" in said
    # Pinned, the same build is taken, and verify checks it with the key published beside it.
    pem = tmp_path / "other.pub.pem"
    pem.write_bytes(
        other.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    pinned, notices = bootstrap_b(upstream, tmp_path / "b2", str(cache), trust=[pem])
    assert pinned.outcomes["app==1.0"] is Outcome.FROM_CACHE, notices
    verify_ok(tmp_path / "b2")


def _pem(key: Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def _keyid(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _verify(repo: Path, *keys: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``rewheel verify --repo REPO --public-key K...`` through the entry point: exit code,
    and what it printed (both streams)."""
    args = ["verify", "--repo", str(repo)]
    for key in keys:
        args += ["--public-key", str(key)]
    with pytest.raises(SystemExit) as exited:
        main(args)
    out = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out.out + out.err


def test_verify_takes_every_key_the_repository_was_built_under_and_names_each_wheels_signer(
    upstream: Upstream, built: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # app comes from a colleague's cache, signed by the colleague's key; tool-a and lib-b are
    # signed by the key this run signs with. Each key in its own file, both pinned: it holds,
    # and each wheel says which key signed it.
    colleague = Ed25519PrivateKey.generate()
    _resign(cache, "app", colleague)
    theirs = _pem(colleague, tmp_path / "colleague.pub.pem")
    b = tmp_path / "b"
    result, notices = bootstrap_b(upstream, b, str(cache), trust=[theirs])
    assert result.outcomes["app==1.0"] is Outcome.FROM_CACHE, notices
    (ours,) = (built / "keys").glob("*.pub.pem")
    code, out = _verify(b, ours, theirs, capsys=capsys)
    assert code == 0, out
    mine = ours.name.removesuffix(".pub.pem")
    sound = "built from source ok, dependencies ok, build tools ok"
    assert f"chain   app 1.0: {sound}, signed by {_keyid(colleague)}" in out
    assert f"chain   tool-a 1.0: {sound}, signed by {mine}" in out
    assert "chain of custody holds for 3 wheel(s)" in out
    # Only one of them pinned: the wheel the other signed is broken, named with both keys.
    code, out = _verify(b, ours, capsys=capsys)
    assert code == 1, out
    assert "CHAIN   app 1.0" in out
    why = f"no valid signature by the key {mine}; its signatures name the key(s)"
    assert f"{why} {_keyid(colleague)}" in out
    code, out = _verify(b, theirs, capsys=capsys)
    assert code == 1 and "CHAIN   tool-a 1.0" in out, out
    # The same through --json: each wheel's signer.
    run = CliRunner().invoke(
        cli,
        [
            "verify",
            "--json",
            "--repo",
            str(b),
            "--public-key",
            str(ours),
            "--public-key",
            str(theirs),
        ],
    )
    signers = {w["name"]: w["signer"] for w in json.loads(run.stdout)["chain"]["wheels"]}
    assert signers == {"app": _keyid(colleague), "lib-b": mine, "tool-a": mine}


def test_a_key_file_that_is_no_key_or_holds_two_is_refused_by_name(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (ours,) = (built / "keys").glob("*.pub.pem")
    other = _pem(Ed25519PrivateKey.generate(), tmp_path / "other.pub.pem")
    # Two keys in one file: the PEM reader would take the first and drop the second silently.
    both = tmp_path / "both.pem"
    both.write_bytes(other.read_bytes() + ours.read_bytes())
    code, out = _verify(built, both, capsys=capsys)
    assert code == 2, out
    assert f"cannot load the public key {both}" in out and "2 PEM blocks" in out
    assert "each key with its own --public-key" in out
    text = tmp_path / "notes.pem"
    text.write_text("-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n")
    code, out = _verify(built, text, capsys=capsys)
    assert code == 2 and f"cannot load the public key {text}" in out, out
    private = tmp_path / "private.pem"
    private.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    code, out = _verify(built, ours, private, capsys=capsys)
    assert code == 2 and "it is a private key" in out, out


# ---------------------------------------------------------------- a hostile cache


def _unsigned(cache: Path) -> None:
    next((cache / "wheels").glob("app-1.0-*.whl.provenance.dsse.json")).unlink()


def _badly_signed(cache: Path) -> None:
    path = next((cache / "wheels").glob("app-1.0-*.whl.provenance.dsse.json"))
    envelope = json.loads(path.read_text())
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    path.write_text(json.dumps(envelope))


def _another_wheel(cache: Path) -> None:
    wheel = next((cache / "wheels").glob("app-1.0-*.whl"))
    tool = next((cache / "wheels").glob("tool_a-1.0-*.whl"))
    wheel.write_bytes(tool.read_bytes())


def _claims_another_key(cache: Path) -> None:
    path, record = entry(cache, "app")
    record["cache_key"] = "0" * 64
    path.write_text(json.dumps(record))


def _rekeyed(cache: Path) -> None:
    # The record and every index agree on a key the signed statement does not give.
    path, record = entry(cache, "app")
    sdist_index = cache / CACHE_DIR / f"sdist-{record['sdist_sha256']}.json"
    record["cache_key"] = "e" * 64
    path.unlink()
    (path.parent / f"{'e' * 64}.json").write_text(json.dumps(record))
    sdist_index.write_text(json.dumps({"format": 1, "keys": ["e" * 64]}))


def _another_package(cache: Path) -> None:
    path, _ = entry(cache, "app")
    _, tool = entry(cache, "tool-a")
    path.write_text(json.dumps(tool))


def _climbs_out(cache: Path) -> None:
    path, record = entry(cache, "app")
    record["wheel"] = "../records/app-1.0-py3-none-any.whl"
    path.write_text(json.dumps(record))


def _index_climbs_out(cache: Path) -> None:
    _, record = entry(cache, "app")
    sdist_index = cache / CACHE_DIR / f"sdist-{record['sdist_sha256']}.json"
    sdist_index.write_text(json.dumps({"format": 1, "keys": ["../../records/app-1.0"]}))


def _another_environment(cache: Path) -> None:
    # A build made with other build tools, its record and statement consistent and signed:
    # the same build of app, but in the record its environment lists lib-b instead of tool-a.
    path, record = entry(cache, "app")
    _, lib = entry(cache, "lib-b")
    record["build_env"] = [{"name": "lib-b", "version": "1.0", "sha256": lib["wheel_sha256"]}]
    path.write_text(json.dumps(record))


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "unsigned": (_unsigned, "has no signed provenance"),
    "badly signed": (_badly_signed, "no valid signature by a trusted key"),
    "another wheel": (_another_wheel, "not the wheel its provenance signs"),
    "record claims another key": (_claims_another_key, "claims another key"),
    "re-keyed consistently": (_rekeyed, "key recomputed from its signed provenance"),
    "another package's record": (_another_package, "is of tool-a 1.0"),
    "a wheel name that climbs out": (_climbs_out, "which is no file name"),
    "an index that climbs out": (_index_climbs_out, "not a cache key"),
    "another build environment": (_another_environment, "disagree"),
}


# A cache whose builds are signed by a trusted key (a colleague's, pinned) but say other things.


def _restate(
    cache: Path,
    name: str,
    key: Ed25519PrivateKey,
    change: Callable[[dict[str, Any], dict[str, Any]], None],
) -> None:
    """Change ``name``'s signed statement and build record in the cache together (``change``
    gets both), sign the statement with ``key``, and offer the record under the key the new
    statement gives, as a consistent cache would."""
    wheel = next((cache / "wheels").glob(f"{name.replace('-', '_')}-1.0-*.whl"))
    path, record = entry(cache, name)
    statement = json.loads(wheel.with_name(wheel.name + ".provenance.json").read_bytes())
    change(statement, record)
    payload = json.dumps(statement, indent=2).encode()
    wheel.with_name(wheel.name + ".provenance.json").write_bytes(payload)
    envelope = dsse_envelope(payload, _keyid(key), key.sign(pae(DSSE_PAYLOAD_TYPE, payload)))
    wheel.with_name(wheel.name + ".provenance.dsse.json").write_text(json.dumps(envelope))
    new_key = statement_cache_key(statement)
    assert new_key is not None
    record["cache_key"] = new_key
    path.unlink()
    (path.parent / f"{new_key}.json").write_text(json.dumps(record))
    index = cache / CACHE_DIR / f"sdist-{record['sdist_sha256']}.json"
    index.write_text(json.dumps({"format": 1, "keys": [new_key]}))


def _dependencies(statement: dict[str, Any]) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    return deps


def _add_to_environment(
    cache: Path, name: str, tool: str, statement: dict[str, Any], record: dict[str, Any]
) -> None:
    """``tool``'s wheel of the cache added to the environment of the build of ``name`` (built
    into the cache first, if it has none)."""
    if not (cache / "records" / f"{tool}-1.0.json").exists():
        raise AssertionError(f"build {tool} into the cache first")
    _, tool_record = entry(cache, tool)
    sha = tool_record["wheel_sha256"]
    _dependencies(statement).append(
        {
            "name": tool_record["wheel"],
            "uri": f"pkg:pypi/{tool}@1.0?file_name={tool_record['wheel']}",
            "digest": {"sha256": sha},
            "annotations": {"role": "build-environment", "package": tool, "version": "1.0"},
        }
    )
    record["build_env"].append({"name": tool, "version": "1.0", "sha256": sha})


def test_a_statement_that_lists_its_environment_in_another_order_is_the_same_build(
    upstream: Upstream, tmp_path: Path
) -> None:
    # The environment is a set of wheels: its order in a statement carries nothing, and the
    # key sorts it. A colleague's cache (key pinned) whose statement of duo lists it reversed
    # gives the same build, taken.
    cache = tmp_path / "duo-cache"
    assert run_bootstrap(upstream, cache, ["duo"]).ok
    colleague = Ed25519PrivateKey.generate()
    pem = _pem(colleague, tmp_path / "colleague.pub.pem")

    def reverse(statement: dict[str, Any], record: dict[str, Any]) -> None:
        deps = _dependencies(statement)
        deps[:] = [d for d in deps if d["annotations"]["role"] != "build-environment"] + [
            d for d in reversed(deps) if d["annotations"]["role"] == "build-environment"
        ]  # the record keeps its own order: the two need not agree on one

    _, before = entry(cache, "duo")
    _restate(cache, "duo", colleague, reverse)
    assert entry(cache, "duo")[1]["cache_key"] == before["cache_key"]  # the very key
    notices: list[str] = []
    options = app.BootstrapOptions(
        requirements=[Requirement("duo")],
        repo=tmp_path / "b",
        index_url=upstream.url,
        work_dir=tmp_path / "b-work",
        cache_url=str(cache),
        cache_key_trust=[pem],
    )
    result = app.bootstrap(options, notice=notices.append)
    assert result.outcomes["duo==1.0"] is Outcome.FROM_CACHE, notices
    verify_ok(tmp_path / "b")


def test_a_signed_build_with_an_extra_wheel_in_its_environment_is_not_this_runs(
    upstream: Upstream, cache: Path, tmp_path: Path
) -> None:
    # Signed by a pinned key and consistent (record, statement and the key recomputed from
    # it), but app's environment holds tool-x as well: another key than the one this run
    # computes for the environment it resolves. Built here; tool-x has no part in the run.
    upstream_tool = run_bootstrap(upstream, cache, ["tool-x"])  # the cache has tool-x too
    assert upstream_tool.ok, upstream_tool.failures
    colleague = Ed25519PrivateKey.generate()
    pem = _pem(colleague, tmp_path / "colleague.pub.pem")
    _restate(
        cache,
        "app",
        colleague,
        lambda st, rec: _add_to_environment(cache, "app", "tool-x", st, rec),
    )
    b = tmp_path / "b"
    result, notices = bootstrap_b(upstream, b, str(cache), trust=[pem])
    assert result.outcomes["app==1.0"] is Outcome.BUILT, notices
    assert "tool-x==1.0" not in result.outcomes
    assert not [n for n in notices if n.startswith("app==1.0")], notices  # a miss, not said
    verify_ok(b)


def test_a_signed_build_naming_build_requirements_its_sdist_does_not_have_is_refused(
    upstream: Upstream, cache: Path, tmp_path: Path
) -> None:
    # As above, and the statement (with its record) also says app's build asked for tool-x:
    # the environment resolved from that holds tool-x, so the keys agree. But app's sdist asks
    # for tool-a only: this is not the build this run makes, whoever signed it.
    upstream_tool = run_bootstrap(upstream, cache, ["tool-x"])  # the cache has tool-x too
    assert upstream_tool.ok, upstream_tool.failures
    colleague = Ed25519PrivateKey.generate()
    pem = _pem(colleague, tmp_path / "colleague.pub.pem")

    def more_requires(statement: dict[str, Any], record: dict[str, Any]) -> None:
        _add_to_environment(cache, "app", "tool-x", statement, record)
        external = statement["predicate"]["buildDefinition"]["externalParameters"]
        external["buildSystemRequires"] = ["tool-a", "tool-x"]
        record["build_system_requires"] = ["tool-a", "tool-x"]

    _restate(cache, "app", colleague, more_requires)
    b = tmp_path / "b"
    result, notices = bootstrap_b(upstream, b, str(cache), trust=[pem])
    assert result.outcomes["app==1.0"] is Outcome.BUILT, notices
    said = "names the build requirements ['tool-a', 'tool-x'], and its sdist has ['tool-a']"
    assert any(n.startswith("app==1.0") and said in n for n in notices), notices
    # Refused before the environment it names is resolved: tool-x has no part in the run.
    assert "tool-x==1.0" not in result.outcomes, result.outcomes
    assert json.loads((b / "records/app-1.0.json").read_text())["from_cache"] is None
    verify_ok(b)


def test_a_build_of_the_same_sdist_downloaded_from_another_index_is_taken(
    upstream: Upstream, cache: Path, tmp_path: Path
) -> None:
    # The colleague's index (a mirror) served app's sdist at another URL, with the same file
    # name and sha256: the same bytes this run verified against its own index, so the same
    # build. Taken; its record and provenance keep the URL it was built from (signed).
    colleague = Ed25519PrivateKey.generate()
    pem = _pem(colleague, tmp_path / "colleague.pub.pem")
    mirror = "https://mirror.example/packages/app-1.0.tar.gz"

    def elsewhere(statement: dict[str, Any], record: dict[str, Any]) -> None:
        for dep in _dependencies(statement):
            if dep["annotations"]["role"] == "source":
                dep["uri"] = mirror
        record["sdist_url"] = mirror

    _restate(cache, "app", colleague, elsewhere)
    b = tmp_path / "b"
    result, notices = bootstrap_b(upstream, b, str(cache), trust=[pem])
    assert result.outcomes["app==1.0"] is Outcome.FROM_CACHE, notices
    record = json.loads((b / "records/app-1.0.json").read_text())
    assert record["sdist_url"] == mirror
    assert record["sdist_sha256"] == entry(cache, "app")[1]["sdist_sha256"]
    verify_ok(b, "--check-upstream", "--index-url", upstream.url)
    # Another file name at the mirror is another sdist, whatever its sha256: refused.
    _restate(cache, "app", colleague, lambda st, rec: elsewhere_named(st, rec))
    result, notices = bootstrap_b(upstream, tmp_path / "c", str(cache), trust=[pem])
    assert result.outcomes["app==1.0"] is Outcome.BUILT
    assert any("another sdist file" in n for n in notices), notices


def elsewhere_named(statement: dict[str, Any], record: dict[str, Any]) -> None:
    renamed = "https://mirror.example/packages/app-1.0-renamed.tar.gz"
    for dep in _dependencies(statement):
        if dep["annotations"]["role"] == "source":
            dep["uri"] = renamed
    record["sdist_url"] = renamed


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_cache_is_refused_and_the_package_built_here(
    case: str, upstream: Upstream, cache: Path, tmp_path: Path
) -> None:
    change, said = HOSTILE[case]
    change(cache)
    b = tmp_path / "b"
    with IndexServer(Repository(cache)) as server:
        result, notices = bootstrap_b(upstream, b, server.url)
    assert result.outcomes["app==1.0"] is Outcome.BUILT, notices
    assert result.outcomes["tool-a==1.0"] is Outcome.FROM_CACHE
    assert any(said in n and n.startswith("app==1.0") for n in notices), notices
    assert json.loads((b / "records/app-1.0.json").read_text())["from_cache"] is None
    verify_ok(b)


def test_a_huge_answer_stops_the_cache_being_asked(
    upstream: Upstream, cache: Path, tmp_path: Path
) -> None:
    _, record = entry(cache, "tool-a")
    index = cache / CACHE_DIR / f"sdist-{record['sdist_sha256']}.json"
    index.write_text(json.dumps({"format": 1, "keys": ["0" * 64] * 200_000}))  # 13 MiB
    with IndexServer(Repository(cache)) as server:
        result, notices = bootstrap_b(upstream, tmp_path / "b", server.url)
    assert result.outcomes["tool-a==1.0"] is Outcome.BUILT
    assert any("not asked again" in n for n in notices), notices


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(3)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_slow_cache_is_not_waited_for(upstream: Upstream, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    machine = app.Machine(
        cache_client=lambda: HttpClient(
            limits=Limits(page_seconds=0.5), policy=RetryPolicy(attempts=1)
        )
    )
    try:
        started = time.monotonic()
        url = f"http://127.0.0.1:{server.server_port}/"
        result, notices = bootstrap_b(upstream, tmp_path / "b", url, machine=machine)
        took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert (result.built, result.from_cache) == (3, 0)
    (said,) = [n for n in notices if "not asked again" in n]
    assert url in said
    # One wait of half a second, not one per package: the cache is given up on at once.
    assert took < 60


def test_serve_answers_only_json_files_of_the_build_cache(built: Path) -> None:
    with IndexServer(Repository(built)) as server:
        client = HttpClient()
        root = server.url.removesuffix("/simple")
        _, record = entry(built, "app")
        ok = client.get(f"{root}/{CACHE_DIR}/{record['cache_key']}.json")
        assert ok.status == 200 and json.loads(ok.body)["name"] == "app"
        assert client.get(f"{root}/{CACHE_DIR}/").status == 404
        climbs = client.get(f"{root}/{CACHE_DIR}/..%2Frecords%2Fapp-1.0.json")
        assert climbs.status in (400, 404)


class _RecordingClient:
    """An HttpClient stand-in that answers 404 and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict[str, str]]] = []

    def get(self, url: str, **kwargs: Any) -> Any:
        self.asked.append((url, dict(kwargs.get("headers") or {})))

        class _Answer:
            status = 404
            body = b""

        return _Answer()


def test_credentials_in_the_cache_url_are_sent_to_its_host_and_never_recorded() -> None:
    from rewheel.trust.shared_cache import cache_source

    client = _RecordingClient()
    source = cache_source(
        "https://team:s3cret@cache.example/simple/",
        lambda: client,  # type: ignore[arg-type,return-value]
    )
    assert source.read("build-cache/x.json", 1000) is None
    assert "s3cret" not in source.label
    ((url, headers),) = client.asked
    assert url == "https://cache.example/build-cache/x.json"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"team:s3cret").decode()
